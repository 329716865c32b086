"""The Brevo sandbox's own marketing webhooks reach `serve` over real HTTP: registered by the
adapter (the URL's token also as bearer auth), parsed, stored and applied, so a contact who
unsubscribes or bounces at Brevo is unsubscribed or cleaned in the bridge's state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge.config import Settings
from campaign_bridge.sandbox.brevo import BrevoHandle, control, run_in_thread
from campaign_bridge.server import create_app, register_webhooks
from campaign_bridge.state import member_status, webhook_events
from tests.integration.serve.conftest import TOKEN, close_store, open_store, serving

PEOPLE = ["ann@bridge-test.org", "bob@bridge-test.org", "cat@bridge-test.org"]


@pytest.fixture(params=["sqlite_url", pytest.param("postgresql_url", marks=pytest.mark.postgresql)])
def state_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


@pytest.fixture
def store(state_url: str) -> Iterator[Any]:
    opened = open_store(state_url)
    yield opened
    close_store(opened)


def settings_for(state_url: str, brevo: BrevoHandle, public_url: str) -> Settings:
    destination = {
        "provider": "brevo",
        "api_key": brevo.api_key,
        "list_id": str(brevo.list_id),
        "base_url": brevo.base_url,
        "max_retries": 0,
    }
    return Settings.model_validate(
        {
            "state_url": state_url,
            "server": {"webhook_tokens": [TOKEN], "public_url": public_url},
            "syncs": {
                "crm": {
                    "source": {"url": "sqlite://", "table": "contacts"},
                    "destination": destination,
                }
            },
        }
    )


def applied_statuses(store: Any, count: int, timeout: float = 15.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        with store.engine.connect() as conn:
            rows = list(conn.execute(sa.select(webhook_events.c.applied_at)))
            statuses = dict(
                conn.execute(sa.select(member_status.c.email, member_status.c.status)).all()
            )
        if len(rows) >= count and all(r.applied_at is not None for r in rows):
            return {str(k): str(v) for k, v in statuses.items()}
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} applied events, have {rows}")
        time.sleep(0.05)


def test_brevo_deliveries_are_applied(store: Any, state_url: str) -> None:
    with run_in_thread() as brevo:
        lid = brevo.list_id
        control.seed(brevo.sandbox, {"contacts": [{"email": e, "listIds": [lid]} for e in PEOPLE]})
        app = create_app(
            settings_for(state_url, brevo, "http://placeholder"), store=store, checks={}
        )
        with serving(app) as root:
            settings = settings_for(state_url, brevo, root)
            [registered] = asyncio.run(register_webhooks(settings))
            assert registered["url"].endswith("/webhooks/brevo/********")
            ctl = brevo.control_url
            for email, action, body in (
                (PEOPLE[0], "unsubscribe", {}),
                (PEOPLE[1], "bounce", {"type": "hard"}),
            ):
                path = f"{ctl}/contacts/{quote(email)}/{action}"
                httpx.post(path, json=body, timeout=30).raise_for_status()
            flushed = httpx.post(f"{ctl}/webhooks/flush", json={"timeout": 20}, timeout=60)
            flushed.raise_for_status()
            deliveries = httpx.get(f"{ctl}/webhooks/deliveries", timeout=30).json()["deliveries"]
            delivered = [d for d in deliveries if d["state"] == "delivered"]
            assert delivered
            assert len(delivered) == len(deliveries)  # every one authenticated and stored
            statuses = applied_statuses(store, len(delivered))
    assert statuses[PEOPLE[0]] == "unsubscribed"
    assert statuses[PEOPLE[1]] in ("unsubscribed", "cleaned")
    assert PEOPLE[2] not in statuses
