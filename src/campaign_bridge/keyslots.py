"""One concurrency budget per provider API key, shared by every process on every machine.

Mailchimp allows 10 connections in flight per API key. Each process already keeps its own
requests under that (:class:`~campaign_bridge.providers._http.ConcurrencyBudget`); with several
workers sharing a key, each request must also hold one of the key's slots in the PostgreSQL state
store, table ``cb_key_slots`` (one row per slot, keyed by the SHA-256 of the API host and key:
the key itself is never stored).

- **Lease.** A request claims a free slot (claims of one key take turns on a transaction-scoped
  advisory lock, and the row is taken ``FOR UPDATE SKIP LOCKED``: two claimers never get the
  same row), holds it while the request is in flight and frees it afterwards. The slot carries an
  expiry (``lease`` seconds) that the holding process renews every third of the lease. A process
  that dies holding slots (kill -9, lost machine) stops renewing them: after at most ``lease``
  seconds they count as free and others take them. Until then the key runs with fewer slots
  (never with more than its limit).
- **Hand-over.** While a request is in flight, one light query asks whether anyone else (another
  process, or another sync) waits for the key. If nobody does, the slot is not freed when the
  answer is in: it stays this process's for ``HANDOVER_GRACE`` seconds, and this process's next
  request of the same sync takes it without a round trip to PostgreSQL. Otherwise, or when the
  grace runs out, it is freed as above. A busy process thus keeps its requests back to back
  instead of spending a release and a claim (two or more round trips) between them.
- **Fair share.** A sync that cannot get a slot writes itself to ``cb_key_waiters``. While another
  sync waits, a sync may claim a new slot only while it holds fewer than
  ``ceil(limit / active syncs)``; with nobody else waiting it may use every slot.

Only a PostgreSQL state store has this; with SQLite (one process) the per-process budget is the
whole story. :func:`shared_slots` installs it for the duration of a run or a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

from campaign_bridge.errors import StateStoreError

__all__ = [
    "CURRENT_SYNC",
    "DEFAULT_LEASE",
    "KeySlots",
    "key_hash",
    "libpq_conninfo",
    "run_sharing",
    "shared_slots",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)

DEFAULT_LEASE = 30.0  # seconds a slot stays held without renewal
POOL_SIZE = 3  # connections per process for claims and releases (max_connections is shared)
HANDOVER_GRACE = 0.25  # seconds a slot nobody else waits for is kept for this process's next use

CURRENT_SYNC: contextvars.ContextVar[str] = contextvars.ContextVar("cb_sync", default="-")
"""The sync the current task works for (fair sharing counts slots per sync)."""

_SEED = """
INSERT INTO cb_key_slots (key_hash, slot)
SELECT %(k)s, g FROM generate_series(0, %(limit)s - 1) AS g
ON CONFLICT DO NOTHING
"""

_CLAIM = """
WITH live AS (
    SELECT sync_name FROM cb_key_slots
     WHERE key_hash = %(k)s AND holder IS NOT NULL AND expires_at > now()
), waiting AS (
    SELECT sync_name FROM cb_key_waiters WHERE key_hash = %(k)s AND expires_at > now()
), share AS (
    SELECT ceil(%(limit)s::numeric / count(DISTINCT s)) AS cap FROM (
        SELECT sync_name AS s FROM live UNION SELECT sync_name FROM waiting
        UNION SELECT %(s)s) AS active
), mine AS (
    SELECT count(*) AS n FROM live WHERE sync_name = %(s)s
), others AS (
    SELECT EXISTS (SELECT 1 FROM waiting WHERE sync_name <> %(s)s) AS waiting
), free AS (
    SELECT slot FROM cb_key_slots
     WHERE key_hash = %(k)s AND slot < %(limit)s AND (holder IS NULL OR expires_at <= now())
     ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED
)
UPDATE cb_key_slots AS t
   SET holder = %(h)s, sync_name = %(s)s, expires_at = now() + make_interval(secs => %(lease)s)
  FROM free, share, mine, others
 WHERE t.key_hash = %(k)s AND t.slot = free.slot
   AND (NOT others.waiting OR mine.n < share.cap)
RETURNING t.slot
"""

_TAKE_TURNS = "SELECT pg_advisory_xact_lock(hashtextextended(%(k)s, 17))"

_RELEASE = """
UPDATE cb_key_slots SET holder = NULL, sync_name = NULL, expires_at = NULL
 WHERE key_hash = %(k)s AND slot = %(slot)s AND holder = %(h)s
