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
4. The push's "member statuses changed since the last run": one ``GET .../members?status=X&
   since_last_changed=T&sort_field=last_changed&sort_dir=ASC&count=1000`` per status, with
   the push's ``fields``, all pages, in-process, on an audience of ``--audience`` members
   (seeded through the control API's in-process ``seed``) of which ``--changes`` changed
   after T (names, and one in ten unsubscribed or archived): CPU of the six listings, and of
   the first one after the seeding (which also builds the member index); and of the push's
   ``GET /lists/{id}`` with its ``fields``, also made at the start of every run.

Run:  .venv/bin/python bench/sandbox.py [--runs 100] [--prefill 200000] [--records 1000000]
      [--audience 1000000] [--changes 10000]
      (``--records 0`` skips part 3, ``--audience 0`` part 4; ``--runs 0`` parts 1 and 2)
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

from campaign_bridge.providers.mailchimp import BATCH_SUBSCRIBE_FIELDS, MEMBER_FIELDS
from campaign_bridge.sandbox.mailchimp.app import create_app
from campaign_bridge.sandbox.mailchimp.control import seed
from campaign_bridge.sandbox.mailchimp.members import archive_member, set_status, update_member

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


#: the statuses the push lists at the start of every run
LISTED_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
#: seeded statuses, one per member in turn (mostly subscribed)
SEEDED_STATUSES = ("subscribed",) * 16 + ("unsubscribed", "unsubscribed", "cleaned", "pending")


def _seed_audience(sandbox: Any, list_id: str, size: int) -> None:
    for start in range(0, size, 10_000):
        members = [
            {
                "email_address": f"m{i}@mail.bench.invalid",
                "status": SEEDED_STATUSES[i % len(SEEDED_STATUSES)],
                "merge_fields": {"FNAME": f"First{i}", "LNAME": f"Last{i}"},
            }
            for i in range(start, min(size, start + 10_000))
        ]
        seed(sandbox, {"lists": [{"id": list_id, "members": members}]})


def _change_members(sandbox: Any, list_id: str, changes: int) -> None:
    """``changes`` members spread over the audience get a new name; one in ten is also
    unsubscribed (subscribed ones) or archived (unsubscribed ones)."""
    lst = sandbox.lists[list_id]
    members = list(lst.members.values())
    step = max(1, len(members) // changes)
    for n, member in enumerate(members[::step][:changes]):
        update_member(sandbox, lst, member, {"merge_fields": {"FNAME": f"Changed{n}"}})
        if n % 10 == 0 and member.status == "subscribed":
            set_status(sandbox, lst, member, "unsubscribed")
        elif n % 10 == 0 and member.status == "unsubscribed":
            archive_member(sandbox, lst, member)


async def _list_changed(app: Any, auth: str, path: str, status: str, since: str) -> list[float]:
    """Page through one status's changes as the push does: CPU seconds of each call (the
    client's parsing left out); the answers' members must add up to ``total_items``."""
    cpu: list[float] = []
    seen = offset = 0
    total = None
    while total is None or offset < total:
        query = (
            f"status={status}&since_last_changed={since.replace('+', '%2B')}"
            f"&sort_field=last_changed&sort_dir=ASC&count=1000&offset={offset}"
            f"&fields={MEMBER_FIELDS}"
        )
        start = time.process_time()
        code, payload = await _call(app, "GET", path, b"", auth, query.encode())
        cpu.append(time.process_time() - start)
        assert code == 200, payload[:300]
        body = json.loads(payload)
        total = body["total_items"]
        seen += len(body["members"])
        offset += 1000
    assert seen == total, (seen, total)
    return cpu


async def status_listings_cpu(audience: int, changes: int, runs: int) -> dict[str, Any]:
    """CPU seconds of the six status listings (see part 4 of the module doc)."""
    app = create_app()
    sandbox = app.state.sandbox
    auth = "Basic " + base64.b64encode(f"bench:{sandbox.default_api_key}".encode()).decode()
    list_id = sandbox.default_list_id
    path = f"/3.0/lists/{list_id}/members"
    with sandbox.lock:
        _seed_audience(sandbox, list_id, audience)
        sandbox.clock.advance(60)
        since = sandbox.clock.stamp()
        sandbox.clock.advance(60)
        _change_members(sandbox, list_id, changes)

    async def all_statuses() -> tuple[float, float]:
        """CPU of the six listings, and of their first pages only."""
        calls = [await _list_changed(app, auth, path, s, since) for s in LISTED_STATUSES]
        return sum(map(sum, calls)), sum(c[0] for c in calls)

    async def audience_lookup() -> float:
        """The push's look at the audience at the start of a run."""
        query = b"fields=id,name,double_optin,marketing_permissions"
        start = time.process_time()
        code, payload = await _call(app, "GET", f"/3.0/lists/{list_id}", b"", auth, query)
        assert code == 200, payload[:300]
        return time.process_time() - start

    first = (await all_statuses())[0]
    timings = []
    lookups = []
    for _ in range(runs):
        sandbox.write_seq += 1  # as after any write: the paging cache is gone
        timings.append(await all_statuses())
        lookups.append(await audience_lookup())
    return {
        "first": first,
        "all pages": [t[0] for t in timings],
        "first pages": [t[1] for t in timings],
        "audience lookup": lookups,
        "listed": _changed_count(sandbox, list_id, since),
    }


def _changed_count(sandbox: Any, list_id: str, since: str) -> int:
    return sum(m.last_changed > since for m in sandbox.lists[list_id].members.values())


def _ms(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:5.1f} ms   "
        f"mean {statistics.mean(values) * 1000:5.1f} ms   "
        f"max {max(values) * 1000:5.1f} ms   (n={len(values)})"
    )


def status_listing_figures(audience: int, changes: int) -> None:
    figures = asyncio.run(status_listings_cpu(audience, changes, runs=10))
    print(
        f"4. the six status listings with since_last_changed (count=1000), in-process, "
        f"{audience:,} members of which {figures['listed']:,} changed: sandbox CPU"
    )
    print(f"  {'first time (builds the index)':<32} {figures['first'] * 1000:7.1f} ms")
    print(f"  {'six listings, first pages':<32} {_ms(figures['first pages'])}")
    print(f"  {'six listings, all pages':<32} {_ms(figures['all pages'])}")
    print(f"  {'GET /lists/{id}, push fields':<32} {_ms(figures['audience lookup'])}")


def batch_subscribe_figures(runs: int, prefill: int) -> None:
    timings = asyncio.run(batch_subscribe_cpu(runs, prefill))
    held = _prefill_batches(prefill) * BATCH
    print(
        f"1. batch subscribe of {BATCH} members, in-process ASGI, {held:,} members "
        "already on the audience (CPU per call; target <= 12 ms)"
    )
    for label, values in timings.items():
        print(f"  {label:<32} {_ms(values)}")
    blocks = batch_subscribe_server_cpu(runs, prefill)
    print(
        f"2. the same over a socket (serve: uvicorn + httptools), new members, push's fields: "
        f"server CPU per call, {held:,} members already on the audience"
    )
    print(f"  {'per call, blocks of 10 calls':<32} {_ms(blocks)}")


def email_activity_figures(records: int, count: int) -> None:
    figures = page_email_activity(records, count)
    print(f"3. email-activity paging, {figures['records']:,} records, count={count}, real socket")
    print(f"  seeding (control API fast path): {figures['seed_seconds']:.1f} s")
    print(f"  {figures['wall_seconds']:.1f} s wall, {figures['records_per_second']:,.0f} records/s")
    print(
        f"  sandbox CPU {figures['server_cpu_seconds']:.1f} s "
        f"({figures['server_cpu_share']:.0%} of wall), "
        f"client (httpx + JSON parsing) CPU {figures['client_cpu_seconds']:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--prefill", type=int, default=200_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--audience", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=10_000)
    args = parser.parse_args()

    if args.runs > 0:
        batch_subscribe_figures(args.runs, args.prefill)
    if args.records > 0:
        email_activity_figures(args.records, args.count)
    if args.audience > 0:
        status_listing_figures(args.audience, args.changes)


if __name__ == "__main__":
    main()
