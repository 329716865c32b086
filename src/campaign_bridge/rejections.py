"""Rejected records as people read them (``campaign-bridge rejected``, the status page, metrics).

A record the provider or the mapping refused is kept in ``cb_rejected_records`` with its
reason, its source key and since when; push does not send it again until it changes.
:func:`retry` makes the next push send chosen ones again without waiting for a change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge.state import pull_cursors, rejected_records

__all__ = ["OpenRejection", "counts_by_reason", "open_rejections", "retry"]


@dataclass(frozen=True)
class OpenRejection:
    sync: str
    source_key: str
    reason: str
    message: str
    attempts: int
    first_seen: datetime
    last_seen: datetime
    last_run_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sync": self.sync,
            "source_key": self.source_key,
            "reason": self.reason,
            "message": self.message,
            "attempts": self.attempts,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "last_run_id": self.last_run_id,
        }


def _where(sync: str | None, reason: str | None) -> list[sa.ColumnElement[bool]]:
    t = rejected_records
    conditions: list[sa.ColumnElement[bool]] = [t.c.resolved_at.is_(None)]
    if sync is not None:
        conditions.append(t.c.sync_name == sync)
    if reason is not None:
        conditions.append(t.c.reason_code == reason)
    return conditions


def open_rejections(
    engine: Engine, sync: str | None = None, reason: str | None = None, limit: int | None = None
) -> list[OpenRejection]:
    """Unresolved rejections, longest-standing first."""
    t = rejected_records
    query = (
        sa.select(
            t.c.sync_name,
            t.c.source_key,
            t.c.reason_code,
            t.c.message,
            t.c.attempts,
            t.c.first_seen,
            t.c.last_seen,
            t.c.last_run_id,
        )
        .where(*_where(sync, reason))
        .order_by(t.c.sync_name, t.c.first_seen, t.c.source_key)
    )
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [OpenRejection(*row) for row in conn.execute(query)]


def counts_by_reason(
    engine: Engine, syncs: Sequence[str] | None = None
) -> dict[tuple[str, str], int]:
    """``(sync, reason) -> open rejections``."""
    t = rejected_records
    query = (
        sa.select(t.c.sync_name, t.c.reason_code, sa.func.count())
        .where(t.c.resolved_at.is_(None))
        .group_by(t.c.sync_name, t.c.reason_code)
    )
    if syncs is not None:
        query = query.where(t.c.sync_name.in_(list(syncs)))
    with engine.connect() as conn:
        return {(sync, reason): int(n) for sync, reason, n in conn.execute(query)}


def retry(engine: Engine, sync: str, reason: str | None = None) -> int:
    """Make the next push of ``sync`` send the open rejections (of ``reason``) again.

    The record's remembered version is cleared, so push no longer sees it as "rejected and
    unchanged", and the sync's source cursor is dropped, so the next push reads the rows
    rejected earlier again (it still sends only what differs from what was last pushed). The
    rejection stays open, with its history, until a push succeeds (it is then resolved) or
    fails again (its reason and version are updated). Returns how many were chosen.
    """
    from campaign_bridge.push import SOURCE_STREAM

    t = rejected_records
    with engine.begin() as conn:
        result = conn.execute(t.update().where(*_where(sync, reason)).values(content_hash=None))
        if result.rowcount:
            cursors = pull_cursors
            conn.execute(
                cursors.delete().where(
                    cursors.c.sync_name == sync, cursors.c.stream == SOURCE_STREAM
                )
            )
    return int(result.rowcount)