"""

_WAIT = """
INSERT INTO cb_key_waiters (key_hash, holder, sync_name, expires_at)
VALUES (%(k)s, %(h)s, %(s)s, now() + make_interval(secs => %(lease)s))
ON CONFLICT (key_hash, holder, sync_name) DO UPDATE SET expires_at = excluded.expires_at
"""

_OTHERS_WAITING = """
SELECT EXISTS (
    SELECT 1 FROM cb_key_waiters
     WHERE key_hash = %(k)s AND expires_at > now() AND (holder <> %(h)s OR sync_name <> %(s)s)
)
"""

_DONE_WAITING = """
DELETE FROM cb_key_waiters WHERE key_hash = %(k)s AND holder = %(h)s AND sync_name = %(s)s
"""

_RENEW = (
    "UPDATE cb_key_slots SET expires_at = now() + make_interval(secs => %(lease)s) "
    "WHERE holder = %(h)s",
    "UPDATE cb_key_waiters SET expires_at = now() + make_interval(secs => %(lease)s) "
    "WHERE holder = %(h)s",
)
_FREE_ALL = (
    "UPDATE cb_key_slots SET holder = NULL, sync_name = NULL, expires_at = NULL "
    "WHERE holder = %(h)s",
    "DELETE FROM cb_key_waiters WHERE holder = %(h)s",
)


def key_hash(host: str, api_key: str) -> str:
    """The identity of an API key on a host: SHA-256 hex (the key never leaves the process)."""
    return hashlib.sha256(f"{host.lower()}\0{api_key}".encode()).hexdigest()


def libpq_conninfo(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a libpq connection string (for psycopg and procrastinate)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise StateStoreError(
            f"this needs a PostgreSQL state store (state_url = postgresql://...), not "
            f"{parsed.get_backend_name()}"
        )
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class _Waiting:
    count: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class KeySlots:
    """This process's leases on key slots, through a small async connection pool."""

    def __init__(
        self,
        conninfo: str,
        *,
        owner: str,
        lease: float = DEFAULT_LEASE,
        size: int = POOL_SIZE,
        application_name: str | None = None,
    ) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.owner = owner
        self.lease = lease
        self.claims = 0
        self.waits = 0
        options: dict[str, Any] = {"autocommit": True}
        if application_name is not None:
            options["application_name"] = application_name
        self._pool = AsyncConnectionPool(
            conninfo, min_size=1, max_size=size, open=False, kwargs=options
        )
        self._releases: set[asyncio.Task[Any]] = set()  # releases, questions
        self._seeded: set[tuple[str, int]] = set()
        self._waiting: dict[tuple[str, str], _Waiting] = {}
        # Slots kept for a hand-over, by (key, limit, sync), and their release timers by slot.
        self._kept: dict[tuple[str, int, str], list[int]] = {}
        self._grace: dict[tuple[str, int], asyncio.TimerHandle] = {}
        self._released = asyncio.Event()
        self._renewer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self._pool.open(wait=True, timeout=15.0)
        self._renewer = asyncio.create_task(self._renew(), name="key-slot-renewer")

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        for timer in self._grace.values():  # kept slots: _FREE_ALL frees them with the rest
            timer.cancel()
        self._grace.clear()
        self._kept.clear()
        await asyncio.gather(*self._releases, return_exceptions=True)
        with contextlib.suppress(Exception):  # the leases expire by themselves
            for sql in _FREE_ALL:
                await self._execute(sql, h=self.owner)
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def slot(self, key: str, limit: int) -> AsyncIterator[int]:
        """Hold one slot of ``key`` (out of ``limit``) for the duration of the block."""
        sync = CURRENT_SYNC.get()
        number = await self.acquire(key, limit)
        # Asked while the request is in flight, so it costs the request no time.
        alone = asyncio.create_task(self._nobody_else_waits(key, sync))
        self._background(alone)
        try:
            yield number
        finally:
            # The answer is in: the caller goes on while the slot is kept for this process's
            # next request (nobody else waits) or freed in the background.
            if alone.done() and not alone.cancelled() and alone.result():
                self._keep(key, limit, sync, number)
            else:  # someone waits, or the question is still out
                self._release_soon(key, number)

    async def acquire(self, key: str, limit: int) -> int:
        sync = CURRENT_SYNC.get()
        kept = self._take_kept(key, limit, sync)
        if kept is not None:
            return kept
        if (key, limit) not in self._seeded:
            await self._execute(_SEED, k=key, limit=limit)
            self._seeded.add((key, limit))
        params = {"k": key, "limit": limit, "s": sync, "h": self.owner, "lease": self.lease}
        number = await self._claim(params)
        if number is not None:
            return number
        self.waits += 1
        waiting = self._waiting.setdefault((key, sync), _Waiting())
        waiting.count += 1
        try:
            if waiting.count == 1:
                await self._execute(_WAIT, **params)
            pause = 0.01
            while True:
                self._released.clear()
                number = self._take_kept(key, limit, sync)
                if number is not None:
                    return number
                number = await self._claim(params)
                if number is not None:
                    return number
                # Woken early when this process frees a slot; others' releases are polled.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), pause * random.uniform(0.5, 1.5))
                pause = min(pause * 2, 0.1)
        finally:
            waiting.count -= 1
            if waiting.count == 0:
                del self._waiting[(key, sync)]
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._execute(_DONE_WAITING, **params))

    async def release(self, key: str, number: int) -> None:
        try:
            await self._execute(_RELEASE, k=key, slot=number, h=self.owner)
        except Exception as exc:  # it expires after the lease
            logger.warning(
                "could not free a key slot (it frees itself in %gs): %s", self.lease, exc
            )
        self._released.set()

    async def _nobody_else_waits(self, key: str, sync: str) -> bool:
        """Whether no other process, and no other sync of this one, waits for ``key``."""
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(_OTHERS_WAITING, {"k": key, "h": self.owner, "s": sync})
                row = await cursor.fetchone()
        except Exception:  # not known: the slot is freed as usual
            return False
        return row is not None and not row[0]

    def _keep(self, key: str, limit: int, sync: str, number: int) -> None:
        """Keep a slot for this process's next request of ``sync``; free it after the grace."""
        self._kept.setdefault((key, limit, sync), []).append(number)
        self._grace[(key, number)] = asyncio.get_running_loop().call_later(
            HANDOVER_GRACE, self._end_grace, key, limit, sync, number
        )
        self._released.set()  # a claim of this process waiting for the key takes it

    def _take_kept(self, key: str, limit: int, sync: str) -> int | None:
        kept = self._kept.get((key, limit, sync))
        if not kept:
            return None
        number = kept.pop()
        self._grace.pop((key, number)).cancel()
        return number

    def _end_grace(self, key: str, limit: int, sync: str, number: int) -> None:
        self._grace.pop((key, number), None)
        self._kept[(key, limit, sync)].remove(number)
        self._release_soon(key, number)

    def _release_soon(self, key: str, number: int) -> None:
        self._background(asyncio.create_task(self.release(key, number)))

    def _background(self, task: asyncio.Task[Any]) -> None:
        """Keep ``task`` until it ends (``close`` waits for those still running)."""
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _claim(self, params: dict[str, Any]) -> int | None:
        from psycopg import AsyncClientCursor

        # Claims of one key take turns (a few milliseconds each), so each one sees the others'
        # slots and the fair share holds exactly, not only most of the time. Both statements go
        # in one simple query: one round trip, one implicit transaction (the turn is held until
        # the claim commits, never across a client round trip), and the claim's snapshot is
        # taken after the turn came. A third of the CPU of BEGIN, lock, claim, COMMIT.
        async with self._pool.connection() as conn:
            cursor = AsyncClientCursor(conn)
            await cursor.execute(_TAKE_TURNS + ";\n" + _CLAIM, params)
            cursor.nextset()
            row = await cursor.fetchone()
        if row is None:
            return None
        self.claims += 1
        return int(row[0])

    async def _execute(self, sql: str, **params: Any) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(sql, params)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                for sql in _RENEW:
                    await self._execute(sql, h=self.owner, lease=self.lease)
            except Exception as exc:
                logger.warning("could not renew key slot leases: %s", exc)


