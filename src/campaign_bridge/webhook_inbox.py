"""The durable webhook inbox: every delivery is committed before it is acknowledged.

The server hands each parsed event to :class:`WebhookInbox` (``await inbox.put(row)``), which
commits concurrent deliveries together (group commit) through :class:`InboxStore` and answers
each once its row is committed: nothing acknowledged can be lost. Deliveries are at-least-once,
so the state store keeps one row per ``(provider, dedupe_key)``: a repeated delivery is stored
once. The inbox knows no provider: rows come from neutral
:class:`~campaign_bridge.providers.base.WebhookEvent` values, whose ``raw`` payload is stored as
JSON for :mod:`campaign_bridge.webhook_applier` to apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge.db import insert_new_rows, insert_new_rows_statement
from campaign_bridge.errors import StateStoreError
from campaign_bridge.providers.base import WebhookEvent
from campaign_bridge.state import webhook_events
from campaign_bridge.status_changes import email_hash
from campaign_bridge.storable import column_limit, storable_json, storable_row

__all__ = ["InboxRow", "InboxStore", "StoreBatch", "WebhookInbox", "insert_rows"]

log = logging.getLogger(__name__)

_KEY_CHARS = 64  # cb_webhook_events.dedupe_key
_KEY = ("provider", "dedupe_key")


@dataclass(frozen=True)
class InboxRow:
    """One delivery as the state store keeps it (``cb_webhook_events``)."""

    provider: str
    dedupe_key: str
    event_type: str
    list_id: str | None
    fired_at: datetime | None
    received_at: datetime
    payload: str
    email_hash: str | None = None  # whom the event is about (a contact's history)

    def values(self) -> dict[str, Any]:
        """The row as ``cb_webhook_events`` columns."""
        return {
            "provider": self.provider,
            "dedupe_key": self.dedupe_key,
            "event_type": self.event_type,
            "list_id": self.list_id,
            "fired_at": self.fired_at,
            "received_at": self.received_at,
            "payload": self.payload,
            "email_hash": self.email_hash,
        }

    @property
    def key(self) -> tuple[str, str]:
        """What makes the row unique: ``(provider, dedupe_key)``."""
        return self.provider, self.dedupe_key

    def storable(self, dialect: str) -> InboxRow:
        """This row as ``dialect`` can store it (see :mod:`campaign_bridge.storable`): text
        fields cleaned and cut to their columns, the payload's strings shortened until the
        payload fits its column (MariaDB's TEXT holds 64 KiB; a delivery may carry 1 MiB)."""
        fixed = storable_row(
            webhook_events,
            {"event_type": self.event_type, "list_id": self.list_id},
            dialect,
            clean_keys=True,
        )
        payload = self.payload
        limit = column_limit(webhook_events.c.payload.type, dialect)
        if limit.bytes is not None and len(payload) > limit.bytes:
            document, _changed = storable_json(
                webhook_events.name, "payload", json.loads(payload), limit
            )
            payload = json.dumps(document, sort_keys=True, separators=(",", ":"))
        if (fixed["event_type"], fixed["list_id"], payload) == (
            self.event_type,
            self.list_id,
            self.payload,
        ):
            return self
        return replace(
            self, event_type=fixed["event_type"], list_id=fixed["list_id"], payload=payload
        )

    @classmethod
    def from_event(cls, provider: str, event: WebhookEvent, received_at: datetime) -> InboxRow:
        """The row that stores ``event`` (its ``raw`` payload, neutral columns beside it)."""
        key = event.event_id
        if len(key) > _KEY_CHARS:  # the column's width; a provider's long id is hashed
            key = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return cls(
            provider=provider,
            dedupe_key=key,
            event_type=str(event.kind),
            list_id=event.list_id,
            fired_at=event.occurred_at,
            received_at=received_at,
            payload=json.dumps(event.raw, sort_keys=True, separators=(",", ":")),
            email_hash=email_hash(event.email) if event.email else None,
        )


StoreBatch = Callable[[Sequence[InboxRow]], Awaitable[list[bool]]]
"""Insert rows in ONE committed transaction; per row, True if new, False if already stored."""


class WebhookInbox:
    """Group commit: concurrent deliveries are stored together, each answered after the commit.

    ``await inbox.put(row)`` returns once the row is committed (True: new, False: a duplicate of
    a stored delivery) and raises if it could not be stored; the HTTP answer is sent only then,
    so nothing acknowledged can be lost.

    Latency-aware: when no commit is in flight, a delivery is committed at once, alone if it is
    alone. While one is in flight, the next deliveries gather behind it and go in the next
    commit; a second commit starts beside the first only once ``min_parallel`` deliveries wait
    (a flood), up to ``writers`` at a time (use one writer on SQLite, which serialises writers
    anyway). So a steady trickle costs few commits and a flood is not held up by one slow disk
    flush.
    """

    def __init__(
        self,
        store_batch: StoreBatch,
        *,
        max_batch: int = 500,
        writers: int = 1,
        min_parallel: int = 8,
    ) -> None:
        self._store_batch = store_batch
        self._max_batch = max_batch
        self._writers = max(writers, 1)
        self._min_parallel = min_parallel
        self._queue: asyncio.Queue[tuple[InboxRow, asyncio.Future[bool]]] = asyncio.Queue()
        self._gathering = asyncio.Lock()  # one writer at a time collects the next batch
        self._changed = asyncio.Event()  # a delivery arrived or a commit ended
        self._in_flight = 0
        self._closed = False
        self.on_stored: Callable[[list[InboxRow], int], None] | None = None  # (new, duplicates)
        self.last_stored = 0.0  # time.monotonic() of the last commit

    def busy(self, within: float = 1.0) -> bool:
        """Whether deliveries were committed in the last ``within`` seconds."""
        return time.monotonic() - self.last_stored < within

    async def put(self, row: InboxRow) -> bool:
        if self._closed:
            raise StateStoreError("the webhook inbox is shutting down; retry the delivery")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((row, future))
        self._changed.set()
        return await future

    def close(self) -> None:
        """Refuse new deliveries; :meth:`run` stores what is queued, then returns."""
        self._closed = True
        for _ in range(self._writers):  # queued after every delivery already accepted
            self._queue.put_nowait(_SENTINEL)  # type: ignore[arg-type]
        self._changed.set()

    async def run(self) -> None:
        await asyncio.gather(*(self._writer() for _ in range(self._writers)))

    async def _writer(self) -> None:
        while True:
            async with self._gathering:
                batch = await self._next_batch()
                items = [item for item in batch if item is not _SENTINEL]
                if items:
                    self._in_flight += 1
            if items:
                try:
                    await self._commit(items)
                finally:
                    self._in_flight -= 1
                    self._changed.set()
            sentinels = len(batch) - len(items)
            if sentinels:
                for _ in range(sentinels - 1):  # leave the others' stop marks to them
                    self._queue.put_nowait(_SENTINEL)  # type: ignore[arg-type]
                return

    async def _next_batch(self) -> list[tuple[InboxRow, asyncio.Future[bool]]]:
        first = await self._queue.get()
        # a commit is in flight: let deliveries gather behind it unless a flood is waiting
        while (
            self._in_flight
            and first is not _SENTINEL
            and self._queue.qsize() + 1 < self._min_parallel
        ):
            self._changed.clear()
            await self._changed.wait()
        batch = [first]
        while len(batch) < self._max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _commit(self, items: list[tuple[InboxRow, asyncio.Future[bool]]]) -> None:
        unique: dict[tuple[str, str], InboxRow] = {}
        for row, _future in items:
            unique.setdefault(row.key, row)
        rows = list(unique.values())
        try:
            results = await self._store_batch(rows)
        except Exception as exc:
            log.error(
                "could not store %d webhook deliveries: %s",
                len(items),
                exc,
                extra={"action": "webhook", "provider": ",".join({r.provider for r in rows})},
            )
            for _row, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        self.last_stored = time.monotonic()
        new_rows = [row for row, new in zip(rows, results, strict=True) if new]
        new_keys = {row.key for row in new_rows}
        for row, future in items:
            is_new = row.key in new_keys
            new_keys.discard(row.key)  # a second copy in the same batch is a duplicate
            if not future.done():
                future.set_result(is_new)
        if self.on_stored is not None:
            self.on_stored(new_rows, len(items) - len(new_rows))


_SENTINEL = object()


class InboxStore:
    """Stores batches of deliveries in ``cb_webhook_events`` (a :data:`StoreBatch`).

    It commits through a few long-lived connections of its own, so a commit pays no pool
    checkout and no liveness ping. On PostgreSQL the insert is one statement in autocommit
    mode (durable when it returns, no BEGIN/COMMIT round trips) sent from the event loop itself
    by psycopg's asyncio connection: no thread hand-off per commit. Other databases commit on a
    worker thread. A connection that fails is dropped and the next batch opens a new one, so a
    database restart costs one batch a ``503``, which the provider retries.

    Race-safe dedupe on ``(provider, dedupe_key)``: the insert is
    :func:`campaign_bridge.db.insert_new_rows`, the one write path of ``cb_webhook_events``.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # psycopg's asyncio connections need a selector event loop (not Windows' proactor)
        self._on_loop = engine.dialect.name == "postgresql" and sys.platform != "win32"
        self._idle_async: list[psycopg.AsyncCursor[Any]] = []  # one cursor per connection
        self._idle: list[sa.Connection] = []
        self._lock = threading.Lock()
        self._errors = (sa.exc.SQLAlchemyError, engine.dialect.loaded_dbapi.Error)

    async def __call__(self, rows: Sequence[InboxRow]) -> list[bool]:
        """Insert ``rows`` in one committed transaction; per row, whether it was new."""
        if not rows:
            return []
        rows = [row.storable(self.engine.dialect.name) for row in rows]
        try:
            if self._on_loop:
                created = await self._insert_on_loop(rows)
            else:
                created = await asyncio.to_thread(self._insert_in_thread, rows)
        except self._errors as exc:
            raise StateStoreError(
                f"could not store webhook events ({type(exc).__name__}); "
                "check that the state store is reachable"
            ) from exc
        return [(r.provider, r.dedupe_key) in created for r in rows]

    async def aclose(self) -> None:
        """Close the idle connections (call once no batch is being stored)."""
        idle_async, self._idle_async = self._idle_async, []
        for cursor in idle_async:
            with contextlib.suppress(Exception):
                await cursor.connection.close()
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()

    async def _insert_on_loop(self, rows: Sequence[InboxRow]) -> set[tuple[str, str]]:
        cursor = self._idle_async.pop() if self._idle_async else await self._connect()
        try:
            sql, params = insert_new_rows_statement(
                self.engine.dialect, webhook_events, [r.values() for r in rows], _KEY
            )
            await cursor.execute(sql, params)
            created = {(p, k) for p, k in await cursor.fetchall()}
        except BaseException:
            with contextlib.suppress(Exception):
                await cursor.connection.close()
            raise
        self._idle_async.append(cursor)
        return created

    async def _connect(self) -> psycopg.AsyncCursor[Any]:
        """A new autocommit connection's cursor, kept with it (a cursor per commit costs CPU)."""
        args, options = self.engine.dialect.create_connect_args(self.engine.url)
        options.setdefault("connect_timeout", 10)
        aconn = await psycopg.AsyncConnection.connect(*args, autocommit=True, **options)
        return aconn.cursor()

    def _insert_in_thread(self, rows: Sequence[InboxRow]) -> set[tuple[str, str]]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        try:
            conn = conn or self._connect_pooled()
            created = insert_rows(conn, rows)
        except BaseException:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.invalidate()
                    conn.close()
            raise
        with self._lock:
            self._idle.append(conn)
        return created

    def _connect_pooled(self) -> sa.Connection:
        conn = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn


def insert_rows(conn: sa.Connection, rows: Sequence[InboxRow]) -> set[tuple[str, str]]:
    """Insert ``rows``, committed (a PostgreSQL connection in autocommit mode commits the one
    statement); the ``(provider, dedupe_key)`` pairs that were new."""
    values = [row.values() for row in rows]
    autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    if autocommit:
        return insert_new_rows(conn, webhook_events, values, _KEY)
    with conn.begin():
        return insert_new_rows(conn, webhook_events, values, _KEY)
