"""The listmonk adapter against the listmonk sandbox (in process, httpx.ASGITransport; the
same emulator serves real sockets in the end-to-end tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from campaign_bridge.errors import ProviderAuthError, ProviderError
from campaign_bridge.providers._listmonk_wire import csv_upload, email_hash, multipart
from campaign_bridge.providers.base import MemberRef, MemberStatus, MemberUpsert, OutcomeKind
from campaign_bridge.providers.listmonk import ListmonkProvider
from campaign_bridge.testing.listmonk import InProcessListmonk

pytestmark = pytest.mark.anyio
S = MemberStatus
K = OutcomeKind
SINGLE, DOUBLE = "1", "2"  # listmonk's install-time lists: "Default list", "Opt-in list"


@dataclass
class Dest:
    base_url: str
    list_id: str
    api_user: str | None = None
    api_token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    concurrency: int = 4
    timeout_seconds: float = 10.0
    max_retries: int = 1
    ca_bundle: None = None


def make(lm: InProcessListmonk, list_id: str = SINGLE, **options: object) -> ListmonkProvider:
    dest = Dest(lm.base_url, list_id, lm.api_user, SecretStr(lm.api_token))
    return ListmonkProvider(
        dest,
        transport=httpx.ASGITransport(app=lm.app),
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def provider(listmonk_app: InProcessListmonk) -> AsyncIterator[ListmonkProvider]:
    adapter = make(listmonk_app)
    yield adapter
    await adapter.aclose()


def upsert(key: str, email: str, **kw: object) -> MemberUpsert:
    kw.setdefault("status_if_new", S.SUBSCRIBED)
    return MemberUpsert(key=key, email=email, **kw)  # type: ignore[arg-type]


def sub_state(lm: InProcessListmonk, email: str, list_id: str = SINGLE) -> tuple[str, str | None]:
    sub = lm.sandbox.subscriber_by(email)
    assert sub is not None
    row = sub.lists.get(int(list_id))
    return sub.status, row.status if row else None


async def test_check_and_audience(provider: ListmonkProvider) -> None:
    facts = await provider.check()
    assert facts["list_name"] == "Default list"
    assert facts["list_optin"] == "single"
    audience = await provider.audience(DOUBLE)
    assert audience.double_opt_in
    assert audience.merge_fields[0].tag == "name"


async def test_wrong_token_is_an_auth_error(listmonk_app: InProcessListmonk) -> None:
    dest = Dest(listmonk_app.base_url, SINGLE, listmonk_app.api_user, SecretStr("nope"))
    adapter = ListmonkProvider(dest, transport=httpx.ASGITransport(app=listmonk_app.app))  # type: ignore[arg-type]
    with pytest.raises(ProviderAuthError, match="invalid API credentials"):
        await adapter.check()
    await adapter.aclose()


async def test_basic_auth_works(listmonk_app: InProcessListmonk) -> None:
    dest = Dest(
        listmonk_app.base_url,
        SINGLE,
        username=listmonk_app.api_user,
        password=SecretStr(listmonk_app.api_token),
    )
    adapter = ListmonkProvider(dest, transport=httpx.ASGITransport(app=listmonk_app.app))  # type: ignore[arg-type]
    assert (await adapter.check())["provider"] == "listmonk"
    await adapter.aclose()


async def test_unknown_list_says_what_to_do(listmonk_app: InProcessListmonk) -> None:
    adapter = make(listmonk_app, "99")
    with pytest.raises(ProviderError, match="no list 99"):
        await adapter.audience("99")
    await adapter.aclose()


@pytest.mark.parametrize("threshold", [0, 2], ids=["one-by-one", "import"])
async def test_create_maps_name_attribs_and_status(
    listmonk_app: InProcessListmonk, threshold: int
) -> None:
    adapter = make(listmonk_app, import_threshold=threshold)
    members = [
        upsert("a", "Ann@Example.com", merge_fields={"name": "Ann", "city": "Oslo"}),
        upsert("b", "bob@example.com", status_if_new=S.UNSUBSCRIBED),
        upsert("c", "cy@example.com"),
        upsert("bad", "not-an-address"),
        upsert("dup", "ann@example.com"),
    ]
    outcomes = await adapter.upsert_members(SINGLE, members)
    await adapter.aclose()
    by_key = {o.key: o for o in outcomes}
    assert by_key["a"].kind is K.CREATED
    assert by_key["a"].status is S.SUBSCRIBED
    assert by_key["b"].kind is K.CREATED
    assert by_key["b"].status is S.UNSUBSCRIBED
    assert by_key["bad"].reason_code == "invalid_email"
    assert by_key["dup"].reason_code == "duplicate_email"
    ann = listmonk_app.sandbox.subscriber_by("ann@example.com")
    assert ann is not None
    assert ann.name == "Ann"
    assert ann.attribs == {"city": "Oslo"}
    assert sub_state(listmonk_app, "ann@example.com") == ("enabled", "confirmed")
    assert sub_state(listmonk_app, "bob@example.com") == ("enabled", "unsubscribed")


async def test_import_never_resubscribes_existing(listmonk_app: InProcessListmonk) -> None:
    listmonk_app.control.seed(
        subscribers=[
            {"email": "gone@example.com", "lists": [1], "subscription_status": "unsubscribed"},
            {"email": "blocked@example.com", "lists": [1], "status": "blocklisted"},
        ]
    )
    adapter = make(listmonk_app, import_threshold=2)
    members = [upsert(str(i), f"new{i}@example.com") for i in range(5)]
    members += [upsert("gone", "gone@example.com"), upsert("blocked", "blocked@example.com")]
    outcomes = {o.key: o for o in await adapter.upsert_members(SINGLE, members)}
    await adapter.aclose()
    assert outcomes["0"].status is S.SUBSCRIBED
    assert outcomes["gone"].status is S.UNSUBSCRIBED
    assert outcomes["blocked"].status is S.UNSUBSCRIBED
    assert sub_state(listmonk_app, "gone@example.com") == ("enabled", "unsubscribed")
    assert sub_state(listmonk_app, "blocked@example.com") == ("blocklisted", "unsubscribed")


class Recording(httpx.ASGITransport):
    """The in-process transport, remembering each request's method, path and query; ``before``
    runs just before a request whose method and path it names is answered."""

    def __init__(self, app: object, before: dict[tuple[str, str], object] | None = None) -> None:
        super().__init__(app=app)  # type: ignore[arg-type]
        self.seen: list[tuple[str, str, str]] = []
        self.before = before or {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = (request.method, request.url.path)
        self.seen.append((*key, request.url.params.get("query", "")))
        hook = self.before.pop(key, None)
        if callable(hook):
            hook()
        return await super().handle_async_request(request)


def recorded(lm: InProcessListmonk, transport: Recording, **options: object) -> ListmonkProvider:
    dest = Dest(lm.base_url, SINGLE, lm.api_user, SecretStr(lm.api_token))
    return ListmonkProvider(dest, transport=transport, **options)  # type: ignore[arg-type]


class PageSizes(httpx.ASGITransport):
    """The in-process transport, remembering each subscriber listing's ``per_page``."""

    def __init__(self, app: object) -> None:
        super().__init__(app=app)  # type: ignore[arg-type]
        self.per_page: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/api/subscribers":
            self.per_page.append(request.url.params.get("per_page", ""))
        return await super().handle_async_request(request)


