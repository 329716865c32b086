"""`campaign-bridge push` at the command line: summary, JSON, exit codes, sync selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campaign_bridge.cli import run
from tests.integration.push.conftest import Sandbox, make_source


def write_config(path: Path, source_url: str, sandbox: Sandbox, *, fields: str) -> None:
    handle = sandbox.handle
    state = (path.parent / "state.db").as_posix()
    path.write_text(
        f"""
state_url = "sqlite:///{state}"
[syncs.crm]
fields = {{ {fields} }}
[syncs.crm.source]
url = "{source_url}"
table = "contacts"
consent_column = "consent"
[syncs.crm.destination]
api_key = "{handle.api_key}"
list_id = "{handle.list_id}"
base_url = "{handle.base_url}"
"""
    )


def test_push_json_dry_run_then_real(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    make_source(sqlite_url, rows=12)
    config = tmp_path / "campaign-bridge.toml"
    write_config(config, sqlite_url, sandbox, fields='FNAME = "first_name"')

    assert run(["-c", str(config), "push", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True
    assert dry["created"] == 12
    assert "would ask re-confirmation of 0" in dry["consent_effects"]
    assert sandbox.members == {}

    assert run(["-c", str(config), "push", "crm", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "created" in out
    assert "consent:" in out
    assert len(sandbox.members) == 5
    assert run(["-c", str(config), "push", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["created"] == 7


def test_push_configuration_error_exits_2(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    make_source(sqlite_url, rows=3)
    config = tmp_path / "campaign-bridge.toml"
    write_config(config, sqlite_url, sandbox, fields='NOPE = "first_name"')
    assert run(["-c", str(config), "push", "--json"]) == 2
    captured = capsys.readouterr()
    assert "NOPE" in captured.out + captured.err
    assert run(["-c", str(config), "push", "other"]) == 2
    assert sandbox.log.writes() == []


def test_push_and_pull_while_the_sync_is_locked_exit_75_or_wait(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11, defect 7, as docs/push.md documents it: a second run names the holder and
    exits 75 at once; `--wait SECONDS` waits for the lock instead."""
    import datetime as dt

    from campaign_bridge.store import StateStore

    make_source(sqlite_url, rows=3)
    config = tmp_path / "campaign-bridge.toml"
    write_config(config, sqlite_url, sandbox, fields='FNAME = "first_name"')
    assert run(["-c", str(config), "push", "crm"]) == 0  # creates the state store
    capsys.readouterr()
    store = StateStore(f"sqlite:///{(tmp_path / 'state.db').as_posix()}")
    try:
        assert store.try_acquire_lock("sync:crm", "elsewhere:4242:cafe", 2.0)
        started = dt.datetime.now(dt.UTC)
        assert run(["-c", str(config), "push", "crm"]) == 75
        assert run(["-c", str(config), "pull", "crm"]) == 75
        err = capsys.readouterr().err
        assert "sync 'crm' is already running" in err
        assert "held by elsewhere:4242:cafe" in err
        assert dt.datetime.now(dt.UTC) - started < dt.timedelta(seconds=2)  # promptly
        # The holder's lock expires after its TTL: a run that waits then goes ahead.
        assert run(["-c", str(config), "push", "crm", "--wait", "10"]) == 0
        assert run(["-c", str(config), "pull", "crm", "--wait", "10"]) == 0
    finally:
        store.close()
