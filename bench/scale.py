"""Scale-out benchmark: many syncs on 1, 2 and 4 worker processes (PostgreSQL job queue).

Prints figures; it is not a test. Every sync's source table and the state store live in
PostgreSQL; the Mailchimp sandbox runs in its own process with a fixed latency per call, and
several syncs share each API key (the sandbox enforces 10 connections per key and records the
most it saw). For each worker count: a fresh state store and sandbox, every sync's push put on
the queue, then N `campaign-bridge worker` processes; the makespan runs from the workers' start
until the last job succeeded. Then a worker is killed (kill -9) in the middle of a push and the
time until another worker finishes the job is measured.

The model. ``--concurrency`` is procrastinate's: how many jobs (syncs' pushes) one worker process
runs at once. Each job keeps up to its destination's ``concurrency`` (10 here) bulk calls of up to
500 members in flight, and every call holds one of its API key's 10 slots, shared by all syncs on
that key in every process (``--keys 4`` and 40 syncs: 10 syncs per key). Every API call, bulk or
not, is answered no sooner than ``--latency`` after it arrived. So the latency alone allows a
makespan of about (bulk calls x latency) / min(10 x keys, 10 x jobs running at once), plus each
job's handful of calls in sequence (the audience, its fields, member statuses) times the number of
job waves. A second worker doubles the jobs running at once and so halves what latency bounds; it
adds no core. Each round also reports the CPU seconds of the workers, of the sandbox and of the
PostgreSQL backends serving the bench's databases, per contact, and the makespan CPU alone allows
(``cpu_floor_s``: all cores busy, no process faster than one core): when that floor is close to
the makespan, the round is CPU-bound and more workers cannot shorten it. ``peak_connections``:
the most PostgreSQL connections open at once (state store, sources, whole server, and the
busiest worker by its application name; docs/scaling.md states a worker's bound).

Usage:
  .venv/bin/python bench/scale.py                              # 40 syncs x 25,000 contacts
  .venv/bin/python bench/scale.py --syncs 8 --contacts 2000    # a quick run
Targets (2 cores): makespan with 2 workers <= 0.6 x with 1; recovery <= 2 x --stalled-after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
CLI = str(ROOT / ".venv" / "bin" / "campaign-bridge")
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LIST_BODY = {
    "name": "Scale bench",
    "permission_reminder": "You signed up for the benchmark.",
    "email_type_option": False,
    "contact": {
        "company": "B",
        "address1": "1 Way",
        "city": "X",
        "state": "GA",
        "zip": "1",
        "country": "US",
    },
    "campaign_defaults": {
        "from_name": "Bench",
        "from_email": "bench@bench.invalid",
        "subject": "",
        "language": "en",
    },
}


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(CPU seconds of all its threads, seconds its main thread waited for a core) of ``pid``:
    a worker that waits for a core is starved by the machine, not by its own design."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    waited = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    return (int(fields[11]) + int(fields[12])) / ticks, waited


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving the given databases (the workers' state
    store and source connections, autovacuum on them), by database. Backends come and go: a
    thread samples ``/proc`` and keeps each backend's last figure (a short-lived one loses at most
    its last ``every`` seconds). PostgreSQL's shared background processes (WAL writer,
    checkpointer) are not counted."""

    def __init__(self, *databases: str, every: float = 0.25) -> None:
        self.databases = databases
        self.seen: dict[int, tuple[str, float]] = {}
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BackendCpu:
        self.sample()
        self._before = dict(self.seen)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                words = (entry / "cmdline").read_bytes().decode().split()
                if words[:1] != ["postgres:"]:
                    continue
                found = [name for name in self.databases if name in words]
                if found:
                    self.seen[int(entry.name)] = (found[0], cpu_seconds(int(entry.name))[0])
            except (OSError, ValueError, IndexError):
                continue  # it ended meanwhile

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def used(self, database: str) -> float:
        """CPU seconds the backends of ``database`` used since the block began."""
        return sum(
            cpu - self._before.get(pid, ("", 0.0))[1]
            for pid, (name, cpu) in self.seen.items()
            if name == database and pid not in OWN_BACKENDS
        )


