"""`forget`: the person is gone from the provider and from every table of the state store."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaign_bridge import landing, privacy
from campaign_bridge.cli import run
from campaign_bridge.config import Settings, load_settings
from campaign_bridge.db import create_engine
from campaign_bridge.erasure import ERASE_RULES, NO_PERSONAL_DATA
from campaign_bridge.erasure_bulk import forget_many
from campaign_bridge.migrations import target_metadata
from campaign_bridge.push import PushSummary, run_push
from campaign_bridge.store import ConsentChange, Rejection, StateStore
from campaign_bridge.webhook_queue import mark_events
from tests.integration.privacy.conftest import every_value, migrated, write_config
from tests.integration.push.conftest import Sandbox, make_source
from tests.webhook_rows import store_event


def push(settings: Settings, *, full: bool = False) -> PushSummary:
    """One push, run as the CLI runs it (these tests also call the CLI, which owns its loop);
    ``full`` re-reads every source row (``--retry-rejected`` ignores the incremental cursor)."""
    return asyncio.run(run_push(settings, "crm", retry_rejected=full))


ADDRESS = "Ada.Lovelace@Mail.test"
LOWER = ADDRESS.lower()
MD5 = hashlib.md5(LOWER.encode(), usedforsecurity=False).hexdigest()


def traces(url: str) -> list[tuple[str, str, str]]:
    """(table, column, value) wherever the address, its lowercase form or its md5 remains."""
    return [
        (table, column, text)
        for table, values in every_value(url).items()
        for column, text in values
        if LOWER in text.lower() or MD5 in text.lower() or ADDRESS in text
    ]


def test_every_table_has_an_erasure_rule_or_holds_no_personal_data() -> None:
    tables = {name for name in target_metadata().tables if name.startswith("cb_")}
    assert tables == set(ERASE_RULES) | NO_PERSONAL_DATA, (
        "a cb_* table has no erasure rule: add one to erasure.ERASE_RULES (or, if it can never "
        "hold a person's data, to NO_PERSONAL_DATA) and say so in docs/privacy.md"
    )


def _leave_traces(url: str, list_id: str) -> None:
    """Put the person in every table the bridge writes outside a push."""
    now = datetime.now(UTC)
    with StateStore(url) as store:
        run_id = store.start_run("crm", "pull")
        store.finish_run(run_id, "failed", {}, f"Mailchimp refused {ADDRESS}: no")
        with store.engine.begin() as conn:  # as a version that kept addresses wrote it
            conn.execute(
                sa.text("UPDATE cb_sync_runs SET error_summary = :s WHERE id = :i"),
                {"s": f"Mailchimp refused {ADDRESS}: no", "i": run_id},
            )
        event_id = store_event(
            store.engine,
            "k" * 64,
            "unsubscribe",
            list_id,
            json.dumps({"type": "unsubscribe", "data": {"email": ADDRESS, "list_id": list_id}}),
            fired_at=now,
        )
        mark_events(store.engine, {}, {event_id: f"cannot apply for {ADDRESS}"})
        store_event(  # an encoded copy, as a raw form body would hold it
            store.engine,
            "j" * 64,
            "profile",
            list_id,
            "data%5Bemail%5D=ada.lovelace%40mail.test",
            fired_at=now,
        )
        store.record_rejections(
            run_id, [Rejection("crm", "99", MD5, None, "invalid_member", f"bad: {ADDRESS}")]
        )
        store.append_consent_changes(
            [
                ConsentChange(
                    "crm",
                    "mailchimp",
                    MD5,
                    "unsubscribed",
                    "webhook",
                    now,
                    "subscribed",
                    "1",
                    f"webhook for {ADDRESS}",
                )
            ]
        )
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            landing.insert_activity(
                conn,
                [
                    (
                        landing.event_id("mailchimp", "c1", MD5, "open", now, "", 0),
                        "mailchimp",
                        "c1",
                        MD5,
                        "open",
                        now.replace(microsecond=0),
                        "",
                        0,
                        ADDRESS,
                        None,
                        None,
                        None,
                        "10.0.0.1",
                        now,
                    )
                ],
            )
            conn.execute(
                privacy.marketing_permissions.insert().values(
                    provider="mailchimp",
                    list_id=list_id,
                    member_id=MD5,
                    permission_id="p1",
                    text="Email",
                    enabled=True,
                    updated_at=now,
                )
            )
    finally:
        engine.dispose()


def test_forget_removes_every_trace_and_push_never_re_adds_without_fresh_consent(
    database_url: str, tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    state_url = migrated(database_url)
    source_url = f"sqlite:///{(tmp_path / 'source.db').as_posix()}"
    source = make_source(source_url, rows=3)
    source.update(1, email=ADDRESS)
    config = write_config(
        tmp_path / "cb.toml", state_url=state_url, source_url=source_url, box=sandbox
    )
    settings = load_settings(config, environ={})
    first = push(settings)
    assert first.error is None
    assert first.created == 3
    _leave_traces(state_url, sandbox.handle.list_id)
    assert {table for table, _, _ in traces(state_url)} >= {
        "cb_contact_state",
        "cb_member_status",
        "cb_email_activity",
        "cb_consent_ledger",
        "cb_rejected_records",
        "cb_webhook_events",
        "cb_sync_runs",
        "cb_marketing_permissions",
    }

    assert run(["-c", str(config), "forget", "ada.lovelace@mail.test", "--yes", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["provider"] == {f"crm ({sandbox.handle.list_id})": "deleted"}
    assert report["removed"]["cb_contact_state"] == 1

    assert traces(state_url) == []
    lst = sandbox.handle.sandbox.lists[sandbox.handle.list_id]
    assert MD5 not in lst.members
    assert MD5 in lst.forgotten
    assert set(sandbox.members) == {"person2@mail.test", "person3@mail.test"}
    engine = create_engine(state_url)
    with engine.connect() as conn:
        ledger = conn.execute(
            sa.text(
                "SELECT email_hash, new_status, origin, source_key FROM cb_consent_ledger"
                " WHERE new_status = 'forgotten'"
            )
        ).all()
        tombstones = conn.execute(sa.text("SELECT subject_hash, origin FROM cb_erasures")).all()
        kept = conn.execute(sa.text("SELECT count(*) FROM cb_contact_state")).scalar()
    engine.dispose()
    assert len(ledger) == 1
    assert ledger[0][1:] == ("forgotten", "erasure", None)
    assert len(ledger[0][0]) == 64
    assert tombstones == [(ledger[0][0], "cli")]
    assert kept == 2  # the others are untouched

    # The row is still in the source, unchanged: a push (even re-reading everything) skips it.
    sandbox.log.clear()
    again = push(settings, full=True)
    assert again.error is None
    assert again.skipped["erased"] == 1
    assert sandbox.log.writes() == []
    assert traces(state_url) == []

    # Fresh consent (consent true, updated after the erasure): the push tries, Mailchimp refuses
    # to re-add a permanently deleted address, and the record is skipped with its reason.
    source.update(1, consent=True, updated_at=datetime.now(UTC).replace(tzinfo=None))
    fresh = push(settings)
    assert fresh.status == "succeeded"
    assert fresh.rejected_total == 0
    assert fresh.skipped["forgotten_at_provider"] == 1
    assert MD5 not in lst.members
    assert traces(state_url) == []
    later = push(settings, full=True)  # ... and is not asked again
    assert later.skipped["erased"] == 1


def test_forget_by_source_key_and_unknown_key(
    sqlite_url: str,
    tmp_path: Path,
    sandbox: Sandbox,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source_url = f"sqlite:///{(tmp_path / 'source.db').as_posix()}"
    make_source(source_url, rows=2)
    config = write_config(
        tmp_path / "cb.toml", state_url=migrated(sqlite_url), source_url=source_url, box=sandbox
    )
    assert run(["-c", str(config), "push"]) == 0
    capsys.readouterr()
    # --dry-run and a declined confirmation change nothing.
    assert run(["-c", str(config), "forget", "person2@mail.test", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["provider"] == {
        f"crm ({sandbox.handle.list_id})": "would delete permanently"
    }
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert run(["-c", str(config), "forget", "person2@mail.test"]) != 0
    assert set(sandbox.members) == {"person1@mail.test", "person2@mail.test"}
    assert "Permanently delete" in capsys.readouterr().out
    assert run(["-c", str(config), "forget", "2", "crm", "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"]["cb_member_status"] == 1
    assert set(sandbox.members) == {"person1@mail.test"}
    assert run(["-c", str(config), "forget", "no-such-key", "--yes"]) == 2
    assert "no contact with source key 'no-such-key'" in capsys.readouterr().err


def test_forget_many_gives_the_same_result_in_batches(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    state_url = migrated(database_url)
    source_url = f"sqlite:///{(tmp_path / 'source.db').as_posix()}"
    source = make_source(source_url, rows=4)
    source.update(1, email=ADDRESS)
    config = write_config(
        tmp_path / "cb.toml", state_url=state_url, source_url=source_url, box=sandbox
    )
    settings = load_settings(config, environ={})
    assert push(settings).created == 4
    _leave_traces(state_url, sandbox.handle.list_id)

    report = asyncio.run(forget_many(settings, [ADDRESS, "PERSON2@mail.test"], batch=1))
    assert report.provider == {f"crm ({sandbox.handle.list_id}): deleted": "2"}
    assert report.removed["cb_contact_state"] == 2
    assert report.removed["cb_webhook_events"] == 2
    assert traces(state_url) == []
    assert set(sandbox.members) == {"person3@mail.test", "person4@mail.test"}
    engine = create_engine(state_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM cb_erasures")).scalar() == 2
    engine.dispose()
