"""The provider contract suite run against the Brevo adapter and the Brevo sandbox, over a real
socket (uvicorn in a thread, one per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from campaign_bridge.sandbox.brevo import BrevoHandle, run_in_thread
from campaign_bridge.testing.contract import contract_tests
from tests.integration.providers.brevo_harness import BrevoHarness


@pytest.fixture(scope="module")
def brevo_server() -> Iterator[BrevoHandle]:
    with run_in_thread() as handle:
        yield handle


def brevo_harness(request: pytest.FixtureRequest) -> Iterator[BrevoHarness]:
    harness = BrevoHarness(request.getfixturevalue("brevo_server"))
    try:
        yield harness
    finally:
        harness.close()


TestBrevoContract = contract_tests("Brevo", brevo_harness)
