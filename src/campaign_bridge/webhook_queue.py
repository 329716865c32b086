"""The stored webhook events as a queue: what is pending, marking what was applied, counts.

Rows are written by :mod:`campaign_bridge.webhook_inbox` and applied by
:mod:`campaign_bridge.webhook_applier`; parked ones are listed by
:mod:`campaign_bridge.webhook_parking`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY as pg_array
from sqlalchemy.engine import Engine

from campaign_bridge.state import webhook_events

__all__ = [
    "StoredEvent",
    "backlog",
    "events_per_hour",
    "mark_events",
    "pending_events",
    "pending_events_with_keys",
]


@dataclass(frozen=True)
class StoredEvent:
    id: int
    provider: str
    dedupe_key: str
    event_type: str
    list_id: str | None
    payload: str
    received_at: datetime
    attempts: int = 0  # failed applies so far


_STORED = (
    webhook_events.c.id,
    webhook_events.c.provider,
    webhook_events.c.dedupe_key,
    webhook_events.c.event_type,
    webhook_events.c.list_id,
    webhook_events.c.payload,
    webhook_events.c.received_at,
    webhook_events.c.attempts,
)


def pending_events(engine: Engine, limit: int) -> list[StoredEvent]:
    """Stored events not applied yet, oldest first."""
    t = webhook_events
    query = (
        sa.select(*_STORED)
        .where(t.c.applied_at.is_(None), t.c.parked_at.is_(None))
        .order_by(t.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [StoredEvent(*row) for row in conn.execute(query)]


def pending_events_with_keys(
    engine: Engine, provider: str, dedupe_keys: Sequence[str]
) -> list[StoredEvent]:
    """The events among ``dedupe_keys`` not applied yet, oldest first (read by the unique key)."""
    t = webhook_events
    if not dedupe_keys:
        return []
    keys: sa.ColumnElement[bool]
    if engine.dialect.name == "postgresql":  # one array parameter, whatever the chunk size
        keys = t.c.dedupe_key == sa.any_(
            sa.bindparam("keys", list(dedupe_keys), type_=pg_array(sa.String))
        )
    else:
        keys = t.c.dedupe_key.in_(list(dedupe_keys))
    query = (
        sa.select(*_STORED)
        .where(t.c.provider == provider, keys, t.c.applied_at.is_(None), t.c.parked_at.is_(None))
        .order_by(t.c.id)
    )
    with engine.connect() as conn:
        return [StoredEvent(*row) for row in conn.execute(query)]


def mark_events(
    engine: Engine,
    applied: Mapping[int, str | None],
    failed: Mapping[int, str],
    *,
    parked: Iterable[int] = (),
    bodies: Mapping[int, str] | None = None,
    blocked: Mapping[int, str] | None = None,
) -> None:
    """Mark events applied (with an optional note); record errors on failed ones, counting the
    attempt; park the ``parked`` ones (failed too often: the applier leaves them alone);
    ``bodies`` replaces the stored body of those events (addresses removed once applied);
    ``blocked`` records an error that is no event's fault (a sync's write-back is
    misconfigured) without counting an attempt, so they wait, visibly, until it is fixed."""
    t = webhook_events
    now = datetime.now(UTC)
    plain = sorted(i for i, note in applied.items() if note is None)
    noted = {i: note for i, note in applied.items() if note is not None}
    with engine.begin() as conn:
        if plain and conn.dialect.name == "postgresql":  # one array parameter
            ids = sa.bindparam("ids", plain, type_=pg_array(sa.BigInteger))
            conn.execute(
                t.update().where(t.c.id == sa.any_(ids)).values(applied_at=now, error=None)
            )
        else:
            for start in range(0, len(plain), 1000):  # one statement per 1,000
                conn.execute(
                    t.update()
                    .where(t.c.id.in_(plain[start : start + 1000]))
                    .values(applied_at=now, error=None)
                )
        if noted:
            conn.execute(
                t.update()
                .where(t.c.id == sa.bindparam("b_id"))
                .values(applied_at=now, error=sa.bindparam("b_error")),
                [{"b_id": i, "b_error": note} for i, note in noted.items()],
            )
        if failed:
            conn.execute(
                t.update()
                .where(t.c.id == sa.bindparam("b_id"))
                .values(error=sa.bindparam("b_error"), attempts=t.c.attempts + 1),
                [{"b_id": i, "b_error": error} for i, error in failed.items()],
            )
        if blocked:
            conn.execute(
                t.update()
                .where(t.c.id == sa.bindparam("b_id"))
                .values(error=sa.bindparam("b_error")),
                [{"b_id": i, "b_error": error} for i, error in blocked.items()],
            )
        to_park = sorted(set(parked))
        if to_park:
            conn.execute(t.update().where(t.c.id.in_(to_park)).values(parked_at=now))
        if bodies:
            conn.execute(
                t.update()
                .where(t.c.id == sa.bindparam("b_id"))
                .values(payload=sa.bindparam("b_payload")),
                [{"b_id": i, "b_payload": body} for i, body in bodies.items()],
            )


def backlog(engine: Engine) -> tuple[int, int]:
    """(events waiting to be applied, of which carry an error from a failed attempt); parked
    events are not waiting (see :mod:`campaign_bridge.webhook_parking`)."""
    t = webhook_events
    query = sa.select(
        sa.func.count(),
        sa.func.count(t.c.error),
    ).where(t.c.applied_at.is_(None), t.c.parked_at.is_(None))
    with engine.connect() as conn:
        pending, failing = conn.execute(query).one()
    return int(pending), int(failing)


def events_per_hour(engine: Engine, since: datetime) -> dict[datetime, int]:
    """Events received per UTC hour since ``since`` (hours with none are absent)."""
    t = webhook_events
    dialect = engine.dialect.name
    bucket: sa.ColumnElement[Any]
    if dialect == "postgresql":
        bucket = sa.func.to_char(sa.func.timezone("UTC", t.c.received_at), "YYYY-MM-DD HH24:00:00")
    elif dialect == "mysql":
        bucket = sa.func.date_format(t.c.received_at, "%Y-%m-%d %H:00:00")
    else:
        bucket = sa.func.strftime("%Y-%m-%d %H:00:00", t.c.received_at)
    query = (
        sa.select(bucket.label("hour"), sa.func.count())
        .where(t.c.received_at >= since)
        .group_by(bucket)
    )
    counts: dict[datetime, int] = {}
    with engine.connect() as conn:
        for hour, count in conn.execute(query):
            counts[datetime.fromisoformat(str(hour)).replace(tzinfo=UTC)] = int(count)
    return counts
