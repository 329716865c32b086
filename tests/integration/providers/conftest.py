"""Fixtures for provider tests: the Mailchimp sandbox on a real socket, one per module, reset
before every test; provider tests run on asyncio (anyio's pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from campaign_bridge.sandbox.mailchimp import SandboxHandle, run_in_thread
from tests.integration.providers.mailchimp_harness import MailchimpHarness


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[SandboxHandle]:
    with run_in_thread() as handle:
        yield handle


@pytest.fixture
def harness(sandbox_server: SandboxHandle) -> Iterator[MailchimpHarness]:
    harness = MailchimpHarness(sandbox_server)
    try:
        yield harness
    finally:
        harness.close()
