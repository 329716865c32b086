"""Pull landing tables: campaigns, campaign reports, per-contact email activity.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Written by hand; types frozen here (see 0001). Described column by column in docs/pull.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.types.TypeEngine[Any]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")


def upgrade() -> None:
    op.create_table(
        "cb_campaigns",
        sa.Column("provider", sa.String(32), nullable=False, comment="mailchimp, brevo, listmonk"),
        sa.Column("campaign_id", sa.String(64), nullable=False, comment="provider's campaign id"),
        sa.Column("list_id", sa.String(64), nullable=True, comment="audience the campaign went to"),
        sa.Column("title", sa.Text(), nullable=False, comment="internal title"),
        sa.Column("subject", sa.Text(), nullable=False, comment="subject line"),
        sa.Column(
            "status", sa.String(32), nullable=False, comment="save, schedule, sending, sent, ..."
        ),
        sa.Column("created_at", _utc(), nullable=True),
        sa.Column("send_time", _utc(), nullable=True),
        sa.Column("emails_sent", sa.Integer(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False, comment="when this row was last written"),
        sa.PrimaryKeyConstraint("provider", "campaign_id", name="pk_cb_campaigns"),
    )
    op.create_index("ix_cb_campaigns_send_time", "cb_campaigns", ["provider", "send_time"])

    op.create_table(
        "cb_campaign_reports",
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("campaign_id", sa.String(64), nullable=False),
        sa.Column("emails_sent", sa.Integer(), nullable=False),
        sa.Column("opens_total", sa.Integer(), nullable=False),
        sa.Column("unique_opens", sa.Integer(), nullable=False),
        sa.Column("clicks_total", sa.Integer(), nullable=False),
        sa.Column("unique_clicks", sa.Integer(), nullable=False),
        sa.Column("hard_bounces", sa.Integer(), nullable=False),
        sa.Column("soft_bounces", sa.Integer(), nullable=False),
        sa.Column("unsubscribed", sa.Integer(), nullable=False),
        sa.Column("abuse_reports", sa.Integer(), nullable=False),
        sa.Column("last_open", _utc(), nullable=True),
        sa.Column("last_click", _utc(), nullable=True),
        sa.Column("fetched_at", _utc(), nullable=False, comment="when the counters were read"),
        sa.PrimaryKeyConstraint("provider", "campaign_id", name="pk_cb_campaign_reports"),
    )

    op.create_table(
        "cb_email_activity",
        sa.Column("event_id", sa.String(32), nullable=False, comment="md5 of the natural key"),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("campaign_id", sa.String(64), nullable=False),
        sa.Column(
            "member_id", sa.String(64), nullable=False, comment="Mailchimp: md5 of lower(email)"
        ),
        sa.Column(
            "action", sa.String(16), nullable=False, comment="sent|open|click|bounce|unsubscribe"
        ),
        sa.Column("occurred_at", _utc(), nullable=False, comment="UTC, whole seconds"),
        sa.Column("url_hash", sa.String(32), nullable=False, comment="md5 of url; '' when no url"),
        sa.Column(
            "seq", sa.SmallInteger(), nullable=False, comment="0, 1, ... for identical events"
        ),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("url", sa.Text(), nullable=True, comment="clicked link"),
        sa.Column("bounce_type", sa.String(16), nullable=True, comment="hard | soft"),
        sa.Column(
            "reason", sa.Text(), nullable=True, comment="unsubscribe reason or bounce diagnostic"
        ),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("pulled_at", _utc(), nullable=False, comment="when the pull landed the row"),
        sa.PrimaryKeyConstraint("event_id", name="pk_cb_email_activity"),
    )
    op.create_index("ix_cb_email_activity_member", "cb_email_activity", ["provider", "member_id"])


def downgrade() -> None:
    op.drop_table("cb_email_activity")
    op.drop_table("cb_campaign_reports")
    op.drop_table("cb_campaigns")
