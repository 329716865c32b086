"""Brevo webhooks through the inbox and the applier, on real databases: a blocklisting (which
Brevo sends without a list: it concerns the whole account) lands on every Brevo sync's list, an
unsubscribe from a campaign on the lists it names, and nothing on another provider's sync."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from campaign_bridge.config import SyncConfig
from campaign_bridge.providers._brevo_webhooks import BrevoWebhooks
from campaign_bridge.providers.base import WebhookRequest
from campaign_bridge.state import member_status
from campaign_bridge.webhook_applier import WebhookApplier
from campaign_bridge.webhook_inbox import InboxRow, InboxStore
from tests.integration.serve.conftest import close_store, open_store
from tests.integration.serve.test_webhook_applier import applied, until

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Any]:
    opened = open_store(database_url)
    yield opened
    close_store(opened)


def brevo_sync(list_id: str) -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "source": {"url": "sqlite://", "table": "contacts"},
            "destination": {
                "provider": "brevo",
                "api_key": "xkeysib-test",
                "base_url": "http://127.0.0.1:9/v3",
                "list_id": list_id,
            },
        }
    )


def rows(payload: dict[str, Any]) -> list[InboxRow]:
    request = WebhookRequest("POST", "tok", body=orjson.dumps(payload))
    now = datetime.now(UTC)
    return [InboxRow.from_event("brevo", e, now) for e in BrevoWebhooks().parse(request)]


async def test_account_wide_events_land_on_every_brevo_list(store: Any) -> None:
    mailchimp = SyncConfig.model_validate(
        {
            "source": {"url": "sqlite://", "table": "contacts"},
            "destination": {"api_key": "0" * 32 + "-us6", "list_id": "a6b5da1054"},
        }
    )
    syncs = {"news": brevo_sync("2"), "shop": brevo_sync("5"), "mc": mailchimp}
    blocked = {
        "id": 1,
        "email": "ann@example.org",
        "event": "contact_updated",
        "key": "k",
        "content": [{"emailBlacklisted": True}],
        "date": "2026-12-07 10:00:00",
        "ts": 1796637600,
    }
    left = {
        "id": 1,
        "camp_id": 4,
        "email": "bob@example.org",
        "event": "unsubscribed",
        "ts_event": 1796637600,
        "list_id": [5],
    }
    inbox = InboxStore(store.engine)
    applier = WebhookApplier(
        store.engine, syncs, poll_seconds=0.1, settle_seconds=0.01, locks=store
    )

    task = asyncio.create_task(applier.run())
    try:
        stored = rows(blocked) + rows(left)
        assert await inbox(stored) == [True, True]
        applier.notify([r.key for r in stored])
        await until(lambda: all(applied(store).values()))
    finally:
        applier.stop()
        await task
        await inbox.aclose()
    with store.engine.connect() as conn:
        found = conn.execute(
            sa.select(
                member_status.c.provider,
                member_status.c.list_id,
                member_status.c.email,
                member_status.c.status,
            ).order_by(member_status.c.email, member_status.c.list_id)
        ).all()
    assert [tuple(r) for r in found] == [
        ("brevo", "2", "ann@example.org", "unsubscribed"),
        ("brevo", "5", "ann@example.org", "unsubscribed"),
        ("brevo", "5", "bob@example.org", "unsubscribed"),
    ]
