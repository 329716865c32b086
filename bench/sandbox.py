"""How fast is the Mailchimp sandbox? Prints figures; not a test.

1. CPU time (``time.process_time``) for the ASGI app to serve one batch subscribe
   ``POST /lists/{id}`` of 500 members, called in-process (no sockets, no client work measured),
   on an audience already holding ``--prefill`` members: new members and updates of existing
   ones (``update_existing``), each with the full answer and with the answer cut down by the
   ``fields`` the push adapter sends. Median and mean of ``--runs`` calls: the mean includes
   the garbage collector's share (its full collections walk every member held); this process
   keeps Python's default GC thresholds.
2. The same batch subscribe (new members, the adapter's ``fields``) over a real socket
   against ``serve`` in its own process (uvicorn, the GC tuned as ``serve`` does): the server
   process's CPU per call (from /proc), after the same prefill over HTTP.
3. Paging through 1,000,000 email-activity records (seeded through the control API's fast
   path) with ``count=1000`` over a real socket with httpx: records/s, and how much CPU the
   sandbox process used meanwhile (its share of the wall time), versus the client's.

Run:  .venv/bin/python bench/sandbox.py [--runs 100] [--prefill 200000] [--records 1000000]
      (``--records 0`` skips part 3)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx

from campaign_bridge.providers.mailchimp import BATCH_SUBSCRIBE_FIELDS
from campaign_bridge.sandbox.mailchimp.app import create_app

BATCH = 500


async def _call(
    app: Any, method: str, path: str, body: bytes, auth: str, query: bytes = b""
) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
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


def _batch_body(prefix: str, *, update: bool, first_name: str = "First") -> bytes:
    members = [
        {
            "email_address": f"{prefix}.{i}@mail.bench.invalid",
            "status": "subscribed",
            "merge_fields": {"FNAME": f"{first_name}{i}", "LNAME": f"Last{i}"},
            "tags": ["bench"],
        }
        for i in range(BATCH)
    ]
    return json.dumps({"members": members, "update_existing": update}).encode()


def _check(status: int, payload: bytes, update: bool) -> None:
    assert status == 200, payload[:300]
    result = json.loads(payload)
    assert result["error_count"] == 0, result["errors"][:3]
    assert result["total_updated" if update else "total_created"] == BATCH, result


#: (label, update_existing, query string)
CASES = (
    ("new members, full answer", False, b""),
    ("new members, push's fields", False, b"fields=" + BATCH_SUBSCRIBE_FIELDS.encode()),
    ("update existing, full answer", True, b""),
    ("update existing, push's fields", True, b"fields=" + BATCH_SUBSCRIBE_FIELDS.encode()),
)


def _prefill_batches(prefill: int) -> int:
    """Batches of 500 to send first (at least one: the update cases need members)."""
    return max(1, -(-prefill // BATCH))


async def batch_subscribe_cpu(runs: int, prefill: int) -> dict[str, list[float]]:
    """CPU seconds per call for each case in ``CASES``, after ``prefill`` members."""
    app = create_app()
    sandbox = app.state.sandbox
    auth = "Basic " + base64.b64encode(f"bench:{sandbox.default_api_key}".encode()).decode()
    path = f"/3.0/lists/{sandbox.default_list_id}"
    batches = _prefill_batches(prefill)
    for batch in range(batches):
        _check(
            *await _call(app, "POST", path, _batch_body(f"pre{batch}", update=False), auth), False
        )
    timings: dict[str, list[float]] = {}
    for case, (label, update, query) in enumerate(CASES):
        timings[label] = []
        for run in range(runs):
            # updates give prefilled members new first names (a real change every time)
            prefix = f"pre{run % batches}" if update else f"new{case}.{run}"
            body = _batch_body(prefix, update=update, first_name=f"Case{case}.{run}.")
            start = time.process_time()
            status, payload = await _call(app, "POST", path, body, auth, query)
            timings[label].append(time.process_time() - start)
            _check(status, payload, update)
    return timings


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _sandbox_server() -> Iterator[tuple[subprocess.Popen[bytes], str, dict[str, Any]]]:
    """``serve`` in its own process: (process, root URL, health answer)."""
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
        for _ in range(200):
            try:
                health = httpx.get(f"{root}/_sandbox/health").json()
                break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise RuntimeError("sandbox server did not start")
        yield server, root, health
    finally:
        server.terminate()
        server.wait(timeout=10)


def batch_subscribe_server_cpu(runs: int, prefill: int) -> list[float]:
    """Server CPU seconds per batch subscribe of 500 new members with the push's ``fields``,
    over a socket, each figure averaged over a block of 10 calls (/proc counts 10 ms ticks)."""
    blocks = []
    with _sandbox_server() as (server, root, health), httpx.Client(timeout=60) as client:
        url = f"{root}/3.0/lists/{health['list_id']}"
        auth = ("bench", health["api_key"])
        headers = {"content-type": "application/json"}
        params = {"fields": BATCH_SUBSCRIBE_FIELDS}

        def post(body: bytes) -> None:
            response = client.post(url, content=body, auth=auth, params=params, headers=headers)
            _check(response.status_code, response.content, False)

        for batch in range(_prefill_batches(prefill)):
            post(_batch_body(f"pre{batch}", update=False))
        for block in range(-(-runs // 10)):
            bodies = [_batch_body(f"new{block}.{i}", update=False) for i in range(10)]
            cpu0 = _cpu_seconds(server.pid)
            for body in bodies:
                post(body)
            blocks.append((_cpu_seconds(server.pid) - cpu0) / len(bodies))
    return blocks


def page_email_activity(records: int, count: int) -> dict[str, float]:
    with _sandbox_server() as (server, root, health), httpx.Client(timeout=900) as client:
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


def _ms(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:5.1f} ms   "
        f"mean {statistics.mean(values) * 1000:5.1f} ms   "
        f"max {max(values) * 1000:5.1f} ms   (n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--prefill", type=int, default=200_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()

    timings = asyncio.run(batch_subscribe_cpu(args.runs, args.prefill))
    held = _prefill_batches(args.prefill) * BATCH
    print(
        f"1. batch subscribe of {BATCH} members, in-process ASGI, {held:,} members "
        "already on the audience (CPU per call; target <= 12 ms)"
    )
    for label, values in timings.items():
        print(f"  {label:<32} {_ms(values)}")
    blocks = batch_subscribe_server_cpu(args.runs, args.prefill)
    print(
        f"2. the same over a socket (serve: uvicorn + httptools), new members, push's fields: "
        f"server CPU per call, {held:,} members already on the audience"
    )
    print(f"  {'per call, blocks of 10 calls':<32} {_ms(blocks)}")
    if args.records <= 0:
        return
    figures = page_email_activity(args.records, args.count)
    print(
        f"3. email-activity paging, {figures['records']:,} records, count={args.count}, real socket"
    )
    print(f"  seeding (control API fast path): {figures['seed_seconds']:.1f} s")
    print(f"  {figures['wall_seconds']:.1f} s wall, {figures['records_per_second']:,.0f} records/s")
    print(
        f"  sandbox CPU {figures['server_cpu_seconds']:.1f} s "
        f"({figures['server_cpu_share']:.0%} of wall), "
        f"client (httpx + JSON parsing) CPU {figures['client_cpu_seconds']:.1f} s"
    )


if __name__ == "__main__":
    main()
