"""How the service is doing, read from the state store: one snapshot for ``/-/metrics``, the
alerts and the status page, so all three agree.

:func:`health` is synchronous (run it in a thread from async code); everything else is pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge.rejections import counts_by_reason
from campaign_bridge.runs import RunRow, recent_runs
from campaign_bridge.state import webhook_events

__all__ = [
    "DIRECTIONS",
    "Health",
    "SyncHealth",
    "allowed_gap",
    "health",
    "latest_webhook_error",
    "parked_events",
    "webhook_backlog",
]

DIRECTIONS = ("push", "pull")
RUNS_LOOKED_AT = 50  # per sync: the latest success is among them unless dry runs crowd it out


def allowed_gap(expected: timedelta) -> timedelta:
    """How long a scheduled sync may go without success: twice its interval, 5 min at least."""
    return max(expected * 2, expected + timedelta(minutes=5))


@dataclass(frozen=True)
class SyncHealth:
    """One sync in one direction: its latest real run and its latest real success (a dry run
    neither clears a failure nor counts as a success: it sends nothing)."""

    sync: str
    direction: str
    schedule: str | None
    expected_gap: timedelta | None
    last_run: RunRow | None  # latest finished real run (dry runs send nothing: left out)
    last_success: datetime | None  # when the latest successful real run finished

    @property
    def failed(self) -> bool:
        return self.last_run is not None and self.last_run.status == "failed"

    def overdue(self, now: datetime) -> bool:
        """Scheduled, and no real success within :func:`allowed_gap` of its interval."""
        if self.expected_gap is None:
            return False
        since = self.last_success
        return since is None or now - since > allowed_gap(self.expected_gap)


@dataclass(frozen=True)
class Health:
    taken_at: datetime
    syncs: Sequence[SyncHealth]
    webhook_pending: int = 0
    webhook_failing: int = 0
    webhook_oldest: datetime | None = None  # received_at of the oldest unapplied delivery
    webhook_parked: int = 0  # set aside after failing too often; not in the queue's age
    rejected: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (sync, reason)

    @property
    def webhook_age_seconds(self) -> float:
        """Age of the oldest delivery waiting to be applied; 0 when none waits."""
        if self.webhook_oldest is None:
            return 0.0
        return max((self.taken_at - self.webhook_oldest).total_seconds(), 0.0)

    def rejected_by_sync(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for (sync, _reason), count in self.rejected.items():
            totals[sync] = totals.get(sync, 0) + count
        return totals


def health(engine: Engine, settings: Any, *, now: datetime | None = None) -> Health:
    """Read the snapshot (a few indexed queries)."""
    from campaign_bridge.scheduler import ScheduleError, parse_schedule

    now = now or datetime.now(UTC)
    syncs: list[SyncHealth] = []
    for name, config in settings.syncs.items():
        runs = recent_runs(engine, name, RUNS_LOOKED_AT)
        for direction in DIRECTIONS:
            schedule = getattr(config.schedule, direction)
            gap = None
            if schedule:
                try:
                    gap = parse_schedule(schedule).expected_gap()
                except ScheduleError:
                    gap = None
            mine = [
                r
                for r in runs
                if r.direction == direction and r.status != "running" and not r.dry_run
            ]
            success = next((r for r in mine if r.status == "succeeded"), None)
            syncs.append(
                SyncHealth(
                    sync=name,
                    direction=direction,
                    schedule=schedule,
                    expected_gap=gap,
                    last_run=mine[0] if mine else None,
                    last_success=(success.finished_at or success.started_at) if success else None,
                )
            )
    pending, failing, oldest = webhook_backlog(engine)
    parked = parked_events(engine)
    return Health(
        taken_at=now,
        syncs=syncs,
        webhook_pending=pending,
        webhook_failing=failing,
        webhook_oldest=oldest,
        webhook_parked=parked,
        rejected=counts_by_reason(engine, list(settings.syncs)),
    )


def _waiting() -> list[sa.ColumnElement[bool]]:
    """Events the applier still works on: not applied and, where events can be parked, not."""
    t = webhook_events
    waiting: list[sa.ColumnElement[bool]] = [t.c.applied_at.is_(None)]
    if "parked_at" in t.c:
        waiting.append(t.c.parked_at.is_(None))
    return waiting


def parked_events(engine: Engine) -> int:
    """Events set aside after failing to apply too often (0 where the store cannot park)."""
    t = webhook_events
    if "parked_at" not in t.c:
        return 0
    query = sa.select(sa.func.count()).where(t.c.applied_at.is_(None), t.c.parked_at.is_not(None))
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def latest_webhook_error(engine: Engine) -> str | None:
    """The error of the most recently received event still waiting with one, if any."""
    t = webhook_events
    query = (
        sa.select(t.c.error)
        .where(*_waiting(), t.c.error.is_not(None))
        .order_by(t.c.received_at.desc(), t.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        error = conn.execute(query).scalar()
    return None if error is None else str(error)


def webhook_backlog(engine: Engine) -> tuple[int, int, datetime | None]:
    """(events waiting to be applied, of which carry an error, when the oldest arrived)."""
    t = webhook_events
    query = sa.select(sa.func.count(), sa.func.count(t.c.error), sa.func.min(t.c.received_at))
    with engine.connect() as conn:
        pending, failing, oldest = conn.execute(query.where(*_waiting())).one()
    if isinstance(oldest, str):  # SQLite's MIN() gives text back, without the column's type
        oldest = datetime.fromisoformat(oldest)
    if isinstance(oldest, datetime) and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return int(pending), int(failing), oldest
