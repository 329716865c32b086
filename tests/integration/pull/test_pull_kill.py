"""kill -9 of a `campaign-bridge pull` mid-run, then a second run: no gap, no duplicate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import PullEnv
from .test_pull_sandbox import expected_rows, landed_rows

CLI = Path(sys.executable).with_name("campaign-bridge")


def write_config(env: PullEnv, path: Path) -> None:
    mc = env.sandbox
    path.write_text(
        f"""
state_url = "{env.url}"
log_format = "json"

[syncs.crm.source]
url = "{env.url}"
table = "contacts"

[syncs.crm.destination]
api_key = "{mc.api_key}"
list_id = "{mc.list_id}"
base_url = "{mc.base_url}"

[syncs.crm.writeback]
table = "contacts"
key_column = "id"
status_column = "mc_status"
consent_column = "consent"
""",
        encoding="utf-8",
    )


def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_kill_9_mid_pull_then_resume(pull_env: PullEnv, tmp_path: Path) -> None:
    env = pull_env
    big = env.control(
        "POST",
        "/campaigns/seed",
        {"list_id": env.sandbox.list_id, "recipients": 12_000, "seed": 5, "rates": {"open": 0.6}},
    )["id"]
    env.control("POST", "/limits", {"latency": 0.25})
    config = tmp_path / "campaign-bridge.toml"
    write_config(env, config)
    command = [str(CLI), "-c", str(config), "pull", "crm", "--json"]

    victim = subprocess.Popen(
        command, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while env.scalar("SELECT COUNT(*) FROM cb_email_activity") == 0:
            assert victim.poll() is None, "the pull finished before it could be killed"
            assert time.monotonic() < deadline, "no activity landed within a minute"
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
    partial = env.scalar("SELECT COUNT(*) FROM cb_email_activity")
    expected = +expected_rows(env, big)
    assert 0 < partial < sum(expected.values())
    # the cursor did not move past what was committed
    cursors = env.rows("SELECT stream FROM cb_pull_cursors")
    assert (f"activity:{big}",) not in cursors

    env.control("POST", "/limits", {"latency": 0})
    done = subprocess.run(
        command, env=cli_env(), capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)[0]
    assert summary["status"] == "succeeded"
    assert landed_rows(env, big) == expected
    assert summary["activity_added"] == sum(expected.values()) - partial
    statuses = env.rows("SELECT status FROM cb_sync_runs ORDER BY started_at")
    assert statuses == [("running",), ("succeeded",)]  # the killed run never finished
