"""Push intents are written one row per provider call (a slice), not one row per contact.

Revision ID: 0010_push_intent_slices
Revises: 0009_member_identity
Create Date: 2026-12-07

Written by hand. ``cb_push_intents`` keeps the status changes a push is about to send, written
before the provider call and removed in the transaction that writes their ledger rows. An
initial push of a million contacts wrote, and deleted, a million rows there; a row per call
(``slice_id``) holding the call's changes as one JSON list (``intents``) writes a thousand. What
a row says is unchanged: each entry is one member's change, and entries are removed from their
row as the changes are recorded (the row with its last entry).

Intents left by an interrupted run are carried over: one row per run and time of writing on
the way up, one row per member on the way down (the newest, should a member appear twice).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0010_push_intent_slices"
down_revision: str | None = "0009_member_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "cb_push_intents"
ENTRY = ("email_hash", "source_key", "old_status", "new_status", "reason", "consent")
WRITTEN = "written just before the provider call"


def _utc() -> sa.types.TypeEngine[Any]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")


def _key(length: int) -> sa.types.TypeEngine[Any]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql"
    )


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(mysql.LONGTEXT(), "mysql")


def _consent(value: Any) -> bool | None:
    return None if value is None else bool(value)


def upgrade() -> None:
    conn = op.get_bind()
    columns = ", ".join(("sync_name", "run_id", "created_at", *ENTRY))
    old = conn.execute(sa.text(f"SELECT {columns} FROM {TABLE}")).all()
    slices: dict[tuple[Any, Any, Any], list[list[Any]]] = {}
    for sync_name, run_id, created_at, *entry in old:
        entry[-1] = _consent(entry[-1])
        slices.setdefault((sync_name, run_id, created_at), []).append(entry)
    op.drop_table(TABLE)
    op.create_table(
        TABLE,
        sa.Column("sync_name", sa.String(100), nullable=False),
        sa.Column("slice_id", sa.String(36), nullable=False, comment="one per provider call"),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("created_at", _utc(), nullable=False, comment=WRITTEN),
        sa.Column(
            "intents",
            _json(),
            nullable=False,
            comment="the status changes the call sends: [[email_hash, source_key, old_status, "
            "new_status, reason, consent], ...]",
        ),
        sa.PrimaryKeyConstraint("sync_name", "slice_id", name="pk_cb_push_intents"),
        mysql_charset="utf8mb4",
    )
    value = "CAST(:intents AS json)" if conn.dialect.name == "postgresql" else ":intents"
    insert = sa.text(
        f"INSERT INTO {TABLE} (sync_name, slice_id, run_id, created_at, intents) "
        f"VALUES (:sync_name, :slice_id, :run_id, :created_at, {value})"
    )
    for (sync_name, run_id, created_at), entries in slices.items():
        conn.execute(
            insert,
            {
                "sync_name": sync_name,
                "slice_id": uuid.uuid4().hex,
                "run_id": run_id,
                "created_at": created_at,
                "intents": json.dumps(entries, separators=(",", ":")),
            },
        )


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(f"SELECT sync_name, run_id, created_at, intents FROM {TABLE} ORDER BY created_at")
    ).all()
    newest: dict[tuple[Any, Any], dict[str, Any]] = {}
    for sync_name, run_id, created_at, intents in rows:
        entries = json.loads(intents) if isinstance(intents, str | bytes) else intents
        for entry in entries:
            named = dict(zip(ENTRY, entry, strict=True))
            newest[(sync_name, named["email_hash"])] = {
                "sync_name": sync_name,
                "run_id": run_id,
                "created_at": created_at,
                **named,
            }
    op.drop_table(TABLE)
    op.create_table(
        TABLE,
        sa.Column("sync_name", sa.String(100), nullable=False),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("source_key", _key(255), nullable=False),
        sa.Column("old_status", sa.String(32), nullable=True),
        sa.Column("new_status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "consent", sa.Boolean(), nullable=True, comment="the source consent the change acts on"
        ),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("created_at", _utc(), nullable=False, comment=WRITTEN),
        sa.PrimaryKeyConstraint("sync_name", "email_hash", name="pk_cb_push_intents"),
        mysql_charset="utf8mb4",
    )
    columns = ("sync_name", "run_id", "created_at", *ENTRY)
    insert = sa.text(
        f"INSERT INTO {TABLE} ({', '.join(columns)}) VALUES "
        f"({', '.join(':' + name for name in columns)})"
    )
    for row in newest.values():
        conn.execute(insert, row)
