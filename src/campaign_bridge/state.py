"""The bridge's own tables (prefix ``cb_``), described once with SQLAlchemy Core.

Alembic migrations under ``campaign_bridge/migrations`` must produce exactly this model; a test
compares them on SQLite, PostgreSQL and MariaDB. Every job is keyed by ``sync_name`` (and later by
key range), so the same job can be re-run from the start, on any machine, without harm.
"""

from __future__ import annotations

import json
from datetime import UTC as _UTC
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeEngine

__all__ = [
    "ExactString",
    "JSONDocument",
    "UTCDateTime",
    "consent_ledger",
    "contact_state",
    "exact_string",
    "key_slots",
    "key_waiters",
    "locks",
    "member_status",
    "metadata",
    "pull_cursors",
    "push_intents",
    "rejected_records",
    "sync_runs",
    "webhook_events",
]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Lengths are chosen for MySQL/MariaDB, whose indexed VARCHARs must stay under 3072 bytes (utf8mb4).
SYNC_NAME = 100
SOURCE_KEY = 255
HASH = 64
# Every member_id column holds the bridge's own key for a member (mapping.email_hash).
MEMBER_KEY_COMMENT = "the bridge's key: md5 of lower(trim(email))"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC on every engine and always read back as an aware UTC datetime.

    PostgreSQL keeps ``timestamptz``; MySQL/MariaDB (``DATETIME(6)``) and SQLite have no time
    zone, so the value is converted to UTC and stored without one. Naive datetimes are refused
    on write: a timestamp whose zone is unknown is a bug, not something to guess about.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "mysql":
            from sqlalchemy.dialects import mysql  # MySQL's modules load only for MySQL

            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused: pass a timezone-aware (UTC) datetime")
        value = value.astimezone(_UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # defensive: a value written by hand into SQLite
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=_UTC)
        return value.astimezone(_UTC)


