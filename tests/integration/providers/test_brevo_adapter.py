"""The Brevo adapter against the Brevo sandbox (in process, httpx.ASGITransport; the contract
suite and the end-to-end tests run the same emulator on a real socket)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from campaign_bridge.errors import ProviderAuthError, ProviderError
from campaign_bridge.providers._http import RetryPolicy
from campaign_bridge.providers.base import MemberRef, MemberStatus, MemberUpsert, OutcomeKind
from campaign_bridge.providers.brevo import BrevoProvider
from campaign_bridge.sandbox.brevo import control, imports, webhooks
from campaign_bridge.testing.brevo import InProcessBrevo

pytestmark = pytest.mark.anyio
S = MemberStatus
K = OutcomeKind


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make(brevo: InProcessBrevo, *, api_key: str | None = None, **options: Any) -> BrevoProvider:
    destination = SimpleNamespace(
        api_key=SecretStr(api_key or brevo.api_key),
        base_url=brevo.base_url,
        list_id=str(brevo.list_id),
        concurrency=4,
        timeout_seconds=10.0,
        max_retries=options.pop("max_retries", 2),
        ca_bundle=None,
    )
    return BrevoProvider(
        destination,
        transport=options.pop("transport", None) or httpx.ASGITransport(app=brevo.app),
        poll_initial=0.001,
        poll_max=0.01,
        retry=RetryPolicy(max_retries=destination.max_retries, base_delay=0.001, max_delay=0.01),
        **options,
    )


@pytest.fixture
async def provider(brevo_app: InProcessBrevo) -> AsyncIterator[BrevoProvider]:
    adapter = make(brevo_app)
    yield adapter
    await adapter.aclose()


def upsert(key: str, email: str, **kw: Any) -> MemberUpsert:
    kw.setdefault("status_if_new", S.SUBSCRIBED)
    return MemberUpsert(key=key, email=email, **kw)


def contact(brevo: InProcessBrevo, email: str) -> Any:
    sandbox = brevo.sandbox
    return sandbox.contacts[sandbox.by_email[email]]


def seed(brevo: InProcessBrevo, *contacts: dict[str, Any]) -> None:
    control.seed(brevo.sandbox, {"contacts": list(contacts)})


async def send_campaign(brevo: InProcessBrevo, list_id: int) -> dict[str, Any]:
    """A campaign to ``list_id`` created and sent through Brevo's API; its JSON."""
    async with brevo.client() as api:
        body = {
            "name": "Spring",
            "subject": "Hello",
            "sender": {"name": "Corp", "email": "news@corp.org"},
            "htmlContent": "<p>hi</p>",
            "recipients": {"listIds": [list_id]},
        }
        created: dict[str, Any] = (await api.post("/emailCampaigns", json=body)).json()
        assert (await api.post(f"/emailCampaigns/{created['id']}/sendNow")).status_code == 204
    return created


async def test_new_contacts_are_imported_with_ids_and_attributes(
    brevo_app: InProcessBrevo, provider: BrevoProvider
) -> None:
    lid = str(brevo_app.list_id)
    members = [
        upsert(f"k{i}", f"New{i}@corp.org", merge_fields={"FIRSTNAME": f"N{i}"}) for i in range(7)
    ]
    members.append(upsert("quiet", "quiet@corp.org", status_if_new=S.UNSUBSCRIBED))
    outcomes = await provider.upsert_members(lid, members)
    assert [o.key for o in outcomes] == [m.key for m in members]
    assert Counter((o.kind, o.status) for o in outcomes) == {
        (K.CREATED, S.SUBSCRIBED): 7,
        (K.CREATED, S.UNSUBSCRIBED): 1,
    }
    assert all(o.member_id and o.member_id.isdigit() for o in outcomes)
    first = contact(brevo_app, "new0@corp.org")
    assert first.attributes["FIRSTNAME"] == "N0"
    # each outcome carries Brevo's own time of the change (modifiedAt, to the millisecond)
    for outcome in outcomes:
        held = brevo_app.sandbox.contacts[int(outcome.member_id or 0)]
        assert outcome.last_changed is not None
        assert abs(outcome.last_changed.timestamp() - held.modified_at) < 0.001
    assert int(lid) in first.list_ids
    assert contact(brevo_app, "quiet@corp.org").email_blacklisted is True


