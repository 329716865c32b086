"""The installed CLI as a new user runs it: help, version, init, migrate, config validate/show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from campaign_bridge import __version__, migrations

CLI = Path(sys.executable).with_name("campaign-bridge")
KEY = "0123456789abcdef0123456789abcdef-us6"


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    environ["COLUMNS"] = "200"  # help text on one line per option, whatever the terminal
    environ.update(env)
    return subprocess.run(
        [str(CLI), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where `campaign-bridge init` has run."""
    directory = tmp_path_factory.mktemp("project")
    result = run(directory, "init")
    assert result.returncode == 0, result.stderr
    assert "wrote campaign-bridge.toml" in result.stdout
    assert "state store ready: sqlite:///.campaign-bridge/state.db" in result.stdout
    return directory


def test_cli_is_installed() -> None:
    assert CLI.exists(), f"{CLI} missing: install the package into the venv"


def test_help_reads_like_a_real_tool(tmp_path: Path) -> None:
    result = run(tmp_path, "--help")
    assert result.returncode == 0
    out = result.stdout
    for word in ("init", "migrate", "config", "sandbox", "webhooks", "--config", "--log-format"):
        assert word in out
    assert "Exit codes: 0 ok, 1 a run failed, 2 usage or configuration error" in out
    sub_help = run(tmp_path, "migrate", "-h")
    assert sub_help.returncode == 0, sub_help.stderr
    assert "upgrade (default), downgrade or current" in sub_help.stdout
    assert "Examples" in sub_help.stdout