async def test_changes_since_page_by_their_own_size(listmonk_app: InProcessListmonk) -> None:
    """A refresh since a moment reads ``changes_page_size`` members a request (listmonk scans
    the list for each), keyset-paged by id; the full read keeps ``page_size``."""
    adapter = make(listmonk_app)
    await adapter.upsert_members(SINGLE, [upsert(str(i), f"m{i}@example.com") for i in range(9)])
    await adapter.aclose()
    mark = datetime.now(UTC) + timedelta(seconds=0.001)
    listmonk_app.sandbox.clock.advance(5)
    for i in (1, 2, 4, 6, 7, 8):
        path = f"/subscribers/m{i}@example.com/unsubscribe"
        listmonk_app.control.call("POST", path, {"list_id": 1})
    transport = PageSizes(listmonk_app.app)
    adapter = recorded(listmonk_app, transport, page_size=2, changes_page_size=3)
    changed = [s.email async for s in adapter.members_changed_since(SINGLE, mark)]
    since_pages, transport.per_page = transport.per_page, []
    everyone = [s async for s in adapter.members_changed_since(SINGLE, None)]
    await adapter.aclose()
    assert changed == [f"m{i}@example.com" for i in (1, 2, 4, 6, 7, 8)]
    assert len(everyone) == 9
    assert since_pages == ["3", "3", "3"]
    assert transport.per_page == ["2"] * 5


