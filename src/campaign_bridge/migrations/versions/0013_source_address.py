"""The address a source row had when it was last pushed, beside the member's current one.

Revision ID: 0013_source_address
Revises: 0012_legacy_member_ids
Create Date: 2026-12-07

Written by hand. ``cb_contact_state.email_hash`` follows the member when its address changes
at the provider (``campaign_bridge.status_changes``); ``source_email_hash`` keeps the address
the source row had when last pushed, so a push can tell the source's own address change from a
row that still has the address the member left (issue 11). NULL means "the same as
``email_hash``", which is what every row saved before this revision was pushed with, except a
contact already moved at the provider before it: that one is taken as pushed with its new
address (docs/push.md, "Known limits").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_source_address"
down_revision: str | None = "0012_legacy_member_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENT = (
    "md5 of the address the source row had when last pushed (NULL: email_hash); "
    "email_hash is the member's current one, which the member may have changed since"
)


def upgrade() -> None:
    with op.batch_alter_table("cb_contact_state") as batch:
        batch.add_column(
            sa.Column("source_email_hash", sa.String(64), nullable=True, comment=COMMENT)
        )


def downgrade() -> None:
    with op.batch_alter_table("cb_contact_state") as batch:
        batch.drop_column("source_email_hash")