class CountingTransport(httpx.AsyncBaseTransport):
    """The sandbox app, counting the requests per (method, path) and the contacts listed."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.calls: Counter[tuple[str, str]] = Counter()
        self.listed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls[(request.method, request.url.path)] += 1
        response = await self.inner.handle_async_request(request)
        if (request.method, request.url.path) == ("GET", "/v3/contacts"):
            body = await response.aread()
            self.listed += len(json.loads(body).get("contacts") or ())
        return response


async def test_imports_in_flight_are_read_back_once_for_all(brevo_app: InProcessBrevo) -> None:
    """Concurrent imports share one read-back: each created row is read once (a page per
    ``page_size`` rows, plus the pages that found the end for imports with rows they did not
    create), and every outcome is still the contact's own."""
    lid = brevo_app.list_id
    seed(  # already there (other values than the push sends): the import leaves them alone
        brevo_app,
        *(
            {"email": f"old{i}@corp.org", "listIds": [lid], "attributes": {"FIRSTNAME": "Was"}}
            for i in range(3)
        ),
    )
    transport = CountingTransport(brevo_app.app)
    provider = make(brevo_app, transport=transport)
    provider.page_size = 10
    calls = [
        [
            upsert(f"c{c}-{i}", f"new{c}.{i}@corp.org", merge_fields={"FIRSTNAME": f"F{c}.{i}"})
            for i in range(20)
        ]
        for c in range(5)
    ]
    for c in range(3):
        calls[c][7] = upsert(f"c{c}-old", f"old{c}@corp.org", merge_fields={"FIRSTNAME": "Now"})
    try:
        results = await asyncio.gather(*(provider.upsert_members(str(lid), m) for m in calls))
    finally:
        await provider.aclose()
    outcomes = {o.key: o for result in results for o in result}
    assert len(outcomes) == 100
    for key, outcome in outcomes.items():
        member = next(m for call in calls for m in call if m.key == key)
        held = contact(brevo_app, member.email.lower())
        assert outcome.member_id == str(held.id)
        assert outcome.status is S.SUBSCRIBED
        assert held.attributes["FIRSTNAME"] == member.merge_fields["FIRSTNAME"]
        expected = K.UPDATED if key.endswith("-old") else K.CREATED
        assert outcome.kind is expected, key
    # 97 rows created, each read once (each import reading its own window from its second
    # on read those of the imports before it again: about 300 here), in 10 full pages plus
    # at most one page finding the end per import that held an existing address.
    assert transport.listed <= 97 + 3
    assert transport.calls[("GET", "/v3/contacts")] <= 10 + 3
    assert transport.calls[("POST", "/v3/contacts/import")] == 5


async def test_an_import_whose_rows_are_all_read_back_needs_no_process_poll(
    brevo_app: InProcessBrevo,
) -> None:
    """GET /processes has 100 requests an hour: an import whose every row is read back
    created them all, so its process is not asked; one with a row missing is."""
    lid = str(brevo_app.list_id)
    seed(brevo_app, {"email": "there@corp.org", "attributes": {"FIRSTNAME": "Was"}})
    transport = CountingTransport(brevo_app.app)
    provider = make(brevo_app, transport=transport)
    try:
        fresh = [upsert(f"n{i}", f"n{i}@corp.org") for i in range(30)]
        assert {o.kind for o in await provider.upsert_members(lid, fresh)} == {K.CREATED}
        assert not any(path.startswith("/v3/processes") for _, path in transport.calls)
        mixed = [upsert("m", "m@corp.org"), upsert("t", "there@corp.org")]
        got = {o.key: o.kind for o in await provider.upsert_members(lid, mixed)}
    finally:
        await provider.aclose()
    assert got == {"m": K.CREATED, "t": K.UPDATED}
    assert any(path.startswith("/v3/processes") for _, path in transport.calls)


