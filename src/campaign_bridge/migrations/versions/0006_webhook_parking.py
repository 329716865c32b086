"""cb_webhook_events: attempts and parked_at, so one event that cannot be applied is parked.

Revision ID: 0006_webhook_parking
Revises: 0005_operate_history
Create Date: 2026-12-07

Written by hand. An event whose apply fails is retried a bounded number of times
(``attempts`` counts them); then ``parked_at`` is set and the applier leaves it alone, with its
``error``, until an operator retries it (``campaign-bridge webhooks retry-parked``). The pending
index covers both columns the applier filters on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0006_webhook_parking"
down_revision: str | None = "0005_operate_history"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "cb_webhook_events"


def _utc() -> sa.types.TypeEngine[Any]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")


def upgrade() -> None:
    with op.batch_alter_table(_TABLE) as batch:
        batch.add_column(
            sa.Column(
                "attempts",
                sa.Integer(),
                nullable=False,
                server_default=sa.text("0"),
                comment="failed applies so far",
            )
        )
        batch.add_column(
            sa.Column(
                "parked_at", _utc(), nullable=True, comment="set after too many failed applies"
            )
        )
        batch.drop_index("ix_cb_webhook_events_pending")
        batch.create_index("ix_cb_webhook_events_pending", ["applied_at", "parked_at"])


def downgrade() -> None:
    with op.batch_alter_table(_TABLE) as batch:
        batch.drop_index("ix_cb_webhook_events_pending")
        batch.create_index("ix_cb_webhook_events_pending", ["applied_at"])
        batch.drop_column("parked_at")
        batch.drop_column("attempts")
