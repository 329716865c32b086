"""The landing tables the pull fills, and the bulk writers that fill them.

Three plain tables in the state-store database, documented column by column in ``docs/pull.md``:
``cb_campaigns``, ``cb_campaign_reports`` and ``cb_email_activity`` (member statuses live in
``cb_member_status``, in :mod:`campaign_bridge.state`). Every row carries ``provider`` so Brevo and
listmonk land in the same schema; every timestamp is UTC; every table has a natural key, so
pulling the same window twice adds nothing.

The tables are defined on :data:`campaign_bridge.state.metadata`, so Alembic and the no-drift test
see them with the rest of the bridge's tables.

Writers take plain row dicts and write a whole chunk per statement (PostgreSQL: ``COPY`` into a
temporary table, then one ``INSERT ... SELECT ... ON CONFLICT``; MySQL/MariaDB: the driver's
multi-row ``INSERT IGNORE`` / ``ON DUPLICATE KEY UPDATE``; SQLite: one prepared
``INSERT ... ON CONFLICT`` run over the chunk). They never commit: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import (
    Column,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.engine import Connection

from campaign_bridge.db import copy_tuples
from campaign_bridge.state import HASH, MEMBER_KEY_COMMENT, metadata
from campaign_bridge.state import UTC as UTC_TYPE
from campaign_bridge.storable import storable_rows, storable_tuples

__all__ = [
    "ACTIVITY_COLUMNS",
    "NATURAL_KEY",
    "as_utc",
    "campaign_reports",
    "campaigns",
    "email_activity",
    "event_id",
    "insert_activity",
    "upsert_campaign_reports",
    "upsert_campaigns",
    "url_hash",
]

PROVIDER = 32
REMOTE_ID = 64

campaigns = Table(
    "cb_campaigns",
    metadata,
    Column("provider", String(PROVIDER), primary_key=True, comment="mailchimp, brevo, listmonk"),
    Column("campaign_id", String(REMOTE_ID), primary_key=True, comment="provider's campaign id"),
    Column("list_id", String(REMOTE_ID), nullable=True, comment="audience the campaign went to"),
    Column("title", Text, nullable=False, comment="internal title"),
    Column("subject", Text, nullable=False, comment="subject line"),
    Column("status", String(32), nullable=False, comment="save, schedule, sending, sent, ..."),
    Column("created_at", UTC_TYPE, nullable=True),
    Column("send_time", UTC_TYPE, nullable=True),
    Column("emails_sent", Integer, nullable=False, default=0),
    Column("updated_at", UTC_TYPE, nullable=False, comment="when this row was last written"),
    Index("ix_cb_campaigns_send_time", "provider", "send_time"),
)

campaign_reports = Table(
    "cb_campaign_reports",
    metadata,
    Column("provider", String(PROVIDER), primary_key=True),
    Column("campaign_id", String(REMOTE_ID), primary_key=True),
    Column("emails_sent", Integer, nullable=False),
    Column("opens_total", Integer, nullable=False),
    Column("unique_opens", Integer, nullable=False),
    Column("clicks_total", Integer, nullable=False),
    Column("unique_clicks", Integer, nullable=False),
    Column("hard_bounces", Integer, nullable=False),
    Column("soft_bounces", Integer, nullable=False),
    Column("unsubscribed", Integer, nullable=False),
    Column("abuse_reports", Integer, nullable=False),
    Column("last_open", UTC_TYPE, nullable=True),
    Column("last_click", UTC_TYPE, nullable=True),
    Column("fetched_at", UTC_TYPE, nullable=False, comment="when the counters were read"),
)

# The natural key is (provider, campaign, member, action, second, URL, seq): ``url_hash`` because
# URLs can be longer than an index allows (MariaDB caps a key at 3072 bytes), ``seq`` to tell apart
# identical events of one member in the same second (the provider reports them separately).
# ``event_id`` is the md5 of that natural key; the primary key is (provider, member_id, event_id):
# as unique as ``event_id`` alone (which already covers provider and member), and it also serves
# "everything this person did", so a bulk insert maintains one index instead of two (revision
# 0003; a seven-column key made inserts about twice as slow).
email_activity = Table(
    "cb_email_activity",
    metadata,
    Column("event_id", String(32), nullable=False, comment="md5 of the natural key"),
    Column("provider", String(PROVIDER), nullable=False),
    Column("campaign_id", String(REMOTE_ID), nullable=False),
    Column("member_id", String(HASH), nullable=False, comment=MEMBER_KEY_COMMENT),
    Column("action", String(16), nullable=False, comment="sent|open|click|bounce|unsubscribe"),
    Column("occurred_at", UTC_TYPE, nullable=False, comment="UTC, whole seconds"),
    Column("url_hash", String(32), nullable=False, comment="md5 of url; '' when no url"),
    Column("seq", SmallInteger, nullable=False, comment="0, 1, ... for identical events"),
    Column("email", String(320), nullable=False),
    Column("url", Text, nullable=True, comment="clicked link"),
    Column("bounce_type", String(16), nullable=True, comment="hard | soft"),
    Column("reason", Text, nullable=True, comment="unsubscribe reason or bounce diagnostic"),
    Column("ip", String(45), nullable=True),
    Column("pulled_at", UTC_TYPE, nullable=False, comment="when the pull landed the row"),
    PrimaryKeyConstraint("provider", "member_id", "event_id"),
)

NATURAL_KEY: tuple[str, ...] = (
    "provider",
    "campaign_id",
    "member_id",
    "action",
    "occurred_at",
    "url_hash",
    "seq",
)
ACTIVITY_COLUMNS: tuple[str, ...] = tuple(c.name for c in email_activity.columns)
_TIMESTAMP_POSITIONS = tuple(
    i for i, c in enumerate(email_activity.columns) if isinstance(c.type, type(UTC_TYPE))
)


def event_id(
    provider: str,
    campaign_id: str,
    member_id: str,
    action: str,
    occurred_at: datetime,
    hashed_url: str,
    seq: int,
) -> str:
    """The primary key of an activity row: md5 of its natural key (time as epoch seconds)."""
    key = f"{provider}|{campaign_id}|{member_id}|{action}|{int(occurred_at.timestamp())}|"
    key += f"{hashed_url}|{seq}"
    return hashlib.md5(key.encode("utf-8"), usedforsecurity=False).hexdigest()


def url_hash(url: str | None) -> str:
    """The key form of a URL: its md5, or ``''`` when there is none."""
    if not url:
        return ""
    return hashlib.md5(url.encode("utf-8"), usedforsecurity=False).hexdigest()


def insert_activity(conn: Connection, rows: Sequence[Sequence[Any]]) -> int:
    """Insert activity rows (tuples in :data:`ACTIVITY_COLUMNS` order, timestamps aware UTC),
    skipping any whose natural key is already there; return the number of rows added."""
    if not rows:
        return 0
    dialect = conn.dialect.name
    rows = storable_tuples(email_activity, ACTIVITY_COLUMNS, rows, dialect, what="activity event")
    if not rows:
        return 0
    if dialect == "postgresql":
        return _pg_copy_activity(conn, rows)
    columns = ", ".join(ACTIVITY_COLUMNS)
    when = _TIMESTAMP_POSITIONS
    if dialect == "mysql":
        # PyMySQL rewrites executemany into multi-row INSERTs of up to ~1 MB each.
        marks = ", ".join(["%s"] * len(ACTIVITY_COLUMNS))
        sql = f"INSERT IGNORE INTO {email_activity.name} ({columns}) VALUES ({marks})"
        params = _naive_rows(rows, when, _mysql_time)
    else:
        # sqlite3 runs one prepared statement over the chunk, in-process.
        marks = ", ".join(["?"] * len(ACTIVITY_COLUMNS))
        sql = (
            f"INSERT INTO {email_activity.name} ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING"
        )
        params = _naive_rows(rows, when, _sqlite_time)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(sql, params)
        return max(int(cursor.rowcount or 0), 0)
    finally:
        cursor.close()


def upsert_campaigns(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or update campaigns by ``(provider, campaign_id)``."""
    _upsert(conn, campaigns, rows)


