"""StateStore on SQLite, PostgreSQL and MariaDB, each test in a fresh, migrated database."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeVar

import pytest
import sqlalchemy as sa

from campaign_bridge import db, migrations
from campaign_bridge.errors import StateStoreError
from campaign_bridge.store import (
    ConsentChange,
    ContactState,
    MemberStatusRecord,
    Rejection,
    StateStore,
)
from campaign_bridge.webhook_inbox import InboxRow, insert_rows
from campaign_bridge.webhook_queue import pending_events

T = TypeVar("T")
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def migrated_url(database_url: str) -> str:
    migrations.upgrade(database_url)
    return database_url


@pytest.fixture
def store(migrated_url: str, clock: Clock) -> Iterator[StateStore]:
    with StateStore(migrated_url, clock=clock) as state_store:
        yield state_store


def _race(workers: list[Callable[[], T]]) -> list[T]:
    """Run the callables in threads released at the same instant; return their results."""
    barrier = threading.Barrier(len(workers))
    results: list[T | None] = [None] * len(workers)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = workers[index]()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return [result for result in results if result is not None]


# --- runs -----------------------------------------------------------------------------------


def test_runs_are_recorded_listed_finished_and_looked_up(store: StateStore, clock: Clock) -> None:
    first = store.start_run("crm", "push")
    clock.advance(60)
    second = store.start_run("crm", "pull")
    clock.advance(60)
    other = store.start_run("shop", "push")
    clock.advance(5)

    running = store.recent_runs("crm")
    assert [run.id for run in running] == [second, first]
    assert running[0].status == "running"
    assert running[0].finished_at is None
    assert running[0].counts == {}
    assert [run.id for run in store.recent_runs()] == [other, second, first]
    assert [run.id for run in store.recent_runs(limit=1)] == [other]

    counts = {"created": 3, "updated": 1, "rejected": {"invalid_email": 2}}
    store.finish_run(first, "succeeded", counts)
    store.finish_run(second, "failed", {"events": 0}, "provider said 503 " * 1000)
    done = {run.id: run for run in store.recent_runs("crm")}
    assert done[first].status == "succeeded"
    assert done[first].counts == counts
    assert done[first].started_at == T0
    assert done[first].finished_at == T0 + timedelta(seconds=125)
    assert done[second].error_summary is not None
    assert done[second].error_summary.startswith("provider said 503")
    assert len(done[second].error_summary) == 8000

    with pytest.raises(StateStoreError, match="no sync run"):
        store.finish_run("00000000-0000-0000-0000-000000000000", "failed", {})

    # The last successful run is per sync and direction, whatever failed after it.
    assert store.last_successful_run("crm", "pull") is None
    clock.advance(10)
    new = store.start_run("crm", "push")
    store.finish_run(new, "succeeded", {"created": 2})
    clock.advance(10)
    failed = store.start_run("crm", "push")
    store.finish_run(failed, "failed", {}, "boom")
    pull = store.start_run("crm", "pull")
    store.finish_run(pull, "succeeded", {})

    last = store.last_successful_run("crm", "push")
    assert last is not None
    assert (last.id, last.counts) == (new, {"created": 2})
    last_pull = store.last_successful_run("crm", "pull")
    assert last_pull is not None
    assert last_pull.id == pull
    assert store.last_successful_run("shop", "push") is None


# --- contact state and timestamps -------------------------------------------------------------


def _state(key: str, **changes: object) -> ContactState:
    base = ContactState(
        sync_name="crm",
        source_key=key,
        email_hash=f"{abs(hash(key)):032x}"[:32],
        provider_member_id=None,
        content_hash="c1",
        pushed_at=T0,
        provider_status="subscribed",
        managed=True,
        managed_tags=("vip", "newsletter"),
        last_run_id="run-1",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_contact_states_round_trip_in_bulk(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "COPY_THRESHOLD", 1000)  # PostgreSQL: the first save goes via COPY
    states = [_state(f"k{i:05d}") for i in range(1500)]  # more than one IN (...) chunk
    store.save_contact_states(states)
    store.save_contact_states([_state("k00001", sync_name="other")])

    keys = ["k00000", "k01000", "k01499", "missing"]
    loaded = store.load_contact_states("crm", keys)
    assert set(loaded) == {"k00000", "k01000", "k01499"}
    assert loaded["k01000"] == states[1000]

    everything = list(store.iter_contact_states("crm", chunk=500))
    assert everything == states  # in key order, all pages, nothing from the other sync
    assert [s.source_key for s in store.iter_contact_states("other")] == ["k00001"]

    store.save_contact_states(
        [
            _state("k00000", content_hash="c2", managed=False, managed_tags=None),
            _state("k00001", provider_member_id="abc", provider_status="unsubscribed"),
        ]
    )
    updated = store.load_contact_states("crm", ["k00000", "k00001"])
    assert updated["k00000"].content_hash == "c2"
    assert updated["k00000"].managed is False
    assert updated["k00000"].managed_tags is None
    assert updated["k00001"].provider_status == "unsubscribed"

    assert store.delete_contact_states("crm", ["k00000", "k00001", "missing"]) == 2
    assert store.load_contact_states("crm", ["k00000", "k00001"]) == {}
    assert len(list(store.iter_contact_states("crm"))) == 1498
    assert store.load_contact_states("other", ["k00001"])  # untouched


def test_source_keys_are_case_sensitive_on_every_engine(store: StateStore) -> None:
    store.save_contact_states([_state("ab", content_hash="lower"), _state("AB")])
    loaded = store.load_contact_states("crm", ["ab", "AB"])
    assert loaded["ab"].content_hash == "lower"
    assert loaded["AB"].content_hash == "c1"


def test_timestamps_round_trip_as_aware_utc(store: StateStore) -> None:
    paris = timezone(timedelta(hours=2))
    moment = datetime(2026, 7, 14, 23, 30, 15, 654321, tzinfo=paris)
    store.save_contact_states([_state("tz", pushed_at=moment)])
    pushed_at = store.load_contact_states("crm", ["tz"])["tz"].pushed_at
    assert pushed_at == moment
    assert pushed_at is not None
    assert pushed_at.tzinfo is UTC
    assert (pushed_at.day, pushed_at.hour, pushed_at.microsecond) == (14, 21, 654321)

    with pytest.raises((ValueError, sa.exc.StatementError), match="naive datetime"):
        store.save_contact_states([_state("naive", pushed_at=datetime(2026, 1, 1))])


# --- rejections -----------------------------------------------------------------------------


def _rejection(key: str, message: str = "looks fake", content_hash: str = "h1") -> Rejection:
    return Rejection("crm", key, "e" * 32, content_hash, "invalid_email", message)


def test_rejections_count_attempts_resolve_and_reopen(store: StateStore, clock: Clock) -> None:
    store.record_rejections("run-1", [_rejection("a"), _rejection("b"), _rejection("c")])
    clock.advance(3600)
    store.record_rejections("run-2", [_rejection("a", "still fake", "h2")])

    rejected = {r.source_key: r for r in store.open_rejections("crm")}
    assert set(rejected) == {"a", "b", "c"}
    assert rejected["a"].attempts == 2
    assert rejected["a"].first_seen == T0
    assert rejected["a"].last_seen == T0 + timedelta(hours=1)
    assert (rejected["a"].message, rejected["a"].content_hash) == ("still fake", "h2")
    assert rejected["a"].last_run_id == "run-2"
    assert rejected["b"].attempts == 1
    assert store.rejected_keys_with_hash("crm") == {"a": "h2", "b": "h1", "c": "h1"}

    resolved_at = T0 + timedelta(hours=2)
    assert store.resolve_rejections("crm", ["a", "b", "nope"], resolved_at) == 2
    assert store.resolve_rejections("crm", ["a"], resolved_at) == 0  # already resolved
    assert [r.source_key for r in store.open_rejections("crm")] == ["c"]
    assert store.rejected_keys_with_hash("crm") == {"c": "h1"}

    clock.advance(7200)
    store.record_rejections("run-3", [_rejection("a", "fake again", "h3")])
    reopened = {r.source_key: r for r in store.open_rejections("crm")}["a"]
    assert reopened.attempts == 3
    assert reopened.resolved_at is None
    assert reopened.first_seen == T0
    assert store.open_rejections("shop") == []


# --- consent, cursors, member status -------------------------------------------------------


def test_consent_ledger_keeps_history_in_order(store: StateStore) -> None:
    alice, bob = "a" * 32, "b" * 32
    changes = [
        ConsentChange("crm", "mailchimp", alice, "subscribed", "push", T0, None, "k1"),
        ConsentChange(
            "crm", "mailchimp", alice, "unsubscribed", "webhook", T0 + timedelta(days=1),
            "subscribed", "k1", "clicked unsubscribe", "run-9",
        ),
        ConsentChange("crm", "mailchimp", bob, "cleaned", "pull", T0),
    ]  # fmt: skip
    store.append_consent_changes(list(reversed(changes)))
    store.append_consent_changes([])
    assert store.consent_history("crm", alice) == changes[:2]
    assert store.consent_history("crm", bob) == changes[2:]
    assert store.consent_history("shop", alice) == []


def test_pull_cursors_and_member_statuses(store: StateStore, clock: Clock) -> None:
    assert store.get_cursor("crm", "members") is None
    store.set_cursor("crm", "members", "2026-03-01T00:00:00+00:00")
    store.set_cursor("crm", "activity:c1", "42")
    store.set_cursor("crm", "members", "2026-03-02T00:00:00+00:00")
    assert store.get_cursor("crm", "members") == "2026-03-02T00:00:00+00:00"
    assert store.get_cursor("crm", "activity:c1") == "42"
    assert store.get_cursor("shop", "members") is None

    rows = [
        MemberStatusRecord("mailchimp", "L1", f"m{i}", f"user{i}@example.com", "subscribed")
        for i in range(1200)
    ]
    store.upsert_member_statuses(rows)
    clock.advance(30)
    store.upsert_member_statuses(
        [replace(rows[5], status="unsubscribed", unsubscribe_reason="N/A", last_changed=T0)]
    )
    found = store.member_statuses("mailchimp", "L1", ["m5", "m6", "m1100", "nobody"])
    assert set(found) == {"m5", "m6", "m1100"}
    assert found["m5"].status == "unsubscribed"
    assert found["m5"].last_changed == T0
    assert found["m5"].updated_at == T0 + timedelta(seconds=30)
    assert found["m6"].updated_at == T0
    assert store.member_statuses("mailchimp", "L2", ["m5"]) == {}


# --- locks ----------------------------------------------------------------------------------


def test_lock_lifecycle_and_expiry(store: StateStore, clock: Clock) -> None:
    assert store.try_acquire_lock("sync:crm", "host-a", 60)
    assert not store.try_acquire_lock("sync:crm", "host-b", 60)
    assert store.try_acquire_lock("sync:crm", "host-a", 60)  # the holder renews
    assert store.try_acquire_lock("sync:shop", "host-b", 60)  # another lock is independent

    clock.advance(50)
    assert store.refresh_lock("sync:crm", "host-a", 60)
    assert not store.refresh_lock("sync:crm", "host-b", 60)
    clock.advance(50)  # 100 s after taking it, 50 s after the refresh: still held
    assert not store.try_acquire_lock("sync:crm", "host-b", 60)

    clock.advance(11)  # expired
    assert store.try_acquire_lock("sync:crm", "host-b", 60)
    assert not store.refresh_lock("sync:crm", "host-a", 60)  # host-a lost it
    assert not store.release_lock("sync:crm", "host-a")
    assert store.release_lock("sync:crm", "host-b")
    assert store.try_acquire_lock("sync:crm", "host-a", 60)


def test_racing_for_one_lock_has_exactly_one_winner(migrated_url: str) -> None:
    stores = [StateStore(migrated_url) for _ in range(3)]
    try:
        for round_ in range(10):
            name = f"race-{round_}"
            if round_ % 2:  # odd rounds race to take over an expired lock, even ones a new one
                assert stores[0].try_acquire_lock(name, "old-owner", -1)
            owners = [f"host-{i}" for i in range(len(stores))]
            results = _race(
                [
                    lambda s=s, o=o, n=name: s.try_acquire_lock(n, o, 60)  # type: ignore[misc]
                    for s, o in zip(stores, owners, strict=True)
                ]
            )
            assert sorted(results) == [False, False, True], (round_, results)
    finally:
        for state_store in stores:
            state_store.close()


# --- webhook events -------------------------------------------------------------------------


def _webhook_row(provider: str, key: str, payload: str) -> InboxRow:
    return InboxRow(provider, key, "unsubscribe", "L1", T0, T0, payload)


def test_webhook_events_are_stored_once_per_provider_and_key(store: StateStore) -> None:
    first = _webhook_row("mailchimp", "d1", '{"a":1}')
    again = _webhook_row("mailchimp", "d1", '{"x":1}')
    other = _webhook_row("brevo", "d1", '{"c":1}')
    with store.engine.connect() as conn:
        assert insert_rows(conn, [first, other]) == {("mailchimp", "d1"), ("brevo", "d1")}
        assert insert_rows(conn, [again]) == set()
    pending = pending_events(store.engine, 10)
    assert [(e.provider, e.dedupe_key, e.payload) for e in pending] == [
        ("mailchimp", "d1", '{"a":1}'),  # the duplicate did not overwrite it
        ("brevo", "d1", '{"c":1}'),
    ]
    assert pending[0].received_at == T0


def test_racing_duplicate_webhook_deliveries_are_stored_once(migrated_url: str) -> None:
    engine = db.create_engine(migrated_url)

    def deliver(key: str) -> set[tuple[str, str]]:
        with engine.connect() as conn:
            return insert_rows(conn, [_webhook_row("mailchimp", key, "{}")])

    try:
        for round_ in range(5):
            key = f"dup-{round_}"
            results = _race([lambda k=key: deliver(k) for _ in range(3)])  # type: ignore[misc]
            assert set().union(*results) == {("mailchimp", key)}
            if engine.dialect.name != "mysql":  # MariaDB may call a racing twin new twice
                assert sorted(len(found) for found in results) == [0, 0, 1]
        assert len(pending_events(engine, 100)) == 5
    finally:
        engine.dispose()


# --- health ---------------------------------------------------------------------------------


def test_check_passes_only_on_a_current_store(database_url: str) -> None:
    with StateStore(database_url) as store:
        with pytest.raises(StateStoreError, match="campaign-bridge migrate upgrade"):
            store.check()
        with pytest.raises(StateStoreError, match="campaign-bridge migrate upgrade"):
            store.recent_runs()
        migrations.upgrade(database_url)
        store.check()
        assert store.recent_runs() == []


def test_check_reports_an_unreachable_store_without_its_password() -> None:
    url = "postgresql://bridge:hunter2-secret@127.0.0.1:1/state"
    with StateStore(url) as store, pytest.raises(StateStoreError) as caught:
        store.check()
    assert "hunter2-secret" not in str(caught.value)
    assert "the state store at postgresql+psycopg://bridge:***@127.0.0.1:1/state" in str(
        caught.value
    )


def test_an_unusable_url_is_a_state_store_error() -> None:
    with pytest.raises(StateStoreError, match="not a valid database URL"):
        StateStore("definitely not a url")
