"""A worker's connections to the state store: one pool per process, within its stated bound, and
the sync locks and key slots as sound on shared connections as on a connection each."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from campaign_bridge import migrations, state_pool
from campaign_bridge.config import load_settings
from campaign_bridge.db import create_engine
from campaign_bridge.keyslots import CURRENT_SYNC, KeySlots, key_hash, libpq_conninfo
from campaign_bridge.pull import run_pull
from campaign_bridge.push import run_push
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle, run_in_thread
from campaign_bridge.state_pool import ConnectionBudget, shared_state_engine
from campaign_bridge.store import StateStore
from campaign_bridge.synclock import SyncBusy, SyncLock
from campaign_bridge.worker import enqueue
from tests.integration.scale.helpers import CLI, cli_env, make_contacts, scalar, write_config

KEY = key_hash("us1.api.mailchimp.com", "0123456789abcdef0123456789abcdef-us1")


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    with run_in_thread() as handle:
        yield handle


@pytest.fixture
def state_url(postgresql_url: str) -> str:
    migrations.upgrade(postgresql_url)
    return postgresql_url


def _contacts_in_state_database(url: str, sync: str, rows: int) -> None:
    table = f"contacts_{sync}"
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, email text, first_name text, "
            "consent boolean)"
        )
        conn.execute(
            f"INSERT INTO {table} SELECT g, 'p' || g || '@{sync}.test', 'P' || g, true "
            f"FROM generate_series(1, {rows}) AS g"
        )


class _Census:
    """Samples ``pg_stat_activity`` for the state database from one connection of its own: the
    most connections at once (all of them, and those named as the worker), while jobs ran.
    Parallel workers (a VACUUM's) show the leader's name but take no connection slot."""

    def __init__(self, url: str, application_name: str) -> None:
        self.conn = psycopg.connect(libpq_conninfo(url), autocommit=True)
        self.name = application_name
        self.peak_all = self.peak_named = self.peak_jobs = self.samples = self.succeeded = 0
        self.strangers: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Census:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.conn.close()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            backends = self.conn.execute(
                "SELECT coalesce(application_name, '') FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"  # not a VACUUM's parallel workers
            ).fetchall()
            row = self.conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'doing'), "
                "count(*) FILTER (WHERE status = 'succeeded') FROM procrastinate_jobs"
            ).fetchone()
            assert row is not None
            jobs, self.succeeded = int(row[0]), int(row[1])
            if jobs == 0:
                continue  # starting or stopping: the worker's pools are not all open
            self.samples += 1
            named = [name for (name,) in backends if name == self.name]
            self.strangers |= {name for (name,) in backends if name != self.name}
            self.peak_all = max(self.peak_all, len(backends))
            self.peak_named = max(self.peak_named, len(named))
            self.peak_jobs = max(self.peak_jobs, jobs)


def test_a_worker_at_concurrency_4_stays_within_its_connection_bound(
    tmp_path: Path, state_url: str, sandbox: SandboxHandle
) -> None:
    concurrency, syncs, rows = 4, 8, 2000
    sandbox.sandbox.limits.latency = 0.2  # jobs long enough to overlap
    # Half the syncs read their source from the state database itself (the shared pool then
    # holds their streaming reads too), half from SQLite files.
    sources: dict[str, str] = {}
    for i in range(syncs):
        if i % 2:
            sources[f"s{i}"] = make_contacts(tmp_path / f"s{i}.db", f"s{i}", rows)
        else:
            _contacts_in_state_database(state_url, f"s{i}", rows)
            sources[f"s{i}"] = state_url
    config = write_config(
        tmp_path / "bridge.toml",
        state_url,
        sources,
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        list_id=sandbox.list_id,
        chunk_size=500,
    )
    text = config.read_text()
    for i in range(0, syncs, 2):  # the tables in the state database have their own names
        text = text.replace(
            f'[syncs.s{i}.source]\nurl = "{state_url}"\ntable = "contacts"',
            f'[syncs.s{i}.source]\nurl = "{state_url}"\ntable = "contacts_s{i}"',
        )
    config.write_text(text)
    settings = load_settings(config)

    async def enqueue_all() -> None:
        for sync in sources:
            assert await enqueue(settings, sync, "push") is not None

    asyncio.run(enqueue_all())

    log = tmp_path / "worker.log"
    with log.open("w") as err:
        worker = subprocess.Popen(
            [str(CLI), "worker", "--concurrency", str(concurrency), "--no-schedule"],
            env=cli_env(config),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    name = state_pool.worker_application_name(worker.pid)
    try:
        with _Census(state_url, name) as census:
            deadline = time.monotonic() + 240
            while census.succeeded < syncs:
                assert worker.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=90)

    bound = ConnectionBudget(concurrency).total
    print(f"peak {census.peak_named} of the worker's, {census.peak_all} in all; bound {bound}")
    assert bound == concurrency + 8  # what docs/scaling.md states
    assert census.peak_jobs == concurrency, "the jobs never ran 4 at once: nothing was measured"
    assert census.samples > 10
    assert census.strangers == set()  # every connection to the state database is the worker's
    assert census.peak_named <= bound
    assert census.peak_all <= bound
    assert census.peak_named > ConnectionBudget(concurrency).queue  # it did count the jobs'
    assert "at most" in log.read_text()  # the worker said its bound when it started
    assert len(sandbox.sandbox.lists[sandbox.list_id].members) == syncs * rows


def test_push_and_pull_progress_on_a_pool_of_one_connection(
    tmp_path: Path, state_url: str, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No thread of a run holds a state store connection while it waits for another (its own or
    another thread's): with a single connection every part takes its turn, so no pool size can
    deadlock a worker (a hold-and-wait would time out here)."""
    monkeypatch.setattr(state_pool, "WAIT_FOR_CONNECTION", 15.0)
    sources = {"crm": make_contacts(tmp_path / "crm.db", "crm", 1200)}
    config = write_config(
        tmp_path / "bridge.toml",
        state_url,
        sources,
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        list_id=sandbox.list_id,
        chunk_size=200,
    )
    settings = load_settings(config)

    async def runs() -> None:
        pushed = await run_push(settings, "crm")
        assert pushed.error is None, pushed.error
        await run_pull(settings, "crm")
        again = await run_push(settings, "crm")
        assert again.error is None, again.error

    with shared_state_engine(state_url, size=1, application_name="pool-of-one") as engine:
        assert engine.pool.size() == 1
        asyncio.run(runs())
        assert create_engine(state_url) is engine  # every run drew on it...
        assert engine.pool.checkedout() == 0  # ...and gave its connection back
        with engine.connect() as conn:  # one backend served them all
            assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
    assert scalar(state_url, "SELECT count(*) FROM cb_contact_state") == 1200
    assert scalar(state_url, "SELECT count(*) FROM cb_consent_ledger") == 1200
    assert len(sandbox.sandbox.lists[sandbox.list_id].members) == 1200


def test_a_sync_lock_belongs_to_its_run_not_to_the_connection(state_url: str) -> None:
    """Two runs on one shared connection: the lock stays with the run that took it while the
    connection serves the other, and passes on only when released."""

    async def main() -> None:
        with shared_state_engine(state_url, size=1, application_name="one") as engine:
            first = SyncLock(StateStore(state_url), "crm", owner="host:1:first")
            second = SyncLock(StateStore(state_url), "crm", owner="host:2:second")
            await first.acquire()
            with pytest.raises(SyncBusy, match="host:1:first"):
                await second.acquire()
            first.ensure()  # still the first run's, after its connection served the second
            with engine.connect() as conn:
                held = conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                ).scalar_one()
            assert held == 0  # nothing of the lock stays on the connection
            await first.release()
            await second.acquire()
            await second.release()

    asyncio.run(main())


