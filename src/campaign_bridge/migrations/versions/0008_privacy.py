"""Privacy: the tombstone salt, erasure tombstones, members' GDPR marketing permissions.

Revision ID: 0008_privacy
Revises: 0007_scale_out
Create Date: 2026-12-07

Written by hand; types frozen here (see 0001). The salt that keys the tombstone hashes is
created here, once per state store, from the operating system's random source; it is never
logged or shown (docs/privacy.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0008_privacy"
down_revision: str | None = "0007_scale_out"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE_OPTIONS: dict[str, Any] = {"mysql_charset": "utf8mb4"}


def _utc() -> sa.types.TypeEngine[Any]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")


def upgrade() -> None:
    keys = op.create_table(
        "cb_privacy_keys",
        sa.Column("name", sa.String(64), nullable=False, comment="e.g. tombstone_salt"),
        sa.Column("value", sa.String(128), nullable=False, comment="secret: never logged or shown"),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_cb_privacy_keys"),
        **_TABLE_OPTIONS,
    )
    now = datetime.now(UTC)
    if op.get_bind().dialect.name != "postgresql":
        now = now.replace(tzinfo=None)
    op.bulk_insert(
        keys, [{"name": "tombstone_salt", "value": secrets.token_hex(32), "created_at": now}]
    )
    op.create_table(
        "cb_erasures",
        sa.Column(
            "subject_hash",
            sa.String(64),
            nullable=False,
            comment="HMAC-SHA256(privacy salt, md5(lower(email))): no address, no plain md5",
        ),
        sa.Column("erased_at", _utc(), nullable=False, comment="when the person was last erased"),
        sa.Column(
            "origin", sa.String(32), nullable=False, comment="cli | source_column | request_table"
        ),
        sa.Column(
            "requested_at", _utc(), nullable=True, comment="the request's own time, if it has one"
        ),
        sa.Column(
            "provider_result", sa.Text(), nullable=True, comment="e.g. mailchimp/<list>: deleted"
        ),
        sa.PrimaryKeyConstraint("subject_hash", name="pk_cb_erasures"),
        **_TABLE_OPTIONS,
    )
    op.create_table(
        "cb_marketing_permissions",
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("list_id", sa.String(64), nullable=False),
        sa.Column(
            "member_id", sa.String(64), nullable=False, comment="Mailchimp: md5 of lower(email)"
        ),
        sa.Column(
            "permission_id", sa.String(64), nullable=False, comment="provider's permission id"
        ),
        sa.Column(
            "text", sa.Text(), nullable=True, comment="the permission's wording on the audience"
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column(
            "updated_at", _utc(), nullable=False, comment="when this state was last confirmed"
        ),
        sa.PrimaryKeyConstraint(
            "provider",
            "list_id",
            "member_id",
            "permission_id",
            name="pk_cb_marketing_permissions",
        ),
        **_TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("cb_marketing_permissions")
    op.drop_table("cb_erasures")
    op.drop_table("cb_privacy_keys")
