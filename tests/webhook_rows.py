"""Mailchimp webhook deliveries as the server reads and stores them, for tests that skip HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge.providers._mailchimp_webhooks import MailchimpWebhooks
from campaign_bridge.providers.base import WebhookEvent, WebhookRequest
from campaign_bridge.state import webhook_events
from campaign_bridge.status_changes import StatusChange
from campaign_bridge.webhook_applier import change_from_event
from campaign_bridge.webhook_inbox import InboxRow, insert_rows


def mailchimp_event(body: bytes | Mapping[str, str]) -> WebhookEvent:
    """The one event of a Mailchimp delivery (a form body, or its fields)."""
    if not isinstance(body, bytes):
        body = urlencode(dict(body)).encode()
    [event] = MailchimpWebhooks().parse(WebhookRequest("POST", "", body=body))
    return event


def mailchimp_row(body: bytes | Mapping[str, str], received_at: datetime | None = None) -> InboxRow:
    """The inbox row the server stores for a Mailchimp delivery."""
    event = mailchimp_event(body)
    return InboxRow.from_event("mailchimp", event, received_at or datetime.now(UTC))


def mailchimp_change(body: bytes | Mapping[str, str]) -> StatusChange | None:
    """The status change the applier makes of a Mailchimp delivery."""
    return change_from_event("mailchimp", mailchimp_event(body), datetime.now(UTC))


def store_event(
    engine: Engine,
    key: str,
    event_type: str,
    list_id: str | None,
    payload: str,
    *,
    fired_at: datetime | None = None,
    provider: str = "mailchimp",
) -> int:
    """Store one event through the inbox's insert, as ``serve`` does; its id."""
    row = InboxRow(provider, key, event_type, list_id, fired_at, datetime.now(UTC), payload)
    with engine.connect() as conn:
        insert_rows(conn, [row])
        table = webhook_events
        query = sa.select(table.c.id).where(table.c.provider == provider, table.c.dedupe_key == key)
        event_id: int = conn.execute(query).scalar_one()
    return event_id
