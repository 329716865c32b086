"""Defects 5 and 6: with the state database down, the status page says what is down (503,
no traceback), ``/-/health`` keeps answering, and ``/-/ready`` names no host, user or database."""

from __future__ import annotations

import logging

import httpx
import pytest

from campaign_bridge.server import create_app
from campaign_bridge.store import StateStore
from tests.integration.serve.conftest import free_port
from tests.integration.serve.test_operations import ADMIN, settings_for

pytestmark = pytest.mark.anyio

SECRET_DB = "cb_private_ledger_db"
SECRET_USER = "bridge_owner"


async def test_a_dead_state_database_is_named_but_not_located(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    url = f"postgresql://{SECRET_USER}:pw@127.0.0.1:{port}/{SECRET_DB}"  # nothing listens
    store = StateStore(url)
    app = create_app(settings_for(url, admin_token=ADMIN), store=store)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as c:
                health = await c.get("/-/health")
                ready = await c.get("/-/ready")
                auth = {"Authorization": f"Bearer {ADMIN}"}
                with caplog.at_level(logging.ERROR, logger="campaign_bridge.server"):
                    page = await c.get("/", headers=auth)
                    rejected = await c.get("/rejected", headers=auth)
                    contact = await c.post("/contact", headers=auth, data={"q": "a@b.example"})
    finally:
        store.close()

    assert health.status_code == 200
    assert health.json() == {"status": "alive"}

    assert ready.status_code == 503
    body = ready.json()
    assert body["checks"]["database"] == "state store: unreachable"
    assert body["checks"]["migrations"] == "state store: unreachable"
    for secret in (f":{port}", SECRET_USER, SECRET_DB, "postgresql"):
        assert secret not in ready.text

    assert page.status_code == 503
    assert "state store: unreachable" in page.text
    for other in (rejected, contact):  # the other views say the same
        assert (other.status_code, other.text) == (503, page.text)
    assert "Traceback" not in page.text
    assert SECRET_DB not in page.text
    # the operator still learns where, from the server's log
    assert any(SECRET_DB in record.getMessage() for record in caplog.records)
