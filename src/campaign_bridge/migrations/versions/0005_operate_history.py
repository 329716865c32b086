"""A contact's history without a scan: indexes by email hash; webhook events keep theirs.

Revision ID: 0005_operate_history
Revises: 0004_consent_ownership
Create Date: 2026-12-07

Written by hand.

- ``ix_cb_rejected_records_email (sync_name, email_hash)``: a contact's rejections by address
  (the unique key already serves a lookup by source key).
- ``cb_webhook_events.email_hash`` (md5 of the trimmed, lowercased address the event is about,
  the key every other table uses) and ``ix_cb_webhook_events_email``: the deliveries about one
  contact. Rows stored before this revision keep NULL (their payload still has the address);
  ``campaign-bridge history`` shows what the ledger recorded of them.
"""

from __future__ import annotations

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


def downgrade() -> None:
    with op.batch_alter_table("cb_webhook_events") as batch:
        batch.drop_index("ix_cb_webhook_events_email")
        batch.drop_column("email_hash")
    op.drop_index("ix_cb_rejected_records_email", table_name="cb_rejected_records")
