"""`campaign-bridge pull` as a user runs it: summary, exit codes, messages."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import PullEnv
from .test_pull_kill import CLI, cli_env, write_config


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_pull_cli_summary_and_exit_codes(pull_env: PullEnv, tmp_path: Path) -> None:
    env = pull_env
    env.send_campaign(51)
    config = tmp_path / "campaign-bridge.toml"
    write_config(env, config)

    ok = subprocess.run(
        [str(CLI), "-c", str(config), "pull", "--json"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    [summary] = json.loads(ok.stdout)
    assert summary["sync_name"] == "crm"
    assert summary["status"] == "succeeded"
    assert summary["campaigns_new"] == 1
    assert summary["activity_added"] > 0

    text = subprocess.run(
        [str(CLI), "-c", str(config), "pull", "crm"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert text.returncode == 0, text.stderr[-2000:]
    assert "pull crm: succeeded" in text.stdout
    assert "activity added\t0" in text.stdout  # plain text when not on a terminal

    # a write-back column that does not exist: configuration error, exit 2, every problem named
    broken = config.read_text().replace('consent_column = "consent"', 'consent_column = "nope"')
    broken = broken.replace('status_column = "mc_status"', 'status_column = "nope2"')
    config.write_text(broken)
    bad = subprocess.run(
        [str(CLI), "-c", str(config), "pull", "crm"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2
    assert "nope" in bad.stderr
    assert "nope2" in bad.stderr

    # the provider refuses the key: the run fails, exit 1, recorded as failed
    refused = config.read_text().replace(env.sandbox.api_key, "0" * 32 + "-us6")
    refused = refused.replace('"nope"', '"consent"').replace('"nope2"', '"mc_status"')
    config.write_text(refused)
    failed = subprocess.run(
        [str(CLI), "-c", str(config), "pull", "crm"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert "error:" in failed.stderr
    assert env.sandbox.api_key not in failed.stderr
    statuses = env.rows("SELECT status FROM cb_sync_runs ORDER BY started_at")
    assert statuses[-1] == ("failed",)