class JSONDocument(TypeDecorator[Any]):
    """A JSON value. Native ``JSON`` on PostgreSQL and SQLite; ``LONGTEXT`` on MySQL/MariaDB.

    MariaDB's ``JSON`` is an alias of ``LONGTEXT`` and reflects as such, so declaring
    ``LONGTEXT`` there (and serialising here) keeps MySQL and MariaDB identical and the
    migrations-vs-model comparison clean.
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "mysql":
            from sqlalchemy.dialects import mysql

            return dialect.type_descriptor(mysql.LONGTEXT())
        return dialect.type_descriptor(JSON(none_as_null=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "mysql" and value is not None:
            return json.dumps(value, separators=(",", ":"), sort_keys=True)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "mysql" and isinstance(value, str | bytes):
            return json.loads(value)
        return value


UTC = UTCDateTime()


class ExactString(TypeDecorator[str]):
    """A VARCHAR compared byte for byte everywhere, for keys that come from the user's data.

    MySQL/MariaDB's default collations ignore case (and trailing spaces), which would merge the
    source keys ``"ab"`` and ``"AB"`` into one contact; ``utf8mb4_bin`` keeps them apart, as
    PostgreSQL and SQLite do anyway. (A type rather than a ``with_variant`` of MySQL's VARCHAR,
    so that declaring the tables does not load MySQL's modules.)
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "mysql":
            from sqlalchemy.dialects import mysql

            return dialect.type_descriptor(
                mysql.VARCHAR(self.length, charset="utf8mb4", collation="utf8mb4_bin")
            )
        return dialect.type_descriptor(self.impl_instance)


def exact_string(length: int) -> TypeEngine[str]:
    """An :class:`ExactString` of ``length`` characters."""
    return ExactString(length)


sync_runs = Table(
    "cb_sync_runs",
    metadata,
    Column("id", String(36), primary_key=True, comment="run id (UUID4)"),
    Column("sync_name", String(SYNC_NAME), nullable=False),
    Column("direction", String(16), nullable=False, comment="push | pull | webhook"),
    Column("started_at", UTC, nullable=False),
    Column("finished_at", UTC, nullable=True),
    Column("status", String(16), nullable=False, comment="running | succeeded | failed"),
    Column(
        "counts", JSONDocument, nullable=False, comment="created, updated, unchanged, rejected, ..."
    ),
    Column("error_summary", Text, nullable=True),
    Index("ix_cb_sync_runs_sync_started", "sync_name", "started_at"),
    Index("ix_cb_sync_runs_started", "started_at"),
)

contact_state = Table(
    "cb_contact_state",
    metadata,
    Column("sync_name", String(SYNC_NAME), primary_key=True),
    Column("source_key", exact_string(SOURCE_KEY), primary_key=True),
    Column("email_hash", String(HASH), nullable=False, comment="md5 of the lowercased email"),
    Column("provider_member_id", String(HASH), nullable=True),
    Column("content_hash", String(HASH), nullable=True, comment="hash of what was last pushed"),
    Column("pushed_at", UTC, nullable=True),
    Column("provider_status", String(32), nullable=True),
    Column(
        "managed",
        Boolean,
        nullable=False,
        default=False,
        comment="the bridge's own create call made this member: only these are archived (mirror)",
    ),
    Column(
        "last_consent",
        Boolean,
        nullable=True,
        comment="the last non-null source consent the bridge acted on",
    ),
    Column(
        "managed_tags", JSONDocument, nullable=True, comment="tags this bridge set on the member"
    ),
    Column("last_run_id", String(36), nullable=True),
    Column(
        "source_email_hash",
        String(HASH),
        nullable=True,
        comment="md5 of the address the source row had when last pushed (NULL: email_hash); "
        "email_hash is the member's current one, which the member may have changed since",
    ),
    Index("ix_cb_contact_state_email", "sync_name", "email_hash"),
)

rejected_records = Table(
    "cb_rejected_records",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("sync_name", String(SYNC_NAME), nullable=False),
    Column("source_key", exact_string(SOURCE_KEY), nullable=False),
    Column("email_hash", String(HASH), nullable=True),
    Column("content_hash", String(HASH), nullable=True, comment="record as it was when rejected"),
    Column("reason_code", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=1),
    Column("first_seen", UTC, nullable=False),
    Column("last_seen", UTC, nullable=False),
    Column("resolved_at", UTC, nullable=True),
    Column("last_run_id", String(36), nullable=True),
    UniqueConstraint("sync_name", "source_key", name="uq_cb_rejected_records_sync_key"),
    Index("ix_cb_rejected_records_email", "sync_name", "email_hash"),
)

pull_cursors = Table(
    "cb_pull_cursors",
    metadata,
    Column("sync_name", String(SYNC_NAME), primary_key=True),
    Column(
        "stream", exact_string(191), primary_key=True, comment="e.g. members, activity:<campaign>"
    ),
    Column("cursor", String(255), nullable=False),
    Column("updated_at", UTC, nullable=False),
)

consent_ledger = Table(
    "cb_consent_ledger",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("sync_name", String(SYNC_NAME), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("email_hash", String(HASH), nullable=False),
    Column("source_key", exact_string(SOURCE_KEY), nullable=True),
    Column("old_status", String(32), nullable=True),
    Column("new_status", String(32), nullable=False),
    Column("origin", String(32), nullable=False, comment="source | push | pull | webhook"),
    Column("reason", Text, nullable=True),
    Column("run_id", String(36), nullable=True),
    Column("occurred_at", UTC, nullable=False),
    Index("ix_cb_consent_ledger_contact", "sync_name", "email_hash"),
)

push_intents = Table(
    "cb_push_intents",
    metadata,
    Column("sync_name", String(SYNC_NAME), primary_key=True),
    Column("slice_id", String(36), primary_key=True, comment="one per provider call"),
    Column("run_id", String(36), nullable=True),
    Column("created_at", UTC, nullable=False, comment="written just before the provider call"),
    Column(
        "intents",
        JSONDocument,
        nullable=False,
        comment="the status changes the call sends: [[email_hash, source_key, old_status, "
        "new_status, reason, consent], ...]",
    ),
)

webhook_events = Table(
    "cb_webhook_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("provider", String(32), nullable=False),
    Column("dedupe_key", String(HASH), nullable=False, comment="hash of the raw delivery"),
    Column("event_type", String(32), nullable=False),
    Column("list_id", String(64), nullable=True),
    Column("fired_at", UTC, nullable=True),
    Column("received_at", UTC, nullable=False),
    Column("payload", Text, nullable=False),
    Column("applied_at", UTC, nullable=True),
    Column("error", Text, nullable=True),
    Column(
        "email_hash",
        String(HASH),
        nullable=True,
        comment="md5 of the lowercased email the event is about (a contact's history)",
    ),
    Column(
        "attempts",
        Integer,
        nullable=False,
        default=0,
        server_default=text("0"),
        comment="failed applies so far",
    ),
    Column("parked_at", UTC, nullable=True, comment="set after too many failed applies"),
    UniqueConstraint("provider", "dedupe_key", name="uq_cb_webhook_events_dedupe"),
    Index("ix_cb_webhook_events_pending", "applied_at", "parked_at"),
    Index("ix_cb_webhook_events_email", "email_hash"),
)

locks = Table(
    "cb_locks",
    metadata,
    Column("name", String(191), primary_key=True, comment="e.g. sync:<name>"),
    Column("owner", String(191), nullable=False),
    Column("acquired_at", UTC, nullable=False),
    Column("expires_at", UTC, nullable=False),
)

# The concurrency budget of a provider API key shared by every process (PostgreSQL only; see
# campaign_bridge.keyslots). One row per slot; the key itself is never stored, only its SHA-256.
key_slots = Table(
    "cb_key_slots",
    metadata,
    Column("key_hash", String(64), primary_key=True, comment="sha256 of host + API key"),
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("holder", String(191), nullable=True, comment="host:pid:random of the process"),
    Column("sync_name", String(191), nullable=True),
    Column("expires_at", UTC, nullable=True, comment="free again after this (lease)"),
)

# Syncs waiting for a slot of a key: with others waiting, a sync holds at most its fair share.
key_waiters = Table(
    "cb_key_waiters",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("holder", String(191), primary_key=True),
    Column("sync_name", String(191), primary_key=True),
    Column("expires_at", UTC, nullable=False),
)

member_status = Table(
    "cb_member_status",
    metadata,
    Column("provider", String(32), primary_key=True),
    Column("list_id", String(64), primary_key=True),
    Column("member_id", String(HASH), primary_key=True, comment=MEMBER_KEY_COMMENT),
    Column("email", String(320), nullable=False),
    Column("status", String(32), nullable=False),
    Column("unsubscribe_reason", Text, nullable=True),
    Column("last_changed", UTC, nullable=True, comment="provider's last_changed"),
    Column("updated_at", UTC, nullable=False, comment="when this row was last written"),
    Column(
        "provider_member_id",
        String(HASH),
        nullable=True,
        comment="the provider's own id for the member; never a key",
    ),
    Index("ix_cb_member_status_changed", "provider", "list_id", "last_changed"),
    # campaign_bridge.vanished counts the members known on an audience by status, every run
    Index("ix_cb_member_status_status", "provider", "list_id", "status"),
)
