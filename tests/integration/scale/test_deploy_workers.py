"""The worker commands in deploy/ (systemd template unit, compose service) run as written: they
take a queued push, finish it, and stop cleanly on the unit's stop signal in time."""

from __future__ import annotations

import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from configparser import ConfigParser
from pathlib import Path

import pytest
import yaml

from campaign_bridge import migrations
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle, run_in_thread
from tests.integration.scale.helpers import CLI, cli_env, make_contacts, scalar, write_config

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
INSTALLED = "/opt/campaign-bridge/bin/campaign-bridge"


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    with run_in_thread() as handle:
        yield handle


def _unit() -> tuple[list[str], float]:
    parser = ConfigParser(interpolation=None, strict=False)
    parser.read(DEPLOY / "campaign-bridge-worker@.service")
    service = parser["Service"]
    assert service["KillSignal"] == "SIGTERM"
    command = shlex.split(service["ExecStart"])
    assert command[0] == INSTALLED
    return [str(CLI), *command[1:]], float(service["TimeoutStopSec"])


def _compose() -> tuple[list[str], float]:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 2  # N workers
    assert services["bridge"]["command"] == ["serve"]  # scheduling is the workers'
    return [str(CLI), *worker["command"]], float(worker["stop_grace_period"].rstrip("s"))


@pytest.mark.parametrize("source", [_unit, _compose], ids=["systemd", "compose"])
def test_the_deployed_worker_command_runs_a_queued_push_and_stops_in_time(
    source: object, tmp_path: Path, postgresql_url: str, sandbox: SandboxHandle
) -> None:
    command, stop_timeout = source()  # type: ignore[operator]
    migrations.upgrade(postgresql_url)
    config = write_config(
        tmp_path / "bridge.toml",
        postgresql_url,
        {"crm": make_contacts(tmp_path / "crm.db", "crm", 200)},
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        list_id=sandbox.list_id,
    )
    env = cli_env(config)
    queued = subprocess.run(
        [str(CLI), "push", "crm", "--enqueue"], env=env, capture_output=True, text=True
    )
    assert queued.returncode == 0, queued.stderr
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        succeeded = (
            "SELECT count(*) FROM procrastinate_jobs "
            "WHERE task_name = 'campaign_bridge.push' AND status = 'succeeded'"
        )
        while scalar(postgresql_url, succeeded) != 1:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the worker did not run the queued push"
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        worker.wait(timeout=stop_timeout + 10)
    assert time.monotonic() - stopped < stop_timeout
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-2000:]
    assert len(sandbox.sandbox.lists[sandbox.list_id].members) == 200
