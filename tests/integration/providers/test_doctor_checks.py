"""Each adapter's own doctor checks (``Provider.doctor_checks``) against its sandbox: what only
that provider's rules make wrong is found before a push runs into it."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
from pydantic import SecretStr

from campaign_bridge.config import MailchimpDestination
from campaign_bridge.providers.base import Audience
from campaign_bridge.providers.brevo import BrevoProvider
from campaign_bridge.providers.listmonk import ListmonkProvider
from campaign_bridge.providers.mailchimp import MailchimpProvider
from campaign_bridge.testing.brevo import InProcessBrevo
from campaign_bridge.testing.listmonk import InProcessListmonk

pytestmark = pytest.mark.anyio
SINGLE, DOUBLE = "1", "2"  # listmonk's install-time lists: single and double opt-in


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def listmonk(lm: InProcessListmonk, user: str, token: str, list_id: str) -> ListmonkProvider:
    destination = SimpleNamespace(
        base_url=lm.base_url,
        list_id=list_id,
        api_user=user,
        api_token=SecretStr(token),
        username=None,
        password=None,
        concurrency=2,
        timeout_seconds=10.0,
        max_retries=0,
        ca_bundle=None,
    )
    return ListmonkProvider(destination, transport=httpx.ASGITransport(app=lm.app))  # type: ignore[arg-type]


async def test_listmonk_double_opt_in_needs_a_double_opt_in_list(
    listmonk_app: InProcessListmonk,
) -> None:
    for list_id, verdict in ((SINGLE, "fail"), (DOUBLE, "ok")):
        adapter = listmonk(listmonk_app, listmonk_app.api_user, listmonk_app.api_token, list_id)
        try:
            found = await adapter.doctor_checks(await adapter.audience(list_id), double_opt_in=True)
        finally:
            await adapter.aclose()
        by_name = {f.name: f for f in found}
        assert by_name["SQL lookups"].status == "ok"
        if verdict == "fail":
            assert by_name["double opt-in"].status == "fail"
            assert "single opt-in list" in by_name["double opt-in"].message
        else:
            assert "double opt-in" not in by_name


async def test_listmonk_user_without_sql_queries_is_found(listmonk_app: InProcessListmonk) -> None:
    perms = {"subscribers:get_all", "subscribers:manage", "lists:get_all"}
    user = listmonk_app.sandbox.new_user("no-sql", "t0ken", perms)
    adapter = listmonk(listmonk_app, "no-sql", user.token, SINGLE)
    try:
        audience = Audience(id=SINGLE, name="Default list", merge_fields=())
        [finding] = await adapter.doctor_checks(audience, double_opt_in=False)
    finally:
        await adapter.aclose()
    assert finding.status == "fail"
    assert "denied: subscribers:sql_query" in finding.message


async def test_brevo_double_opt_in_needs_its_attribute(brevo_app: InProcessBrevo) -> None:
    destination = SimpleNamespace(
        api_key=SecretStr(brevo_app.api_key),
        base_url=brevo_app.base_url,
        list_id=str(brevo_app.list_id),
        concurrency=2,
        timeout_seconds=10.0,
        max_retries=0,
        ca_bundle=None,
        double_opt_in_template_id=7,
    )
    adapter = BrevoProvider(destination, transport=httpx.ASGITransport(app=brevo_app.app))
    try:
        audience = await adapter.audience(str(brevo_app.list_id))
        assert await adapter.doctor_checks(audience, double_opt_in=False) == []
        [ready] = await adapter.doctor_checks(audience, double_opt_in=True)
        assert (ready.status, ready.message) == ("ok", "template 7")
    finally:
        await adapter.aclose()
    del brevo_app.sandbox.attributes["DOUBLE_OPT-IN"]
    fresh = BrevoProvider(destination, transport=httpx.ASGITransport(app=brevo_app.app))
    try:
        [missing] = await fresh.doctor_checks(audience, double_opt_in=True)
    finally:
        await fresh.aclose()
    assert missing.status == "fail"
    assert "DOUBLE_OPT-IN" in missing.message


async def test_mailchimp_warns_when_its_own_writes_would_echo() -> None:
    destination = MailchimpDestination.model_validate(
        {"api_key": "k", "list_id": "a1", "base_url": "http://127.0.0.1:9/3.0"}
    )
    audience = Audience(id="a1", name="Shop", merge_fields=())
    quiet = MailchimpProvider(destination)
    echo = MailchimpProvider(destination, webhook_sources=["user", "api"])
    try:
        assert [f.status for f in await quiet.doctor_checks(audience, double_opt_in=False)] == [
            "ok"
        ]
        [warned] = await echo.doctor_checks(audience, double_opt_in=False)
    finally:
        await quiet.aclose()
        await echo.aclose()
    assert warned.status == "warn"
    assert "applied a second time" in warned.message
