"""kill -9 in the middle of a push, then a rerun: exactly the expected provider state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaign_bridge.db import create_engine
from campaign_bridge.push import run_push
from tests.integration.push.conftest import Sandbox, make_source, push_settings

ROWS = 2500
CLI = Path(sys.executable).with_name("campaign-bridge")


def write_config(path: Path, source_url: str, state_url: str, sandbox: Sandbox) -> None:
    handle = sandbox.handle
    path.write_text(
        f"""
state_url = "{state_url}"
[syncs.crm]
fields = {{ FNAME = "first_name" }}
[syncs.crm.source]
url = "{source_url}"
table = "contacts"
consent_column = "consent"
chunk_size = 500
[syncs.crm.destination]
api_key = "{handle.api_key}"
list_id = "{handle.list_id}"
base_url = "{handle.base_url}"
concurrency = 1
"""
    )


def confirmed(state_url: str) -> int:
    engine = create_engine(state_url)
    try:
        with engine.connect() as conn:
            try:
                return int(
                    conn.execute(sa.text("SELECT COUNT(*) FROM cb_contact_state")).scalar_one()
                )
            except sa.exc.OperationalError:
                return 0
    finally:
        engine.dispose()


def kill_mid_run(config: Path, state_url: str, *, at_least: int) -> None:
    """Run the CLI; SIGKILL it once ``at_least`` contacts are confirmed in the state store."""
    proc = subprocess.Popen(
        [str(CLI), "-c", str(config), "--log-format", "json", "push", "crm"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")},
    )
    deadline = time.monotonic() + 60
    while confirmed(state_url) < at_least:
        assert proc.poll() is None, "the push finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.mark.anyio
async def test_kill_9_mid_run_then_resume(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    make_source(sqlite_url, rows=ROWS)
    state_url = f"sqlite:///{(tmp_path / 'state.db').as_posix()}"
    config = tmp_path / "campaign-bridge.toml"
    write_config(config, sqlite_url, state_url, sandbox)
    sandbox.handle.sandbox.limits.latency_per_item = 0.0008  # ~0.4 s per 500-member call

    kill_mid_run(config, state_url, at_least=1000)
    before_kill = confirmed(state_url)
    assert 1000 <= before_kill < ROWS
    at_provider = len(sandbox.members)
    assert at_provider >= before_kill  # the provider may have more: the slice in flight

    sandbox.handle.sandbox.limits.latency_per_item = 0.0
    sandbox.log.clear()
    settings = push_settings(
        tmp_path,
        sqlite_url,
        sandbox,
        state_url=state_url,
        fields={"FNAME": "first_name"},
        tags={},
        tags_column=None,
        source={"updated_at_column": None, "chunk_size": 500},
    )
    summary = await run_push(settings, "crm")
    assert summary.error is None
    assert summary.unchanged == before_kill  # confirmed work is not repeated
    assert summary.created + summary.updated == ROWS - before_kill
    assert summary.updated == at_provider - before_kill  # only the slice in flight is redone
    members = sandbox.members
    assert len(members) == ROWS
    assert {m.status for m in members.values()} == {"subscribed"}
    assert all(
        members[f"person{i}@mail.test"].merge_fields["FNAME"] == f"Person {i}"
        for i in range(1, ROWS + 1)
    )
    assert confirmed(state_url) == ROWS
    runs = create_engine(state_url)
    with runs.connect() as conn:
        statuses = [r[0] for r in conn.execute(sa.text("SELECT status FROM cb_sync_runs"))]
    runs.dispose()
    assert sorted(statuses) == ["running", "succeeded"]  # the killed run stays visible
    sandbox.log.clear()
    assert (await run_push(settings, "crm")).writes == 0


@pytest.mark.anyio
async def test_kill_9_loses_no_ledger_row_on_postgresql(
    postgresql_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    """Issue 11, defect 3: every member the killed run created has its ledger row after the
    rerun (written from the intent the run left), exactly once, and no member is created twice.
    """
    from campaign_bridge import migrations

    migrations.upgrade(postgresql_url)
    make_source(postgresql_url, rows=ROWS)
    config = tmp_path / "campaign-bridge.toml"
    write_config(config, postgresql_url, postgresql_url, sandbox)
    sandbox.handle.sandbox.limits.latency_per_item = 0.0008

    kill_mid_run(config, postgresql_url, at_least=1000)
    assert confirmed(postgresql_url) < ROWS
    at_provider = len(sandbox.members)

    sandbox.handle.sandbox.limits.latency_per_item = 0.0
    settings = push_settings(
        tmp_path,
        postgresql_url,
        sandbox,
        state_url=postgresql_url,
        fields={"FNAME": "first_name"},
        tags={},
        tags_column=None,
        source={"updated_at_column": None, "chunk_size": 500},
    )
    summary = await run_push(settings, "crm")
    assert summary.error is None
    assert len(sandbox.members) == ROWS
    engine = create_engine(postgresql_url)
    with engine.connect() as conn:
        created = conn.execute(
            sa.text(
                "SELECT email_hash, COUNT(*) FROM cb_consent_ledger "
                "WHERE old_status IS NULL GROUP BY email_hash"
            )
        ).all()
        intents = conn.execute(sa.text("SELECT COUNT(*) FROM cb_push_intents")).scalar_one()
        owned = conn.execute(
            sa.text("SELECT COUNT(*) FROM cb_contact_state WHERE managed")
        ).scalar_one()
    engine.dispose()
    assert len(created) == ROWS  # every creation, including the killed run's in-flight ones
    assert all(count == 1 for _, count in created)  # and none twice
    assert intents == 0
    assert owned == ROWS  # the bridge created them all, the killed run's too
    assert at_provider <= ROWS


def test_two_push_processes_at_once_on_postgresql(
    postgresql_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    """Issue 11, defect 7, with two real `campaign-bridge push` processes: one runs, the other
    exits 75 naming the holder; every contact is created once and the ledger is not doubled."""
    from campaign_bridge import migrations

    migrations.upgrade(postgresql_url)
    make_source(postgresql_url, rows=1000)
    config = tmp_path / "campaign-bridge.toml"
    write_config(config, postgresql_url, postgresql_url, sandbox)
    sandbox.handle.sandbox.limits.latency_per_item = 0.001  # ~0.5 s per call: they overlap
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    command = [str(CLI), "-c", str(config), "push", "crm"]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        results.append((proc.returncode, err.decode()))
    codes = sorted(code for code, _ in results)
    assert codes == [0, 75], results
    refused = next(err for code, err in results if code == 75)
    assert "sync 'crm' is already running" in refused
    assert "held by" in refused
    assert len(sandbox.members) == 1000
    engine = create_engine(postgresql_url)
    with engine.connect() as conn:
        created = conn.execute(
            sa.text("SELECT COUNT(*), COUNT(DISTINCT email_hash) FROM cb_consent_ledger")
        ).one()
        runs = conn.execute(sa.text("SELECT COUNT(*) FROM cb_sync_runs")).scalar_one()
    engine.dispose()
    assert tuple(created) == (1000, 1000)
    assert runs == 1  # the refused run started nothing
