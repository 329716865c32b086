"""The provider contract suite run against the Mailchimp adapter and the Mailchimp sandbox,
over a real socket (uvicorn in a thread); fixtures in conftest.py."""

from __future__ import annotations

from tests.integration.providers.contract import ProviderContract


class TestMailchimpContract(ProviderContract):
    """Every contract test, against Mailchimp's sandbox."""
