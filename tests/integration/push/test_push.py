"""Push end to end: the source on SQLite, PostgreSQL and MariaDB, the sandbox over real HTTP."""

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
from campaign_bridge.providers._http import RetryPolicy
from campaign_bridge.providers.mailchimp import MailchimpProvider
from campaign_bridge.push import PushSummary, run_push
from campaign_bridge.sandbox.mailchimp.control import simulate_bounce, simulate_unsubscribe
from campaign_bridge.sandbox.mailchimp.limits import FaultRule
from tests.integration.push.conftest import Sandbox, make_source, push_settings

pytestmark = pytest.mark.anyio


async def push(settings: Settings, **kwargs: Any) -> PushSummary:
    summary = await run_push(settings, "crm", **kwargs)
    assert summary.error is None, summary.error
    return summary


def state_rows(settings: Settings, sql: str) -> list[Any]:
    engine = create_engine(settings.effective_state_url())
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)))
    finally:
        engine.dispose()


def rejections(settings: Settings) -> dict[str, str]:
    rows = state_rows(
        settings,
        "SELECT source_key, reason_code FROM cb_rejected_records WHERE resolved_at IS NULL",
    )
    return {str(key): reason for key, reason in rows}


async def test_incremental_pushes_send_only_what_changed(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = make_source(database_url, rows=200)
    source.update(7, tag_list="gold, silver", vip=True)
    settings = push_settings(tmp_path, database_url, sandbox)

    first = await push(settings)
    assert (first.created, first.updated, first.rejected_total) == (200, 0, 0)
    members = sandbox.members
    assert len(members) == 200
    assert members["person7@mail.test"].status == "subscribed"
    assert sandbox.tags_of("person7@mail.test") == {"VIP", "gold", "silver"}

    sandbox.log.clear()
    second = await push(settings)
    assert sandbox.log.writes() == []  # nothing changed: no write call at all
    assert (second.created, second.updated, second.writes) == (0, 0, 0)

    source.update(3, first_name="Changed")
    source.update(7, tag_list="gold", vip=False)
    sandbox.log.clear()
    third = await push(settings)
    assert (third.created, third.updated) == (0, 2)
    writes = sandbox.log.writes()
    assert writes, "the two changes must be sent"
    assert all("person" not in path for _, path in writes)  # hashes, never addresses
    assert sandbox.members["person3@mail.test"].merge_fields["FNAME"] == "Changed"
    assert sandbox.tags_of("person7@mail.test") == {"gold"}

    sandbox.log.clear()
    assert (await push(settings)).writes == 0
    assert sandbox.log.writes() == []


async def test_a_bulk_load_with_one_timestamp_is_not_read_again(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = make_source(database_url)
    loaded = source.tick()
    source.insert([{"id": i, "updated_at": loaded} for i in range(1, 101)])
    settings = push_settings(tmp_path, database_url, sandbox)
    assert (await push(settings)).read == 100

    source.update(3, first_name="Changed")
    source.update(4, first_name="Changed too")
    second = await push(settings)
    assert (second.read, second.updated) == (2, 2)  # not the 100 rows stamped `loaded`
    assert sandbox.members["person4@mail.test"].merge_fields["FNAME"] == "Changed too"

    third = await push(settings)
    assert (third.read, third.writes) == (0, 0)


async def test_a_key_the_source_repeats_is_rejected_not_fatal(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    make_source(sqlite_url, rows=10)
    query = (
        "SELECT id, email, first_name, nick, age, consent, vip, tag_list, updated_at "
        "FROM contacts UNION ALL "
        "SELECT 4, 'other4@mail.test', 'Twin', NULL, NULL, 1, 0, NULL, updated_at "
        "FROM contacts WHERE id = 4"
    )
    settings = push_settings(tmp_path, sqlite_url, sandbox, source={"table": None, "query": query})
    summary = await push(settings)
    assert summary.created == 10
    assert summary.rejected == {"duplicate_key": 1}
    assert len(sandbox.members) == 10
    assert rejections(settings) == {"4": "duplicate_key"}


async def test_bad_records_are_rejected_with_a_reason_while_the_rest_lands(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    lst = sandbox.handle.sandbox.lists[sandbox.handle.list_id]
    for spec in lst.merge_fields.values():
        if spec.tag == "FNAME":
            spec.required = True
    source = make_source(database_url, rows=30)
    dialect = source.engine.dialect.name
    source.update(1, email="not-an-address")
    source.update(2, email="someone@example.com")  # the provider says: looks fake
    source.insert([{"id": 31, "email": "PERSON5@Mail.Test"}])  # case-only duplicate of 5
    source.update(6, age="thirty")
    source.update(8, first_name="x" * 300)
    source.update(9, first_name=None)
    source.update(10, nick=b"\xff\xfe")
    expected = {
        "1": "invalid_email",
        "31": "duplicate_email",
        "6": "invalid_type",
        "8": "value_too_long",
        "9": "missing_required_field",
        "10": "invalid_encoding",
    }
    if dialect != "postgresql":  # PostgreSQL text cannot hold NUL
        source.update(11, first_name="nul\x00here")
        expected["11"] = "invalid_encoding"
    settings = push_settings(tmp_path, database_url, sandbox)

    summary = await push(settings)
    found = rejections(settings)
    assert {k: v for k, v in found.items() if k != "2"} == expected
    assert "2" in found  # rejected by the provider, with the provider's reason
    assert "fake" in found["2"] or "invalid" in found["2"]
    landed = 31 - len(found)
    assert summary.created == landed
    assert len(sandbox.members) == landed
    assert summary.rejected_total == len(found)
    message = state_rows(
        settings, "SELECT message FROM cb_rejected_records WHERE source_key = '31'"
    )[0][0]
    assert "5" in message
    assert "@" not in message

    # Unchanged rejected records are not retried; a fixed one lands and is resolved.
    sandbox.log.clear()
    await push(settings)
    assert sandbox.log.writes() == []
    assert rejections(settings) == found
    sandbox.log.clear()
    full = await push(settings, retry_rejected=False, limit=None)
    assert sandbox.log.writes() == []
    assert full.created == full.updated == 0
    source.update(6, age="30")
    fixed = await push(settings)
    assert fixed.created == 1
    assert fixed.resolved == 1
    assert "6" not in rejections(settings)
    assert sandbox.members["person6@mail.test"].merge_fields["AGE"] in (30, "30")
    retried = await push(settings, retry_rejected=True)
    assert retried.rejected_total == len(found) - 1


async def test_consent_rules_end_to_end(sqlite_url: str, tmp_path: Path, sandbox: Sandbox) -> None:
    source = make_source(sqlite_url, rows=6)
    source.update(6, consent=False)
    settings = push_settings(tmp_path, sqlite_url, sandbox)
    first = await push(settings)
    assert first.created == 5
    assert first.skipped["unconsented_new"] == 1  # unconsented_new = skip (default)
    assert "person6@mail.test" not in sandbox.members

    state = sandbox.handle.sandbox
    list_id = sandbox.handle.list_id
    simulate_unsubscribe(state, list_id, "person1@mail.test")  # the member did it themselves
    simulate_bounce(state, list_id, "person2@mail.test")
    source.update(1, first_name="Still here")  # consent still true: must not re-subscribe
    source.update(2, first_name="Bounced")
    source.update(3, consent=False)  # withdrawn -> the bridge unsubscribes
    second = await push(settings)
    members = sandbox.members
    assert members["person1@mail.test"].status == "unsubscribed"
    assert members["person1@mail.test"].merge_fields["FNAME"] == "Still here"
    assert members["person2@mail.test"].status == "cleaned"
    assert members["person3@mail.test"].status == "unsubscribed"
    assert second.consent["unsubscribe"] == 1
    # Consent stayed yes: no decision of the bridge to record (issue 11: a "kept" entry is
    # written when consent turns to yes, not on every run); the provider-side changes
    # themselves are in the ledger, seen by the push's status refresh.
    assert second.consent["kept"] == 0

    source.update(1, consent=False)
    await push(settings)
    assert sandbox.members["person1@mail.test"].status == "unsubscribed"
    source.update(1, consent=True)  # re-consent after a self-unsubscribe: re-confirmation
    source.update(3, consent=True)  # re-consent after the bridge's unsubscribe: subscribed
    third = await push(settings)
    assert sandbox.members["person1@mail.test"].status == "pending"
    assert sandbox.members["person3@mail.test"].status == "subscribed"
    assert third.consent["reconfirm"] == 1
    assert third.consent["resubscribe"] == 1

    ledger = state_rows(
        settings,
        "SELECT source_key, old_status, new_status, origin, run_id FROM cb_consent_ledger "
        "ORDER BY id",
    )
    changes = [(k, old, new) for k, old, new, _, _ in ledger]
    assert ("3", "subscribed", "unsubscribed") in changes
    assert ("3", "unsubscribed", "subscribed") in changes
    assert ("1", "unsubscribed", "pending") in changes
    assert ("1", "subscribed", "unsubscribed") in changes  # the member did it (refresh saw it)
    assert ("2", "subscribed", "cleaned") in changes
    assert all(run_id for *_, run_id in ledger)
    by_origin = {(k, old, new): origin for k, old, new, origin, _ in ledger}
    assert by_origin[("2", "subscribed", "cleaned")] == "pull"
    assert by_origin[("3", "subscribed", "unsubscribed")] == "push"
    assert len(changes) == len(set(changes))  # each change once
    assert ("1", None, "subscribed") in changes  # the first push created them
    blocked = {("1", "unsubscribed", "subscribed"), ("2", "cleaned", "subscribed")}
    assert not blocked & set(changes)


async def test_a_member_someone_else_archived_stays_archived(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = make_source(sqlite_url, rows=3)
    settings = push_settings(tmp_path, sqlite_url, sandbox)
    assert (await push(settings)).created == 3
    handle = sandbox.handle
    digest = hashlib.md5(b"person2@mail.test").hexdigest()
    async with httpx.AsyncClient(auth=("someone", handle.api_key)) as client:
        answer = await client.delete(f"{handle.base_url}/lists/{handle.list_id}/members/{digest}")
    assert answer.status_code == 204
    source.update(2, updated_at=source.tick())  # read again, content unchanged

    sandbox.log.clear()
    again = await push(settings)
    assert (again.read, again.skipped["left_alone"], again.writes) == (1, 1, 0)
    assert sandbox.log.writes() == []

    source.update(2, first_name="Changed")  # now it would be sent: the rules leave it archived
    changed = await push(settings)
    assert changed.writes == 0
    assert sandbox.members["person2@mail.test"].status == "archived"
    # The archive is in the ledger once (the refresh saw it); consent never changed, so no
    # "kept" entry is added on any run (issue 11, defect 6).
    assert changed.consent["kept"] == 0
    ledger = state_rows(
        settings,
        "SELECT old_status, new_status, origin FROM cb_consent_ledger WHERE source_key = '2' "
        "ORDER BY id",
    )
    assert [tuple(row) for row in ledger] == [
        (None, "subscribed", "push"),
        ("subscribed", "archived", "pull"),
    ]


async def test_unconsented_new_contacts_per_setting(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = make_source(sqlite_url, rows=3)
    source.update(1, consent=False)
    source.update(2, consent=None)
    settings = push_settings(tmp_path, sqlite_url, sandbox, unconsented_new="transactional")
    await push(settings)
    statuses = {e: m.status for e, m in sandbox.members.items()}
    assert statuses == {
        "person1@mail.test": "transactional",
        "person2@mail.test": "transactional",
        "person3@mail.test": "subscribed",
    }


async def test_double_opt_in_adds_new_contacts_as_pending(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    make_source(sqlite_url, rows=2)
    settings = push_settings(tmp_path, sqlite_url, sandbox, double_opt_in=True)
    summary = await push(settings)
    assert {m.status for m in sandbox.members.values()} == {"pending"}
    assert summary.consent["confirm_new"] == 2


async def test_dry_run_sends_nothing_and_reports_consent_effects(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = make_source(sqlite_url, rows=20)
    settings = push_settings(tmp_path, sqlite_url, sandbox, mode="mirror")
    await push(settings)
    simulate_unsubscribe(sandbox.handle.sandbox, sandbox.handle.list_id, "person1@mail.test")
    source.update(1, consent=False)
    await push(settings)
    source.update(1, consent=True)
    source.update(2, consent=False)
    source.delete(3)
    source.delete(4)
    source.insert([{"id": 50}])
    before = state_rows(settings, "SELECT COUNT(*) FROM cb_consent_ledger")[0][0]
    sandbox.log.clear()
    dry = await push(settings, dry_run=True)
    assert sandbox.log.writes() == []
    assert dry.consent["reconfirm"] == 1
    assert dry.consent["unsubscribe"] == 1
    assert dry.archived == 2
    assert dry.created == 1
    text = dry.consent_sentence()
    assert "would ask re-confirmation of 1" in text
    assert "would archive 2" in text
    assert "would re-subscribe 0" in text
    assert state_rows(settings, "SELECT COUNT(*) FROM cb_consent_ledger")[0][0] == before
    real = await push(settings)
    assert (real.archived, real.created) == (2, 1)


async def test_mirror_archives_only_managed_contacts(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    from campaign_bridge.sandbox.mailchimp.control import seed

    seed(
        sandbox.handle.sandbox,
        {
            "lists": [
                {
                    "id": sandbox.handle.list_id,
                    "members": [{"email_address": "webform@mail.test", "status": "subscribed"}],
                }
            ]
        },
    )
    source = make_source(database_url, rows=10)
    settings = push_settings(tmp_path, database_url, sandbox, mode="mirror")
    await push(settings)
    for key in (2, 5, 9):
        source.delete(key)
    summary = await push(settings)
    assert summary.archived == 3
    statuses = {e: m.status for e, m in sandbox.members.items()}
    assert [e for e, s in statuses.items() if s == "archived"] == [
        "person2@mail.test",
        "person5@mail.test",
        "person9@mail.test",
    ] or sorted(e for e, s in statuses.items() if s == "archived") == [
        "person2@mail.test",
        "person5@mail.test",
        "person9@mail.test",
    ]
    assert statuses["webform@mail.test"] == "subscribed"  # never anyone else's
    sandbox.log.clear()
    assert (await push(settings)).archived == 0
    assert sandbox.log.writes() == []


async def test_update_only_mode_never_creates(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    from campaign_bridge.sandbox.mailchimp.control import seed

    seed(
        sandbox.handle.sandbox,
        {
            "lists": [
                {
                    "id": sandbox.handle.list_id,
                    "members": [{"email_address": "person2@mail.test", "status": "subscribed"}],
                }
            ]
        },
    )
    make_source(sqlite_url, rows=3)
    settings = push_settings(tmp_path, sqlite_url, sandbox, mode="update-only")
    summary = await push(settings)
    assert set(sandbox.members) == {"person2@mail.test"}
    assert sandbox.members["person2@mail.test"].merge_fields["FNAME"] == "Person 2"
    assert summary.skipped["not_at_provider"] == 2


async def test_429_storms_and_5xx_faults_converge(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    make_source(sqlite_url, rows=300)
    limits = sandbox.handle.sandbox.limits
    limits.faults.append(FaultRule(kind="429", count=15))
    limits.faults.append(FaultRule(kind="503", method="POST", count=None, rate=0.3))
    limits.faults.append(FaultRule(kind="500", method="PUT", count=None, rate=0.3))
    settings = push_settings(tmp_path, sqlite_url, sandbox)
    provider = MailchimpProvider(
        settings.syncs["crm"].destination,
        retry=RetryPolicy(max_retries=30, base_delay=0.01, max_delay=0.05),
    )
    try:
        summary = await run_push(settings, "crm", provider=provider)
    finally:
        await provider.aclose()
    assert summary.error is None
    assert summary.created + summary.updated + summary.retry_later == 300
    limits.faults.clear()
    if summary.retry_later:
        await push(settings)
    assert len(sandbox.members) == 300
    assert {m.status for m in sandbox.members.values()} == {"subscribed"}
    assert sum(rule.fired for rule in limits.faults) == 0  # cleared; earlier ones fired
    rows = state_rows(settings, "SELECT COUNT(*) FROM cb_contact_state")[0][0]
    assert rows == 300


async def test_configuration_errors_stop_before_any_data_moves(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    make_source(sqlite_url, rows=5)
    settings = push_settings(
        tmp_path,
        sqlite_url,
        sandbox,
        fields={"FNAME": "first_name", "NOPE": "nick", "AGE": "no_such_column"},
    )
    sandbox.log.clear()
    summary = await run_push(settings, "crm")
    assert summary.status == "failed"
    assert summary.exit_code == 2
    assert summary.error is not None
    assert "NOPE" in summary.error
    assert sandbox.log.writes() == []
    run = state_rows(settings, "SELECT status, error_summary FROM cb_sync_runs")
    assert run[0][0] == "failed"
    assert "NOPE" in run[0][1]


async def test_state_store_on_a_server_database(
    postgresql_url: str, sqlite_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    migrations.upgrade(postgresql_url)
    make_source(sqlite_url, rows=20)
    settings = push_settings(tmp_path, sqlite_url, sandbox, state_url=postgresql_url)
    assert (await push(settings)).created == 20
    assert (await push(settings)).writes == 0


async def test_interests_language_and_gdpr_permissions(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    from campaign_bridge.sandbox.mailchimp.control import seed

    seed(
        sandbox.handle.sandbox,
        {
            "lists": [
                {
                    "id": sandbox.handle.list_id,
                    "interest_categories": [{"title": "Topics", "interests": ["News"]}],
                    "permissions": [{"id": "perm_email", "text": "Email"}],
                    "members": [{"email_address": "existing@mail.test", "status": "subscribed"}],
                }
            ]
        },
    )
    lst = sandbox.handle.sandbox.lists[sandbox.handle.list_id]
    interest_id = next(iter(lst.interests))
    source = make_source(sqlite_url, rows=4)
    source.update(1, vip=True, tag_list="fr")
    settings = push_settings(
        tmp_path,
        sqlite_url,
        sandbox,
        interests={interest_id: "vip"},
        marketing_permissions={"perm_email": "consent"},
        language_column="tag_list",
        tags={},
        tags_column=None,
    )
    await push(settings)
    first = sandbox.members["person1@mail.test"]
    assert first.interests[interest_id] is True
    assert first.language == "fr"
    assert first.marketing_permissions.get("perm_email") is True
    assert sandbox.members["person2@mail.test"].interests[interest_id] is False
