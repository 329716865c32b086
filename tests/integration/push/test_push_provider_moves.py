"""A member who changed their address at the provider (issue 11, the push after the move): the
contact follows the member, and the next push, whose source row did not change, neither
renames the member back nor unsubscribes them when someone else signs up at the address they
left. A later change of the source row's address starts from the member's current address.
SQLite, PostgreSQL and MariaDB state stores; the sandbox's control API over real HTTP."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.history import contact_history, scopes_of
from campaign_bridge.pull import run_pull
from campaign_bridge.push import PushSummary, run_push
from tests.integration.push.conftest import Sandbox, SourceDb, make_source, push_settings

pytestmark = pytest.mark.anyio


def md5(email: str) -> str:
    return hashlib.md5(email.encode()).hexdigest()


def settings_for(tmp_path: Path, url: str, sandbox: Sandbox) -> Settings:
    """Every run reads every row (no ``updated_at`` column), so the unchanged row is re-read."""
    if not url.startswith("sqlite"):
        migrations.upgrade(url)
    return push_settings(tmp_path, url, sandbox, state_url=url, source={"updated_at_column": None})


async def push(settings: Settings) -> PushSummary:
    summary = await run_push(settings, "crm")
    assert summary.error is None, summary.error
    return summary


def control(sandbox: Sandbox, path: str, body: dict[str, Any]) -> dict[str, Any]:
    handle = sandbox.handle
    url = f"{handle.control_url}/lists/{handle.list_id}{path}"
    answer = httpx.post(url, json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def contact_of(settings: Settings, key: str) -> tuple[Any, ...]:
    engine = create_engine(settings.effective_state_url())
    try:
        with engine.connect() as conn:
            query = sa.text(
                "SELECT email_hash, provider_status FROM cb_contact_state WHERE source_key = :k"
            )
            return tuple(conn.execute(query, {"k": key}).one())
    finally:
        engine.dispose()


async def moved_at_provider(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> tuple[Settings, SourceDb]:
    """Two rows pushed; person 1 changes their address in the preference centre; a pull
    records the move."""
    source = make_source(database_url, rows=2)
    settings = settings_for(tmp_path, database_url, sandbox)
    assert (await push(settings)).created == 2
    control(sandbox, "/members/person1@mail.test/change-email", {"new_email": "moved1@mail.test"})
    await run_pull(settings, "crm")
    assert contact_of(settings, "1") == (md5("moved1@mail.test"), "subscribed")
    sandbox.log.clear()
    return settings, source


async def test_a_push_after_a_move_at_the_provider_sends_nothing(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    settings, _ = await moved_at_provider(database_url, tmp_path, sandbox)

    summary = await push(settings)
    assert (summary.read, summary.unchanged, summary.updated, summary.writes) == (2, 2, 0, 0)
    assert sandbox.log.writes() == []
    assert sandbox.members["moved1@mail.test"].status == "subscribed"
    assert "person1@mail.test" not in sandbox.members  # not renamed back
    assert contact_of(settings, "1") == (md5("moved1@mail.test"), "subscribed")


async def test_a_signup_at_the_address_left_does_not_unsubscribe_the_moved_member(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    settings, _ = await moved_at_provider(database_url, tmp_path, sandbox)
    control(sandbox, "/signup", {"email_address": "person1@mail.test"})  # someone new
    await run_pull(settings, "crm")
    sandbox.log.clear()

    summary = await push(settings)
    assert (summary.unchanged, summary.updated, summary.writes) == (2, 0, 0)
    assert sandbox.log.writes() == []
    assert sandbox.members["moved1@mail.test"].status == "subscribed"
    assert sandbox.members["person1@mail.test"].status == "subscribed"
    assert contact_of(settings, "1") == (md5("moved1@mail.test"), "subscribed")


async def test_a_later_address_change_in_the_source_renames_the_member_where_it_is_now(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    settings, source = await moved_at_provider(database_url, tmp_path, sandbox)
    source.update(1, email="source1@mail.test")

    summary = await push(settings)
    assert (summary.updated, summary.writes) == (1, 1)
    assert "moved1@mail.test" not in sandbox.members
    assert "person1@mail.test" not in sandbox.members
    assert sandbox.members["source1@mail.test"].status == "subscribed"
    assert contact_of(settings, "1") == (md5("source1@mail.test"), "subscribed")
    assert (await push(settings)).writes == 0


async def test_a_later_change_of_other_fields_goes_to_the_member_where_it_is_now(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    settings, source = await moved_at_provider(database_url, tmp_path, sandbox)
    control(sandbox, "/signup", {"email_address": "person1@mail.test"})  # someone new
    await run_pull(settings, "crm")
    sandbox.log.clear()
    source.update(1, first_name="Renamed 1")  # the address in the source is still person1's

    summary = await push(settings)
    assert (summary.updated, summary.writes) == (1, 1)
    moved = sandbox.members["moved1@mail.test"]
    assert (moved.status, moved.merge_fields["FNAME"]) == ("subscribed", "Renamed 1")
    newcomer = sandbox.members["person1@mail.test"]
    assert (newcomer.status, newcomer.merge_fields.get("FNAME")) == ("subscribed", None)
    assert contact_of(settings, "1") == (md5("moved1@mail.test"), "subscribed")
    assert (await push(settings)).writes == 0


async def test_a_later_withdrawal_unsubscribes_the_member_where_it_is_now(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    settings, source = await moved_at_provider(database_url, tmp_path, sandbox)
    control(sandbox, "/signup", {"email_address": "person1@mail.test"})  # someone new
    await run_pull(settings, "crm")
    source.update(1, consent=False)

    await push(settings)
    assert sandbox.members["moved1@mail.test"].status == "unsubscribed"
    assert sandbox.members["person1@mail.test"].status == "subscribed"  # not theirs to withdraw
    assert contact_of(settings, "1") == (md5("moved1@mail.test"), "unsubscribed")
    ledger = rows_of(
        settings,
        "SELECT email_hash, old_status, new_status, origin FROM cb_consent_ledger "
        "WHERE source_key = '1' ORDER BY id",
    )
    assert ledger[-1] == (md5("moved1@mail.test"), "subscribed", "unsubscribed", "push")
    assert (await push(settings)).writes == 0


def rows_of(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(settings.effective_state_url())
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


async def test_history_of_the_address_left_says_where_the_member_went(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    settings, _ = await moved_at_provider(database_url, tmp_path, sandbox)
    control(sandbox, "/signup", {"email_address": "person1@mail.test"})  # someone new
    await run_pull(settings, "crm")
    engine = create_engine(settings.effective_state_url())
    try:
        found = contact_history(engine, scopes_of(settings), "person1@mail.test")
    finally:
        engine.dispose()
    assert found.source_keys == [("crm", "1")]
    [moved] = [a for a in found.answers if a.startswith("address changed at the provider")]
    assert "source record '1'" in moved
    assert "now uses moved1@mail.test" in moved