async def test_a_blocklisted_contact_is_never_unblocked(
    brevo_app: InProcessBrevo, provider: BrevoProvider
) -> None:
    lid = brevo_app.list_id
    seed(
        brevo_app,
        {"email": "gone@corp.org", "listIds": [lid], "emailBlacklisted": True},
        {"email": "left@corp.org", "listIds": [lid], "listUnsubscribed": [lid]},
    )
    members = [
        upsert("new-hint", "gone@corp.org", merge_fields={"FIRSTNAME": "G"}),
        upsert("asked", "left@corp.org", status=S.SUBSCRIBED, exists=True),
    ]
    got = {o.key: o for o in await provider.upsert_members(str(lid), members)}
    assert (got["new-hint"].kind, got["new-hint"].status) == (K.UPDATED, S.UNSUBSCRIBED)
    assert (got["asked"].kind, got["asked"].reason_code) == (K.REJECTED, "blocklisted")
    assert "@" not in (got["asked"].message or "")
    assert contact(brevo_app, "gone@corp.org").email_blacklisted is True
    assert contact(brevo_app, "gone@corp.org").attributes["FIRSTNAME"] == "G"
    assert lid not in contact(brevo_app, "left@corp.org").list_ids
    again = await provider.upsert_members(
        str(lid), [upsert("x", "gone@corp.org", status=S.SUBSCRIBED)]
    )
    assert again[0].reason_code == "blocklisted"
    assert contact(brevo_app, "gone@corp.org").email_blacklisted is True


async def test_re_consent_asks_for_a_double_opt_in_and_the_contact_confirms(
    brevo_app: InProcessBrevo,
) -> None:
    lid = brevo_app.list_id
    seed(brevo_app, {"email": "gone@corp.org", "listIds": [lid], "emailBlacklisted": True})
    provider = make(
        brevo_app, double_opt_in_template_id=7, double_opt_in_redirect_url="https://corp.org/ok"
    )
    try:
        members = [
            upsert("back", "gone@corp.org", status=S.PENDING, exists=True),
            upsert("new", "fresh@corp.org", status_if_new=S.PENDING),
        ]
        got = {o.key: o for o in await provider.upsert_members(str(lid), members)}
        # asked to confirm, but blocklisted until they do: the outcome says what Brevo holds
        assert (got["back"].kind, got["back"].status) == (K.UPDATED, S.UNSUBSCRIBED)
        assert (got["new"].kind, got["new"].status) == (K.CREATED, S.PENDING)
        assert contact(brevo_app, "gone@corp.org").email_blacklisted is True  # until confirmed
        back = await provider.read_members(str(lid), [("b", "gone@corp.org")])
        assert back["b"] is not None
        assert back["b"].status is S.UNSUBSCRIBED
        control.simulate(brevo_app.sandbox, "gone@corp.org", "confirm", {})
        assert contact(brevo_app, "gone@corp.org").email_blacklisted is False
        back = await provider.read_members(str(lid), [("b", "gone@corp.org")])
        assert back["b"] is not None
        assert back["b"].status is S.SUBSCRIBED
        fresh = await provider.read_members(str(lid), [("f", "fresh@corp.org")])
        assert fresh["f"] is not None
        assert fresh["f"].status is S.PENDING
        assert lid not in contact(brevo_app, "fresh@corp.org").list_ids
        control.simulate(brevo_app.sandbox, "fresh@corp.org", "confirm", {})
        confirmed = await provider.read_members(str(lid), [("f", "fresh@corp.org")])
        assert confirmed["f"] is not None
        assert confirmed["f"].status is S.SUBSCRIBED
    finally:
        await provider.aclose()


async def test_pending_without_a_template_is_rejected_saying_what_to_set(
    brevo_app: InProcessBrevo, provider: BrevoProvider
) -> None:
    got = await provider.upsert_members(
        str(brevo_app.list_id), [upsert("p", "later@corp.org", status_if_new=S.PENDING)]
    )
    assert (got[0].kind, got[0].reason_code) == (K.REJECTED, "double_opt_in_not_configured")
    assert "double_opt_in_template_id" in (got[0].message or "")
    assert "later@corp.org" not in brevo_app.sandbox.by_email