async def test_believed_new_members_are_imported_without_a_lookup(
    listmonk_app: InProcessListmonk,
) -> None:
    """exists=False: one upload, read back by id (no query spelling out the addresses)."""
    listmonk_app.control.seed(subscribers=[{"email": "older@example.com", "lists": [1]}])
    transport = Recording(listmonk_app.app)
    adapter = recorded(listmonk_app, transport, import_threshold=3)
    members = [
        upsert(str(i), f"n{i}@example.com", exists=False, merge_fields={"name": f"N{i}", "n": i})
        for i in range(4)
    ]
    members += [
        upsert(f"u{i}", f"u{i}@example.com", exists=False, status_if_new=S.UNSUBSCRIBED)
        for i in range(3)
    ]
    assert adapter.server_time() is None  # no answer yet (and no Date header in process)
    outcomes = await adapter.upsert_members(SINGLE, members)
    # where the next refresh starts: the newest subscriber's change time, to the microsecond,
    # so the next refresh reads none of these back
    moment = adapter.server_time()
    newest = listmonk_app.sandbox.subscriber_by("u2@example.com")
    assert newest is not None
    assert moment == datetime.fromtimestamp(newest.updated_at, UTC)
    assert [s async for s in adapter.members_changed_since(SINGLE, moment)] == []
    assert (
        len([s async for s in adapter.members_changed_since(SINGLE, moment - timedelta(seconds=1))])
        == 8
    )
    await adapter.aclose()
    assert [(o.kind, o.status) for o in outcomes] == [(K.CREATED, S.SUBSCRIBED)] * 4 + [
        (K.CREATED, S.UNSUBSCRIBED)
    ] * 3
    # each outcome names its subscriber by listmonk's numeric id (kept through address changes)
    assert [o.member_id for o in outcomes] == [
        str(listmonk_app.sandbox.by_email[m.email]) for m in members
    ]
    queries = [q for _, path, q in transport.seen if path == "/api/subscribers" and q]
    assert queries
    assert all(q.startswith("subscribers.id > ") for q in queries), queries
    assert [p for m, p, _ in transport.seen if m == "POST"] == ["/api/import/subscribers"] * 2
    sub = listmonk_app.sandbox.subscriber_by("n3@example.com")
    assert sub is not None
    assert (sub.name, sub.attribs) == ("N3", {"n": 3})
    assert sub_state(listmonk_app, "n3@example.com") == ("enabled", "confirmed")
    assert sub_state(listmonk_app, "u2@example.com") == ("enabled", "unsubscribed")


