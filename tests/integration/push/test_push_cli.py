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