async def test_withdrawn_consent_blocklists_and_a_bounce_reads_as_cleaned(
    brevo_app: InProcessBrevo, provider: BrevoProvider
) -> None:
    lid = brevo_app.list_id
    seed(
        brevo_app,
        {"email": "bye@corp.org", "listIds": [lid]},
        {"email": "dead@corp.org", "listIds": [lid]},
    )
    control.simulate(brevo_app.sandbox, "dead@corp.org", "bounce", {"type": "hard"})
    got = await provider.upsert_members(
        str(lid), [upsert("b", "bye@corp.org", status=S.UNSUBSCRIBED, exists=True)]
    )
    assert (got[0].kind, got[0].status) == (K.UPDATED, S.UNSUBSCRIBED)
    assert contact(brevo_app, "bye@corp.org").email_blacklisted is True
    found = await provider.read_members(str(lid), [("d", "dead@corp.org"), ("n", "no@corp.org")])
    assert found["d"] is not None
    assert found["d"].status is S.CLEANED
    assert found["n"] is None


async def test_an_address_the_import_refuses_is_rejected_from_its_report(
    brevo_app: InProcessBrevo, provider: BrevoProvider
) -> None:
    got = await provider.upsert_members(
        str(brevo_app.list_id),
        [upsert("odd", "x@corp.-org"), upsert("ok", "ok@corp.org"), upsert("bad", "nope")],
    )
    assert [(o.kind, o.reason_code) for o in got] == [
        (K.REJECTED, "invalid_email"),
        (K.CREATED, None),
        (K.REJECTED, "invalid_email"),
    ]


async def test_a_rename_keeps_the_blocklist(
    brevo_app: InProcessBrevo, provider: BrevoProvider
) -> None:
    lid = brevo_app.list_id
    seed(brevo_app, {"email": "old@corp.org", "listIds": [lid], "emailBlacklisted": True})
    got = await provider.upsert_members(
        str(lid), [upsert("r", "new@corp.org", previous_email="old@corp.org", exists=True)]
    )
    assert (got[0].kind, got[0].status) == (K.UPDATED, S.UNSUBSCRIBED)
    assert contact(brevo_app, "new@corp.org").email_blacklisted is True


async def test_archive_removes_from_the_list_and_reads_back_archived(
    brevo_app: InProcessBrevo, provider: BrevoProvider
) -> None:
    lid = brevo_app.list_id
    seed(brevo_app, {"email": "a@corp.org", "listIds": [lid]})
    got = await provider.archive_members(str(lid), [("a", "a@corp.org"), ("b", "b@corp.org")])
    assert [(o.kind, o.status) for o in got] == [(K.ARCHIVED, S.ARCHIVED), (K.UNCHANGED, None)]
    found = await provider.read_members(str(lid), [("a", "a@corp.org")])
    assert found["a"] is not None
    assert found["a"].status is S.ARCHIVED


async def test_members_changed_since_reads_the_list_and_counts_it(
    brevo_app: InProcessBrevo, provider: BrevoProvider
) -> None:
    lid = brevo_app.list_id
    seed(
        brevo_app,
        {"email": "in@corp.org", "listIds": [lid]},
        {"email": "gone@corp.org", "listIds": [lid], "emailBlacklisted": True},
        {"email": "left@corp.org", "listIds": [lid], "listUnsubscribed": [lid]},
        {"email": "elsewhere@corp.org"},
    )
    provider.page_size = 1
    found = {s.email: s.status async for s in provider.members_changed_since(str(lid), None)}
    assert found == {"in@corp.org": S.SUBSCRIBED, "gone@corp.org": S.UNSUBSCRIBED}
    # the one who left is off the list: counted out, so pull reads it by itself
    assert await provider.contact_count(str(lid)) == 2
    left = await provider.read_members(str(lid), [("l", "left@corp.org")])
    assert left["l"] is not None
    assert left["l"].status is S.UNSUBSCRIBED


async def test_errors_name_what_to_fix(brevo_app: InProcessBrevo) -> None:
    bad = make(brevo_app, api_key="xkeysib-" + "0" * 64)
    try:
        with pytest.raises(ProviderAuthError) as caught:
            await bad.check()
        assert "check the API key" in str(caught.value)
        assert "0" * 64 not in str(caught.value)
    finally:
        await bad.aclose()
    provider = make(brevo_app)
    try:
        with pytest.raises(ProviderError, match="no list 999"):
            await provider.upsert_members("999", [upsert("a", "a@corp.org")])
        with pytest.raises(ProviderError, match="numbers"):
            await provider.audience("abc")
    finally:
        await provider.aclose()


