"""The provider contract suite run against the listmonk adapter and the listmonk sandbox, over a
real socket (uvicorn in a thread, one per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from campaign_bridge.sandbox.listmonk import ListmonkConfig, ListmonkHandle, run_in_thread
from campaign_bridge.testing.contract import contract_tests
from tests.integration.providers.listmonk_harness import ListmonkHarness


@pytest.fixture(scope="module")
def listmonk_handle() -> Iterator[ListmonkHandle]:
    # campaign activity lands at once, so a test's clock moves do not hide it
    with run_in_thread(config=ListmonkConfig(activity_spread_seconds=0)) as handle:
        yield handle


def listmonk_harness(request: pytest.FixtureRequest) -> Iterator[ListmonkHarness]:
    harness = ListmonkHarness(request.getfixturevalue("listmonk_handle"))
    try:
        yield harness
    finally:
        harness.close()


TestListmonkContract = contract_tests("Listmonk", listmonk_harness)
