"""A worker process's connections to the PostgreSQL state store: one shared pool, a known bound.

A worker runs ``concurrency`` jobs at once. Each job opens the state store the way a manual run
does (``StateStore(url)``, ``create_engine(state_url)``), and used to get an engine, and a pool,
of its own. In a worker, :func:`shared_state_engine` installs **one** engine for the state URL for
the whole process (:func:`campaign_bridge.db.share_engine`): every job, the sync locks, the
privacy gate, the webhook job, a source or write-back table kept in the state database, draw on
its pool, whose size is fixed (no overflow). A caller's ``engine.dispose()`` leaves it alone.

:class:`ConnectionBudget` says how many connections a worker holds at most, by part; every one
carries the application name :func:`worker_application_name`, so ``pg_stat_activity`` shows
them per worker. :func:`check_headroom` warns at start-up when the workers already beating,
this one and the other clients would need more connections than the server allows.

Why sharing connections keeps the locks sound: nothing the bridge holds across statements is
bound to a connection. A sync's lock is a row of ``cb_locks`` with an owner and an expiry, a key
slot a row of ``cb_key_slots`` with a lease; the only advisory locks are transaction-scoped
(``pg_advisory_xact_lock``: a key slot claim's turn, migrations), released by the commit that
ends the statement, before the connection goes back to the pool. A session-level advisory
lock (``pg_advisory_lock``) must never be taken on a pooled connection: it would stay with the
connection, not with the run, and be "held" by whichever job next draws it. And no thread holds a
state store connection while it waits for another, so any pool size lets every job progress
(tests/integration/scale/test_state_pool.py pushes on a pool of one connection).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge.db import create_engine, share_engine
from campaign_bridge.keyslots import POOL_SIZE as KEY_SLOTS

__all__ = [
    "APPLICATION_PREFIX",
    "ConnectionBudget",
    "SharedPool",
    "check_headroom",
    "shared_state_engine",
    "worker_application_name",
]

logger = logging.getLogger(__name__)

APPLICATION_PREFIX = "campaign-bridge worker "
QUEUE_POOL = 2  # procrastinate's pool: fetching, finishing jobs, heartbeats, periodic defers
QUEUE_LISTENER = 1  # procrastinate's LISTEN connection, outside its pool
STATE_SPARE = 2  # state store connections beyond one per running job
WAIT_FOR_CONNECTION = 120.0  # seconds a job's thread waits for a state store connection


@dataclass(frozen=True)
class ConnectionBudget:
    """The most connections one worker process opens to the state store's server, by part."""

    concurrency: int

    @property
    def state_store(self) -> int:
        """The shared engine's pool: one connection per running job, plus two (a job whose
        source is in the state database holds one while it reads)."""
        return self.concurrency + STATE_SPARE

    @property
    def queue(self) -> int:
        return QUEUE_POOL + QUEUE_LISTENER

    @property
    def key_slots(self) -> int:
        return KEY_SLOTS

    @property
    def total(self) -> int:
        return self.state_store + self.queue + self.key_slots

    def describe(self) -> str:
        return (
            f"{self.total} PostgreSQL connections at most (state store {self.state_store}, "
            f"job queue {self.queue}, key slots {self.key_slots})"
        )


def worker_application_name(pid: int | None = None, host: str | None = None) -> str:
    """``campaign-bridge worker <pid>@<host>``, cut to PostgreSQL's 63 characters."""
    pid = os.getpid() if pid is None else pid
    host = socket.gethostname() if host is None else host
    return f"{APPLICATION_PREFIX}{pid}@{host}"[:63]


class SharedPool(sa.pool.QueuePool):
    """A fixed-size pool that a caller's ``engine.dispose()`` does not close or replace (each
    job disposes of "its" engine when it ends); :meth:`close` closes it."""

    def dispose(self) -> None:
        """Left open: the pool belongs to the process, not to the caller that disposes."""

    def recreate(self) -> SharedPool:
        return self

    def close(self) -> None:
        super().dispose()

    def _do_get(self) -> sa.pool.ConnectionPoolEntry:
        try:
            return super()._do_get()
        except sa.exc.TimeoutError as exc:
            raise sa.exc.TimeoutError(
                f"no state store connection came free within {self._timeout:g}s: all "
                f"{self.size()} of this worker's (--concurrency + {STATE_SPARE}) stayed busy. "
                "The state store is overloaded or a statement hangs: check the server's load "
                "and pg_stat_activity, then run the sync again"
            ) from exc


@contextlib.contextmanager
def shared_state_engine(url: str, *, size: int, application_name: str) -> Iterator[Engine]:
    """One engine of ``size`` connections for ``url`` in this process until the block ends:
    :func:`campaign_bridge.db.create_engine` of ``url`` returns it meanwhile."""
    engine = create_engine(
        url,
        poolclass=SharedPool,
        pool_size=size,
        max_overflow=0,
        pool_timeout=WAIT_FOR_CONNECTION,
        connect_args={"application_name": application_name},
    )
    try:
        with share_engine(url, engine):
            yield engine
    finally:
        pool = engine.pool
        if isinstance(pool, SharedPool):
            pool.close()


_SERVER_LIMITS = """
SELECT current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int,
       coalesce(current_setting('reserved_connections', true), '0')::int,
       (SELECT count(*) FROM pg_stat_activity
         WHERE coalesce(backend_type, 'client backend') = 'client backend'
           AND pid <> pg_backend_pid() AND coalesce(application_name, '') NOT LIKE :workers)
"""
_LIVE_WORKERS = """
SELECT count(*) FROM procrastinate_workers
 WHERE last_heartbeat > now() - make_interval(secs => :stalled_after)
"""


def check_headroom(engine: Engine, budget: ConnectionBudget, stalled_after: float) -> str | None:
    """A warning when the server may run out of connections with one more worker: the workers
    beating now and this one, each at ``budget`` (assuming they run at the same concurrency),
    plus every other connection open now, against ``max_connections`` less the reserved ones.
    None when they fit (or the figures cannot be read: this check never stops a worker)."""
    try:
        with engine.connect() as conn:
            limits = conn.execute(
                sa.text(_SERVER_LIMITS), {"workers": f"{APPLICATION_PREFIX}%"}
            ).one()
            live = int(
                conn.execute(sa.text(_LIVE_WORKERS), {"stalled_after": stalled_after}).scalar_one()
            )
    except sa.exc.SQLAlchemyError as exc:
        logger.info("could not read the server's connection limits: %s", exc)
        return None
    max_connections, superuser_reserved, reserved, others = (int(v) for v in limits)
    allowed = max_connections - superuser_reserved - reserved
    workers = live + 1
    needed = workers * budget.total + others
    if needed <= allowed:
        return None
    return (
        f"{workers} worker(s) at {budget.total} connections each (--concurrency "
        f"{budget.concurrency}) and the {others} other connection(s) open now need {needed}; "
        f"the server allows {allowed} ({max_connections} max_connections less "
        f"{superuser_reserved + reserved} reserved). Jobs may fail with 'too many clients': "
        "lower --concurrency, run fewer workers, raise max_connections, or put PgBouncer "
        "(session mode) in front (docs/scaling.md)"
    )