async def test_contacts_calls_are_paced_to_the_limit_the_answers_report(
    brevo_app: InProcessBrevo,
) -> None:
    brevo_app.control.set_limits(rate_limits=True, contacts_rps=2)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        brevo_app.control.advance_clock(seconds)

    provider = make(brevo_app, sleep=sleep, max_retries=5)
    try:
        members = [upsert(f"k{i}", f"r{i}@corp.org", exists=True) for i in range(4)]
        got = await provider.upsert_members(str(brevo_app.list_id), members)
    finally:
        await provider.aclose()
    assert Counter(o.kind for o in got) == {K.CREATED: 4}
    assert provider.pacer.shared.rps == 2  # x-sib-ratelimit-limit of the per-second window
    assert provider.stats.retries["too_many_requests"] == 0  # paced: never refused
    assert brevo_app.sandbox.extensions["rate_limiter"].rejected == 0
    assert slept
    assert min(slept) > 0.45


async def test_providers_of_one_key_take_their_turns_from_one_pacer(
    brevo_app: InProcessBrevo,
) -> None:
    """Brevo counts the limit per key: two syncs of one key side by side share the turns."""
    brevo_app.control.set_limits(rate_limits=True, contacts_rps=3)
    first, second = make(brevo_app), make(brevo_app)
    other = make(brevo_app, api_key=brevo_app.sandbox.new_api_key(None, "other"))
    try:
        assert first.pacer.shared is second.pacer.shared
        assert other.pacer.shared is not first.pacer.shared
        work = [
            [upsert(f"{p}{i}", f"{p}{i}@corp.org", exists=True) for i in range(3)]
            for p in ("a", "b")
        ]
        got = await asyncio.gather(
            first.upsert_members(str(brevo_app.list_id), work[0]),
            second.upsert_members(str(brevo_app.list_id), work[1]),
        )
    finally:
        for provider in (first, second, other):
            await provider.aclose()
    assert {o.kind for result in got for o in result} == {K.CREATED}
    assert brevo_app.sandbox.extensions["rate_limiter"].rejected == 0


async def test_a_rate_limit_waits_for_the_window_and_goes_on(brevo_app: InProcessBrevo) -> None:
    brevo_app.control.add_fault("429", method="GET", path="^/contacts/", count=1)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        brevo_app.control.advance_clock(seconds)

    provider = make(brevo_app, sleep=sleep, max_retries=5)
    try:
        members = [upsert(f"k{i}", f"r{i}@corp.org", exists=True) for i in range(4)]
        got = await provider.upsert_members(str(brevo_app.list_id), members)
    finally:
        await provider.aclose()
    assert Counter(o.kind for o in got) == {K.CREATED: 4}
    assert provider.stats.retries["too_many_requests"] == 1
    assert provider.pacer.shared.refused == 1
    assert any(s >= 1 for s in slept)  # x-sib-ratelimit-reset, not a blind backoff


