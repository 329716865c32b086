"""A contact's history without a scan: indexes by email hash; webhook events keep theirs.

Revision ID: 0005_operate_history
Revises: 0004_consent_ownership
Create Date: 2026-12-07

Written by hand.

- ``ix_cb_rejected_records_email (sync_name, email_hash)``: a contact's rejections by address
  (the unique key already serves a lookup by source key).
- ``cb_webhook_events.email_hash`` (md5 of the trimmed, lowercased address the event is about,
  the key every other table uses) and ``ix_cb_webhook_events_email``: the deliveries about one
  contact. Rows stored before this revision get theirs from their payload (``data.email``, or
  ``data.new_email`` for an address change), 5,000 rows per statement.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_operate_history"
down_revision: str | None = "0004_consent_ownership"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_cb_rejected_records_email", "cb_rejected_records", ["sync_name", "email_hash"]
    )
    with op.batch_alter_table("cb_webhook_events") as batch:
        batch.add_column(
            sa.Column(
                "email_hash",
                sa.String(64),
                nullable=True,
                comment="md5 of the lowercased email the event is about (a contact's history)",
            )
        )
        batch.create_index("ix_cb_webhook_events_email", ["email_hash"])
    _backfill(op.get_bind())


_CHUNK = 5000


def _address_hash(payload: str) -> str | None:
    """md5 of the trimmed, lowercased address a stored delivery is about (as the app writes)."""
    try:
        data = json.loads(payload).get("data") or {}
    except (ValueError, AttributeError):
        return None
    email = data.get("new_email") or data.get("email") if isinstance(data, dict) else None
    if not isinstance(email, str) or not email.strip():
        return None
    return hashlib.md5(email.strip().lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def _backfill(conn: sa.Connection) -> None:
    events = sa.table(
        "cb_webhook_events", sa.column("id"), sa.column("payload"), sa.column("email_hash")
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(events.c.id, events.c.payload)
            .where(events.c.id > last, events.c.email_hash.is_(None))
            .order_by(events.c.id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return
        updates = [
            {"b_id": event_id, "b_hash": found}
            for event_id, payload in rows
            if (found := _address_hash(payload)) is not None
        ]
        if updates:
            conn.execute(
                events.update()
                .where(events.c.id == sa.bindparam("b_id"))
                .values(email_hash=sa.bindparam("b_hash")),
                updates,
            )
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("cb_webhook_events") as batch:
        batch.drop_index("ix_cb_webhook_events_email")
        batch.drop_column("email_hash")
    op.drop_index("ix_cb_rejected_records_email", table_name="cb_rejected_records")
