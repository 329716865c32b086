"""The sandbox's own webhook deliveries reach `serve` over real HTTP and land exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge.config import Settings
from campaign_bridge.server import create_app, register_webhooks
from campaign_bridge.state import consent_ledger, contact_state, member_status, webhook_events
from campaign_bridge.status_changes import email_hash
from tests.integration.serve.conftest import TOKEN, close_store, open_store, serving
from tests.webhook_rows import mailchimp_event


def kind(delivery: dict[str, Any]) -> str:
    """The neutral kind the server stores for a sandbox delivery."""
    body = delivery["body"]
    return str(mailchimp_event(body.encode() if isinstance(body, str) else body).kind)


PEOPLE = ["ann@bridge-test.org", "bob@bridge-test.org", "cat@bridge-test.org"]


@pytest.fixture(params=["sqlite_url", pytest.param("postgresql_url", marks=pytest.mark.postgresql)])
def state_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


@pytest.fixture
def store(state_url: str) -> Iterator[Any]:
    store = open_store(state_url)
    yield store
    close_store(store)


def settings_for(state_url: str, mc: Any, public_url: str) -> Settings:
    return Settings.model_validate(
        {
            "state_url": state_url,
            "server": {"webhook_tokens": [TOKEN], "public_url": public_url},
            "syncs": {
                "crm": {
                    "source": {"url": "sqlite://", "table": "contacts"},
                    "destination": {
                        "api_key": mc.api_key,
                        "list_id": mc.list_id,
                        "base_url": mc.base_url,
                        "max_retries": 0,
                    },
                }
            },
        }
    )


def control(mc: Any, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = httpx.request(method, f"{mc.control_url}{path}", json=body, timeout=30)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def stored(store: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(webhook_events).order_by(webhook_events.c.id)))


def wait_applied(store: Any, count: int, timeout: float = 15.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        rows = stored(store)
        if len(rows) >= count and all(r.applied_at is not None for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} applied events, have {rows}")
        time.sleep(0.05)


def test_sandbox_deliveries_land_exactly_once(
    store: Any, state_url: str, mailchimp_sandbox: Any
) -> None:
    mc = mailchimp_sandbox
    members = [{"email_address": e, "status": "subscribed"} for e in PEOPLE]
    control(mc, "POST", "/seed", {"lists": [{"id": mc.list_id, "members": members}]})
    with store.engine.begin() as conn:  # as a previous push would have left them
        conn.execute(
            contact_state.insert(),
            [
                {
                    "sync_name": "crm",
                    "source_key": str(i),
                    "email_hash": email_hash(e),
                    "provider_status": "subscribed",
                    "managed": True,
                }
                for i, e in enumerate(PEOPLE)
            ],
        )
    app_settings = settings_for(state_url, mc, "http://placeholder")
    app = create_app(app_settings, store=store, checks={})
    with serving(app) as root:
        settings = settings_for(state_url, mc, root)
        [registered] = asyncio.run(register_webhooks(settings))
        assert registered["url"].endswith("/webhooks/mailchimp/********")

        ann, bob, cat = (email_hash(e) for e in PEOPLE)
        control(mc, "POST", f"/lists/{mc.list_id}/members/{ann}/unsubscribe", {"reason": "manual"})
        control(mc, "POST", f"/lists/{mc.list_id}/members/{bob}/bounce", {"reason": "hard"})
        control(
            mc,
            "POST",
            f"/lists/{mc.list_id}/members/{cat}/change-email",
            {"new_email": "cat.new@bridge-test.org"},
        )
        control(
            mc,
            "POST",
            f"/lists/{mc.list_id}/signup",
            {"email_address": "dan@bridge-test.org", "merge_fields": {"FNAME": "Dan"}},
        )
        summary = control(mc, "POST", "/webhooks/flush", {"timeout": 20})
        deliveries = control(mc, "GET", "/webhooks/deliveries")["deliveries"]
        delivered = [d for d in deliveries if d["state"] == "delivered"]
        assert summary["failed"] == 0
        assert len(delivered) == len(deliveries) >= 4

        rows = wait_applied(store, len(delivered))
        assert Counter(r.event_type for r in rows) == Counter(kind(d) for d in delivered)
        assert {"unsubscribe", "cleaned", "address_change", "subscribe"} <= {
            r.event_type for r in rows
        }

        # Mailchimp retries deliveries it thinks failed: the same body again is stored once.
        with httpx.Client(base_url=root) as client:
            for d in delivered:
                again = client.post(
                    f"/webhooks/mailchimp/{TOKEN}",
                    content=d["body"],
                    headers={"content-type": "application/x-www-form-urlencoded"},
                )
                assert again.status_code == 200
        time.sleep(0.3)
        assert len(stored(store)) == len(rows)

    with store.engine.connect() as conn:
        ledger = {
            (r.source_key, r.old_status, r.new_status, r.origin)
            for r in conn.execute(sa.select(consent_ledger))
        }
        statuses = dict(
            conn.execute(sa.select(member_status.c.email, member_status.c.status)).all()
        )
    assert ledger == {
        ("0", "subscribed", "unsubscribed", "webhook"),
        ("1", "subscribed", "cleaned", "webhook"),
        # cat's address changed at the provider: the contact follows its member (issue 11),
        # one row explains it and the status is kept
        ("2", "subscribed", "subscribed", "webhook"),
    }
    assert statuses["ann@bridge-test.org"] == "unsubscribed"
    assert statuses["bob@bridge-test.org"] == "cleaned"
    assert statuses["dan@bridge-test.org"] == "subscribed"
    assert "cat.new@bridge-test.org" in statuses
    with store.engine.connect() as conn:
        moved = conn.execute(
            sa.select(contact_state.c.email_hash).where(contact_state.c.source_key == "2")
        ).scalar_one()
    assert moved == email_hash("cat.new@bridge-test.org")


def test_campaign_send_deliveries_land_exactly_once(
    sqlite_url: str, mailchimp_sandbox: Any
) -> None:
    mc = mailchimp_sandbox
    store = open_store(sqlite_url)
    members = [
        {"email_address": f"reader{i}@bridge-test.org", "status": "subscribed"} for i in range(30)
    ]
    control(mc, "POST", "/seed", {"lists": [{"id": mc.list_id, "members": members}]})
    api = httpx.Client(base_url=mc.base_url, auth=("anystring", mc.api_key), timeout=30)
    try:
        with serving(
            create_app(settings_for(sqlite_url, mc, "http://x"), store=store, checks={})
        ) as root:
            asyncio.run(register_webhooks(settings_for(sqlite_url, mc, root)))
            campaign = api.post(
                "/campaigns",
                json={
                    "type": "regular",
                    "recipients": {"list_id": mc.list_id},
                    "settings": {
                        "subject_line": "Autumn news",
                        "from_name": "Bridge",
                        "reply_to": "news@bridge-test.org",
                    },
                },
            ).json()
            content = api.put(
                f"/campaigns/{campaign['id']}/content",
                json={"html": '<p>Hello <a href="https://bridge-test.org/a">a</a></p>'},
            )
            assert content.status_code == 200, content.text
            sent = api.post(f"/campaigns/{campaign['id']}/actions/send")
            assert sent.status_code == 204, sent.text
            control(mc, "POST", "/webhooks/flush", {"timeout": 20})
            deliveries = control(mc, "GET", "/webhooks/deliveries")["deliveries"]
            assert all(d["state"] == "delivered" for d in deliveries)
            rows = wait_applied(store, len(deliveries))
    finally:
        api.close()
        close_store(store)
    assert Counter(r.event_type for r in rows) == Counter(kind(d) for d in deliveries)
    [campaign_event] = [r for r in rows if r.event_type == "campaign"]
    assert campaign["id"] in campaign_event.payload
    assert len({r.dedupe_key for r in rows}) == len(rows)
