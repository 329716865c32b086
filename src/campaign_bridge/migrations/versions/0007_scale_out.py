"""Scale out: the shared concurrency budget of API keys, and procrastinate's job queue.

Revision ID: 0007_scale_out
Revises: 0006_webhook_parking
Create Date: 2026-12-07

Written by hand.

- ``cb_key_slots`` / ``cb_key_waiters``: the concurrency slots of each provider API key (by
  SHA-256, never the key) leased by the processes sending requests, and the syncs waiting for one
  (:mod:`campaign_bridge.keyslots`). Created on every engine so the model is one; only a
  PostgreSQL state store uses them.
- On PostgreSQL only: procrastinate's own schema (its ``procrastinate_*`` tables, types and
  functions, from the procrastinate release pinned in pyproject.toml), so ``campaign-bridge
  worker`` runs on the state store. A no-op on SQLite and MariaDB (worker mode needs PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0007_scale_out"
down_revision: str | None = "0006_webhook_parking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE_OPTIONS: dict[str, Any] = {"mysql_charset": "utf8mb4"}

# Everything procrastinate's schema creates, dropped on downgrade (functions and types by name).
_DROP_PROCRASTINATE = """
DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs,
    procrastinate_workers CASCADE;
DO $$
DECLARE f record;
DECLARE t record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%'
    LOOP
        EXECUTE 'DROP FUNCTION IF EXISTS ' || f.sig || ' CASCADE';
    END LOOP;
    FOR t IN SELECT ty.typname FROM pg_type ty
             JOIN pg_namespace n ON n.oid = ty.typnamespace
             WHERE n.nspname = current_schema() AND ty.typname LIKE 'procrastinate\\_%'
               AND ty.typtype IN ('e', 'c')
    LOOP
        EXECUTE 'DROP TYPE IF EXISTS ' || quote_ident(t.typname) || ' CASCADE';
    END LOOP;
END $$;
"""


def _utc() -> sa.types.TypeEngine[Any]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")


def _script(sql: str) -> None:
    """Run a multi-statement script on the migration's own connection and transaction, without
    parameters (the driver then leaves the ``%`` inside PL/pgSQL bodies alone)."""
    cursor = op.get_bind().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def upgrade() -> None:
    op.create_table(
        "cb_key_slots",
        sa.Column("key_hash", sa.String(64), nullable=False, comment="sha256 of host + API key"),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column(
            "holder", sa.String(191), nullable=True, comment="host:pid:random of the process"
        ),
        sa.Column("sync_name", sa.String(191), nullable=True),
        sa.Column("expires_at", _utc(), nullable=True, comment="free again after this (lease)"),
        sa.PrimaryKeyConstraint("key_hash", "slot", name="pk_cb_key_slots"),
        **_TABLE_OPTIONS,
    )
    op.create_table(
        "cb_key_waiters",
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(191), nullable=False),
        sa.Column("sync_name", sa.String(191), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("key_hash", "holder", "sync_name", name="pk_cb_key_waiters"),
        **_TABLE_OPTIONS,
    )
    if op.get_context().dialect.name == "postgresql":
        from procrastinate.schema import SchemaManager

        _script(SchemaManager.get_schema())


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        _script(_DROP_PROCRASTINATE)
    op.drop_table("cb_key_waiters")
    op.drop_table("cb_key_slots")