async def test_an_import_someone_else_runs_is_waited_for(listmonk_app: InProcessListmonk) -> None:
    """listmonk runs one import at a time. The adapter uploads without asking first; refused
    because someone else's import is running (400 "An import is already running"), it waits
    for that one to finish and uploads again."""
    listmonk_app.control.set_limits(import_seconds_per_10k=100.0)  # 50 rows: 0.5 s
    theirs = csv_upload([(f"o{i}@example.com", f"O{i}", {}) for i in range(50)])
    body, content_type = multipart(
        {"params": '{"mode": "subscribe", "delim": ",", "lists": [1]}'}, "o.csv", theirs
    )
    async with listmonk_app.client() as other:
        started = await other.post(
            "/api/import/subscribers", content=body, headers={"Content-Type": content_type}
        )
    assert started.json()["data"]["status"] == "importing"
    waited: list[float] = []

    async def sleep(seconds: float) -> None:  # the sandbox's time passes while the adapter waits
        waited.append(seconds)
        listmonk_app.control.advance_clock(1)

    transport = Recording(listmonk_app.app)
    adapter = recorded(listmonk_app, transport, import_threshold=3, sleep=sleep)
    members = [upsert(str(i), f"w{i}@example.com", exists=False) for i in range(4)]
    outcomes = await adapter.upsert_members(SINGLE, members)
    await adapter.aclose()
    assert waited
    assert [(o.kind, o.member_id) for o in outcomes] == [
        (K.CREATED, str(listmonk_app.sandbox.by_email[m.email])) for m in members
    ]
    assert [p for m, p, _ in transport.seen if m == "POST"] == ["/api/import/subscribers"] * 2
    assert "o49@example.com" in listmonk_app.sandbox.by_email  # theirs went through too


async def test_a_wrong_new_hint_changes_nothing_listmonk_had(
    listmonk_app: InProcessListmonk,
) -> None:
    """exists=False for subscribers listmonk has: the import overwrites nothing, and each is
    then treated as existing (read back, profile PATCHed, status as listmonk has it)."""
    listmonk_app.control.seed(
        subscribers=[
            {"email": "gone@example.com", "lists": [1], "subscription_status": "unsubscribed"},
            {"email": "blocked@example.com", "lists": [2], "status": "blocklisted"},
            {"email": "other@example.com", "name": "Old", "lists": [2], "attribs": {"crm": 1}},
        ]
    )
    adapter = make(listmonk_app, import_threshold=2)
    names = {"name": "New", "city": "Oslo"}
    members = [upsert(str(i), f"new{i}@example.com", exists=False) for i in range(3)]
    members += [
        upsert("gone", "gone@example.com", exists=False, merge_fields=names),
        upsert("blocked", "blocked@example.com", exists=False),
        upsert("other", "other@example.com", exists=False, merge_fields=names),
    ]
    outcomes = {o.key: o for o in await adapter.upsert_members(SINGLE, members)}
    await adapter.aclose()
    assert (outcomes["0"].kind, outcomes["0"].status) == (K.CREATED, S.SUBSCRIBED)
    assert (outcomes["gone"].kind, outcomes["gone"].status) == (K.UPDATED, S.UNSUBSCRIBED)
    assert sub_state(listmonk_app, "gone@example.com") == ("enabled", "unsubscribed")
    assert outcomes["blocked"].status is S.UNSUBSCRIBED
    assert sub_state(listmonk_app, "blocked@example.com")[0] == "blocklisted"
    # not on the list before: added with the status a new member gets, profile merged
    assert (outcomes["other"].kind, outcomes["other"].status) == (K.UPDATED, S.SUBSCRIBED)
    other = listmonk_app.sandbox.subscriber_by("other@example.com")
    assert other is not None
    assert (other.name, other.attribs) == ("New", {"crm": 1, "city": "Oslo"})
    assert sub_state(listmonk_app, "other@example.com") == ("enabled", "confirmed")


