"""``campaign-bridge worker`` on the PostgreSQL state store: queued runs, refusal elsewhere, and a
killed worker's job finished by another with nothing lost and nothing sent twice."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from campaign_bridge import migrations
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle, run_in_thread
from tests.integration.scale.helpers import CLI, cli_env, make_contacts, scalar, write_config


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    with run_in_thread() as handle:
        yield handle


def _config(tmp_path: Path, state_url: str, sandbox: SandboxHandle, rows: int, **kw: int) -> Path:
    sources = {"crm": make_contacts(tmp_path / "crm.db", "crm", rows)}
    return write_config(
        tmp_path / "bridge.toml",
        state_url,
        sources,
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        list_id=sandbox.list_id,
        **kw,
    )


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], env=cli_env(config), capture_output=True, text=True, timeout=120
    )


_LOGS: dict[int, Path] = {}


def _worker(config: Path, *args: str) -> subprocess.Popen[str]:
    # Logs go to a file: a pipe nobody reads until the end fills up and blocks the worker.
    path = config.parent / f"worker-{time.monotonic_ns()}.log"
    with path.open("w") as log:
        proc = subprocess.Popen(
            [str(CLI), "worker", "--heartbeat", "0.5", "--stalled-after", "3", *args],
            env=cli_env(config),
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
    _LOGS[proc.pid] = path
    return proc


def _until(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, wait for the worker to finish, and return the end of its log."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=90)
    return _LOGS[proc.pid].read_text()[-3000:]


def test_worker_refuses_a_state_store_other_than_postgresql(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    config = _config(tmp_path, f"sqlite:///{(tmp_path / 'state.db').as_posix()}", sandbox, 1)
    result = _cli(config, "worker")
    assert result.returncode == 2
    assert "worker mode needs a PostgreSQL state store" in result.stderr
    assert "this one is sqlite" in result.stderr
    too_eager = _cli(config, "worker", "--heartbeat", "10", "--stalled-after", "15")
    assert too_eager.returncode == 2
    assert "shorter than two heartbeats" in too_eager.stderr
    enqueued = _cli(config, "push", "crm", "--enqueue")
    assert enqueued.returncode == 2
    assert "PostgreSQL" in enqueued.stderr


def test_enqueued_push_and_pull_run_on_a_worker(
    tmp_path: Path, postgresql_url: str, sandbox: SandboxHandle
) -> None:
    migrations.upgrade(postgresql_url)
    config = _config(tmp_path, postgresql_url, sandbox, 300)

    first = _cli(config, "push", "crm", "--enqueue")
    assert first.returncode == 0, first.stderr
    assert "queued push of crm: job" in first.stdout
    again = _cli(config, "push", "--enqueue")  # the only sync; one is already waiting
    assert again.returncode == 0
    assert "already waiting" in again.stdout
    assert _cli(config, "pull", "crm", "--enqueue").returncode == 0
    jobs = "SELECT count(*) FROM procrastinate_jobs WHERE queue_name IN ('push', 'pull')"
    assert scalar(postgresql_url, jobs) == 2

    worker = _worker(config, "--concurrency", "2")
    try:
        done = f"{jobs} AND status = 'succeeded'"
        _until(lambda: scalar(postgresql_url, done) == 2, 150, "both jobs to succeed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the worker's log ends with:\n{_stop(worker)}") from None
    finally:
        err = _stop(worker)
    assert worker.returncode == 0, err[-2000:]
    assert len(sandbox.sandbox.lists[sandbox.list_id].members) == 300
    assert scalar(postgresql_url, "SELECT count(*) FROM cb_contact_state") == 300
    runs = "SELECT count(*) FROM cb_sync_runs WHERE direction = '{}' AND status = 'succeeded'"
    assert scalar(postgresql_url, runs.format("push")) == 1
    assert scalar(postgresql_url, runs.format("pull")) == 1


def test_a_killed_workers_push_finishes_on_another_with_nothing_lost_or_repeated(
    tmp_path: Path, postgresql_url: str, sandbox: SandboxHandle
) -> None:
    rows = 3000
    migrations.upgrade(postgresql_url)
    sandbox.sandbox.limits.latency = 0.2  # long enough a push to kill it in the middle
    config = _config(tmp_path, postgresql_url, sandbox, rows, concurrency=2, chunk_size=100)
    assert _cli(config, "push", "crm", "--enqueue").returncode == 0

    doomed = _worker(config, "--queues", "push")
    confirmed = "SELECT count(*) FROM cb_contact_state"
    try:
        _until(lambda: scalar(postgresql_url, confirmed) >= 500, 120, "the push to be under way")
        assert scalar(postgresql_url, confirmed) < rows  # killed in the middle
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
        killed_at = time.monotonic()
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait()

    rescuer = _worker(config)
    try:
        job = "SELECT {} FROM procrastinate_jobs WHERE task_name = 'campaign_bridge.push'"
        doomed_worker = scalar(postgresql_url, job.format("worker_id"))
        _until(
            lambda: (
                scalar(postgresql_url, job.format("coalesce(worker_id, 0)"))
                not in (0, doomed_worker)
            ),
            60,
            "another worker to take the job",
        )
        picked_up = time.monotonic() - killed_at
        state = job.format("(status = 'succeeded')::int")
        _until(lambda: scalar(postgresql_url, state) == 1, 120, "the job to finish elsewhere")
    finally:
        err = _stop(rescuer)
    assert rescuer.returncode == 0, err[-2000:]
    assert picked_up <= 2 * 3 + 1  # within twice the heartbeat timeout (--stalled-after 3)

    members = sandbox.sandbox.lists[sandbox.list_id].members
    assert len(members) == rows
    assert scalar(postgresql_url, confirmed) == rows
    ledger = "SELECT count({}) FROM cb_consent_ledger WHERE sync_name = 'crm'"
    assert scalar(postgresql_url, ledger.format("*")) == rows  # one row per contact...
    assert scalar(postgresql_url, ledger.format("DISTINCT email_hash")) == rows  # ...none twice
    assert scalar(postgresql_url, "SELECT count(*) FROM cb_push_intents") == 0
