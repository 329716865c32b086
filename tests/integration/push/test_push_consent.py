"""Issue 11: one regression test per defect, on SQLite, PostgreSQL and MariaDB state stores,
the sandbox over real HTTP. (The model-based test drives random sequences of the same.)"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from campaign_bridge import migrations
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
    simulate_signup,
    simulate_unsubscribe,
)
from tests.integration.push.conftest import Sandbox, make_source, push_settings

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

    source.delete(1)
    source.delete(3)
    second = await push(settings)
    assert second.archived == 1
    assert sandbox.members["person1@mail.test"].status == "archived"
    assert sandbox.members["person3@mail.test"].status == "subscribed"  # not ours: left alone


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


async def test_two_pushes_at_once_send_each_contact_once(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    make_source(database_url, rows=300)
    settings = settings_for(tmp_path, database_url, sandbox)
    sandbox.handle.sandbox.limits.latency_per_item = 0.002
    first, second = await asyncio.gather(run_push(settings, "crm"), run_push(settings, "crm"))
    done, refused = (first, second) if first.error is None else (second, first)
    assert done.created == 300
    assert refused.exit_code == 75
    assert refused.error is not None
    assert "sync 'crm' is already running" in refused.error
    assert "held by" in refused.error
    created = rows(settings, "SELECT COUNT(*) FROM cb_consent_ledger WHERE old_status IS NULL")
    assert created == [(300,)]

    sandbox.handle.sandbox.limits.latency_per_item = 0.0
    waited = await asyncio.gather(push(settings), push(settings, wait=30))
    assert sum(s.writes for s in waited) == 0  # both ran, one after the other


class LockThief(MailchimpProvider):
    """Another run takes the sync's lock over while this one is sending."""

    state_url: str
    calls = 0

    async def upsert_members(self, list_id: str, members: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            engine = create_engine(self.state_url)
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE cb_locks SET owner = 'thief'"))
            engine.dispose()
            await asyncio.sleep(0.5)  # the heartbeat finds out
        return await super().upsert_members(list_id, members)


async def test_a_run_that_lost_its_lock_stops_before_sending_more(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    make_source(database_url, rows=2000)
    settings = settings_for(tmp_path, database_url, sandbox)
    thief = LockThief(settings.syncs["crm"].destination)
    thief.state_url = database_url
    try:
        summary = await run_push(settings, "crm", provider=thief, lock_ttl=0.6)
    finally:
        await thief.aclose()
    assert summary.status == "failed"
    assert summary.error is not None
    assert "lost its lock" in summary.error
    assert len(sandbox.members) < 2000


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
