"""Brevo adapter alone: new members created through ``POST /contacts/import`` and read back.

The Brevo sandbox runs in its own process (``campaign-bridge sandbox serve --provider brevo``).
N new members go to ``BrevoProvider.upsert_members`` in calls of 1,000 (push's slice),
``--workers`` calls in flight, as an initial push sends them. Printed: members/s, the
adapter's CPU per member (this process) and the sandbox's (its /proc/<pid>/stat), so the
Brevo-specific part of (a) in bench/push.py can be measured without the push engine and
PostgreSQL around it. ``--profile FILE`` writes the adapter's cProfile statistics.
Not a test: run it by hand.

    .venv/bin/python bench/brevo_adapter.py [--members 100000] [--workers 15]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
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

from campaign_bridge._entry import GC_THRESHOLDS
from campaign_bridge.providers.base import MemberStatus, MemberUpsert, OutcomeKind
from campaign_bridge.providers.brevo import BrevoProvider

CLI = Path(sys.executable).with_name("campaign-bridge")
CALL = 1000


@dataclass
class Destination:
    base_url: str
    api_key: SecretStr
    list_id: str
    concurrency: int = 10
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


def _start() -> tuple[subprocess.Popen[str], Destination]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    process = subprocess.Popen(
        [str(CLI), "sandbox", "serve", "--provider", "brevo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert process.stdout is not None
    key = list_id = ""
    for line in process.stdout:
        if "API key:" in line:
            key = line.split("API key:")[1].strip()
        if "  list:" in line:
            list_id = line.split("  list:")[1].strip()
            break
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{root}/_sandbox/health", timeout=1).raise_for_status()
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        return process, Destination(f"{root}/v3", SecretStr(key), list_id)
    process.kill()
    raise SystemExit("the sandbox did not start")


def _calls(n: int) -> list[list[MemberUpsert]]:
    return [
        [
            MemberUpsert(
                key=str(i),
                email=f"contact{i}@bench.mail",
                status_if_new=MemberStatus.SUBSCRIBED,
                exists=False,  # as the push engine says of members it has no state for
                merge_fields={"FIRSTNAME": f"First{i}", "LASTNAME": f"Last{i}"},
            )
            for i in range(start, min(start + CALL, n))
        ]
        for start in range(0, n, CALL)
    ]


async def _run(destination: Destination, calls: list[list[MemberUpsert]], workers: int) -> None:
    provider = BrevoProvider(destination)
    queue: asyncio.Queue[list[MemberUpsert]] = asyncio.Queue()
    for call in calls:
        queue.put_nowait(call)
    n = sum(len(call) for call in calls)
    created = 0

    async def worker() -> None:
        nonlocal created
        while not queue.empty():
            outcomes = await provider.upsert_members(destination.list_id, queue.get_nowait())
            created += sum(o.kind is OutcomeKind.CREATED for o in outcomes)

    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
    finally:
        await provider.aclose()
    if created != n:
        raise SystemExit(f"created {created} of {n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=15)  # push: 10 connections + 5
    parser.add_argument("--profile", help="write the adapter's cProfile statistics here")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    process, destination = _start()
    gc.freeze()  # as the CLI sets a push process up (cli._common.tune_garbage_collector)
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        calls = _calls(args.members)  # made before the clock starts
        profile = cProfile.Profile() if args.profile else None
        sandbox_before, began, cpu = (
            _cpu_seconds(process.pid),
            time.perf_counter(),
            time.process_time(),
        )
        if profile is not None:
            profile.enable()
        asyncio.run(_run(destination, calls, args.workers))
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
        used, wall = time.process_time() - cpu, time.perf_counter() - began
        sandbox = _cpu_seconds(process.pid) - sandbox_before
        n = args.members
        print(
            f"{n:,} members {wall:.2f} s {n / wall:,.0f}/s   CPU µs/member: adapter "
            f"{1e6 * used / n:.1f}, sandbox {1e6 * sandbox / n:.1f}"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
