"""listmonk adapter: creating subscribers through the importer vs one POST each.

The listmonk sandbox runs in its own process (``campaign-bridge sandbox serve --provider
listmonk``). N new members go to ``ListmonkProvider.upsert_members`` in calls of 500 (as the
push engine sends them), ``--workers`` calls in flight, once with the importer
(``import_threshold=200``: each call's new members are queued, one upload takes every queued
row) and once with one ``POST /api/subscribers`` per member (``import_threshold=0``), each on a
fresh sandbox, with the garbage collector set up as the CLI sets up a push. Printed: members/s,
the adapter's CPU per member, the sandbox's CPU.
Not a test: run it by hand.

    .venv/bin/python bench/listmonk_adapter.py [--members 100000] [--post-members 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr

from campaign_bridge.cli._common import tune_garbage_collector
from campaign_bridge.providers.base import MemberStatus, MemberUpsert, OutcomeKind
from campaign_bridge.providers.listmonk import ListmonkProvider

CLI = Path(sys.executable).with_name("campaign-bridge")
CALL = 500


@dataclass
class Destination:
    base_url: str
    api_user: str
    api_token: SecretStr
    list_id: str = "1"
    concurrency: int = 4
    timeout_seconds: float = 600.0
    max_retries: int = 3
    ca_bundle: None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start() -> tuple[subprocess.Popen[bytes], Destination]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    process = subprocess.Popen(
        [str(CLI), "sandbox", "serve", "--provider", "listmonk", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=1).json()
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        token = SecretStr(health["api_token"])
        return process, Destination(f"http://127.0.0.1:{port}", health["api_user"], token)
    process.kill()
    raise SystemExit("the sandbox did not start")


async def _run(destination: Destination, n: int, workers: int, threshold: int) -> float:
    provider = ListmonkProvider(destination, import_threshold=threshold)  # type: ignore[arg-type]
    calls = [
        [
            MemberUpsert(
                key=str(i),
                email=f"user{i}@bench.example.org",
                status_if_new=MemberStatus.SUBSCRIBED,
                exists=False,  # as the push engine says of members it has no state for
                merge_fields={"name": f"User {i}", "plan": f"p{i % 3}", "n": i},
            )
            for i in range(start, min(start + CALL, n))
        ]
        for start in range(0, n, CALL)
    ]
    queue: asyncio.Queue[list[MemberUpsert]] = asyncio.Queue()
    for call in calls:
        queue.put_nowait(call)
    created = 0

    async def worker() -> None:
        nonlocal created
        while not queue.empty():
            outcomes = await provider.upsert_members("1", queue.get_nowait())
            created += sum(o.kind is OutcomeKind.CREATED for o in outcomes)

    cpu = time.process_time()
    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
    finally:
        await provider.aclose()
    if created != n:
        raise SystemExit(f"created {created} of {n}")
    return time.process_time() - cpu


def measure(label: str, n: int, workers: int, threshold: int) -> None:
    process, destination = _start()
    try:
        began = time.perf_counter()
        cpu = asyncio.run(_run(destination, n, workers, threshold))
        wall = time.perf_counter() - began
        print(
            f"{label:<22} {n:>9,} members {wall:8.2f} s {n / wall:9,.0f}/s   adapter CPU "
            f"{1e6 * cpu / n:6.1f} µs/member   sandbox CPU {_cpu_seconds(process.pid):6.1f} s"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--post-members", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    tune_garbage_collector()  # as the CLI sets a push process up
    measure("importer", args.members, args.workers, 200)
    if args.post_members:
        measure("one POST each", args.post_members, args.workers, 0)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