def test_unknown_commands_are_usage_errors(tmp_path: Path) -> None:
    result = run(tmp_path, "frobnicate")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_version(tmp_path: Path) -> None:
    result = run(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"campaign-bridge {__version__}"


def test_init_creates_config_and_state_store(project: Path) -> None:
    starter = (project / "campaign-bridge.toml").read_text(encoding="utf-8")
    assert 'base_url = "http://127.0.0.1:8089/3.0"' in starter  # the bundled sandbox
    assert "@API_KEY@" not in starter
    assert (project / ".campaign-bridge" / "state.db").is_file()
    again = run(project, "init")
    assert again.returncode == 2
    assert "campaign-bridge.toml already exists; use --force" in again.stderr


def test_migrate_current_downgrade_upgrade(project: Path) -> None:
    head = migrations.head()
    current = run(project, "migrate", "current")
    assert current.returncode == 0, current.stderr
    assert f"revision {head} (head {head}, up to date)" in current.stdout
    assert "sqlite:///.campaign-bridge/state.db" in current.stdout

    down = run(project, "migrate", "downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert f"downgrade {head} -> none" in down.stdout
    behind = json.loads(run(project, "migrate", "current", "--json").stdout)
    assert behind == {
        "state_url": "sqlite:///.campaign-bridge/state.db",
        "current": None,
        "head": head,
        "up_to_date": False,
    }

    up = run(project, "migrate", "upgrade")
    assert up.returncode == 0, up.stderr
    assert f"upgrade none -> {head}" in up.stdout

    missing_revision = run(project, "migrate", "downgrade")
    assert missing_revision.returncode == 2
    assert "needs a REVISION" in missing_revision.stderr


def test_migrate_creates_the_data_dir_from_the_environment(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate", CAMPAIGN_BRIDGE_DATA_DIR="var/state")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "state" / "state.db").is_file()


def test_config_validate_on_the_starter_file(project: Path) -> None:
    result = run(project, "config", "validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "configuration OK: 1 sync (campaign-bridge.toml)"


BROKEN = """\
log_level = "chatty"

[server]
port = 70000

[syncs.customers.source]
url = "sqlite:///demo.db"

[syncs.customers.destination]
api_key = "not-a-mailchimp-key"
list_id = "abc"

[syncs.customers.schedule]
push = "whenever"
"""


def test_config_validate_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text(BROKEN, encoding="utf-8")
    result = run(
        tmp_path,
        "--config",
        "broken.toml",
        "config",
        "validate",
        CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__MODE="sideways",
    )
    assert result.returncode == 2
    assert result.stdout == ""
    err = result.stderr
    assert "invalid configuration in broken.toml: 6 problems" in err
    assert "log_level: unknown log level 'chatty'" in err
    assert "server.port: got 70000 (expected less than or equal to 65535)" in err
    assert "syncs.customers.source.table: neither source.query nor source.table is set" in err
    assert "syncs.customers.destination.api_key: does not look like a Mailchimp API key" in err
    assert "syncs.customers.schedule.push: schedule 'whenever'" in err
    assert "syncs.customers.mode: got 'sideways'" in err
    assert "[from env:CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__MODE]" in err
    assert "not-a-mailchimp-key" not in err

    as_json = run(tmp_path, "-c", "broken.toml", "config", "validate", "--json")
    assert as_json.returncode == 2
    problems = json.loads(as_json.stdout)["problems"]
    assert {p["location"] for p in problems} == {
        "log_level",
        "server.port",
        "syncs.customers.source.table",
        "syncs.customers.destination.api_key",
        "syncs.customers.schedule.push",
    }


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[server]\nport = = 1\n", encoding="utf-8")
    syntax = run(tmp_path, "-c", "bad.toml", "config", "validate")
    assert syntax.returncode == 2
    assert "bad.toml:2:" in syntax.stderr
    assert "TOML syntax error" in syntax.stderr
    missing = run(tmp_path, "config", "validate", CAMPAIGN_BRIDGE_CONFIG="nowhere.toml")
    assert missing.returncode == 2
    assert "nowhere.toml: the configuration file does not exist" in missing.stderr


def test_config_show_masks_secrets_and_names_sources(project: Path) -> None:
    key_file = project / "api_key"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    env = {
        "CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__DESTINATION__API_KEY_FILE": str(key_file),
        "CAMPAIGN_BRIDGE_STATE_URL": "postgresql://bridge:hunter2-pw@db.internal/bridge",
    }
    result = run(project, "--log-level", "debug", "config", "show", **env)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert KEY not in output
    assert "hunter2-pw" not in output
    lines = {line.split("\t")[0]: line.split("\t")[1:] for line in result.stdout.splitlines()}
    assert lines["syncs.customers.destination.api_key"] == [
        "********",
        "env-file:CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__DESTINATION__API_KEY_FILE",
    ]
    assert lines["state_url"] == [
        "postgresql://bridge:***@db.internal/bridge",
        "env:CAMPAIGN_BRIDGE_STATE_URL",
    ]
    assert lines["log_level"] == ["DEBUG", "cli"]
    assert lines["syncs.customers.source.table"] == ["contacts", "file:campaign-bridge.toml"]
    assert lines["server.max_body_bytes"] == ["1048576", "default"]

    as_json = json.loads(run(project, "config", "show", "--json", **env).stdout)
    values = {v["key"]: v for v in as_json["values"]}
    assert values["syncs.customers.destination.api_key"]["value"] == "********"
    assert as_json["settings"]["syncs"]["customers"]["destination"]["api_key"] == "********"
    assert as_json["config_file"] == "campaign-bridge.toml"


def test_unreachable_state_store_fails_with_exit_1_and_no_password(tmp_path: Path) -> None:
    url = "postgresql://bridge:hunter2-pw@127.0.0.1:9/bridge"  # port 9: nothing listens
    result = run(tmp_path, "migrate", "current", CAMPAIGN_BRIDGE_STATE_URL=url)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "127.0.0.1" in result.stderr
    assert "hunter2-pw" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_logs_are_json_lines_on_stderr_when_not_a_terminal(project: Path) -> None:
    result = run(project, "config", "validate", CAMPAIGN_BRIDGE_NOT_A_SETTING="1")
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(text) for text in result.stderr.splitlines()]
    assert line["level"] == "warning"
    assert line["logger"] == "campaign_bridge.cli"
    assert line["message"] == (
        "CAMPAIGN_BRIDGE_NOT_A_SETTING is not a campaign-bridge setting; it was ignored"
    )
    assert result.stdout.startswith("configuration OK")
