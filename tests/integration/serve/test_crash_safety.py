"""`serve` as a subprocess: kill -9 during a webhook flood loses no acknowledged event, a restart
applies what was stored but not applied, and SIGTERM shuts down gracefully."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.db import create_engine
from campaign_bridge.providers._mailchimp_webhooks import dedupe_key
from campaign_bridge.state import webhook_events
from tests.integration.serve.conftest import TOKEN, free_port

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("campaign-bridge"))
LIST_ID = "a6b5da1054"


def write_config(path: Path, state_url: str, port: int) -> Path:
    path.write_text(
        f"""
state_url = "{state_url}"
log_format = "json"

[server]
host = "127.0.0.1"
port = {port}
webhook_tokens = ["{TOKEN}"]

[syncs.crm.source]
url = "sqlite:///{path.parent / "source.db"}"
table = "contacts"

[syncs.crm.destination]
api_key = "{"0" * 32}-us6"
list_id = "{LIST_ID}"
""",
        encoding="utf-8",
    )
    return path


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    with log.open("ab") as out:
        return subprocess.Popen(
            [CLI, "--config", str(config), "serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_healthy(root: str, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "serve exited early"
        try:
            if httpx.get(f"{root}/-/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve did not become healthy")


def body(n: int, run: str) -> bytes:
    return urlencode(
        [
            ("type", "subscribe"),
            ("fired_at", "2026-11-26 10:00:00"),
            ("data[list_id]", LIST_ID),
            ("data[email]", f"flood-{run}-{n}@bridge-test.org"),
            ("data[merges][FNAME]", f"N{n}"),
        ]
    ).encode()


async def flood(
    root: str, run: str, stop_after: float, acked: set[str] | None = None, workers: int = 24
) -> set[str]:
    """POST unique deliveries until the server goes away or ``stop_after`` passes; return the
    dedupe keys of every delivery answered 200 (also collected in ``acked`` as they come)."""
    acked = set() if acked is None else acked
    counter = iter(range(10**9))
    deadline = time.monotonic() + stop_after

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            payload = body(next(counter), run)
            try:
                response = await client.post(
                    f"{root}/webhooks/mailchimp/{TOKEN}",
                    content=payload,
                    headers={"content-type": "application/x-www-form-urlencoded"},
                )
            except httpx.TransportError:
                return  # the server is gone
            if response.status_code == 200:
                acked.add(dedupe_key(payload))

    limits = httpx.Limits(max_connections=workers)
    async with httpx.AsyncClient(timeout=5, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(workers)))
    return acked


async def until(condition: Callable[[], bool], seconds: float) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)


def stored_keys(url: str) -> tuple[set[str], int]:
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(webhook_events.c.dedupe_key, webhook_events.c.applied_at)
            ).all()
    finally:
        engine.dispose()
    return {r.dedupe_key for r in rows}, sum(r.applied_at is None for r in rows)


def test_kill_9_during_flood_loses_no_acknowledged_event(
    postgresql_url: str, tmp_path: Path
) -> None:
    migrations.upgrade(postgresql_url)
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "campaign-bridge.toml", postgresql_url, port)
    log = tmp_path / "serve.log"

    process = start(config, log)
    try:
        wait_healthy(root, process)

        async def flood_then_kill() -> set[str]:
            seen: set[str] = set()
            task = asyncio.create_task(flood(root, "kill", stop_after=30, acked=seen))
            await until(lambda: len(seen) >= 200, seconds=20)
            process.send_signal(signal.SIGKILL)  # mid-flood: requests are in flight
            return await task

        acked = asyncio.run(flood_then_kill())
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    assert len(acked) >= 200, "the flood should have had many deliveries acknowledged"
    keys, _pending = stored_keys(postgresql_url)
    assert acked <= keys, f"{len(acked - keys)} acknowledged deliveries were lost"

    # A restart applies whatever was stored but not applied; SIGTERM then stops it cleanly
    # while another flood is in flight, and every delivery it acknowledged is stored.
    process = start(config, log)
    try:
        wait_healthy(root, process)
        deadline = time.monotonic() + 30
        while stored_keys(postgresql_url)[1] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stored_keys(postgresql_url)[1] == 0, "stored events were not applied on restart"

        async def flood_then_term() -> set[str]:
            seen: set[str] = set()
            task = asyncio.create_task(flood(root, "term", stop_after=30, acked=seen))
            await until(lambda: len(seen) >= 100, seconds=20)
            process.send_signal(signal.SIGTERM)
            return await task

        acked_term = asyncio.run(flood_then_term())
        # uvicorn re-raises the signal after its graceful shutdown
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
    keys, _pending = stored_keys(postgresql_url)
    assert acked_term
    assert acked_term <= keys
    assert "stopped" in log.read_text(encoding="utf-8")
