"""Webhook receiver benchmark: `campaign-bridge serve` (one uvicorn worker) storing durably in
PostgreSQL, driven by a load generator in another process over loopback.

Prints figures; it is not a test. Two phases, each bounded in count and time:

  (1) sustained: as many requests as the server takes, closed loop on N keep-alive connections
      -> requests/s (every one answered 200 and committed)         target >= 2,000 req/s
  (2) paced at 1,000 requests/s (open loop, latency measured from each request's scheduled
      send time, so a stall is not hidden) -> p50 / p99              target p99 <= 50 ms

Also printed: serve's CPU per request in both phases, PostgreSQL's own latency for one durable
commit just before phase 2 (the floor under every answer on this machine at that moment), and
that every acknowledged delivery was committed and applied once (one cb_member_status row each).

Usage:
  .venv/bin/python bench/webhooks.py                      # 20,000 sustained, 10 s at 1,000/s
  .venv/bin/python bench/webhooks.py --no-sync            # receiving + storing only
  .venv/bin/python bench/webhooks.py --requests 5000 --paced-seconds 5

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust), as in the test setup. A scratch
database is created and dropped. Every body is a distinct, valid Mailchimp `subscribe` delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

ADMIN_URL = os.environ.get(
    "CB_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TOKEN = "bench-webhook-token-0123456789abcdef"
LIST_ID = "a6b5da1054"
CLI = str(Path(sys.executable).with_name("campaign-bridge"))


def _request(n: int, run: str, host: str, port: int) -> bytes:
    body = urlencode(
        [
            ("type", "subscribe"),
            ("fired_at", "2026-11-26 10:00:00"),
            ("data[id]", f"{n:010x}"),
            ("data[list_id]", LIST_ID),
            ("data[email]", f"bench-{run}-{n}@bridge-test.org"),
            ("data[email_type]", "html"),
            ("data[merges][EMAIL]", f"bench-{run}-{n}@bridge-test.org"),
            ("data[merges][FNAME]", "Bench"),
            ("data[merges][LNAME]", str(n)),
            ("data[ip_opt]", "10.20.10.30"),
        ]
    ).encode()
    head = (
        f"POST /webhooks/mailchimp/{TOKEN} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "User-Agent: MailChimp.com\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def _sustained(host: str, port: int, total: int, connections: int, limit: float) -> dict:
    run = uuid.uuid4().hex[:6]
    counter = iter(range(total))
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + limit

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for n in counter:
                if time.monotonic() > deadline:
                    return
                writer.write(_request(n, run, host, port))
                status = await _read_response(reader)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    done = sum(statuses.values())
    return {"requests": done, "seconds": elapsed, "rps": done / elapsed, "statuses": statuses}


async def _paced(host: str, port: int, rate: float, seconds: float, connections: int) -> dict:
    run = uuid.uuid4().hex[:6]
    total = int(rate * seconds)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    start = time.perf_counter() + 0.2

    async def one(n: int) -> None:
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        reader, writer = await pool.get()
        try:
            writer.write(_request(n, run, host, port))
            status = await _read_response(reader)
        finally:
            pool.put_nowait((reader, writer))
        latencies.append(time.perf_counter() - due)
        statuses[status] = statuses.get(status, 0) + 1

    tasks = [asyncio.create_task(one(n)) for n in range(total)]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 60)
    while not pool.empty():
        _r, w = pool.get_nowait()
        w.close()
    latencies.sort()
    return {
        "requests": len(latencies),
        "rate": rate,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "max_ms": latencies[-1] * 1000,
        "statuses": statuses,
    }


def _client(kind: str, args: tuple, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    started = time.process_time()
    coro = _sustained(*args) if kind == "sustained" else _paced(*args)
    result = asyncio.run(coro)
    result["client_cpu"] = time.process_time() - started
    out.put(result)


def _in_other_process(kind: str, *args: object) -> dict:
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    proc = multiprocessing.Process(target=_client, args=(kind, args, out))
    proc.start()
    result = out.get(timeout=600)
    proc.join(timeout=30)
    return result


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rows(url: str) -> tuple[int, int]:
    """(rows stored, rows not applied yet)."""
    import sqlalchemy as sa

    from campaign_bridge.db import create_engine

    engine = create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        total, pending = conn.execute(
            sa.text("SELECT count(*), count(*) - count(applied_at) FROM cb_webhook_events")
        ).one()
    engine.dispose()
    return int(total), int(pending)


def _members(url: str) -> int:
    """Rows in cb_member_status: one per applied subscribe (each delivery is a new member)."""
    import sqlalchemy as sa

    from campaign_bridge.db import create_engine

    engine = create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM cb_member_status")).scalar_one()
    engine.dispose()
    return int(count)


def _drain(url: str, limit: float = 180.0) -> tuple[float, int]:
    """Wait until every stored event is applied; (seconds waited, events left)."""
    started = time.monotonic()
    pending = _rows(url)[1]
    while pending and time.monotonic() - started < limit:
        time.sleep(0.5)
        pending = _rows(url)[1]
    return time.monotonic() - started, pending


def _commit_latency(url: str, commits: int = 200, interval: float = 0.01) -> tuple[float, float]:
    """(p50, p99) seconds of one durable single-row commit on PostgreSQL alone, no HTTP: the
    floor under every acknowledged delivery's latency on this machine at this moment."""
    import psycopg
    import sqlalchemy as sa

    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    seconds = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_commit (id bigserial PRIMARY KEY, payload text)")
        for _ in range(commits):
            started = time.perf_counter()
            conn.execute("INSERT INTO bench_commit (payload) VALUES (%s)", ("x" * 400,))
            seconds.append(time.perf_counter() - started)
            time.sleep(interval)
        conn.execute("DROP TABLE bench_commit")
    seconds.sort()
    return statistics.median(seconds), seconds[int(len(seconds) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="sustained phase: total")
    parser.add_argument("--connections", type=int, default=128, help="client connections")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced phase: requests/s")
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--time-limit", type=float, default=60.0, help="sustained phase cap, s")
    parser.add_argument(
        "--no-sync",
        action="store_true",
        help="configure no sync: events are stored and marked (no list matches) instead of "
        "applied, which isolates receiving + durable storage from applying",
    )
    args = parser.parse_args()

    import sqlalchemy as sa

    from campaign_bridge import migrations
    from campaign_bridge.db import create_engine

    name = f"cb_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    port = _free_port()
    process = None
    try:
        migrations.upgrade(url)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "campaign-bridge.toml"
            config.write_text(
                f'state_url = "{url}"\nlog_level = "WARNING"\nlog_format = "json"\n\n'
                f'[server]\nport = {port}\nwebhook_tokens = ["{TOKEN}"]\n\n'
                + (
                    ""
                    if args.no_sync
                    else f'[syncs.bench.source]\nurl = "sqlite:///{tmp}/source.db"\n'
                    f'table = "contacts"\n\n[syncs.bench.destination]\n'
                    f'api_key = "{"0" * 32}-us6"\nlist_id = "{LIST_ID}"\n'
                ),
                encoding="utf-8",
            )
            log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115
            process = subprocess.Popen(
                [CLI, "--config", str(config), "serve"], stdout=log, stderr=subprocess.STDOUT
            )
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise SystemExit("serve did not start") from None
                    time.sleep(0.1)

            print(
                f"serve: 1 uvicorn worker, state store PostgreSQL ({name}), loopback client; "
                + ("no sync: events stored, not applied" if args.no_sync else "events applied")
            )
            warm = _in_other_process("sustained", "127.0.0.1", port, 500, 16, 30.0)
            print(f"warm-up: {warm['requests']} requests")
            cpu0 = _cpu_seconds(process.pid)
            result = _in_other_process(
                "sustained", "127.0.0.1", port, args.requests, args.connections, args.time_limit
            )
            cpu = _cpu_seconds(process.pid) - cpu0
            print(
                f"(1) sustained: {result['requests']} requests in {result['seconds']:.2f} s = "
                f"{result['rps']:,.0f} requests/s on {args.connections} connections "
                f"(statuses {result['statuses']})   target >= 2,000 req/s"
            )
            per_request = cpu / max(result["requests"], 1)
            print(
                f"    serve CPU: {cpu:.2f} s = {per_request * 1e6:,.0f} us per request "
                f"(~{1 / per_request:,.0f} requests/s per fully used core; load average "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores during the run)"
            )
            waited, left = _drain(url)
            print(
                f"    applier: backlog applied {waited:.1f} s after the flood ended"
                + (f" ({left} events still pending)" if left else "")
            )
            floor = _commit_latency(url)
            print(
                f"    PostgreSQL alone, one durable commit (just before phase 2): "
                f"p50 {floor[0] * 1000:.1f} ms, p99 {floor[1] * 1000:.1f} ms"
            )
            cpu0 = _cpu_seconds(process.pid)
            paced = _in_other_process(
                "paced", "127.0.0.1", port, args.rate, args.paced_seconds, args.connections
            )
            cpu = _cpu_seconds(process.pid) - cpu0
            print(
                f"(2) paced at {paced['rate']:,.0f}/s: {paced['requests']} requests, "
                f"p50 {paced['p50_ms']:.1f} ms, p99 {paced['p99_ms']:.1f} ms, "
                f"max {paced['max_ms']:.1f} ms (statuses {paced['statuses']})   "
                "target p99 <= 50 ms"
            )
            print(
                f"    serve CPU: {cpu:.2f} s = {cpu / max(paced['requests'], 1) * 1e6:,.0f} us per "
                f"request, {cpu / args.paced_seconds:.0%} of a core; load generator "
                f"{paced['client_cpu'] / max(paced['requests'], 1) * 1e6:,.0f} us per request "
                f"(load average {os.getloadavg()[0]:.1f})"
            )
            stored = _rows(url)[0]
            sent = warm["requests"] + result["requests"] + paced["requests"]
            print(f"rows committed: {stored} of {sent} distinct deliveries acknowledged")
            if not args.no_sync:
                waited, left = _drain(url)
                print(
                    f"applied: {_members(url)} members in cb_member_status for {sent} distinct "
                    f"subscribe deliveries, {left} events pending ({waited:.1f} s after phase 2)"
                )
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            log.close()
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


if __name__ == "__main__":
    main()
