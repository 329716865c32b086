"""How fast is the Mailchimp sandbox? Prints figures; not a test.

1. CPU time (``time.process_time``) for the ASGI app to serve one batch subscribe of 500 new
   members, called in-process (no sockets, no client work measured), median of N runs.
2. Paging through 1,000,000 email-activity records (seeded through the control API's fast
   path) with ``count=1000`` over a real socket with httpx: records/s, and how much CPU the
   sandbox process used meanwhile (its share of the wall time), versus the client's.

Run:  .venv/bin/python bench/sandbox.py [--runs 30] [--records 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx

from campaign_bridge.sandbox.mailchimp.app import create_app


async def _call(app: Any, method: str, path: str, body: bytes, auth: str) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"sandbox"),
            (b"authorization", auth.encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("sandbox", 80),
    }
    sent = False
    chunks: list[bytes] = []
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def batch_subscribe_cpu(runs: int) -> list[float]:
    app = create_app()
    sandbox = app.state.sandbox
    auth = "Basic " + base64.b64encode(f"bench:{sandbox.default_api_key}".encode()).decode()
    path = f"/3.0/lists/{sandbox.default_list_id}"
    timings = []
    for run in range(runs + 2):  # two warm-up runs
        members = [
            {
                "email_address": f"bench{run}.{i}@mail.bench.invalid",
                "status": "subscribed",
                "merge_fields": {"FNAME": f"First{i}", "LNAME": f"Last{i}"},
                "tags": ["bench"],
            }
            for i in range(500)
        ]
        body = json.dumps({"members": members, "update_existing": False}).encode()
        start = time.process_time()
        status, payload = await _call(app, "POST", path, body, auth)
        elapsed = time.process_time() - start
        result = json.loads(payload)
        assert status == 200, payload[:300]
        assert result["total_created"] == 500, result.get("errors", [])[:3]
        if run >= 2:
            timings.append(elapsed)
    return timings


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def page_email_activity(records: int, count: int) -> dict[str, float]:
    port = _free_port()
    code = (
        "from campaign_bridge.sandbox.mailchimp.server import serve; "
        f"serve(host='127.0.0.1', port={port})"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        root = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=900) as client:
            for _ in range(200):
                try:
                    health = client.get(f"{root}/_sandbox/health").json()
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            else:
                raise RuntimeError("sandbox server did not start")
            seed_start = time.perf_counter()
            seeded = client.post(
                f"{root}/_sandbox/campaigns/seed", json={"recipients": records, "seed": 7}
            ).json()
            seed_seconds = time.perf_counter() - seed_start
            cid = seeded["id"]
            auth = ("bench", health["api_key"])
            url = f"{root}/3.0/reports/{cid}/email-activity"
            server_cpu0, client_cpu0 = _cpu_seconds(server.pid), time.process_time()
            wall0 = time.perf_counter()
            seen = offset = 0
            total = None
            while total is None or offset < total:
                response = client.get(url, params={"count": count, "offset": offset}, auth=auth)
                response.raise_for_status()
                body = response.json()
                total = body["total_items"]
                seen += len(body["emails"])
                offset += count
            wall = time.perf_counter() - wall0
            server_cpu = _cpu_seconds(server.pid) - server_cpu0
            client_cpu = time.process_time() - client_cpu0
        assert seen == records, (seen, records)
        return {
            "records": seen,
            "seed_seconds": seed_seconds,
            "wall_seconds": wall,
            "records_per_second": seen / wall,
            "server_cpu_seconds": server_cpu,
            "client_cpu_seconds": client_cpu,
            "server_cpu_share": server_cpu / wall,
        }
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()

    timings = asyncio.run(batch_subscribe_cpu(args.runs))
    print("batch subscribe, 500 new members, in-process ASGI (CPU time per call)")
    print(
        f"  median {statistics.median(timings) * 1000:.1f} ms   "
        f"min {min(timings) * 1000:.1f} ms   max {max(timings) * 1000:.1f} ms   "
        f"(n={len(timings)}; target: well under 50 ms)"
    )
    figures = page_email_activity(args.records, args.count)
    print(f"email-activity paging, {figures['records']:,} records, count={args.count}, real socket")
    print(f"  seeding (control API fast path): {figures['seed_seconds']:.1f} s")
    print(f"  {figures['wall_seconds']:.1f} s wall, {figures['records_per_second']:,.0f} records/s")
    print(
        f"  sandbox CPU {figures['server_cpu_seconds']:.1f} s "
        f"({figures['server_cpu_share']:.0%} of wall), "
        f"client (httpx + JSON parsing) CPU {figures['client_cpu_seconds']:.1f} s"
    )


if __name__ == "__main__":
    main()
