"""Construction and messages of the Mailchimp adapter (no request is sent)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from campaign_bridge.config import MailchimpDestination
from campaign_bridge.errors import ConfigurationError
from campaign_bridge.providers import create_provider
from campaign_bridge.providers._http import USER_AGENT
from campaign_bridge.providers.mailchimp import MailchimpProvider

KEY = "0123456789abcdef0123456789abcdef-us21"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_base_url_and_auth_advice_come_from_the_key() -> None:
    provider = create_provider(MailchimpDestination(api_key=KEY, list_id="abc"))
    assert isinstance(provider, MailchimpProvider)
    try:
        assert provider.base_url == "https://us21.api.mailchimp.com/3.0"
        error = provider._session.auth_error("API Key Invalid: Your API key may be invalid")
    finally:
        await provider.aclose()
    text = str(error)
    assert "check the API key and that its data centre suffix matches" in text
    assert "-us21" in text
    assert "us21.api.mailchimp.com" in text
    assert KEY.split("-")[0] not in text


def test_a_key_without_data_centre_is_a_configuration_error() -> None:
    # The settings model refuses such a key already; the adapter guards on its own too.
    unchecked = MailchimpDestination.model_construct(
        api_key=SecretStr("0123456789abcdef"), list_id="abc", base_url=None
    )
    with pytest.raises(ConfigurationError) as caught:
        MailchimpProvider(unchecked)
    assert "0123456789abcdef" not in str(caught.value)


def test_the_user_agent_names_the_product_and_version() -> None:
    from campaign_bridge import __version__

    assert USER_AGENT.startswith(f"campaign-bridge/{__version__}")


def test_unknown_webhook_sources_are_refused() -> None:
    with pytest.raises(ValueError, match="webhook sources"):
        MailchimpProvider(MailchimpDestination(api_key=KEY, list_id="abc"), webhook_sources=["bot"])


@pytest.mark.anyio
async def test_a_call_must_not_repeat_a_key() -> None:
    from campaign_bridge.providers.base import MemberStatus, MemberUpsert, TagChange

    provider = MailchimpProvider(MailchimpDestination(api_key=KEY, list_id="abc"))
    twice = [
        MemberUpsert(key="1", email="a@corp.org", status_if_new=MemberStatus.SUBSCRIBED),
        MemberUpsert(key="1", email="b@corp.org", status_if_new=MemberStatus.SUBSCRIBED),
    ]
    try:
        with pytest.raises(ValueError, match="unique"):
            await provider.upsert_members("abc", twice)
        with pytest.raises(ValueError, match="unique"):
            await provider.update_tags("abc", [TagChange("1", "a@corp.org", ("t",))] * 2)
        with pytest.raises(ValueError, match="unique"):
            await provider.archive_members("abc", [("1", "a@corp.org"), ("1", "b@corp.org")])
    finally:
        await provider.aclose()
    assert provider.stats.requests == {}


@pytest.mark.anyio
async def test_an_unusable_base_url_is_fatal_at_once() -> None:
    from campaign_bridge.errors import ProviderError

    # The settings model refuses such a URL already; the adapter does not rely on it.
    destination = MailchimpDestination.model_construct(
        api_key=SecretStr(KEY),
        list_id="abc",
        base_url="ftp://127.0.0.1/3.0",
        concurrency=10,
        timeout_seconds=5.0,
        max_retries=3,
    )
    provider = MailchimpProvider(destination)
    try:
        with pytest.raises(ProviderError, match="base URL"):
            await provider.check()
    finally:
        await provider.aclose()
    assert provider.stats.retries == {}


def test_exhausted_retry_advice_depends_on_the_reason() -> None:
    from campaign_bridge.providers._http import _advice

    assert "concurrency" in _advice("too_many_requests")
    assert "concurrency" in _advice("throttled_403")
    assert "network" in _advice("reset")
    assert "network" in _advice("connection")
    assert "network" in _advice("timeout")
    assert "try again later" in _advice("server_error_503")
