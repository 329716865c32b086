"""Member identity is the bridge's own: the provider's member id is stored beside the key.

Revision ID: 0009_member_identity
Revises: 0008_privacy
Create Date: 2026-12-07

Written by hand. ``member_id`` in ``cb_member_status``, ``cb_email_activity`` and
``cb_marketing_permissions`` always was the bridge's key for a member, the md5 of the trimmed,
lower-cased address, computed by the bridge (it equals Mailchimp's subscriber hash, which is
Mailchimp's affair); the comments now say so. ``cb_member_status.provider_member_id`` keeps the
provider's own id for the member (a Brevo or listmonk number), for the calls that need it
(erasure, access requests); it is never used to decide anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_member_identity"
down_revision: str | None = "0008_privacy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY_COMMENT = "the bridge's key: md5 of lower(trim(email))"
OLD_COMMENT = "Mailchimp: md5 of lower(email)"
PROVIDER_ID_COMMENT = "the provider's own id for the member; never a key"
_KEYED = ("cb_member_status", "cb_email_activity", "cb_marketing_permissions")


def _comment_member_ids(comment: str, previous: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # SQLite keeps no column comments
    for table in _KEYED:
        op.alter_column(
            table,
            "member_id",
            existing_type=sa.String(64),
            existing_nullable=False,
            comment=comment,
            existing_comment=previous,
        )


def upgrade() -> None:
    op.add_column(
        "cb_member_status",
        sa.Column("provider_member_id", sa.String(64), nullable=True, comment=PROVIDER_ID_COMMENT),
    )
    _comment_member_ids(KEY_COMMENT, OLD_COMMENT)


def downgrade() -> None:
    _comment_member_ids(OLD_COMMENT, KEY_COMMENT)
    with op.batch_alter_table("cb_member_status") as batch:
        batch.drop_column("provider_member_id")