def upsert_campaign_reports(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or update report counters by ``(provider, campaign_id)``."""
    _upsert(conn, campaign_reports, rows)


# --- dialect fast paths ---------------------------------------------------------------------


def _pg_copy_activity(conn: Connection, rows: Sequence[Sequence[Any]]) -> int:
    """Binary COPY (psycopg's C row writer: several times cheaper than building COPY text, for
    us and for the server). Text with a NUL character, which PostgreSQL refuses, is written
    again without it (as the text path always did)."""
    attempt = conn.begin_nested()
    try:
        added = _pg_copy_rows(conn, rows)
    except psycopg.errors.CharacterNotInRepertoire:
        attempt.rollback()
        return _pg_copy_rows(conn, _without_nul(rows))
    attempt.commit()
    return added


def _pg_copy_rows(conn: Connection, rows: Sequence[Sequence[Any]]) -> int:
    """COPY straight into the table inside a savepoint -- the common case, where the chunk is
    all new. If any row is already there (a replay, or the cursor overlap), the savepoint is
    rolled back and the chunk goes through a temporary table and one
    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` instead."""
    columns = [f'"{name}"' for name in ACTIVITY_COLUMNS]
    table = email_activity.name
    savepoint = conn.begin_nested()
    try:
        copy_tuples(conn, f'"{table}"', columns, rows, binary_types=_ACTIVITY_PG_TYPES)
        savepoint.commit()
        return len(rows)
    except psycopg.errors.UniqueViolation:
        savepoint.rollback()
    except BaseException:
        savepoint.rollback()
        raise
    temp = f"tmp_{table}"
    conn.exec_driver_sql(
        f'CREATE TEMP TABLE IF NOT EXISTS "{temp}" (LIKE "{table}" INCLUDING DEFAULTS) '
        "ON COMMIT DROP"
    )
    conn.exec_driver_sql(f'TRUNCATE "{temp}"')
    copy_tuples(conn, f'"{temp}"', columns, rows, binary_types=_ACTIVITY_PG_TYPES)
    column_list = ", ".join(columns)
    result = conn.exec_driver_sql(
        f'INSERT INTO "{table}" ({column_list}) SELECT {column_list} FROM "{temp}" '
        f"ON CONFLICT ({_ACTIVITY_KEY}) DO NOTHING"
    )
    return max(int(result.rowcount or 0), 0)


def _pg_type(column: Column[Any]) -> str:
    if isinstance(column.type, type(UTC_TYPE)):
        return "timestamptz"
    if isinstance(column.type, SmallInteger):
        return "int2"
    if isinstance(column.type, Integer):
        return "int4"
    return "text"  # String / Text: the same binary form as varchar


_ACTIVITY_PG_TYPES = [_pg_type(c) for c in email_activity.columns]
_ACTIVITY_KEY = ", ".join(f'"{c.name}"' for c in email_activity.primary_key.columns)


def _without_nul(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(v.replace("\x00", "") if isinstance(v, str) else v for v in row) for row in rows]


def _naive_rows(
    rows: Sequence[Sequence[Any]], positions: Sequence[int], fmt: Callable[[datetime], Any]
) -> list[tuple[Any, ...]]:
    """Rows with their timestamps converted by ``fmt`` (cached: timestamps repeat a lot)."""
    cache: dict[datetime, Any] = {}
    out = []
    for row in rows:
        values = list(row)
        for i in positions:
            moment = values[i]
            if moment is not None:
                converted = cache.get(moment)
                if converted is None:
                    converted = cache[moment] = fmt(moment)
                values[i] = converted
        out.append(tuple(values))
    return out


def _mysql_time(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _sqlite_time(value: datetime) -> str:
    # the text form SQLAlchemy's SQLite DateTime writes and reads
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    dialect = conn.dialect.name
    columns = [c.name for c in table.columns]
    keys = {c.name for c in table.primary_key.columns}
    values = storable_rows(
        table,
        ({name: _db_value(dialect, row.get(name)) for name in columns} for row in rows),
        dialect,
        what=table.name.removeprefix("cb_").rstrip("s").replace("_", " "),
    )
    if not values:
        return
    stmt: Any
    if dialect == "mysql":
        from sqlalchemy.dialects import mysql  # MySQL's modules load only for MySQL

        stmt = mysql.insert(table)
        stmt = stmt.on_duplicate_key_update(
            {name: stmt.inserted[name] for name in columns if name not in keys}
        )
        conn.execute(stmt, values)
        return
    if dialect == "postgresql":
        stmt = pg_dialect.insert(table)
    else:
        from sqlalchemy.dialects import sqlite  # SQLite's modules load only for SQLite

        stmt = sqlite.insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=sorted(keys),
        set_={name: stmt.excluded[name] for name in columns if name not in keys},
    )
    for chunk in _chunks(values, 500):
        conn.execute(stmt.values(chunk))


def _db_value(dialect: str, value: Any) -> Any:
    """Values as the Core types expect them (timestamps: aware UTC; the column type converts)."""
    del dialect
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def as_utc(value: datetime | None) -> datetime | None:
    """A datetime read back from any of our databases, as an aware UTC datetime."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
