"""Consent and ownership: who created a member, the consent last acted on, push intents.

Revision ID: 0004_consent_ownership
Revises: 0003
Create Date: 2026-12-07

Written by hand.

- ``cb_contact_state.managed`` now means "this bridge's own create call made the member" (mirror
  mode archives only those). Until now it was true for every contact pushed. Existing rows keep
  it only where the ledger shows the bridge created the member (a push row from no status);
  anyone else is treated as found at the provider, the safe side.
- ``cb_contact_state.last_consent``: the last non-null consent the bridge acted on, so that
  consent going true -> NULL -> false still unsubscribes. Backfilled from the consent mark that
  ends each content hash.
- ``cb_push_intents``: a status change a push is about to send, written before the call and
  removed in the transaction that writes its ledger row; a crash in between leaves it for the
  next run to confirm against the provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004_consent_ownership"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.types.TypeEngine[Any]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")


def _key(length: int) -> sa.types.TypeEngine[Any]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql"
    )


def upgrade() -> None:
    with op.batch_alter_table("cb_contact_state") as batch:
        batch.add_column(
            sa.Column(
                "last_consent",
                sa.Boolean(),
                nullable=True,
                comment="the last non-null source consent the bridge acted on",
            )
        )
        batch.alter_column(
            "managed",
            existing_type=sa.Boolean(),
            existing_nullable=False,
            comment="the bridge's own create call made this member: only these are archived "
            "(mirror)",
            existing_comment="created or managed by us",
        )
    op.execute(
        "UPDATE cb_contact_state SET managed = CASE WHEN EXISTS ("
        "SELECT 1 FROM cb_consent_ledger l WHERE l.sync_name = cb_contact_state.sync_name "
        "AND l.email_hash = cb_contact_state.email_hash AND l.origin = 'push' "
        "AND l.old_status IS NULL) THEN 1 ELSE 0 END"
        if op.get_context().dialect.name != "postgresql"
        else "UPDATE cb_contact_state SET managed = EXISTS ("
        "SELECT 1 FROM cb_consent_ledger l WHERE l.sync_name = cb_contact_state.sync_name "
        "AND l.email_hash = cb_contact_state.email_hash AND l.origin = 'push' "
        "AND l.old_status IS NULL)"
    )
    for mark, value in (("t", "true"), ("f", "false")):
        pattern = f"%{mark}"
        op.execute(
            sa.text(
                f"UPDATE cb_contact_state SET last_consent = {value} WHERE content_hash LIKE :p"
            ).bindparams(p=pattern)
        )
    op.create_table(
        "cb_push_intents",
        sa.Column("sync_name", sa.String(100), nullable=False),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("source_key", _key(255), nullable=False),
        sa.Column("old_status", sa.String(32), nullable=True),
        sa.Column("new_status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "consent",
            sa.Boolean(),
            nullable=True,
            comment="the source consent the change acts on",
        ),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column(
            "created_at", _utc(), nullable=False, comment="written just before the provider call"
        ),
        sa.PrimaryKeyConstraint("sync_name", "email_hash", name="pk_cb_push_intents"),
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("cb_push_intents")
    with op.batch_alter_table("cb_contact_state") as batch:
        batch.drop_column("last_consent")
        batch.alter_column(
            "managed",
            existing_type=sa.Boolean(),
            existing_nullable=False,
            comment="created or managed by us",
        )