class ConnectionPeak:
    """The most PostgreSQL connections open at once during the block (``pg_stat_activity``,
    sampled every ``every`` seconds from one connection of its own, not counted): to the state
    store, to the sources, to the whole server, and of the busiest worker process (by the
    application name each worker gives its connections). Client connections only: the parallel
    workers of a VACUUM show their leader's name but take no ``max_connections`` slot."""

    SQL = """
    SELECT count(*) FILTER (WHERE datname = %(state)s),
           count(*) FILTER (WHERE datname = %(source)s),
           count(*),
           coalesce((SELECT max(n) FROM (
               SELECT count(*) AS n FROM pg_stat_activity
                WHERE application_name LIKE 'campaign-bridge worker %%'
                  AND backend_type = 'client backend'
                GROUP BY application_name) AS per_worker), 0)
      FROM pg_stat_activity
     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
    """

    def __init__(self, state: str, source: str, every: float = 0.25) -> None:
        self.names = {"state": state, "source": source}
        self.peak = [0, 0, 0, 0]
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConnectionPeak:
        self._conn = psycopg.connect(ADMIN_URL, autocommit=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            row = self._conn.execute(self.SQL, self.names).fetchone()
            if row is not None:
                self.peak = [max(a, int(b)) for a, b in zip(self.peak, row, strict=True)]

    def figures(self) -> dict[str, int]:
        state, source, server, worker = self.peak
        return {"state store": state, "sources": source, "server": server, "one worker": worker}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def database() -> Iterator[str]:
    name = f"cb_scale_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        conn = _POLLERS.pop(url, None)
        if conn is not None:
            conn.close()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def load_sources(url: str, syncs: int, contacts: int) -> None:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for s in range(syncs):
            table = f"contacts_{s}"
            conn.execute(
                f"CREATE TABLE {table} (id bigint PRIMARY KEY, email text NOT NULL, "
                "first_name text, consent boolean)"
            )
            with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as copy:
                buf = io.StringIO()
                for i in range(1, contacts + 1):
                    buf.write(f"{i}\tc{i}@s{s}.bench.test\tF{i}\tt\n")
                copy.write(buf.getvalue())
    print(f"loaded {syncs} x {contacts:,} source rows in {time.perf_counter() - started:.1f}s")


@contextlib.contextmanager
def sandbox(latency: float) -> Iterator[tuple[str, int]]:
    """The sandbox's root URL and process id."""
    port = free_port()
    proc = subprocess.Popen(
        [CLI, "sandbox", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{root}/_sandbox/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        httpx.post(f"{root}/_sandbox/limits", json={"latency": latency, "latency_per_item": 0})
        yield root, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def configure(root: str, source_url: str, state_url: str, args: argparse.Namespace) -> Path:
    keys = [
        httpx.post(f"{root}/_sandbox/keys", json={}).json()["api_key"] for _ in range(args.keys)
    ]
    lines = [f'state_url = "{state_url}"', 'log_level = "WARNING"', 'data_dir = "/tmp/cb-scale"']
    for s in range(args.syncs):
        key = keys[s % len(keys)]
        list_id = httpx.post(f"{root}/3.0/lists", json=LIST_BODY, auth=("b", key)).json()["id"]
        lines += [
            f"[syncs.s{s}]",
            'fields = { FNAME = "first_name" }',
            f"[syncs.s{s}.source]",
            f'url = "{source_url}"',
            f'table = "contacts_{s}"',
            'consent_column = "consent"',
            "chunk_size = 5000",
            f"[syncs.s{s}.destination]",
            f'api_key = "{key}"',
            f'list_id = "{list_id}"',
            f'base_url = "{root}/3.0"',
            "concurrency = 10",
        ]
    path = Path(f"/tmp/cb-scale-{uuid.uuid4().hex[:6]}.toml")
    path.write_text("\n".join(lines) + "\n")
    CONFIGS.append(path)
    return path


CONFIGS: list[Path] = []  # removed when the bench ends


def enqueue_all(config: Path, syncs: list[str]) -> None:
    from campaign_bridge.config import load_settings
    from campaign_bridge.worker import enqueue

    settings = load_settings(config)

    async def run() -> None:
        for name in syncs:
            await enqueue(settings, name, "push")

    asyncio.run(run())


def workers(config: Path, count: int, args: argparse.Namespace) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    env["CAMPAIGN_BRIDGE_CONFIG"] = str(config)
    command = [CLI, "worker", "--no-schedule", "--concurrency", str(args.concurrency)]
    command += ["--heartbeat", str(args.heartbeat), "--stalled-after", str(args.stalled_after)]
    return [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]


_POLLERS: dict[str, psycopg.Connection[Any]] = {}
OWN_BACKENDS: set[int] = set()  # the bench's own: not the system's CPU


def poller(url: str) -> psycopg.Connection[Any]:
    """One connection per database for the bench's polling (not a new backend 5 times a
    second, which would load the machine the bench measures)."""
    conn = _POLLERS.get(url)
    if conn is None or conn.closed:
        conn = _POLLERS[url] = psycopg.connect(url, autocommit=True)
        OWN_BACKENDS.add(conn.info.backend_pid)
    return conn


def jobs(url: str, where: str = "TRUE") -> int:
    row = (
        poller(url)
        .execute(
            f"SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'campaign_bridge.push' "
            f"AND {where}"
        )
        .fetchone()
    )
    return int(row[0]) if row else 0


def wait_for(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.2)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=120)


def migrate(config: Path) -> None:
    env = {**os.environ, "CAMPAIGN_BRIDGE_CONFIG": str(config)}
    subprocess.run([CLI, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)


def round_with(count: int, source_url: str, args: argparse.Namespace) -> dict[str, Any]:
    with database() as state_url, sandbox(args.latency) as (root, server):
        config = configure(root, source_url, state_url, args)
        migrate(config)
        names = [f"s{s}" for s in range(args.syncs)]
        enqueue_all(config, names)
        with (
            BackendCpu(db_name(state_url), db_name(source_url)) as backends,
            ConnectionPeak(db_name(state_url), db_name(source_url)) as connections,
        ):
            sandbox_before = cpu_seconds(server)[0]
            started = time.monotonic()
            procs = workers(config, count, args)
            try:
                wait_for(
                    lambda: jobs(state_url, "status = 'succeeded'") == len(names), args.timeout
                )
                makespan = time.monotonic() - started
                used = [cpu_seconds(proc.pid) for proc in procs]
                sandbox_cpu = cpu_seconds(server)[0] - sandbox_before
                backends.sample()
            finally:
                stop(procs)
        pg_state, pg_source = backends.used(db_name(state_url)), backends.used(db_name(source_url))
        pg_cpu = pg_state + pg_source
        limits = httpx.get(f"{root}/_sandbox/limits").json()
        failed = jobs(state_url, "status = 'failed'")
    peaks = limits["peak_in_flight"]
    rejected = limits["rejected"]
    total = args.syncs * args.contacts
    worker_cpu = sum(cpu for cpu, _ in used)
    cores = os.cpu_count() or 1
    # What CPU alone allows: every core busy, and no process faster than one core (a worker's
    # Python runs on one core at a time; so does the sandbox's).
    floor = max((worker_cpu + sandbox_cpu + pg_cpu) / cores, sandbox_cpu, *(c for c, _ in used))
    return {
        "workers": count,
        "makespan_s": round(makespan, 1),
        "contacts_per_s": round(total / makespan),
        "max_concurrent_per_key": max(peaks.values()) if peaks else None,
        "rejected_429": rejected,
        "failed_jobs": failed,
        "worker_cpu_s": round(worker_cpu, 1),
        "worker_runqueue_wait_s": round(sum(wait for _, wait in used), 1),
        "sandbox_cpu_s": round(sandbox_cpu, 1),
        "postgres_cpu_s": {"state store": round(pg_state, 1), "sources": round(pg_source, 1)},
        "cpu_us_per_contact": {
            "worker": round(worker_cpu / total * 1e6),
            "sandbox": round(sandbox_cpu / total * 1e6),
            "postgres": round(pg_cpu / total * 1e6),
        },
        "cpu_floor_s": round(floor, 1),
        "peak_connections": connections.figures(),
    }


def db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def recovery(source_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """kill -9 the worker running a push; how long until another worker has finished it."""
    with database() as state_url, sandbox(args.latency) as (root, _):
        config = configure(root, source_url, state_url, args)
        migrate(config)
        enqueue_all(config, ["s0"])
        (doomed,) = workers(config, 1, args)
        wait_for(lambda: confirmed(state_url) >= args.contacts // 5, args.timeout)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        killed = time.monotonic()
        left = args.contacts - confirmed(state_url)
        if jobs(state_url, "status = 'succeeded'") == 1:
            # nothing to recover (and no other worker would ever take the job): say so
            return {"recovery": "the push finished before the kill landed: use more --contacts"}
        first_worker = job_worker(state_url)
        rescuers = workers(config, 1, args)
        try:
            wait_for(lambda: job_worker(state_url) not in (None, first_worker), args.timeout)
            picked_up = time.monotonic() - killed
            wait_for(lambda: jobs(state_url, "status = 'succeeded'") == 1, args.timeout)
            finished = time.monotonic() - killed
        finally:
            stop(rescuers)
    return {
        "contacts_left_at_kill": left,
        "kill_to_picked_up_s": round(picked_up, 1),
        "kill_to_finished_s": round(finished, 1),
        "stalled_after_s": args.stalled_after,
    }


def confirmed(url: str) -> int:
    row = poller(url).execute("SELECT count(*) FROM cb_contact_state").fetchone()
    return int(row[0]) if row else 0


def job_worker(url: str) -> int | None:
    row = (
        poller(url)
        .execute(
            "SELECT worker_id FROM procrastinate_jobs WHERE task_name = 'campaign_bridge.push'"
        )
        .fetchone()
    )
    return None if row is None or row[0] is None else int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--syncs", type=int, default=40)
    parser.add_argument("--contacts", type=int, default=25_000, help="per sync")
    parser.add_argument("--keys", type=int, default=4, help="API keys the syncs share")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=8, help="jobs per worker process")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per API call")
    parser.add_argument("--heartbeat", type=float, default=2.0)
    parser.add_argument("--stalled-after", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--no-recovery", action="store_true")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}; cpus: {os.cpu_count()}")
    print(
        f"{args.syncs} syncs x {args.contacts:,} contacts, {args.keys} API keys shared, "
        f"{args.latency}s per call, {args.concurrency} jobs per worker"
    )
    try:
        run(args)
    finally:
        for path in CONFIGS:
            path.unlink(missing_ok=True)
    print(f"load average at the end: {os.getloadavg()}")


def run(args: argparse.Namespace) -> None:
    results = []
    with database() as source_url:
        load_sources(source_url, args.syncs, args.contacts)
        for count in (int(n) for n in args.workers.split(",")):
            result = round_with(count, source_url, args)
            results.append(result)
            print(result, f"load average {os.getloadavg()[0]:.1f}", flush=True)
        bulk_calls = args.syncs * -(-args.contacts // 500)
        for result in results:
            in_flight = min(10 * args.keys, 10 * args.concurrency * result["workers"])
            print(
                f"{result['workers']} worker(s): makespan {result['makespan_s']}s; CPU allows "
                f"{result['cpu_floor_s']}s; the bulk calls' latency alone "
                f"{bulk_calls * args.latency / in_flight:.1f}s ({bulk_calls} calls, "
                f"{in_flight} in flight at most)"
            )
        if len(results) >= 2:
            ratio = results[1]["makespan_s"] / results[0]["makespan_s"]
            print(f"makespan {results[1]['workers']} / {results[0]['workers']}: {ratio:.2f}")
        if not args.no_recovery:
            print(recovery(source_url, args), flush=True)


if __name__ == "__main__":
    sys.exit(main())