@contextlib.asynccontextmanager
async def shared_slots(
    state_url: str,
    *,
    owner: str | None = None,
    lease: float = DEFAULT_LEASE,
    application_name: str | None = None,
) -> AsyncIterator[KeySlots]:
    """Make every provider request in this event loop hold a slot of its key in the state store
    (PostgreSQL) until the block ends (through :data:`POOL_SIZE` connections at most)."""
    from campaign_bridge.providers import _http
    from campaign_bridge.synclock import default_owner

    slots = KeySlots(
        libpq_conninfo(state_url),
        owner=owner or default_owner(),
        lease=lease,
        application_name=application_name,
    )
    try:
        await slots.open()
    except Exception as exc:
        await slots.close()
        raise StateStoreError(
            f"cannot reach the state store to share API key slots: {exc}. Check state_url"
        ) from exc
    _http.use_shared_slots(slots)
    try:
        yield slots
    finally:
        _http.use_shared_slots(None)
        await slots.close()


async def run_sharing(state_url: str, sync_name: str | None, work: Awaitable[T]) -> T:
    """Await ``work`` for ``sync_name``; on a PostgreSQL state store its provider requests hold
    shared key slots (another process may be using the same keys)."""
    from campaign_bridge.db import dialect_of

    token = CURRENT_SYNC.set(sync_name or "-")
    try:
        if dialect_of(state_url) != "postgresql":
            return await work
        async with shared_slots(state_url):
            return await work
    finally:
        CURRENT_SYNC.reset(token)
