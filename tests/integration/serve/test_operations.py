"""Operational endpoints and the status page's protection, against a real state store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaign_bridge import cli
from campaign_bridge.config import Settings
from campaign_bridge.server import ADMIN_COOKIE, create_app
from tests.integration.serve.conftest import close_store, open_store

pytestmark = pytest.mark.anyio

ADMIN = "status-admin-token-abcdefghijklmnop"


def settings_for(state_url: str, **server: Any) -> Settings:
    return Settings.model_validate(
        {
            "state_url": state_url,
            "server": server,
            "syncs": {
                "crm": {
                    "source": {"url": "sqlite://", "table": "contacts"},
                    "destination": {
                        "api_key": "0" * 32 + "-us6",
                        "list_id": "a6b5da1054",
                        "base_url": "http://127.0.0.1:9/3.0",  # nothing listens: unreachable
                        "max_retries": 0,
                        "timeout_seconds": 2,
                    },
                }
            },
        }
    )


@pytest.fixture
async def client(sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    store = open_store(sqlite_url)
    app = create_app(settings_for(sqlite_url, admin_token=ADMIN), store=store)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as c:
                yield c
    finally:
        close_store(store)


async def test_health_and_version(client: httpx.AsyncClient) -> None:
    assert (await client.get("/-/health")).json() == {"status": "alive"}
    version = (await client.get("/-/version")).json()
    assert version["name"] == "campaign-bridge"
    assert version["version"] == cli.__version__


async def test_ready_names_the_failing_check_and_caches(client: httpx.AsyncClient) -> None:
    response = await client.get("/-/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["provider:crm"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "ok"
    again = await client.get("/-/ready")  # cached: same answer without asking again
    assert again.json() == body


async def test_ready_fails_on_an_unmigrated_state_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    from campaign_bridge.store import StateStore

    store = StateStore(url)
    app = create_app(settings_for(url), store=store)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as c:
                body = (await c.get("/-/ready")).json()
    finally:
        store.close()
    assert {"database", "migrations"} <= set(body["failing"])
    assert "migrate" in body["checks"]["database"]


async def test_status_page_needs_the_admin_token(client: httpx.AsyncClient) -> None:
    anonymous = await client.get("/")
    assert anonymous.status_code == 401
    assert 'action="/-/login"' in anonymous.text
    wrong = await client.get("/", headers={"Authorization": "Bearer not-it"})
    assert wrong.status_code == 401
    bearer = await client.get("/", headers={"Authorization": f"Bearer {ADMIN}"})
    assert bearer.status_code == 200
    assert "Current problems" in bearer.text

    refused = await client.post("/-/login", data={"token": "nope"})
    assert refused.status_code == 401
    login = await client.post("/-/login", data={"token": ADMIN})
    assert login.status_code == 303
    cookie = login.cookies[ADMIN_COOKIE]
    assert ADMIN not in cookie  # the cookie is derived from the token, not the token
    client.cookies.clear()
    page = await client.get("/", headers={"Cookie": f"{ADMIN_COOKIE}={cookie}"})
    assert page.status_code == 200
    forged = await client.get("/", headers={"Cookie": f"{ADMIN_COOKIE}={'0' * 64}"})
    assert forged.status_code == 401
    # metrics and health stay open for scrapers and probes
    assert (await client.get("/-/metrics")).status_code == 200


def test_webhooks_register_reports_every_missing_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "campaign-bridge.toml"
    config.write_text(
        """
[syncs.crm.source]
url = "sqlite://"
table = "contacts"

[syncs.crm.destination]
api_key = "00000000000000000000000000000000-us6"
list_id = "a6b5da1054"
""",
        encoding="utf-8",
    )
    code = cli.run(["--config", str(config), "webhooks", "register", "nosuch"])
    err = capsys.readouterr().err
    assert code == 2
    assert "server.public_url" in err
    assert "server.webhook_tokens" in err
    assert "no sync named 'nosuch'" in err


def test_serve_help_lists_the_schedule_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["serve", "--help"]) == 0
    assert "--schedule" in capsys.readouterr().out
