"""The provider contract suite run against the Mailchimp adapter and the Mailchimp sandbox,
over a real socket (uvicorn in a thread, one per module; see conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from campaign_bridge.testing.contract import contract_tests
from tests.integration.providers.mailchimp_harness import MailchimpHarness


def mailchimp_harness(request: pytest.FixtureRequest) -> Iterator[MailchimpHarness]:
    harness = MailchimpHarness(request.getfixturevalue("sandbox_server"))
    try:
        yield harness
    finally:
        harness.close()


TestMailchimpContract = contract_tests("Mailchimp", mailchimp_harness)
