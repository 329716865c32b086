"""Retention: the purge deletes exactly what is past each period, in bounded transactions."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaign_bridge import landing, state
from campaign_bridge.cli import run
from campaign_bridge.config import RetentionConfig, Settings
from campaign_bridge.db import create_engine
from campaign_bridge.doctor import check_retention
from campaign_bridge.retention import JOB_NAME, past_retention, purge
from campaign_bridge.server import create_app
from tests.integration.privacy.conftest import migrated

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=800)
RECENT = NOW - timedelta(days=3)


def _fill(url: str, tag: str = "a") -> None:
    """1,050 old and 40 recent activity rows over 30 members; a mix of every other table."""
    engine = create_engine(url)
    rows = []
    for i in range(1090):
        when = (OLD if i < 1050 else RECENT) + timedelta(seconds=i)
        member = f"{i % 30:032x}"
        event = landing.event_id("mailchimp", "c1", member, "open", when, "", i)
        rows.append(
            (
                event,
                "mailchimp",
                "c1",
                member,
                "open",
                when,
                "",
                i % 7,
                f"p{i % 30}@x.test",
                None,
                None,
                None,
                None,
                when,
            )
        )
    old_run = {"status": "succeeded", "finished_at": OLD, "started_at": OLD}
    with engine.begin() as conn:
        landing.insert_activity(conn, rows)
        conn.execute(
            state.sync_runs.insert(),
            [
                {"id": f"run-{tag}{i}", "sync_name": "crm", "direction": "push", "counts": {}}
                | values
                for i, values in enumerate(
                    [
                        old_run,
                        {
                            **old_run,
                            "status": "running",
                            "finished_at": None,
                        },  # still running: kept
                        {**old_run, "started_at": RECENT},
                    ]
                )
            ],
        )
        conn.execute(
            state.webhook_events.insert(),
            [
                {
                    "provider": "mailchimp",
                    "dedupe_key": f"{tag}{i:063x}",
                    "event_type": "profile",
                    "received_at": when,
                    "payload": "{}",
                    "applied_at": applied,
                }
                for i, (when, applied) in enumerate(
                    [(OLD, OLD), (OLD, None), (RECENT, RECENT)]  # the unapplied one is kept
                )
            ],
        )
        conn.execute(
            state.rejected_records.insert(),
            [
                {
                    "sync_name": "crm",
                    "source_key": tag + key,
                    "reason_code": "x",
                    "message": "m",
                    "attempts": 1,
                    "first_seen": OLD,
                    "last_seen": seen,
                }
                for key, seen in (("1", OLD), ("2", RECENT))
            ],
        )
    engine.dispose()


def _count(url: str, table: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def test_purge_deletes_what_is_past_retention_in_bounded_batches(database_url: str) -> None:
    url = migrated(database_url)
    _fill(url)
    retention = RetentionConfig(
        activity_days=400, webhook_days=30, rejected_days=90, runs_days=180, batch_rows=100
    )
    engine = create_engine(url)
    try:
        expected = {
            "cb_email_activity": 1050,
            "cb_webhook_events": 1,
            "cb_rejected_records": 1,
            "cb_sync_runs": 1,
        }
        assert past_retention(engine, retention, NOW) == expected
        results = {r.table: r for r in purge(engine, retention, now=NOW)}
        assert {t: r.deleted for t, r in results.items()} == expected
        assert results["cb_email_activity"].transactions == 11  # 1,050 rows, 100 at a time
        assert past_retention(engine, retention, NOW) == dict.fromkeys(expected, 0)
        assert purge(engine, retention, now=NOW)[0].deleted == 0  # nothing left to do
    finally:
        engine.dispose()
    assert _count(url, "cb_email_activity") == 40
    assert _count(url, "cb_webhook_events") == 2
    assert _count(url, "cb_sync_runs") == 2
    assert _count(url, "cb_rejected_records") == 1

    # 0 keeps a table forever.
    forever = RetentionConfig(activity_days=0, webhook_days=0, rejected_days=0, runs_days=0)
    engine = create_engine(url)
    try:
        assert purge(engine, forever, now=NOW + timedelta(days=3650)) == []
    finally:
        engine.dispose()


def test_purge_command_doctor_and_the_scheduled_job(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = migrated(sqlite_url)
    _fill(url)
    config = tmp_path / "cb.toml"
    config.write_text(f'state_url = "{url}"\n[retention]\nactivity_days = 400\n', encoding="utf-8")

    assert run(["-c", str(config), "purge", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cb_email_activity"] == 1050
    settings = Settings.model_validate({"state_url": url, "retention": {"activity_days": 400}})
    warned = check_retention(settings)
    assert warned.status.value == "warn"
    assert "cb_email_activity 1,050" in warned.message
    assert run(["-c", str(config), "purge", "--json"]) == 0
    deleted = {r["table"]: r["deleted"] for r in json.loads(capsys.readouterr().out)}
    assert deleted["cb_email_activity"] == 1050
    assert check_retention(settings).status.value == "ok"

    # serve --schedule: the purge is one of the scheduler's jobs, run by the wrapped runner.
    app = create_app(settings, schedule=True, checks={})
    scheduler = app.state.bridge.scheduler
    assert [job.sync_name for job in scheduler.jobs] == [JOB_NAME]
    assert scheduler.jobs[0].next_due > datetime.now(UTC)  # at its next tick, not at start-up
    _fill(url, "b")
    summary = asyncio.run(scheduler.runner(JOB_NAME, "purge"))
    assert summary.counts()["cb_email_activity"] == 1050
