"""cb_email_activity: primary key (provider, member_id, event_id), no separate member index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Written by hand. The key still identifies an event by its ``event_id`` (md5 of the natural key,
which includes provider and member), so existing rows keep their identity and no row changes.
Leading with ``(provider, member_id)`` lets the key serve "everything this person did", which
the index ``ix_cb_email_activity_member`` did: one index to maintain per inserted row instead of
two (the bulk load's largest cost in the database).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "cb_email_activity"
_KEY = "pk_cb_email_activity"
_MEMBER_INDEX = "ix_cb_email_activity_member"


def upgrade() -> None:
    with op.batch_alter_table(_TABLE) as batch:
        batch.drop_index(_MEMBER_INDEX)
        batch.drop_constraint(_KEY, type_="primary")
        batch.create_primary_key(_KEY, ["provider", "member_id", "event_id"])


def downgrade() -> None:
    with op.batch_alter_table(_TABLE) as batch:
        batch.drop_constraint(_KEY, type_="primary")
        batch.create_primary_key(_KEY, ["event_id"])
        batch.create_index(_MEMBER_INDEX, ["provider", "member_id"])