async def test_an_address_created_by_someone_else_during_the_import(
    listmonk_app: InProcessListmonk,
) -> None:
    """Someone creates one of the addresses after the newest id was read and before the upload
    runs: its id is above that id, but it is not what the import sent, so it is not reported
    created (listmonk kept their record; the adapter reads it as an existing subscriber). They
    create 150 others too: the read-back takes a second page."""

    def someone_else() -> None:
        listmonk_app.control.seed(
            subscribers=[
                {"email": "race@example.com", "lists": [1], "subscription_status": "unsubscribed"},
                *({"email": f"other{i}@example.com", "lists": [1]} for i in range(150)),
            ]
        )

    transport = Recording(listmonk_app.app, {("POST", "/api/import/subscribers"): someone_else})
    adapter = recorded(listmonk_app, transport, import_threshold=2, page_size=100)
    members = [upsert(str(i), f"new{i}@example.com", exists=False) for i in range(2)]
    members.append(upsert("race", "race@example.com", exists=False, merge_fields={"name": "R"}))
    outcomes = {o.key: o for o in await adapter.upsert_members(SINGLE, members)}
    await adapter.aclose()
    ranges = [q for _, path, q in transport.seen if q.startswith("subscribers.id > ")]
    reads = [q for q in ranges if " AND subscribers.id <= " in q]
    assert len(reads) == 2  # 153 above the newest id before: 100, then 53 (total says: no more)
    # the newest id, before and after the upload, asked above an id already known
    assert [q for q in ranges if q not in reads] == ["subscribers.id > 0", "subscribers.id > 0"]
    assert (outcomes["0"].kind, outcomes["0"].status) == (K.CREATED, S.SUBSCRIBED)
    assert (outcomes["1"].kind, outcomes["1"].status) == (K.CREATED, S.SUBSCRIBED)
    assert (outcomes["race"].kind, outcomes["race"].status) == (K.UPDATED, S.UNSUBSCRIBED)
    assert sub_state(listmonk_app, "race@example.com") == ("enabled", "unsubscribed")


async def test_blocklisted_confirmed_is_never_consent(listmonk_app: InProcessListmonk) -> None:
    """listmonk lets a list ``add`` confirm a blocklisted subscriber; the adapter reads the
    blocklist, not the subscription, and refuses to subscribe them."""
    listmonk_app.control.seed(
        subscribers=[{"email": "x@example.com", "lists": [1], "status": "blocklisted"}]
    )
    sub = listmonk_app.sandbox.subscriber_by("x@example.com")
    assert sub is not None
    sub.lists[1].status = "confirmed"  # what PUT /api/subscribers/lists add allows
    adapter = make(listmonk_app)
    found = await adapter.read_members(SINGLE, [("k", "x@example.com")])
    assert found["k"] is not None
    assert found["k"].status is S.UNSUBSCRIBED
    assert found["k"].unsubscribe_reason == "blocklisted"
    [outcome] = await adapter.upsert_members(
        SINGLE, [upsert("k", "x@example.com", status=S.PENDING, exists=True)]
    )
    await adapter.aclose()
    assert outcome.kind is K.REJECTED
    assert outcome.reason_code == "blocklisted"
    assert sub_state(listmonk_app, "x@example.com")[0] == "blocklisted"


async def test_status_changes_use_bulk_list_calls(listmonk_app: InProcessListmonk) -> None:
    adapter = make(listmonk_app, list_id=DOUBLE)
    new = [upsert(str(i), f"p{i}@example.com", status_if_new=S.PENDING) for i in range(3)]
    created = await adapter.upsert_members(DOUBLE, new)
    assert {o.status for o in created} == {S.PENDING}
    assert len(listmonk_app.sandbox.optin_mails) == 3
    changes = [
        upsert("0", "p0@example.com", status=S.UNSUBSCRIBED, exists=True),
        upsert("1", "p1@example.com", status=S.SUBSCRIBED, exists=True),
        upsert("2", "p2@example.com", exists=True, merge_fields={"name": "Pat"}),
    ]
    outcomes = {o.key: o for o in await adapter.upsert_members(DOUBLE, changes)}
    assert outcomes["0"].status is S.UNSUBSCRIBED
    assert outcomes["1"].status is S.SUBSCRIBED
    assert outcomes["2"].kind is K.UPDATED
    assert outcomes["2"].status is S.PENDING
    assert sub_state(listmonk_app, "p0@example.com", DOUBLE)[1] == "unsubscribed"
    assert sub_state(listmonk_app, "p1@example.com", DOUBLE)[1] == "confirmed"
    # re-confirmation of the unsubscribed one: unconfirmed plus listmonk's opt-in e-mail
    [again] = await adapter.upsert_members(
        DOUBLE, [upsert("0", "p0@example.com", status=S.PENDING, exists=True)]
    )
    await adapter.aclose()
    assert again.status is S.PENDING
    assert listmonk_app.sandbox.optin_mails[-1]["email"] == "p0@example.com"