async def test_campaigns_reports_and_activity(
    brevo_app: InProcessBrevo, provider: BrevoProvider
) -> None:
    lid = brevo_app.list_id
    seed(brevo_app, *({"email": f"r{i}@corp.org", "listIds": [lid]} for i in range(60)))
    created = await send_campaign(brevo_app, lid)
    campaign_id = str(created["id"])
    campaigns = [c async for c in provider.campaigns(None)]
    assert [(c.id, c.list_id, c.status, c.emails_sent) for c in campaigns] == [
        (campaign_id, str(lid), "sent", 60)
    ]
    report = await provider.campaign_report(campaign_id)
    events = [e async for e in provider.email_activity(campaign_id, None, include_sent=True)]
    actions = Counter(e.action for e in events)
    assert actions["sent"] == report.emails_sent == 60
    assert actions["open"] == report.unique_opens > 0
    assert actions["click"] == report.unique_clicks
    assert actions["bounce"] == report.hard_bounces + report.soft_bounces
    assert actions["unsubscribe"] == report.unsubscribed
    middle = sorted(e.occurred_at for e in events)[len(events) // 2]
    later = [e async for e in provider.email_activity(campaign_id, middle, include_sent=True)]
    assert later
    assert all(e.occurred_at >= middle for e in later)


async def test_activity_asks_for_every_export_at_once_and_stops_cleanly(
    brevo_app: InProcessBrevo, provider: BrevoProvider
) -> None:
    """All six exports are started before the first file is read; a reader that stops early
    leaves no download of the next file running."""
    lid = brevo_app.list_id
    seed(brevo_app, *({"email": f"r{i}@corp.org", "listIds": [lid]} for i in range(30)))
    created = await send_campaign(brevo_app, lid)
    table = imports.processes(brevo_app.sandbox).items
    before = len(table)
    reading = provider.email_activity(str(created["id"]), None, include_sent=True)
    first = await anext(reading)
    assert first.action == "open"
    exports = [p for p in list(table.values())[before:] if p.name == "CAMPAIGN_USER_DETAILS"]
    assert len(exports) == 6
    await reading.aclose()
    left = [t for t in asyncio.all_tasks() if "_export_file" in repr(t.get_coro())]
    assert left == []


def start_of_an_hour(brevo: InProcessBrevo) -> None:
    """The sandbox's clock at the start of a rate-limit window (hourly windows on the hour)."""
    brevo.control.advance_clock(3600 - brevo.sandbox.now() % 3600)


def clock_sleep(brevo: InProcessBrevo, slept: list[float]) -> Any:
    """A ``sleep`` that moves the sandbox's clock instead of waiting."""

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        brevo.control.advance_clock(seconds)

    return sleep


async def test_one_poll_answers_every_export_and_kinds_counted_at_zero_are_not_asked(
    brevo_app: InProcessBrevo,
) -> None:
    """Exports and process polls share Brevo's 100 requests an hour: a campaign's exports
    are watched together from the start (one GET /processes page for all), polls are spaced
    to spend what is left of the window evenly, and a kind the campaign's counters put at
    zero is not exported."""
    lid = brevo_app.list_id
    rates = {"unsubscribe": 0.0, "hard_bounce": 0.0, "soft_bounce": 0.0}
    brevo_app.control.call("PUT", "/activity", {"rates": rates})
    brevo_app.control.set_limits(rate_limits=True, import_process_seconds=5.0)  # exports: 5 s
    start_of_an_hour(brevo_app)
    seed(brevo_app, *({"email": f"r{i}@corp.org", "listIds": [lid]} for i in range(40)))
    campaign_id = str((await send_campaign(brevo_app, lid))["id"])
    transport = CountingTransport(brevo_app.app)
    slept: list[float] = []
    provider = make(brevo_app, transport=transport, sleep=clock_sleep(brevo_app, slept))
    try:
        report = await provider.campaign_report(campaign_id)
        events = [e async for e in provider.email_activity(campaign_id, None, include_sent=True)]
    finally:
        await provider.aclose()
    assert report.unsubscribed == report.hard_bounces == report.soft_bounces == 0
    assert Counter(e.action for e in events) == {
        "sent": 40,
        "open": report.unique_opens,
        "click": report.unique_clicks,
    }
    exported = transport.calls[("POST", f"/v3/emailCampaigns/{campaign_id}/exportRecipients")]
    assert exported == 3  # openers, clickers, all
    polls = {path: n for (_, path), n in transport.calls.items() if "/processes" in path}
    assert polls == {"/v3/processes": 2}  # at once (running), then after one spaced wait
    assert min(slept, default=0) >= 3000 / 90  # about an hour's budget of 100 spread evenly


class UnlistedProcesses(CountingTransport):
    """An account whose ``GET /processes`` listing leaves the exports out."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path == "/v3/processes":
            await response.aread()
            empty = {"processes": [], "count": 0}
            return httpx.Response(200, json=empty, headers=dict(response.headers))
        return response


async def test_a_poll_that_reads_each_process_on_its_own_waits_as_much_longer(
    brevo_app: InProcessBrevo,
) -> None:
    lid = brevo_app.list_id
    rates = {"unsubscribe": 0.0, "hard_bounce": 0.0, "soft_bounce": 0.0}
    brevo_app.control.call("PUT", "/activity", {"rates": rates})
    brevo_app.control.set_limits(rate_limits=True, import_process_seconds=500.0)
    start_of_an_hour(brevo_app)
    seed(brevo_app, *({"email": f"r{i}@corp.org", "listIds": [lid]} for i in range(10)))
    campaign_id = str((await send_campaign(brevo_app, lid))["id"])
    transport = UnlistedProcesses(brevo_app.app)
    slept: list[float] = []
    provider = make(brevo_app, transport=transport, sleep=clock_sleep(brevo_app, slept))
    try:
        await provider.campaign_report(campaign_id)
        events = [e async for e in provider.email_activity(campaign_id, None, include_sent=True)]
    finally:
        await provider.aclose()
    assert sum(e.action == "sent" for e in events) == 10
    listings = transport.calls[("GET", "/v3/processes")]
    assert listings >= 1
    # each poll: the listing and the three exports one by one, so four times the even pace
    assert min(slept, default=0) >= 4 * 3000 / 90


async def test_activity_waits_for_the_window_rather_than_spend_the_reserve(
    brevo_app: InProcessBrevo,
) -> None:
    """With a few requests left in the hourly window outside /contacts, the exports wait for
    its reset instead of being refused (429) or using the last ten."""
    lid = brevo_app.list_id
    seed(brevo_app, *({"email": f"r{i}@corp.org", "listIds": [lid]} for i in range(20)))
    start_of_an_hour(brevo_app)
    campaign_id = str((await send_campaign(brevo_app, lid))["id"])
    brevo_app.control.set_limits(rate_limits=True, other_rph=16)  # 2 used by sending
    slept: list[float] = []
    provider = make(brevo_app, sleep=clock_sleep(brevo_app, slept))
    try:
        report = await provider.campaign_report(campaign_id)
        events = [e async for e in provider.email_activity(campaign_id, None, include_sent=True)]
    finally:
        await provider.aclose()
    assert sum(e.action == "sent" for e in events) == report.emails_sent == 20
    assert brevo_app.control.call("GET", "/limits")["rejected"] == 0
    assert provider.stats.retries["too_many_requests"] == 0
    assert max(slept) > 60  # the rest of the hour, not a retry's backoff


async def test_webhook_registration_is_idempotent_and_sends_a_bearer_token(
    brevo_app: InProcessBrevo, provider: BrevoProvider
) -> None:
    url = "https://bridge.corp.org/webhooks/brevo/s3cret"
    first = await provider.register_webhook(str(brevo_app.list_id), url)
    second = await provider.register_webhook(str(brevo_app.list_id), url)
    assert first == second
    assert await provider.webhook_urls(str(brevo_app.list_id)) == [url]
    async with brevo_app.client() as api:
        hook = (await api.get(f"/webhooks/{first}")).json()
    assert hook["type"] == "marketing"
    assert "unsubscribed" in hook["events"]
    assert hook["auth"]["type"] == "bearer"  # Brevo does not echo the token back
    stored = webhooks.bus(brevo_app.sandbox).hooks[int(first)]
    assert stored.auth == {"type": "bearer", "token": "s3cret"}


async def test_erasure_and_export_name_the_contact_by_brevo_id_or_address(
    brevo_app: InProcessBrevo, provider: BrevoProvider
) -> None:
    lid = str(brevo_app.list_id)
    await provider.upsert_members(lid, [upsert("a", "a@corp.org"), upsert("b", "b@corp.org")])
    found = await provider.read_members(lid, [("a", "a@corp.org")])
    snapshot = found["a"]
    assert snapshot is not None
    assert snapshot.member_id.isdigit()
    key = hashlib.md5(b"a@corp.org").hexdigest()
    by_id = MemberRef(key, None, snapshot.member_id)
    export = await provider.member_export(lid, by_id)
    assert export is not None
    assert export["record"]["email"] == "a@corp.org"
    assert await provider.delete_member_permanently(lid, by_id) == "deleted"
    assert "a@corp.org" not in brevo_app.sandbox.by_email
    assert await provider.delete_member_permanently(lid, by_id) == "not_found"
    by_address = MemberRef(hashlib.md5(b"b@corp.org").hexdigest(), " B@corp.org")
    assert await provider.delete_member_permanently(lid, by_address) == "deleted"
    with pytest.raises(ProviderError, match="neither"):  # the bridge's key means nothing here
        await provider.delete_member_permanently(lid, MemberRef(key))
