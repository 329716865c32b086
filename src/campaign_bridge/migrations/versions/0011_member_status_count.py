"""An index that answers "how many members does the bridge know on this audience?".

Revision ID: 0011_member_status_count
Revises: 0010_push_intent_slices
Create Date: 2026-12-07

Written by hand. Every push and pull compares the provider's member count with the members
``cb_member_status`` holds for the audience in statuses the provider counts
(``campaign_bridge.vanished``). Without this index that count read every row of the table
(about 0.2 s for 1,000,000 members, on each run, also when nothing changed); with it,
PostgreSQL counts from the index alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011_member_status_count"
down_revision: str | None = "0010_push_intent_slices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_cb_member_status_status"


def upgrade() -> None:
    op.create_index(INDEX, "cb_member_status", ["provider", "list_id", "status"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="cb_member_status")