async def test_pending_on_single_opt_in_list_is_refused(provider: ListmonkProvider) -> None:
    [outcome] = await provider.upsert_members(
        SINGLE, [upsert("a", "a@example.com", status_if_new=S.PENDING)]
    )
    assert outcome.reason_code == "single_opt_in_list"


async def test_changes_since_include_list_unsubscribes(listmonk_app: InProcessListmonk) -> None:
    adapter = make(listmonk_app, page_size=2)
    await adapter.upsert_members(SINGLE, [upsert(str(i), f"m{i}@example.com") for i in range(5)])
    everyone = [s async for s in adapter.members_changed_since(SINGLE, None)]
    assert sorted(s.email for s in everyone) == [f"m{i}@example.com" for i in range(5)]
    mark = datetime.now(UTC) + timedelta(seconds=0.001)
    listmonk_app.sandbox.clock.advance(5)
    listmonk_app.control.call("POST", "/subscribers/m3@example.com/unsubscribe", {"list_id": 1})
    listmonk_app.control.call("POST", "/subscribers/m1@example.com/bounce", {"type": "hard"})
    changed = {s.email: s for s in [s async for s in adapter.members_changed_since(SINGLE, mark)]}
    await adapter.aclose()
    assert set(changed) == {"m1@example.com", "m3@example.com"}
    assert changed["m3@example.com"].status is S.UNSUBSCRIBED
    assert changed["m1@example.com"].status is S.CLEANED  # hard bounce → blocklisted


async def test_archive_and_erase(listmonk_app: InProcessListmonk) -> None:
    adapter = make(listmonk_app)
    await adapter.upsert_members(SINGLE, [upsert("a", "a@example.com")])
    [archived] = await adapter.archive_members(SINGLE, [("a", "a@example.com")])
    assert archived.kind is K.ARCHIVED
    found = await adapter.read_members(SINGLE, [("a", "a@example.com"), ("n", "no@example.com")])
    assert found["a"] is not None
    assert found["a"].status is S.ARCHIVED
    assert found["n"] is None
    assert archived.member_id == str(listmonk_app.sandbox.by_email["a@example.com"])
    by_key = MemberRef(email_hash("a@example.com"))  # the bridge's own key alone
    assert (await adapter.member_export(SINGLE, by_key)) is not None
    by_id = MemberRef("0" * 32, None, archived.member_id)  # listmonk's id alone
    exported = await adapter.member_export(SINGLE, by_id)
    assert exported is not None
    assert exported["subscriber"]["email"] == "a@example.com"  # type: ignore[index]
    # a row stored before listmonk's id was (the address's hash in its place): found by address
    legacy = MemberRef(email_hash("a@example.com"), "A@example.com", email_hash("a@example.com"))
    assert await adapter.delete_member_permanently(SINGLE, legacy) == "deleted"
    assert await adapter.delete_member_permanently(SINGLE, by_key) == "not_found"
    assert await adapter.delete_member_permanently(SINGLE, by_id) == "not_found"
    await adapter.aclose()


async def test_no_webhooks(provider: ListmonkProvider) -> None:
    assert await provider.webhook_urls(SINGLE) == []
    with pytest.raises(ProviderError, match="no outbound webhooks"):
        await provider.register_webhook(SINGLE, "https://bridge.example/hook")


