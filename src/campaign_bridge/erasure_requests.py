"""Erasure requests that come from the source: a marker column, or a table of requests.

A sync's ``[erasure]`` settings name either or both:

- ``column`` on the sync's source (its table or query): a boolean that is true, or a timestamp
  that is set, marks the row's person for erasure. Such rows are never pushed.
- ``requests_table`` in the source database: one row per request (an address and, optionally,
  the request's time).

:func:`pending_requests` lists the requests not carried out yet: the person has no tombstone,
or (when the request has a time) the request is newer than their last erasure.
:func:`process_requests` carries them out with :func:`campaign_bridge.erasure.forget`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge import erasure, privacy
from campaign_bridge.config import ErasureConfig, Settings, SyncConfig
from campaign_bridge.db import create_engine, redact_url
from campaign_bridge.errors import BridgeError, SourceError

__all__ = ["ErasureRequest", "flagged_keys", "pending_requests", "process_requests"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErasureRequest:
    email: str
    origin: str  # source_column | request_table
    requested_at: datetime | None = None
    source_key: str | None = None


def read_requests(sync: SyncConfig) -> list[ErasureRequest]:
    """Every erasure request the sync's source holds now."""
    config = sync.erasure
    if config is None:
        return []
    engine = create_engine(sync.source.url)
    try:
        with engine.connect() as conn:
            found = _column_requests(conn, sync, config) if config.column else []
            if config.requests_table:
                found += _table_requests(conn, config)
    except sa.exc.SQLAlchemyError as exc:
        cause = type(getattr(exc, "orig", None) or exc).__name__
        raise SourceError(
            f"cannot read erasure requests from {redact_url(sync.source.url)}: {cause}; "
            "check the [erasure] settings of the sync"
        ) from exc
    finally:
        engine.dispose()
    return found


def _column_requests(
    conn: sa.Connection, sync: SyncConfig, config: ErasureConfig
) -> list[ErasureRequest]:
    source = sync.source
    assert config.column is not None
    columns = [source.key_column, source.email_column, config.column]
    src = erasure.source_from(sync, columns)
    marker = src.c[config.column]
    condition: sa.ColumnElement[bool] = marker.is_not(None)
    if config.column_type == "boolean":
        condition = sa.and_(condition, marker == sa.true())
    query = sa.select(src.c[source.key_column], src.c[source.email_column], marker).where(condition)
    found = []
    for key, email, value in conn.execute(query):
        if isinstance(email, str) and "@" in email:
            when = erasure.as_utc(value) if config.column_type == "timestamp" else None
            found.append(ErasureRequest(email, "source_column", when, str(key)))
    return found


def _table_requests(conn: sa.Connection, config: ErasureConfig) -> list[ErasureRequest]:
    assert config.requests_table is not None
    schema, _, name = config.requests_table.rpartition(".")
    columns = [config.requests_email_column]
    if config.requests_at_column:
        columns.append(config.requests_at_column)
    table = sa.table(name, *(sa.column(c) for c in columns), schema=schema or None)
    found = []
    for row in conn.execute(sa.select(*table.c)):
        email = row[0]
        if isinstance(email, str) and "@" in email:
            when = erasure.as_utc(row[1]) if len(row) > 1 else None
            found.append(ErasureRequest(email, "request_table", when))
    return found


def pending_requests(state: Engine, sync: SyncConfig) -> list[ErasureRequest]:
    """The source's requests not carried out yet (one per address, the newest)."""
    newest: dict[str, ErasureRequest] = {}
    for request in read_requests(sync):
        digest = privacy.subscriber_hash(request.email)
        known = newest.get(digest)
        if known is None or _later(request.requested_at, known.requested_at):
            newest[digest] = request
    if not newest:
        return []
    with state.begin() as conn:
        erased = privacy.tombstones_of(conn, newest)
    return [
        request
        for digest, request in newest.items()
        if digest not in erased
        or (request.requested_at is not None and request.requested_at > erased[digest])
    ]


def flagged_keys(sync: SyncConfig) -> set[str]:
    """Source keys whose row carries the erasure marker (never pushed, whatever else)."""
    return {r.source_key for r in read_requests(sync) if r.source_key is not None}


def _later(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and (b is None or a > b)


async def process_requests(
    settings: Settings,
    sync_name: str,
    *,
    dry_run: bool = False,
    provider_factory: erasure.ProviderFactory | None = None,
) -> list[erasure.ErasureReport]:
    """Carry out the sync's pending erasure requests; one report per person."""
    import anyio

    sync = settings.syncs[sync_name]
    if sync.erasure is None:
        return []
    engine = create_engine(settings.effective_state_url())
    try:
        pending = await anyio.to_thread.run_sync(pending_requests, engine, sync)
    finally:
        engine.dispose()
    reports = []
    for request in pending:
        try:
            report = await erasure.forget(
                settings,
                request.email,
                sync_name,
                origin=request.origin,
                requested_at=request.requested_at,
                dry_run=dry_run,
                provider_factory=provider_factory,
            )
        except BridgeError as exc:
            logger.error(
                "erasure request failed and will be tried again: %s",
                exc,
                extra={"action": "erase", "sync": sync_name},
            )
            raise
        reports.append(report)
    return reports


def requests_configured(syncs: Sequence[SyncConfig]) -> bool:
    return any(s.erasure is not None for s in syncs)
