"""The bridge's own tables: runs, contact state, rejections, cursors, consent, webhooks, locks.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Written by hand (not generated at run time) so the DDL that reaches a production database is
exactly what was reviewed. Types are frozen here, not imported from ``state.py``, so a later
change to the model cannot silently change what this revision does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Every table in utf8mb4 on MySQL/MariaDB, whatever the database's default character set.
_TABLE_OPTIONS: dict[str, Any] = {"mysql_charset": "utf8mb4"}


def _utc() -> sa.types.TypeEngine[Any]:
    # timestamptz on PostgreSQL; UTC without a zone in DATETIME(6) / SQLite text elsewhere.
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")


def _json() -> sa.types.TypeEngine[Any]:
    # MariaDB's JSON is LONGTEXT in disguise; declare LONGTEXT on MySQL and MariaDB alike.
    return sa.JSON().with_variant(mysql.LONGTEXT(), "mysql")


def _key(length: int) -> sa.types.TypeEngine[Any]:
    # Keys from the user's data compare byte for byte; MySQL's default collations ignore case.
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql"
    )


def _serial() -> sa.types.TypeEngine[int]:
    # BIGINT identity on servers; INTEGER PRIMARY KEY (the rowid alias) on SQLite.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cb_sync_runs",
        sa.Column("id", sa.String(36), nullable=False, comment="run id (UUID4)"),
        sa.Column("sync_name", sa.String(100), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False, comment="push | pull | webhook"),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, comment="running | succeeded | failed"),
        sa.Column(
            "counts", _json(), nullable=False, comment="created, updated, unchanged, rejected, ..."
        ),
        sa.Column("error_summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cb_sync_runs"),
        **_TABLE_OPTIONS,
    )
    op.create_index("ix_cb_sync_runs_sync_started", "cb_sync_runs", ["sync_name", "started_at"])
    op.create_index("ix_cb_sync_runs_started", "cb_sync_runs", ["started_at"])

    op.create_table(
        "cb_contact_state",
        sa.Column("sync_name", sa.String(100), nullable=False),
        sa.Column("source_key", _key(255), nullable=False),
        sa.Column(
            "email_hash", sa.String(64), nullable=False, comment="md5 of the lowercased email"
        ),
        sa.Column("provider_member_id", sa.String(64), nullable=True),
        sa.Column(
            "content_hash", sa.String(64), nullable=True, comment="hash of what was last pushed"
        ),
        sa.Column("pushed_at", _utc(), nullable=True),
        sa.Column("provider_status", sa.String(32), nullable=True),
        sa.Column("managed", sa.Boolean(), nullable=False, comment="created or managed by us"),
        sa.Column(
            "managed_tags", _json(), nullable=True, comment="tags this bridge set on the member"
        ),
        sa.Column("last_run_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("sync_name", "source_key", name="pk_cb_contact_state"),
        **_TABLE_OPTIONS,
    )
    op.create_index("ix_cb_contact_state_email", "cb_contact_state", ["sync_name", "email_hash"])

    op.create_table(
        "cb_rejected_records",
        sa.Column("id", _serial(), autoincrement=True, nullable=False),
        sa.Column("sync_name", sa.String(100), nullable=False),
        sa.Column("source_key", _key(255), nullable=False),
        sa.Column("email_hash", sa.String(64), nullable=True),
        sa.Column(
            "content_hash", sa.String(64), nullable=True, comment="record as it was when rejected"
        ),
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_seen", _utc(), nullable=False),
        sa.Column("last_seen", _utc(), nullable=False),
        sa.Column("resolved_at", _utc(), nullable=True),
        sa.Column("last_run_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cb_rejected_records"),
        sa.UniqueConstraint("sync_name", "source_key", name="uq_cb_rejected_records_sync_key"),
        **_TABLE_OPTIONS,
    )

    op.create_table(
        "cb_pull_cursors",
        sa.Column("sync_name", sa.String(100), nullable=False),
        sa.Column("stream", _key(191), nullable=False, comment="e.g. members, activity:<campaign>"),
        sa.Column("cursor", sa.String(255), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("sync_name", "stream", name="pk_cb_pull_cursors"),
        **_TABLE_OPTIONS,
    )

    op.create_table(
        "cb_consent_ledger",
        sa.Column("id", _serial(), autoincrement=True, nullable=False),
        sa.Column("sync_name", sa.String(100), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("source_key", _key(255), nullable=True),
        sa.Column("old_status", sa.String(32), nullable=True),
        sa.Column("new_status", sa.String(32), nullable=False),
        sa.Column(
            "origin", sa.String(32), nullable=False, comment="source | push | pull | webhook"
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("occurred_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cb_consent_ledger"),
        **_TABLE_OPTIONS,
    )
    op.create_index(
        "ix_cb_consent_ledger_contact", "cb_consent_ledger", ["sync_name", "email_hash"]
    )

    op.create_table(
        "cb_webhook_events",
        sa.Column("id", _serial(), autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("dedupe_key", sa.String(64), nullable=False, comment="hash of the raw delivery"),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("list_id", sa.String(64), nullable=True),
        sa.Column("fired_at", _utc(), nullable=True),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("applied_at", _utc(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cb_webhook_events"),
        sa.UniqueConstraint("provider", "dedupe_key", name="uq_cb_webhook_events_dedupe"),
        **_TABLE_OPTIONS,
    )
    op.create_index("ix_cb_webhook_events_pending", "cb_webhook_events", ["applied_at"])

    op.create_table(
        "cb_locks",
        sa.Column("name", sa.String(191), nullable=False, comment="e.g. sync:<name>"),
        sa.Column("owner", sa.String(191), nullable=False),
        sa.Column("acquired_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_cb_locks"),
        **_TABLE_OPTIONS,
    )

    op.create_table(
        "cb_member_status",
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("list_id", sa.String(64), nullable=False),
        sa.Column(
            "member_id", sa.String(64), nullable=False, comment="Mailchimp: md5 of lower(email)"
        ),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("unsubscribe_reason", sa.Text(), nullable=True),
        sa.Column("last_changed", _utc(), nullable=True, comment="provider's last_changed"),
        sa.Column("updated_at", _utc(), nullable=False, comment="when this row was last written"),
        sa.PrimaryKeyConstraint("provider", "list_id", "member_id", name="pk_cb_member_status"),
        **_TABLE_OPTIONS,
    )
    op.create_index(
        "ix_cb_member_status_changed",
        "cb_member_status",
        ["provider", "list_id", "last_changed"],
    )


def downgrade() -> None:
    op.drop_table("cb_member_status")
    op.drop_table("cb_locks")
    op.drop_table("cb_webhook_events")
    op.drop_table("cb_consent_ledger")
    op.drop_table("cb_pull_cursors")
    op.drop_table("cb_rejected_records")
    op.drop_table("cb_contact_state")
    op.drop_table("cb_sync_runs")
