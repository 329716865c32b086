"""Mailchimp-specific behaviour of the adapter, beyond the contract: endpoint choices, GDPR
permissions and interests, retry logs and counters, and the in-process transport."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from campaign_bridge.config import MailchimpDestination
from campaign_bridge.providers import create_provider
from campaign_bridge.providers._mailchimp_wire import subscriber_hash
from campaign_bridge.providers.base import MemberStatus, MemberUpsert, OutcomeKind
from campaign_bridge.providers.mailchimp import MailchimpProvider
from campaign_bridge.sandbox.mailchimp import create_app
from tests.integration.providers.contract import SeedMember
from tests.integration.providers.mailchimp_harness import MailchimpHarness

pytestmark = pytest.mark.anyio


def upsert(key: str, email: str, **kw: object) -> MemberUpsert:
    kw.setdefault("status_if_new", MemberStatus.SUBSCRIBED)
    return MemberUpsert(key=key, email=email, **kw)  # type: ignore[arg-type]


def batches_started(harness: MailchimpHarness) -> int:
    return int(harness.api.get("/batches", params={"count": 1}).json()["total_items"])


async def test_puts_go_through_batches_only_above_the_threshold(
    harness: MailchimpHarness,
) -> None:
    await harness.seed([SeedMember(f"k{i}@corp.org") for i in range(12)])
    provider = harness.provider(batch_threshold=10)
    try:
        few = [upsert(f"a{i}", f"k{i}@corp.org", exists=True) for i in range(9)]
        await provider.upsert_members(harness.list_id, few)
        assert batches_started(harness) == 0
        many = [upsert(f"b{i}", f"k{i}@corp.org", exists=True) for i in range(12)]
        outcomes = await provider.upsert_members(harness.list_id, many)
        assert batches_started(harness) == 1
    finally:
        await provider.aclose()
    assert Counter(o.kind for o in outcomes) == {OutcomeKind.UPDATED: 12}
    assert all(o.status is MemberStatus.SUBSCRIBED for o in outcomes)


def contact_id(harness: MailchimpHarness, email: str) -> str:
    member = harness.api.get(
        f"/lists/{harness.list_id}/members/{subscriber_hash(email)}",
        params={"fields": "contact_id"},
    ).json()
    return str(member["contact_id"])


async def test_concurrent_calls_share_one_batch_and_get_their_own_results(
    harness: MailchimpHarness,
) -> None:
    await harness.seed([SeedMember(f"k{i}@corp.org") for i in range(12)])
    provider = harness.provider(batch_threshold=5)
    try:
        # The same keys in both calls: keys are unique per call only.
        first = [upsert(f"x{i}", f"k{i}@corp.org", exists=True) for i in range(6)]
        second = [upsert(f"x{i}", f"k{i + 6}@corp.org", exists=True) for i in range(6)]
        one, two = await asyncio.gather(
            provider.upsert_members(harness.list_id, first),
            provider.upsert_members(harness.list_id, second),
        )
        assert batches_started(harness) == 1
    finally:
        await provider.aclose()
    for sent, outcomes in ((first, one), (second, two)):
        assert [o.key for o in outcomes] == [m.key for m in sent]
        # Each outcome names its own member by the id Mailchimp keeps through address changes.
        assert [o.member_id for o in outcomes] == [contact_id(harness, m.email) for m in sent]
        assert {o.kind for o in outcomes} == {OutcomeKind.UPDATED}


async def test_gdpr_permissions_and_interests(harness: MailchimpHarness) -> None:
    spec = {
        "id": harness.list_id,
        "permissions": [{"id": "perm000001", "text": "Email"}],
        "interest_categories": [{"title": "Topics", "interests": ["News", "Offers"]}],
        "members": [{"email_address": "first@corp.org", "status": "subscribed"}],
    }
    harness._ok(harness.control.post("/seed", json={"lists": [spec]}))
    provider = harness.provider()
    try:
        audience = await provider.audience(harness.list_id)
        interest = sorted(audience.interest_ids)[0]
        members = [
            upsert(
                "new",
                "second@corp.org",
                marketing_permissions={"perm000001": True},
                interests={interest: True},
            ),
            upsert("old", "first@corp.org", marketing_permissions={"perm000001": True}),
        ]
        got = {o.key: o for o in await provider.upsert_members(harness.list_id, members)}
    finally:
        await provider.aclose()
    assert audience.marketing_permission_ids == frozenset({"perm000001"})
    assert len(audience.interest_ids) == 2
    assert (got["new"].kind, got["old"].kind) == (OutcomeKind.CREATED, OutcomeKind.UPDATED)
    for email in ("second@corp.org", "first@corp.org"):
        record = await harness.member(email)
        assert record is not None
        enabled = {
            p["marketing_permission_id"]: p["enabled"] for p in record["marketing_permissions"]
        }
        assert enabled == {"perm000001": True}
    second = await harness.member("second@corp.org")
    assert second is not None
    assert second["interests"][interest] is True


async def test_retries_are_logged_and_counted_without_addresses(
    harness: MailchimpHarness, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.fault("429", count=1)
    await harness.fault("403", count=1)
    await harness.fault("502", count=1)
    await harness.fault("drop", count=1)
    provider = harness.provider(fast_retries=True)
    assert isinstance(provider, MailchimpProvider)
    with caplog.at_level(logging.WARNING, logger="campaign_bridge.providers"):
        try:
            outcome = (
                await provider.upsert_members(harness.list_id, [upsert("a", "Someone@Corp.org")])
            )[0]
        finally:
            await provider.aclose()
    assert outcome.kind is OutcomeKind.CREATED
    retries = [r for r in caplog.records if getattr(r, "action", None) == "provider_retry"]
    assert [getattr(r, "reason", "").split(":")[0] for r in retries] == [
        "too_many_requests",
        "throttled_403",
        "server_error_502",
        "reset",  # the sandbox dropped the connection
    ]
    for record in retries:
        assert "@" not in record.getMessage()
        assert harness.api_key not in record.getMessage()
    stats = provider.stats
    assert stats.retries == {
        "too_many_requests": 1,
        "throttled_403": 1,
        "server_error_502": 1,
        "reset": 1,
    }
    assert stats.requests["200"] == 1
    assert stats.requests["429"] == 1
    assert stats.latency_count == 5


async def test_the_adapter_runs_in_process_through_asgi_transport() -> None:
    app = create_app()
    sandbox = app.state.sandbox
    destination = MailchimpDestination(
        api_key=sandbox.default_api_key,
        list_id=sandbox.default_list_id,
        base_url="http://sandbox.invalid/3.0",
    )
    provider = create_provider(destination, transport=httpx.ASGITransport(app=app))
    try:
        outcomes = await provider.upsert_members(
            destination.list_id, [upsert(str(i), f"inproc{i}@corp.org") for i in range(30)]
        )
        snapshots = [s async for s in provider.members_changed_since(destination.list_id, None)]
    finally:
        await provider.aclose()
    assert Counter(o.kind for o in outcomes) == {OutcomeKind.CREATED: 30}
    assert len(snapshots) == 30


async def test_a_batch_that_disappears_is_redone_directly(harness: MailchimpHarness) -> None:
    import asyncio

    await harness.seed([SeedMember(f"gone{i}@corp.org") for i in range(3)])
    harness._ok(harness.control.put("/batches/settings", json={"auto": False}))
    provider = harness.provider(batch_threshold=1)
    members = [upsert(str(i), f"gone{i}@corp.org", exists=True) for i in range(3)]
    try:
        task = asyncio.create_task(provider.upsert_members(harness.list_id, members))
        for _ in range(200):
            listed = harness.api.get("/batches").json()["batches"]
            if listed:
                break
            await asyncio.sleep(0.01)
        assert listed, "the adapter never started a batch"
        harness._ok(harness.api.delete(f"/batches/{listed[0]['id']}"))
        outcomes = await asyncio.wait_for(task, 30)
    finally:
        await provider.aclose()
    assert [o.kind for o in outcomes] == [OutcomeKind.UPDATED] * 3


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real socket transport, noting which requests carried credentials."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str, bool, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(
            (
                request.url.path,
                "authorization" in request.headers,
                request.headers.get("user-agent", ""),
            )
        )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_credentials_go_to_the_api_only_never_to_result_downloads(
    harness: MailchimpHarness,
) -> None:
    await harness.seed([SeedMember("dl@corp.org")])
    transport = RecordingTransport()
    destination = MailchimpDestination(
        api_key=harness.api_key, list_id=harness.list_id, base_url=harness.handle.base_url
    )
    provider = MailchimpProvider(
        destination, transport=transport, batch_threshold=1, batch_poll_initial=0.01
    )
    try:
        outcomes = await provider.upsert_members(
            harness.list_id, [upsert("1", "dl@corp.org", exists=True)]
        )
    finally:
        await provider.aclose()
    assert outcomes[0].kind is OutcomeKind.UPDATED
    downloads = [s for s in transport.seen if not s[0].startswith("/3.0/")]
    api_calls = [s for s in transport.seen if s[0].startswith("/3.0/")]
    assert downloads
    assert api_calls
    assert not any(auth for _, auth, _ in downloads)
    assert all(auth for _, auth, _ in api_calls)
    assert all(agent.startswith("campaign-bridge/") for _, _, agent in transport.seen)


async def test_server_time_is_the_providers_clock_from_its_latest_answer(
    harness: MailchimpHarness,
) -> None:
    provider = harness.provider()
    try:
        assert provider.server_time() is None  # nothing answered yet
        before = datetime.now(UTC).replace(microsecond=0)
        await provider.audience(harness.list_id)
        after = datetime.now(UTC)
        moment = provider.server_time()
    finally:
        await provider.aclose()
    assert moment is not None
    assert moment.tzinfo is not None
    # The HTTP Date header counts whole seconds; the sandbox shares this machine's clock.
    assert before - timedelta(seconds=1) <= moment <= after


async def test_outcomes_carry_the_providers_change_time(harness: MailchimpHarness) -> None:
    await harness.seed([SeedMember(f"old{i}@corp.org") for i in range(12)])
    provider = harness.provider(batch_threshold=10)
    try:
        created_sent = [upsert(f"n{i}", f"new{i}@corp.org") for i in range(3)]
        created = await provider.upsert_members(harness.list_id, created_sent)
        few = [upsert(f"p{i}", f"old{i}@corp.org", exists=True) for i in range(2)]
        direct = await provider.upsert_members(harness.list_id, few)
        many = [upsert(f"b{i}", f"old{i}@corp.org", exists=True) for i in range(12)]
        batched = await provider.upsert_members(harness.list_id, many)
    finally:
        await provider.aclose()
    emails = {m.key: m.email for m in [*created_sent, *few, *many]}
    for outcomes in (created, direct, batched):
        assert outcomes
        for outcome in outcomes:
            assert outcome.last_changed is not None, outcome
            assert outcome.last_changed.tzinfo is not None
            assert outcome.member_id == contact_id(harness, emails[outcome.key])
            stored = harness.api.get(
                f"/lists/{harness.list_id}/members/{subscriber_hash(emails[outcome.key])}",
                params={"fields": "last_changed"},
            ).json()["last_changed"]
            assert outcome.last_changed == datetime.fromisoformat(stored)


async def test_a_member_that_breaks_the_schema_is_rejected_and_the_rest_created(
    harness: MailchimpHarness,
) -> None:
    provider = harness.provider()
    members = [upsert(f"k{i}", f"fine{i}@corp.org") for i in range(5)]
    members[1] = upsert("k1", "odd1@corp.org", merge_fields={"FNAME": {"not": "text"}})
    members[3] = upsert("k3", "odd3@corp.org", merge_fields={"LNAME": ["a", "list"]})
    try:
        outcomes = {o.key: o for o in await provider.upsert_members(harness.list_id, members)}
    finally:
        await provider.aclose()
    assert {k: o.kind for k, o in outcomes.items()} == {
        "k0": OutcomeKind.CREATED,
        "k1": OutcomeKind.REJECTED,
        "k2": OutcomeKind.CREATED,
        "k3": OutcomeKind.REJECTED,
        "k4": OutcomeKind.CREATED,
    }
    assert outcomes["k1"].reason_code == "invalid_member"
    assert "merge_fields.FNAME" in (outcomes["k1"].message or "")
    assert "merge_fields.LNAME" in (outcomes["k3"].message or "")
    listed = harness.api.get(
        f"/lists/{harness.list_id}/members", params={"fields": "members.email_address"}
    ).json()["members"]
    assert sorted(m["email_address"] for m in listed) == [f"fine{i}@corp.org" for i in (0, 2, 4)]
