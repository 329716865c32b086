"""Erasure requests from the source: a marker column (push carries them out) and a table of
requests (`forget --pending`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaign_bridge.cli import run
from campaign_bridge.config import load_settings
from campaign_bridge.db import create_engine
from campaign_bridge.push import run_push
from tests.integration.privacy.conftest import migrated, write_config
from tests.integration.push.conftest import Sandbox, make_source

ERASURE = """
[syncs.crm.erasure]
column = "erase_at"
column_type = "timestamp"
requests_table = "gdpr_requests"
"""


def md5(email: str) -> str:
    return hashlib.md5(email.encode(), usedforsecurity=False).hexdigest()


def tombstones(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT origin FROM cb_erasures ORDER BY origin"))
            return [row[0] for row in rows]
    finally:
        engine.dispose()


def test_marker_column_and_requests_table(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    state_url = migrated(sqlite_url)
    source_url = f"sqlite:///{(tmp_path / 'source.db').as_posix()}"
    source = make_source(source_url, rows=3)
    with source.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE contacts ADD COLUMN erase_at TIMESTAMP"))
        conn.execute(sa.text("CREATE TABLE gdpr_requests (email TEXT, requested_at TIMESTAMP)"))
    config = write_config(
        tmp_path / "cb.toml", state_url=state_url, source_url=source_url, box=sandbox, extra=ERASURE
    )
    assert run(["-c", str(config), "push"]) == 0
    assert len(sandbox.members) == 3
    capsys.readouterr()
    lst = sandbox.handle.sandbox.lists[sandbox.handle.list_id]

    # The marker column: the next push erases the person and never sends their row.
    with source.engine.begin() as conn:
        conn.execute(sa.text("UPDATE contacts SET erase_at = '2026-01-02 03:04:05' WHERE id = 2"))
    settings = load_settings(config, environ={})
    summary = asyncio.run(run_push(settings, "crm", retry_rejected=True))
    assert summary.error is None
    assert summary.skipped["erased_on_request"] == 1
    assert summary.skipped["erasure_requested"] == 1
    assert md5("person2@mail.test") in lst.forgotten
    assert tombstones(state_url) == ["source_column"]
    again = asyncio.run(run_push(settings, "crm", retry_rejected=True))
    assert "erased_on_request" not in again.skipped  # carried out once
    assert again.skipped["erasure_requested"] == 1

    # A table of requests: `forget --pending` carries out the new ones, once.
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
    with source.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO gdpr_requests VALUES ('Person3@Mail.test', :at)"), {"at": now}
        )
    assert run(["-c", str(config), "forget", "--pending", "--dry-run", "--json"]) == 0
    assert [r["dry_run"] for r in json.loads(capsys.readouterr().out)] == [True]
    assert md5("person3@mail.test") in lst.members
    assert run(["-c", str(config), "forget", "--pending", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert md5("person3@mail.test") in lst.forgotten
    assert tombstones(state_url) == ["request_table", "source_column"]
    assert run(["-c", str(config), "forget", "--pending", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert set(sandbox.members) == {"person1@mail.test"}
