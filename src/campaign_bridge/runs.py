"""Run history and cursors, read from the state store for people (``campaign-bridge runs``,
``campaign-bridge state``, the status page).

Plain functions over an :class:`~sqlalchemy.engine.Engine`; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge.state import pull_cursors, sync_runs

__all__ = [
    "Cursor",
    "RunRow",
    "counts_text",
    "cursors",
    "last_successes",
    "recent_runs",
    "reset_cursors",
]

# Count keys shown first, in this order; the rest follow alphabetically.
_COUNT_ORDER = ("read", "created", "updated", "unchanged", "archived", "rejected_total", "members")
_HIDDEN = frozenset({"dry_run", "rejected", "skipped", "consent"})


@dataclass(frozen=True)
class RunRow:
    """One run as people read it."""

    id: str
    sync: str
    direction: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, Any]
    error: str | None

    @property
    def dry_run(self) -> bool:
        return bool(self.counts.get("dry_run"))

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def rejected(self) -> dict[str, int]:
        value = self.counts.get("rejected")
        if not isinstance(value, Mapping):
            return {}
        return {str(k): int(v) for k, v in value.items() if isinstance(v, int) and v}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sync": self.sync,
            "direction": self.direction,
            "status": self.status,
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "counts": self.counts,
            "error": self.error,
        }


def recent_runs(engine: Engine, sync: str | None = None, limit: int = 20) -> list[RunRow]:
    """The latest ``limit`` runs, newest first, of one sync or of all."""
    t = sync_runs
    query = sa.select(t).order_by(t.c.started_at.desc(), t.c.id).limit(limit)
    if sync is not None:
        query = query.where(t.c.sync_name == sync)
    with engine.connect() as conn:
        return [
            RunRow(
                id=row["id"],
                sync=row["sync_name"],
                direction=row["direction"],
                status=row["status"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                counts=dict(row["counts"] or {}),
                error=row["error_summary"],
            )
            for row in conn.execute(query).mappings()
        ]


def last_successes(engine: Engine) -> dict[tuple[str, str], datetime]:
    """``(sync, direction) -> when its latest successful run finished``; dry runs do not count."""
    t = sync_runs
    query = (
        sa.select(t.c.sync_name, t.c.direction, t.c.finished_at, t.c.counts)
        .where(t.c.status == "succeeded", t.c.finished_at.is_not(None))
        .order_by(t.c.finished_at)
    )
    found: dict[tuple[str, str], datetime] = {}
    with engine.connect() as conn:
        for sync, direction, finished, counts in conn.execute(query):
            if isinstance(counts, Mapping) and counts.get("dry_run"):
                continue
            found[(sync, direction)] = finished
    return found


def counts_text(counts: Mapping[str, Any]) -> str:
    """``read 10, created 2, ...``: a run's non-zero counts, most telling first."""
    keys = [k for k in _COUNT_ORDER if k in counts]
    keys += sorted(k for k in counts if k not in _COUNT_ORDER and k not in _HIDDEN)
    parts = []
    for key in keys:
        value = counts[key]
        if isinstance(value, int | float) and not isinstance(value, bool) and value:
            parts.append(f"{key.removesuffix('_total')} {value:,}")
    skipped = counts.get("skipped")
    if isinstance(skipped, Mapping):
        parts += [f"skipped {reason} {n:,}" for reason, n in sorted(skipped.items()) if n]
    return ", ".join(parts) or "nothing"


@dataclass(frozen=True)
class Cursor:
    """Where the next run of a sync starts reading one stream."""

    sync: str
    stream: str
    value: str
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "sync": self.sync,
            "stream": self.stream,
            "value": self.value,
            "updated_at": self.updated_at.isoformat(),
        }


def cursors(engine: Engine, sync: str) -> list[Cursor]:
    """Every cursor of ``sync``, by stream name."""
    t = pull_cursors
    query = sa.select(t).where(t.c.sync_name == sync).order_by(t.c.stream)
    with engine.connect() as conn:
        return [
            Cursor(row["sync_name"], row["stream"], row["cursor"], row["updated_at"])
            for row in conn.execute(query).mappings()
        ]


def reset_cursors(engine: Engine, sync: str, stream: str | None = None) -> int:
    """Forget the cursors of ``sync`` (or one ``stream``): its next runs read from the start.

    Returns how many were removed. Nothing else changes: contacts already pushed are compared
    with what was last sent, so a full re-read sends only what differs.
    """
    t = pull_cursors
    condition = t.c.sync_name == sync
    if stream is not None:
        condition = sa.and_(condition, t.c.stream == stream)
    with engine.begin() as conn:
        return int(conn.execute(t.delete().where(condition)).rowcount)