async def test_many_profile_changes_go_through_the_importer(
    listmonk_app: InProcessListmonk,
) -> None:
    """At least import_threshold changed profiles: one upload with overwrite_userinfo (listmonk
    6.2+), subscription statuses untouched, attribs merged with keys other tools set."""
    people = [
        {"email": f"u{i}@example.com", "lists": [1], "attribs": {"crm": "keep", "city": "Oslo"}}
        for i in range(12)
    ]
    people[0]["subscription_status"] = "unsubscribed"
    people[1]["status"] = "blocklisted"
    listmonk_app.control.seed(subscribers=people)
    adapter = make(listmonk_app, import_threshold=10)
    changes = [
        upsert(
            str(i), f"u{i}@example.com", exists=True, merge_fields={"name": f"N{i}", "city": "Rome"}
        )
        for i in range(12)
    ]
    outcomes = await adapter.upsert_members(SINGLE, changes)
    await adapter.aclose()
    assert {o.kind for o in outcomes} == {K.UPDATED}
    assert [o.status for o in outcomes[:3]] == [S.UNSUBSCRIBED, S.UNSUBSCRIBED, S.SUBSCRIBED]
    for i in range(12):
        sub = listmonk_app.sandbox.subscriber_by(f"u{i}@example.com")
        assert sub is not None
        assert (sub.name, sub.attribs) == (f"N{i}", {"crm": "keep", "city": "Rome"})
    assert sub_state(listmonk_app, "u0@example.com") == ("enabled", "unsubscribed")
    assert sub_state(listmonk_app, "u1@example.com") == ("blocklisted", "unsubscribed")
    assert sub_state(listmonk_app, "u2@example.com") == ("enabled", "confirmed")
    imported = listmonk_app.sandbox.extensions["importer"]
    assert imported.total == 12  # one upload, no PATCH needed


async def test_check_names_a_missing_permission(listmonk_app: InProcessListmonk) -> None:
    """An API user whose role cannot run SQL queries (every lookup by address needs them)."""
    perms = ["subscribers:get_all", "subscribers:manage", "lists:get_all", "subscribers:import"]
    user = listmonk_app.control.call("POST", "/keys", {"username": "narrow", "perms": perms})
    dest = Dest(listmonk_app.base_url, SINGLE, user["username"], SecretStr(user["token"]))
    adapter = ListmonkProvider(dest, transport=httpx.ASGITransport(app=listmonk_app.app))  # type: ignore[arg-type]
    with pytest.raises(ProviderAuthError, match="subscribers:sql_query"):
        await adapter.check()
    await adapter.aclose()


async def test_an_address_change_renames_in_place(listmonk_app: InProcessListmonk) -> None:
    """previous_email: the subscriber keeps its id, subscription status and history."""
    listmonk_app.control.seed(
        subscribers=[
            {"email": "old@example.com", "lists": [1], "subscription_status": "unsubscribed"},
            {"email": "taken@example.com", "lists": [1]},
            {"email": "mover@example.com", "lists": [1]},
            {"email": "leaver@example.com", "lists": [1]},
        ]
    )
    before = listmonk_app.sandbox.subscriber_by("old@example.com")
    assert before is not None
    adapter = make(listmonk_app)
    got = {
        o.key: o
        for o in await adapter.upsert_members(
            SINGLE,
            [
                upsert("a", "new@example.com", previous_email="OLD@example.com", exists=True),
                # with an approved change: applied to the renamed subscriber
                upsert(
                    "d",
                    "moved@example.com",
                    previous_email="leaver@example.com",
                    status=S.UNSUBSCRIBED,
                    exists=True,
                ),
                upsert("b", "taken@example.com", previous_email="mover@example.com", exists=True),
                upsert("c", "x@example.com", previous_email="nobody@example.com", exists=True),
            ],
        )
    }
    await adapter.aclose()
    assert (got["a"].kind, got["a"].status) == (K.UPDATED, S.UNSUBSCRIBED)
    after = listmonk_app.sandbox.subscriber_by("new@example.com")
    assert after is not None
    assert after.id == before.id
    assert listmonk_app.sandbox.subscriber_by("old@example.com") is None
    assert sub_state(listmonk_app, "new@example.com") == ("enabled", "unsubscribed")
    assert (got["b"].kind, got["b"].reason_code) == (K.REJECTED, "email_taken")
    assert (got["c"].kind, got["c"].reason_code) == (K.REJECTED, "previous_member_missing")
    assert listmonk_app.sandbox.subscriber_by("mover@example.com") is not None
    assert (got["d"].kind, got["d"].status) == (K.UPDATED, S.UNSUBSCRIBED)
    assert sub_state(listmonk_app, "moved@example.com") == ("enabled", "unsubscribed")