def test_key_slots_on_one_shared_connection_keep_the_limit(state_url: str) -> None:
    """A process's slot claims share connections: the slots it holds are leases in rows, so the
    key's limit holds across holders although each claim's connection went back to the pool."""
    limit = 2

    async def main() -> None:
        one = KeySlots(libpq_conninfo(state_url), owner="host:1:one", size=1)
        two = KeySlots(libpq_conninfo(state_url), owner="host:2:two", size=1)
        await one.open()
        await two.open()
        try:
            CURRENT_SYNC.set("a")
            held = [await one.acquire(KEY, limit) for _ in range(limit)]
            async with one._pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT count(*) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                )
                row = await cursor.fetchone()
            assert row is not None
            assert row[0] == 0  # the claims' turns ended with them
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(two.acquire(KEY, limit), 1.5)
            await one.release(KEY, held[0])
            got = await asyncio.wait_for(two.acquire(KEY, limit), 10)
            assert got == held[0]
            await two.release(KEY, got)
            await one.release(KEY, held[1])
        finally:
            await one.close()
            await two.close()

    asyncio.run(main())


def test_start_up_warns_when_the_workers_would_exceed_the_servers_connections(
    state_url: str,
) -> None:
    """The check a worker makes as it starts: the workers beating now, itself, and the other
    connections, against max_connections less the reserved ones."""
    engine = create_engine(state_url)
    try:
        with engine.begin() as conn:  # two other workers beating now, one long dead
            conn.exec_driver_sql(
                "INSERT INTO procrastinate_workers (last_heartbeat) VALUES "
                "(now()), (now() - interval '1 second'), (now() - interval '1 hour')"
            )
            allowed = conn.exec_driver_sql(
                "SELECT current_setting('max_connections')::int "
                "- current_setting('superuser_reserved_connections')::int"
            ).scalar_one()
        big = ConnectionBudget(concurrency=allowed // 3)  # three of them cannot fit
        warning = state_pool.check_headroom(engine, big, stalled_after=30)
        assert warning is not None
        assert f"3 worker(s) at {big.total} connections each" in warning
        assert f"the server allows {allowed}" in warning
        assert "lower --concurrency" in warning
        assert state_pool.check_headroom(engine, ConnectionBudget(1), stalled_after=30) is None
    finally:
        engine.dispose()
