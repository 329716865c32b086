"""Issue 11: one regression test per defect, on SQLite, PostgreSQL and MariaDB state stores,
the sandbox over real HTTP. (The model-based test drives random sequences of the same.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge import push as push_module
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.providers.base import MemberSnapshot
from campaign_bridge.providers.mailchimp import MailchimpProvider
from campaign_bridge.pull import run_pull
from campaign_bridge.push import PushSummary, run_push
from campaign_bridge.sandbox.mailchimp.control import (
    simulate_archive,
    simulate_bounce,
    simulate_delete_permanent,
    simulate_email_change,
    simulate_signup,
    simulate_unsubscribe,
)
from campaign_bridge.status_changes import apply_status_changes
from campaign_bridge.synclock import SyncLock
from tests.integration.push.conftest import Sandbox, make_source, push_settings
from tests.webhook_rows import mailchimp_change

pytestmark = pytest.mark.anyio


def md5(email: str) -> str:
    return hashlib.md5(email.encode()).hexdigest()


async def push(settings: Settings, **kwargs: Any) -> PushSummary:
    summary = await run_push(settings, "crm", **kwargs)
    assert summary.error is None, summary.error
    return summary


def rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(settings.effective_state_url())
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def ledger(settings: Settings, key: str) -> list[tuple[Any, ...]]:
    return rows(
        settings,
        "SELECT old_status, new_status, origin FROM cb_consent_ledger "
        f"WHERE source_key = '{key}' ORDER BY id",
    )


def settings_for(tmp_path: Path, url: str, sandbox: Sandbox, **sync: Any) -> Settings:
    """The state store in the same database as the source (a shared store is migrated first)."""
    if not url.startswith("sqlite"):
        migrations.upgrade(url)
    return push_settings(tmp_path, url, sandbox, state_url=url, **sync)


# --- 1. an address change goes through the consent rules --------------------------------------


async def test_an_address_change_renames_the_member_and_keeps_its_opt_out(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = make_source(database_url, rows=3)
    settings = settings_for(tmp_path, database_url, sandbox)
    await push(settings)
    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    simulate_unsubscribe(state, list_id, "person1@mail.test")  # the person did it

    source.update(1, email="moved1@mail.test")
    second = await push(settings)
    members = sandbox.members
    assert "person1@mail.test" not in members  # renamed in place, not a second member
    assert members["moved1@mail.test"].status == "unsubscribed"  # the opt-out followed
    assert second.created == 0
    assert ledger(settings, "1")[-1][:2] == ("unsubscribed", "unsubscribed")  # explained
    left = rows(  # the address it left: its history ends (a member found there later is new)
        settings,
        "SELECT old_status, new_status, origin FROM cb_consent_ledger "
        f"WHERE email_hash = '{md5('person1@mail.test')}' ORDER BY id",
    )
    assert left[-1] == ("unsubscribed", "vacated", "push")

    source.update(1, consent=False)
    await push(settings)
    source.update(1, consent=True)  # a fresh re-consent: re-confirmation, never subscribed
    await push(settings)
    assert sandbox.members["moved1@mail.test"].status == "pending"

    # The new address is another member already: the old one is unsubscribed explicitly.
    simulate_signup(state, list_id, {"email_address": "taken2@mail.test"})
    source.update(2, email="taken2@mail.test")
    await push(settings)
    members = sandbox.members
    assert members["person2@mail.test"].status == "unsubscribed"
    assert ("subscribed", "unsubscribed", "push") in ledger(settings, "2")
    owned = rows(settings, "SELECT managed FROM cb_contact_state WHERE source_key = '2'")
    assert not owned[0][0]  # the member at the new address is not the bridge's to archive


async def test_an_address_change_after_an_erase_does_not_subscribe_the_new_address(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = make_source(database_url, rows=2)
    settings = settings_for(tmp_path, database_url, sandbox)
    await push(settings)
    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    simulate_unsubscribe(state, list_id, "person1@mail.test")
    await push(settings)  # the refresh records the unsubscribe
    simulate_delete_permanent(state, list_id, "person1@mail.test")
    source.update(1, email="fresh1@mail.test")
    await push(settings)
    member = sandbox.members.get("fresh1@mail.test")
    assert member is None or member.status != "subscribed"


# --- 2. mirror mode archives only members the bridge created -----------------------------------


async def test_mirror_archives_only_members_the_bridge_created(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    simulate_signup(state, list_id, {"email_address": "person3@mail.test"})  # their own form
    source = make_source(database_url, rows=3)
    settings = settings_for(tmp_path, database_url, sandbox, mode="mirror")
    first = await push(settings)
    assert (first.created, first.updated) == (2, 1)
    owned = dict(rows(settings, "SELECT source_key, managed FROM cb_contact_state"))
    assert {k: bool(v) for k, v in owned.items()} == {"1": True, "2": True, "3": False}
    # The member found at the provider starts its ledger with the status it was found in,
    # as the provider's doing (origin pull), not the bridge's.
    assert ledger(settings, "3") == [(None, "subscribed", "pull")]

    source.delete(1)
    source.delete(3)
    second = await push(settings)
    assert second.archived == 1
    assert sandbox.members["person1@mail.test"].status == "archived"
    assert sandbox.members["person3@mail.test"].status == "subscribed"  # not ours: left alone


async def test_mirror_archives_when_the_source_table_has_become_empty(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    """An integer key column in an empty table: the keys still to be checked compare as keys
    (on PostgreSQL a text list against an integer column was an error that failed the run)."""
    source = make_source(database_url, rows=2)
    settings = settings_for(tmp_path, database_url, sandbox, mode="mirror")
    await push(settings)
    source.delete(1)
    source.delete(2)
    emptied = await push(settings)
    assert emptied.archived == 2
    assert sandbox.members["person1@mail.test"].status == "archived"
    assert sandbox.members["person2@mail.test"].status == "archived"


# --- 3 / 4. every provider-side change gets exactly one ledger row -----------------------------


async def test_provider_side_changes_get_one_ledger_row_whoever_sees_them_first(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = make_source(database_url, rows=5)
    settings = settings_for(tmp_path, database_url, sandbox)
    await push(settings)
    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    simulate_unsubscribe(state, list_id, "person1@mail.test")
    simulate_bounce(state, list_id, "person2@mail.test")
    simulate_archive(state, list_id, "person3@mail.test")
    simulate_delete_permanent(state, list_id, "person4@mail.test")
    for key in (1, 2, 3, 4):
        source.update(key, first_name="Changed")  # the source moves before any pull
    await push(settings)
    assert sandbox.members["person1@mail.test"].status == "unsubscribed"
    assert ("subscribed", "unsubscribed", "pull") in ledger(settings, "1")
    assert ("subscribed", "cleaned", "pull") in ledger(settings, "2")
    assert ("subscribed", "archived", "pull") in ledger(settings, "3")
    assert ledger(settings, "4")[-1][1] == "forgotten"
    before = rows(settings, "SELECT COUNT(*) FROM cb_consent_ledger")

    await run_pull(settings, "crm")  # sees the same members: nothing left to record
    await push(settings)
    assert rows(settings, "SELECT COUNT(*) FROM cb_consent_ledger") == before
    changes = rows(settings, "SELECT source_key, old_status, new_status FROM cb_consent_ledger")
    assert all(n == 1 for n in Counter(changes).values())


# --- 5. never act on a status the push has not confirmed ---------------------------------------


class ArchivingProvider(MailchimpProvider):
    """An admin archives the member just before the push sends its status change."""

    sandbox: Sandbox

    async def read_members(self, list_id: str, emails: Any) -> dict[str, MemberSnapshot | None]:
        for _, email in emails:
            simulate_archive(self.sandbox.handle.sandbox, list_id, email)
        return await super().read_members(list_id, emails)


async def test_a_change_made_while_the_push_runs_is_not_overwritten(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = make_source(database_url, rows=2)
    settings = settings_for(tmp_path, database_url, sandbox)
    await push(settings)
    source.update(1, consent=False)  # the push will unsubscribe...
    racing = ArchivingProvider(settings.syncs["crm"].destination)
    racing.sandbox = sandbox
    try:
        summary = await push(settings, provider=racing)
    finally:
        await racing.aclose()
    assert summary.skipped["status_changed_at_provider"] == 1
    assert sandbox.members["person1@mail.test"].status == "archived"  # ...not over the archive
    assert ("subscribed", "archived", "pull") in ledger(settings, "1")
    source.update(1, consent=True)  # a later re-consent leaves the admin's archive alone
    await push(settings)
    assert sandbox.members["person1@mail.test"].status == "archived"


class BouncingProvider(MailchimpProvider):
    """The member at a contact's previous address bounces once the push's sends are answered,
    before it unsubscribes that previous address."""

    sandbox: Sandbox
    bounce: str

    async def upsert_members(self, list_id: str, members: Any) -> Any:
        outcomes = await super().upsert_members(list_id, members)
        if self.bounce:
            simulate_bounce(self.sandbox.handle.sandbox, list_id, self.bounce)
            self.bounce = ""
        return outcomes


async def test_a_previous_address_that_bounced_meanwhile_is_not_unsubscribed(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    """Model finding F18: a row's address changes to one that is another member, so push
    unsubscribes the previous address; that address bounces after the refresh. Push re-reads it
    first, leaves it cleaned (with its ledger row) and decides again next run."""
    source = make_source(database_url, rows=2)
    settings = settings_for(tmp_path, database_url, sandbox)
    await push(settings)
    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    simulate_signup(state, list_id, {"email_address": "other1@mail.test"})
    source.update(1, email="other1@mail.test")
    racing = BouncingProvider(settings.syncs["crm"].destination)
    racing.sandbox, racing.bounce = sandbox, "person1@mail.test"
    try:
        summary = await push(settings, provider=racing)
    finally:
        await racing.aclose()
    assert summary.skipped["status_changed_at_provider"] == 1
    assert sandbox.members["person1@mail.test"].status == "cleaned"  # not over the bounce
    assert all(r[1] != "unsubscribed" for r in ledger(settings, "1"))
    recorded = rows(
        settings,
        f"SELECT status FROM cb_member_status WHERE member_id = '{md5('person1@mail.test')}'",
    )
    assert recorded == [("cleaned",)]  # what the re-read found is recorded
    await push(settings)  # the next run decides again: an opted-out previous address stays
    assert sandbox.members["person1@mail.test"].status == "cleaned"
    assert sandbox.members["other1@mail.test"].status == "subscribed"


# --- 6. consent true -> NULL -> false; the bridge remembers what it did -------------------------


async def test_consent_through_null_still_unsubscribes_and_the_bridge_remembers(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = make_source(database_url, rows=2)
    settings = settings_for(tmp_path, database_url, sandbox)
    await push(settings)
    source.update(1, consent=None)
    await push(settings)
    source.update(1, consent=False)
    assert (await push(settings)).consent["unsubscribe"] == 1
    assert sandbox.members["person1@mail.test"].status == "unsubscribed"

    source.update(1, first_name="Renamed")  # a field update by the bridge itself
    await push(settings)
    source.update(1, consent=True)  # the bridge unsubscribed: it may re-subscribe
    assert (await push(settings)).consent["resubscribe"] == 1
    assert sandbox.members["person1@mail.test"].status == "subscribed"

    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    simulate_archive(state, list_id, "person2@mail.test")
    for name in ("a", "b", "c"):
        source.update(2, first_name=name)
        await push(settings)
    assert [r for r in ledger(settings, "2") if r[0] == r[1]] == []  # no "kept" per run


# --- 7. one run of a sync at a time ------------------------------------------------------------


class Gate(MailchimpProvider):
    """Holds its run inside the first send until the test opens it (so the overlap is certain)."""

    entered: asyncio.Event
    opened: asyncio.Event

    async def upsert_members(self, list_id: str, members: Any) -> Any:
        self.entered.set()
        await self.opened.wait()
        return await super().upsert_members(list_id, members)


async def test_two_pushes_at_once_send_each_contact_once(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    make_source(database_url, rows=300)
    settings = settings_for(tmp_path, database_url, sandbox)
    gate = Gate(settings.syncs["crm"].destination)
    gate.entered, gate.opened = asyncio.Event(), asyncio.Event()
    try:
        first = asyncio.create_task(run_push(settings, "crm", provider=gate))
        await asyncio.wait_for(gate.entered.wait(), 60)  # the first run holds the lock, sending
        refused = await run_push(settings, "crm")
        gate.opened.set()
        done = await first
    finally:
        gate.opened.set()
        await gate.aclose()
    assert done.error is None, done.error
    assert done.created == 300
    assert refused.exit_code == 75
    assert refused.error is not None
    assert "sync 'crm' is already running" in refused.error
    assert "held by" in refused.error
    assert refused.created == refused.updated == 0
    created = rows(settings, "SELECT COUNT(*) FROM cb_consent_ledger WHERE old_status IS NULL")
    assert created == [(300,)]

    # With --wait, two runs started together both run, one after the other.
    waited = await asyncio.gather(push(settings, wait=30), push(settings, wait=30))
    assert sum(s.writes for s in waited) == 0


class WatchedLock(SyncLock):
    """The run's sync lock, telling the test once its heartbeat found the lock taken over."""

    made: ClassVar[list[WatchedLock]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.found_lost = asyncio.Event()
        WatchedLock.made.append(self)

    async def _beat(self) -> None:
        await super()._beat()  # returns once a refresh was refused: the lock is lost
        self.found_lost.set()


def take_the_lock_over(state_url: str) -> None:
    """What another run taking the sync's lock over does to the lock's row."""
    engine = create_engine(state_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE cb_locks SET owner = 'thief'"))
    engine.dispose()


class LockThief(MailchimpProvider):
    """Another run takes the sync's lock over at the start of this run's first call. That call,
    and any other call under way then, goes on only once the run's heartbeat has found the lock
    lost (what a run can know); a call that started after that would count in ``late``."""

    state_url: str
    stolen = False
    sizes: list[int]  # members per call, in the order the calls started
    late = 0

    async def upsert_members(self, list_id: str, members: Any) -> Any:
        (lock,) = WatchedLock.made
        self.sizes.append(len(members))
        if lock.found_lost.is_set():
            self.late += 1
        if not self.stolen:
            self.stolen = True
            take_the_lock_over(self.state_url)
        await lock.found_lost.wait()  # the heartbeat's next refresh is refused
        return await super().upsert_members(list_id, members)


async def test_a_run_that_lost_its_lock_stops_before_sending_more(
    database_url: str, tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_source(database_url, rows=5000)
    settings = settings_for(tmp_path, database_url, sandbox)
    settings.syncs["crm"].destination.concurrency = 1
    monkeypatch.setattr(WatchedLock, "made", [])
    monkeypatch.setattr(push_module, "SyncLock", WatchedLock)
    thief = LockThief(settings.syncs["crm"].destination)
    thief.state_url = database_url
    thief.sizes = []
    try:
        # A heartbeat every 4 s: however busy the machine, the lock is not lost by time
        # before the thief takes it (a refresh would have to wait 8 s).
        summary = await run_push(settings, "crm", provider=thief, lock_ttl=12)
    finally:
        await thief.aclose()
    assert summary.status == "failed"
    assert summary.error is not None
    assert "lost its lock" in summary.error
    # The calls under way when the lock was found lost finished; none started after that.
    assert thief.stolen
    assert thief.late == 0
    assert len(sandbox.members) <= sum(thief.sizes) < 5000


class TagLockThief(MailchimpProvider):
    """Another run takes the sync's lock over once a member update was confirmed, before the
    run sets those members' tags (their own call); counts the tag calls made after that."""

    state_url: str
    armed = False
    tag_calls = 0

    async def upsert_members(self, list_id: str, members: Any) -> Any:
        outcomes = await super().upsert_members(list_id, members)
        if self.armed:
            take_the_lock_over(self.state_url)
            await WatchedLock.made[-1].found_lost.wait()  # the heartbeat's next refresh is refused
        return outcomes

    async def update_tags(self, list_id: str, changes: Any) -> Any:
        self.tag_calls += 1
        return await super().update_tags(list_id, changes)


async def test_a_run_that_lost_its_lock_sets_no_tags_after_it(
    database_url: str, tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_source(database_url, rows=3)
    settings = settings_for(tmp_path, database_url, sandbox)
    monkeypatch.setattr(WatchedLock, "made", [])
    monkeypatch.setattr(push_module, "SyncLock", WatchedLock)
    thief = TagLockThief(settings.syncs["crm"].destination)
    thief.state_url = database_url
    try:
        first = await run_push(settings, "crm", provider=thief, lock_ttl=12)
        assert first.error is None, first.error
        for key in (1, 2, 3):
            source.update(key, vip=True)  # existing members: their tag goes in its own call
        thief.armed = True
        summary = await run_push(settings, "crm", provider=thief, lock_ttl=12)
    finally:
        await thief.aclose()
    assert summary.status == "failed"
    assert summary.error is not None
    assert "lost its lock" in summary.error
    assert thief.tag_calls == 0
    assert all(sandbox.tags_of(f"person{k}@mail.test") == set() for k in (1, 2, 3))


# --- 8. tags the provider cannot hold are never dropped silently -------------------------------


async def test_a_tag_too_long_rejects_the_record_with_its_reason(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = make_source(database_url, rows=3)
    source.update(2, tag_list="ok, " + "x" * 101)
    settings = settings_for(tmp_path, database_url, sandbox)
    summary = await push(settings)
    assert summary.created == 2
    assert summary.rejected == {"tag_too_long": 1}
    reasons = rows(settings, "SELECT source_key, reason_code, message FROM cb_rejected_records")
    assert [(k, r) for k, r, _ in reasons] == [("2", "tag_too_long")]
    assert "100 characters" in reasons[0][2]
    assert "person2@mail.test" not in sandbox.members


async def test_a_permanent_delete_reported_as_an_archive_is_recorded_as_forgotten(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    """Mailchimp's webhook for a permanent delete is the archive's (``unsubscribe`` with
    ``action=delete``); the next push's refresh does not list the member, re-reads it (404)
    and records it as forgotten, once."""
    make_source(database_url, rows=2)
    settings = settings_for(tmp_path, database_url, sandbox)
    await push(settings)
    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    simulate_delete_permanent(state, list_id, "person1@mail.test")
    form = {
        "type": "unsubscribe",
        "fired_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "data[action]": "delete",
        "data[email]": "person1@mail.test",
        "data[list_id]": list_id,
    }
    change = mailchimp_change(form)
    assert change is not None
    engine = create_engine(database_url)
    try:
        apply_status_changes(engine, [change], sync_name="crm")
    finally:
        engine.dispose()
    assert ledger(settings, "1")[-1] == ("subscribed", "archived", "webhook")

    await push(settings)
    assert ledger(settings, "1")[-1] == ("archived", "forgotten", "pull")
    await push(settings)
    assert [r[1] for r in ledger(settings, "1")].count("forgotten") == 1


async def test_an_address_change_at_the_provider_moves_the_contact_with_its_member(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    make_source(database_url, rows=2)
    settings = settings_for(tmp_path, database_url, sandbox)
    await push(settings)
    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    simulate_email_change(state, list_id, "person1@mail.test", "elsewhere1@mail.test")
    form = {
        "type": "upemail",
        "fired_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "data[old_email]": "person1@mail.test",
        "data[new_email]": "elsewhere1@mail.test",
        "data[list_id]": list_id,
    }
    change = mailchimp_change(form)
    assert change is not None
    engine = create_engine(database_url)
    try:
        apply_status_changes(engine, [change], sync_name="crm")
    finally:
        engine.dispose()
    moved = rows(settings, "SELECT email_hash FROM cb_contact_state WHERE source_key = '1'")
    assert moved == [(md5("elsewhere1@mail.test"),)]
    # One row explains the move, one closes the history of the address the member left.
    assert ledger(settings, "1")[-2:] == [
        ("subscribed", "subscribed", "webhook"),
        ("subscribed", "vacated", "webhook"),
    ]
    left = rows(
        settings,
        "SELECT new_status FROM cb_consent_ledger "
        f"WHERE email_hash = '{md5('person1@mail.test')}' ORDER BY id",
    )
    assert left[-1] == ("vacated",)
    sandbox.log.clear()
    assert (await push(settings)).writes == 0  # nothing changed in the source: nothing sent


async def test_an_address_change_at_the_provider_without_webhooks_moves_the_contact_at_pull(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    """Model finding F15: with no webhooks, the member's old address is gone from every
    listing. Pull finds the same member (by the provider's id, Mailchimp's ``contact_id``)
    under its new address and records an address change, not a permanent delete."""
    make_source(database_url, rows=2)
    settings = settings_for(tmp_path, database_url, sandbox)
    await push(settings)
    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    contact_id = sandbox.members["person1@mail.test"].contact_id
    simulate_email_change(state, list_id, "person1@mail.test", "elsewhere1@mail.test")

    await run_pull(settings, "crm")
    moved = rows(settings, "SELECT email_hash FROM cb_contact_state WHERE source_key = '1'")
    assert moved == [(md5("elsewhere1@mail.test"),)]
    members = rows(
        settings, "SELECT email, status, provider_member_id FROM cb_member_status ORDER BY email"
    )
    assert ("elsewhere1@mail.test", "subscribed", contact_id) in members
    assert all(email != "person1@mail.test" for email, _, _ in members)
    # The move (no status change) and the end of the old address's history; nothing forgotten.
    assert ledger(settings, "1")[-2:] == [
        ("subscribed", "subscribed", "pull"),
        ("subscribed", "vacated", "pull"),
    ]
    everything = rows(settings, "SELECT new_status FROM cb_consent_ledger")
    assert ("forgotten",) not in everything

    before = rows(settings, "SELECT COUNT(*) FROM cb_consent_ledger")
    await run_pull(settings, "crm")  # the counts agree again: nothing more to record
    assert rows(settings, "SELECT COUNT(*) FROM cb_consent_ledger") == before


async def test_an_address_change_and_an_unsubscribe_at_the_provider_are_one_row_at_push(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    """F15 and F16 without pull: the member changes its address at the provider, then
    unsubscribes. Push alone (its refresh runs pull's count check) moves the contact with its
    member and records the unsubscribe as one transition; a pull after it adds nothing."""
    make_source(database_url, rows=2)
    settings = settings_for(tmp_path, database_url, sandbox)
    await push(settings)
    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    simulate_email_change(state, list_id, "person1@mail.test", "elsewhere1@mail.test")
    simulate_unsubscribe(state, list_id, "elsewhere1@mail.test")

    await push(settings)
    moved = rows(
        settings, "SELECT email_hash, provider_status FROM cb_contact_state WHERE source_key = '1'"
    )
    assert moved == [(md5("elsewhere1@mail.test"), "unsubscribed")]
    transitions = [r for r in ledger(settings, "1") if r[0] != r[1] and r[1] != "vacated"]
    assert transitions == [(None, "subscribed", "push"), ("subscribed", "unsubscribed", "pull")]
    assert sandbox.members["elsewhere1@mail.test"].status == "unsubscribed"
    assert "person1@mail.test" not in sandbox.members  # nothing re-created at the old address

    before = rows(settings, "SELECT COUNT(*) FROM cb_consent_ledger")
    await run_pull(settings, "crm")
    await push(settings)
    assert rows(settings, "SELECT COUNT(*) FROM cb_consent_ledger") == before


async def test_a_permanent_delete_of_a_row_gone_from_the_source_reaches_the_ledger_at_push(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    """Model finding F16: with no webhooks, a member is deleted permanently at the provider and
    its row leaves the source, so push never sends to it again. The push's count check still
    records the delete, once; a pull or another push adds nothing."""
    source = make_source(database_url, rows=2)
    settings = settings_for(tmp_path, database_url, sandbox)
    await push(settings)
    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    simulate_delete_permanent(state, list_id, "person1@mail.test")
    source.delete(1)

    await push(settings)
    assert ledger(settings, "1")[-1] == ("subscribed", "forgotten", "pull")
    status = rows(
        settings,
        f"SELECT status FROM cb_member_status WHERE member_id = '{md5('person1@mail.test')}'",
    )
    assert status == [("forgotten",)]
    before = rows(settings, "SELECT COUNT(*) FROM cb_consent_ledger")
    await run_pull(settings, "crm")
    await push(settings)
    assert rows(settings, "SELECT COUNT(*) FROM cb_consent_ledger") == before
    assert [r[1] for r in ledger(settings, "1")].count("forgotten") == 1


async def test_a_scheduled_run_uses_the_lock_its_scheduler_holds(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    """The scheduler takes ``sync:<name>`` and hands it to the run (synclock.HELD): the run
    neither takes it twice nor is refused, while a manual run still is."""
    from campaign_bridge.store import StateStore
    from campaign_bridge.synclock import HELD, HeldLock

    make_source(sqlite_url, rows=3)
    settings = settings_for(tmp_path, sqlite_url, sandbox)
    await push(settings)  # creates the state store
    store = StateStore(settings.effective_state_url())
    try:
        assert store.try_acquire_lock("sync:crm", "scheduler-1", 60)
        manual = await run_push(settings, "crm")
        assert manual.exit_code == 75
        token = HELD.set(HeldLock("sync:crm", "scheduler-1"))
        try:
            scheduled = await run_push(settings, "crm")
        finally:
            HELD.reset(token)
        assert scheduled.error is None
        assert store.lock_holder("sync:crm") is not None  # still the scheduler's to release
        assert store.lock_holder("sync:crm")[0] == "scheduler-1"  # type: ignore[index]
    finally:
        store.close()


@pytest.mark.parametrize("through_batches", [False, True])
async def test_read_members_directly_and_through_batches(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox, through_batches: bool
) -> None:
    """The re-read push relies on (defect 5): present members by key, None for an erased or
    unknown address, whether the adapter calls directly or through /batches."""
    make_source(sqlite_url, rows=3)
    settings = settings_for(tmp_path, sqlite_url, sandbox)
    await push(settings)
    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    simulate_unsubscribe(state, list_id, "person2@mail.test")
    simulate_delete_permanent(state, list_id, "person3@mail.test")
    provider = MailchimpProvider(settings.syncs["crm"].destination)
    if through_batches:
        provider.batch_threshold = 1
    try:
        found = await provider.read_members(
            list_id,
            [
                ("a", "person1@mail.test"),
                ("b", "person2@mail.test"),
                ("c", "person3@mail.test"),
                ("d", "nobody@mail.test"),
            ],
        )
    finally:
        await provider.aclose()
    assert {k: (s.status if s else None) for k, s in found.items()} == {
        "a": "subscribed",
        "b": "unsubscribed",
        "c": None,
        "d": None,
    }
