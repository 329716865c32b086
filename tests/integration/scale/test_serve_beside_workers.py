"""``serve --schedule`` beside running workers: it refuses to start, and a running scheduler
defers the syncs' runs to workers that appear (and takes them back when the workers go)."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.db import create_engine
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle, run_in_thread
from campaign_bridge.scheduler import Job, Scheduler, parse_schedule
from campaign_bridge.workers_seen import deferral, live_workers
from tests.integration.scale.helpers import CLI, cli_env, make_contacts, scalar, write_config


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    with run_in_thread() as handle:
        yield handle


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _serve(config: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(CLI), "serve", "--schedule", "--port", str(port)],
        env=cli_env(config),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_schedule_refuses_while_a_worker_runs_and_starts_once_it_stopped(
    tmp_path: Path, postgresql_url: str, sandbox: SandboxHandle
) -> None:
    migrations.upgrade(postgresql_url)
    sources = {"crm": make_contacts(tmp_path / "crm.db", "crm", 1)}
    config = write_config(
        tmp_path / "bridge.toml",
        postgresql_url,
        sources,
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        list_id=sandbox.list_id,
    )
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [str(CLI), "worker", "--heartbeat", "1", "--stalled-after", "3"],
            env=cli_env(config),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        registered = "SELECT count(*) FROM procrastinate_workers"
        _until(lambda: scalar(postgresql_url, registered) == 1, 90, "the worker to register")
        refused = _serve(config, _free_port())
        _, err = refused.communicate(timeout=90)
        assert refused.returncode == 2, err
        assert "serve --schedule refused: 1 campaign-bridge worker is running" in err
        assert "without --schedule" in err
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=90)

    assert scalar(postgresql_url, "SELECT count(*) FROM procrastinate_workers") == 0
    port = _free_port()
    serving = _serve(config, port)
    try:
        _until(
            lambda: _healthy(f"http://127.0.0.1:{port}/-/health"), 90, "serve --schedule to start"
        )
    finally:
        serving.send_signal(signal.SIGTERM)
        serving.communicate(timeout=60)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class _Locks:
    """Every lock is free (one process): the scheduler's lock store, in memory."""

    def try_acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        return True

    def refresh_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        return True

    def release_lock(self, name: str, owner: str) -> None:
        return None


def test_a_running_scheduler_defers_sync_runs_to_workers_and_resumes_without_them(
    postgresql_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    migrations.upgrade(postgresql_url)
    engine = create_engine(postgresql_url)
    assert live_workers(engine) == 0
    ran: list[tuple[str, str]] = []

    async def runner(sync: str, direction: str) -> None:
        ran.append((sync, direction))

    every_second = parse_schedule("every 1s")
    jobs = [Job("crm", "push", every_second), Job("*retention", "purge", every_second)]

    async def scenario() -> None:
        scheduler = Scheduler(jobs, runner, _Locks(), defer=deferral(engine, every=0))
        task = asyncio.create_task(scheduler.run())
        # a worker registers on the state store, as procrastinate does
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO procrastinate_workers DEFAULT VALUES"))
        await asyncio.sleep(2.5)
        while_workers = list(ran)
        with engine.begin() as conn:  # its heartbeat goes stale: the worker is gone
            conn.execute(
                sa.text("UPDATE procrastinate_workers SET last_heartbeat = :old"),
                {"old": datetime(2000, 1, 1, tzinfo=UTC)},
            )
        ran.clear()
        await asyncio.sleep(2.5)
        scheduler.stop()
        await task
        assert ("crm", "push") not in while_workers
        assert ("*retention", "purge") in while_workers  # not a sync's run: workers don't purge
        assert ("crm", "push") in ran

    with caplog.at_level(logging.WARNING, logger="campaign_bridge.workers_seen"):
        asyncio.run(scenario())
    messages = [record.getMessage() for record in caplog.records]
    assert any("1 campaign-bridge worker is running" in m and "defers" in m for m in messages)
    assert any("no worker runs any more" in m for m in messages)
    engine.dispose()


def test_no_workers_on_sqlite(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{(tmp_path / 'state.db').as_posix()}")
    assert live_workers(engine) == 0
    engine.dispose()
