"""Retention: delete what the state store no longer needs, in short transactions.

The periods are settings (``[retention]``, docs/privacy.md); 0 keeps a table's rows forever:

====================  =====================================  ===============================
table                 a row is past retention when           setting
====================  =====================================  ===============================
cb_email_activity     its event time is older than           ``activity_days``
cb_webhook_events     it was applied and arrived before      ``webhook_days``
cb_rejected_records   it was last seen before                ``rejected_days``
cb_sync_runs          it finished and started before         ``runs_days``
====================  =====================================  ===============================

:func:`purge` walks each table in primary-key order. Each step reads the keys of the next
``batch_rows`` rows past retention (a read: no lock), then deletes the rows of that key range
that are past retention in one transaction: at most ``batch_rows`` rows, a bounded range of
the key, so every transaction (and every lock it holds) is short, whatever the table's size.
``serve --schedule`` runs it on ``retention.schedule``; ``campaign-bridge purge`` by hand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge import landing, state
from campaign_bridge.config import RetentionConfig, Settings

__all__ = [
    "RULES",
    "PurgeResult",
    "RetentionRule",
    "past_retention",
    "purge",
    "retention_job",
    "with_retention",
]

logger = logging.getLogger(__name__)

JOB_NAME = "*retention"  # the scheduler's job (and lock ``sync:*retention``)
JOB_DIRECTION = "purge"


@dataclass(frozen=True)
class RetentionRule:
    table: sa.Table
    time_column: str
    setting: str  # the RetentionConfig field with the number of days
    only: Callable[[sa.Table], sa.ColumnElement[bool]] | None = None  # rows that may go at all

    def condition(self, cutoff: datetime) -> sa.ColumnElement[bool]:
        old = self.table.c[self.time_column] < cutoff
        return old if self.only is None else sa.and_(old, self.only(self.table))


RULES: tuple[RetentionRule, ...] = (
    RetentionRule(landing.email_activity, "occurred_at", "activity_days"),
    RetentionRule(
        state.webhook_events, "received_at", "webhook_days", lambda t: t.c.applied_at.is_not(None)
    ),
    RetentionRule(state.rejected_records, "last_seen", "rejected_days"),
    RetentionRule(state.sync_runs, "started_at", "runs_days", lambda t: t.c.status != "running"),
)


@dataclass
class PurgeResult:
    table: str
    days: int
    deleted: int = 0
    transactions: int = 0
    longest_transaction: float = 0.0  # seconds: the longest any lock was held
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "days": self.days,
            "deleted": self.deleted,
            "transactions": self.transactions,
            "longest_transaction_seconds": round(self.longest_transaction, 4),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class PurgeSummary:
    results: list[PurgeResult] = field(default_factory=list)
    status: str = "succeeded"

    def counts(self) -> dict[str, int]:
        return {r.table: r.deleted for r in self.results}


def _cutoffs(
    retention: RetentionConfig, now: datetime
) -> list[tuple[RetentionRule, int, datetime]]:
    found = []
    for rule in RULES:
        days = int(getattr(retention, rule.setting))
        if days > 0:
            found.append((rule, days, now - timedelta(days=days)))
    return found


def past_retention(
    engine: Engine, retention: RetentionConfig, now: datetime | None = None
) -> dict[str, int]:
    """How many rows of each table are past retention now (tables kept forever are absent)."""
    now = now or datetime.now(UTC)
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for rule, _days, cutoff in _cutoffs(retention, now):
            query = sa.select(sa.func.count()).select_from(rule.table).where(rule.condition(cutoff))
            counts[rule.table.name] = int(conn.execute(query).scalar_one())
    return counts


def purge(
    engine: Engine,
    retention: RetentionConfig,
    *,
    now: datetime | None = None,
    tables: Sequence[str] | None = None,
) -> list[PurgeResult]:
    """Delete every row past retention, ``retention.batch_rows`` per transaction."""
    now = now or datetime.now(UTC)
    results = []
    for rule, days, cutoff in _cutoffs(retention, now):
        if tables is not None and rule.table.name not in tables:
            continue
        result = PurgeResult(rule.table.name, days)
        started = time.perf_counter()
        _purge_table(engine, rule, cutoff, retention.batch_rows, result)
        result.seconds = time.perf_counter() - started
        logger.info(
            "purged %s: %d row(s) older than %d day(s)",
            rule.table.name,
            result.deleted,
            days,
            extra={"action": "purge", **result.as_dict()},
        )
        results.append(result)
    return results


def _purge_table(
    engine: Engine, rule: RetentionRule, cutoff: datetime, batch: int, result: PurgeResult
) -> None:
    table = rule.table
    keys = list(table.primary_key.columns)
    condition = rule.condition(cutoff)
    mysql = engine.dialect.name == "mysql"
    after: tuple[Any, ...] | None = None
    while True:
        query = sa.select(*keys).where(condition).order_by(*keys).limit(batch)
        if after is not None:
            query = query.where(_beyond(keys, after, strict=True, mysql=mysql))
        with engine.connect() as conn:
            found = [tuple(row) for row in conn.execute(query)]
        if not found:
            return
        first, last = found[0], found[-1]
        in_range = sa.and_(_key_range(keys, first, last), condition)
        began = time.perf_counter()
        with engine.begin() as conn:
            deleted = conn.execute(table.delete().where(in_range)).rowcount
        result.longest_transaction = max(result.longest_transaction, time.perf_counter() - began)
        result.transactions += 1
        result.deleted += max(int(deleted or 0), 0)
        after = last
        if len(found) < batch:
            return


def _key_range(
    keys: Sequence[sa.Column[Any]], first: tuple[Any, ...], last: tuple[Any, ...]
) -> sa.ColumnElement[bool]:
    """``first <= keys <= last`` in key order, written so that every engine's planner sees an
    index range: equality on the leading columns the two ends share, a plain range on the next
    one, and then the exact bounds (which only filter the rows of that range)."""
    parts: list[sa.ColumnElement[bool]] = []
    shared = 0
    while shared < len(keys) and first[shared] == last[shared]:
        parts.append(keys[shared] == _typed(keys[shared], first[shared]))
        shared += 1
    if shared < len(keys):
        column = keys[shared]
        parts.append(column >= _typed(column, first[shared]))
        parts.append(column <= _typed(column, last[shared]))
        rest, low, high = keys[shared + 1 :], first[shared + 1 :], last[shared + 1 :]
        if rest:  # rows of the first and last value of that column: only within the bounds
            parts.append(
                sa.or_(
                    column != _typed(column, first[shared]),
                    _compare(rest, low, ">=", mysql=True),
                )
            )
            parts.append(
                sa.or_(
                    column != _typed(column, last[shared]),
                    _compare(rest, high, "<=", mysql=True),
                )
            )
    return sa.and_(*parts)


def _typed(column: sa.Column[Any], value: Any) -> sa.ColumnElement[Any]:
    return sa.literal(value, type_=column.type)


def _beyond(
    keys: Sequence[sa.Column[Any]], values: tuple[Any, ...], *, strict: bool, mysql: bool
) -> sa.ColumnElement[bool]:
    """``keys > values`` (``>=`` unless ``strict``) in key order."""
    return _compare(keys, values, ">" if strict else ">=", mysql=mysql)


def _compare(
    keys: Sequence[sa.Column[Any]], values: tuple[Any, ...], op: str, *, mysql: bool
) -> sa.ColumnElement[bool]:
    """``keys <op> values`` in key order, ``op`` one of ``>``, ``>=``, ``<=``: a row-value
    comparison, which PostgreSQL and SQLite use as an index range; MySQL/MariaDB get the same
    condition spelled out. (Never negated: ``NOT (k > v)`` is no range, a full scan each time.)"""
    if len(keys) == 1 or not mysql:
        left: Any = keys[0] if len(keys) == 1 else sa.tuple_(*keys)
        # each value typed as its column: a text-typed value would make PostgreSQL cast the
        # varchar key to text, and a cast key is no index range
        typed = [sa.literal(v, type_=k.type) for k, v in zip(keys, values, strict=True)]
        right: Any = typed[0] if len(keys) == 1 else sa.tuple_(*typed)
        compared: sa.ColumnElement[bool] = {
            ">": left > right,
            ">=": left >= right,
            "<=": left <= right,
        }[op]
        return compared
    head, rest = keys[0], keys[1:]
    beyond = head > values[0] if op != "<=" else head < values[0]
    return sa.or_(beyond, sa.and_(head == values[0], _compare(rest, values[1:], op, mysql=True)))


# --- the scheduler's job --------------------------------------------------------------------


def retention_job(settings: Settings) -> Any | None:
    """The purge as a scheduler job (``serve --schedule``), or ``None`` without a schedule."""
    from campaign_bridge.scheduler import Job, parse_schedule

    text = settings.retention.schedule
    if not text:
        return None
    schedule = parse_schedule(text)
    # first at the schedule's next tick, not at start-up (a restart does not purge again)
    return Job(JOB_NAME, JOB_DIRECTION, schedule, next_due=schedule.next_after(datetime.now(UTC)))


def with_retention(runner: Any, settings: Settings) -> Any:
    """``runner`` that also runs the retention job (other jobs go to ``runner`` unchanged)."""

    async def run(sync_name: str, direction: str) -> Any:
        if (sync_name, direction) != (JOB_NAME, JOB_DIRECTION):
            return await runner(sync_name, direction)
        import anyio

        from campaign_bridge.db import create_engine

        engine = create_engine(settings.effective_state_url())
        try:
            results = await anyio.to_thread.run_sync(purge, engine, settings.retention)
        finally:
            engine.dispose()
        return PurgeSummary(results)

    return run
