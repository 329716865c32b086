"""PostgreSQL: compress ``cb_push_intents.intents`` with LZ4 rather than pglz.

Revision ID: 0014_intents_lz4
Revises: 0013_source_address
Create Date: 2026-12-07

Written by hand. A push writes one ``cb_push_intents`` row before each provider call, whose
``intents`` document (about 75 kB for a 1,000-member slice) PostgreSQL compresses out of line:
with its default method, pglz, that compression was about 2 µs of the server's CPU per pushed
contact; LZ4 takes about 1 µs, at the same stored size (issues 15/16). Only where the server
offers LZ4 (PostgreSQL 14 or later, built with it); elsewhere, and on MySQL/MariaDB and SQLite,
nothing changes. Values already stored keep their compression; new ones use LZ4.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014_intents_lz4"
down_revision: str | None = "0013_source_address"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OFFERED = "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"


def _lz4_offered() -> bool:
    bind = op.get_bind()
    return bind.dialect.name == "postgresql" and bool(bind.exec_driver_sql(_OFFERED).scalar())


def upgrade() -> None:
    if _lz4_offered():
        op.execute("ALTER TABLE cb_push_intents ALTER COLUMN intents SET COMPRESSION lz4")


def downgrade() -> None:
    if _lz4_offered():
        op.execute("ALTER TABLE cb_push_intents ALTER COLUMN intents SET COMPRESSION default")
