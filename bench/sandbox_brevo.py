"""How fast does the Brevo sandbox take a bulk import? Prints figures; not a test.

``campaign-bridge sandbox serve --provider brevo`` runs in its own process (as a push run would
use it); one httpx client sends ``POST /v3/contacts/import`` calls with ``--batch`` contacts
each in ``jsonBody`` (an email and FIRSTNAME/LASTNAME, onto one list) until ``--contacts``
contacts were sent, polling ``GET /v3/processes/{id}`` after each (the sandbox applies a due
import before it answers the next call, so the poll's time is the import's processing time).

Printed: contacts/s over the whole run (wall time, client encoding included), the median time
of an import call (validation, queued) and of its processing, the server process's CPU seconds
(from /proc), and the contacts the sandbox holds at the end with its peak RSS. The push
target this must not bottleneck is 15,000 contacts/s.

Run:  .venv/bin/python bench/sandbox_brevo.py [--contacts 1000000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

CLI = Path(sys.executable).with_name("campaign-bridge")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _start(port: int) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_BRIDGE_", "BREVO_"))}
    process = subprocess.Popen(
        [str(CLI), "sandbox", "serve", "--provider", "brevo", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=1).json()
            return process, str(health["api_key"])
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the Brevo sandbox did not start")


def _body(start: int, count: int, list_id: int) -> bytes:
    rows = [
        {
            "email": f"contact{i}@bench.example.org",
            "attributes": {"FIRSTNAME": f"First{i}", "LASTNAME": "Bench"},
        }
        for i in range(start, start + count)
    ]
    return orjson.dumps({"jsonBody": rows, "listIds": [list_id], "disableNotification": True})


def run(total: int, batch: int) -> None:
    port = _free_port()
    process, key = _start(port)
    base = f"http://127.0.0.1:{port}/v3"
    posts: list[float] = []
    applies: list[float] = []
    try:
        with httpx.Client(base_url=base, headers={"api-key": key}, timeout=300) as client:
            cpu_before = _cpu_seconds(process.pid)
            started = time.perf_counter()
            for start in range(0, total, batch):
                body = _body(start, min(batch, total - start), 1)
                t0 = time.perf_counter()
                answer = client.post(
                    "/contacts/import", content=body, headers={"content-type": "application/json"}
                )
                t1 = time.perf_counter()
                assert answer.status_code == 202, answer.text
                process_id = answer.json()["processId"]
                status = client.get(f"/processes/{process_id}").json()["status"]
                t2 = time.perf_counter()
                assert status == "completed", status
                posts.append(t1 - t0)
                applies.append(t2 - t1)
            wall = time.perf_counter() - started
            cpu = _cpu_seconds(process.pid) - cpu_before
            held = client.get("/contacts", params={"limit": 1}).json()["count"]
            rss = _peak_rss_mb(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    print(f"imported {total:,} contacts in {total // batch} calls of {batch:,} (jsonBody)")
    print(f"  wall {wall:.1f} s -> {total / wall:,.0f} contacts/s (client encoding included)")
    print(
        f"  per call, median: import {statistics.median(posts) * 1000:.0f} ms, "
        f"processing {statistics.median(applies) * 1000:.0f} ms"
    )
    print(f"  sandbox CPU {cpu:.1f} s -> {total / cpu:,.0f} contacts per CPU second")
    print(f"  contacts held at the end: {held:,}; sandbox peak RSS {rss:,.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    run(args.contacts, args.batch)


if __name__ == "__main__":
    main()
