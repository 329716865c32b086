"""A sandbox audience, a user contact table and a migrated state store, for pull tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.state import contact_state
from campaign_bridge.status_changes import email_hash

PEOPLE = 40


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def email_of(i: int) -> str:
    return f"person{i:03d}@pull-tests.org"


@dataclass
class PullEnv:
    url: str
    engine: sa.Engine
    sandbox: Any  # SandboxHandle
    settings: Settings

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, self.sandbox.control_url + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(
            self.sandbox.base_url + path,
            params=params,
            auth=("anystring", self.sandbox.api_key),
            timeout=30,
        )
        response.raise_for_status()
        return response.json()

    def send_campaign(self, seed: int, **rates: float) -> str:
        body: dict[str, Any] = {"list_id": self.sandbox.list_id, "seed": seed}
        if rates:
            body["rates"] = rates
        return str(self.control("POST", "/campaigns/seed", body)["id"])

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar_one()

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def settings_for(url: str, sandbox: Any, **sync: Any) -> Settings:
    config: dict[str, Any] = {
        "source": {"url": url, "table": "contacts"},
        "destination": {
            "api_key": sandbox.api_key,
            "list_id": sandbox.list_id,
            "base_url": sandbox.base_url,
            "max_retries": 12,
        },
        "writeback": {
            "table": "contacts",
            "key_column": "id",
            "status_column": "mc_status",
            "unsubscribed_at_column": "unsubscribed_at",
            "bounced_at_column": "bounced_at",
            "consent_column": "consent",
        },
    }
    config.update(sync)
    return Settings.model_validate({"state_url": url, "syncs": {"crm": config}})


@pytest.fixture
def pull_env(database_url: str, mailchimp_sandbox: Any) -> Iterator[PullEnv]:
    members = [{"email_address": email_of(i), "status": "subscribed"} for i in range(PEOPLE)]
    response = httpx.post(
        mailchimp_sandbox.control_url + "/seed",
        json={"lists": [{"id": mailchimp_sandbox.list_id, "members": members}]},
        timeout=30,
    )
    response.raise_for_status()
    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE contacts (id INTEGER PRIMARY KEY, email VARCHAR(320) NOT NULL, "
                "name VARCHAR(100), consent BOOLEAN NOT NULL, mc_status VARCHAR(32), "
                "unsubscribed_at TIMESTAMP NULL, bounced_at TIMESTAMP NULL)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO contacts (id, email, name, consent) VALUES (:i, :e, :n, :c)"),
            [{"i": i, "e": email_of(i), "n": f"name {i}", "c": True} for i in range(PEOPLE)],
        )
        # what a push leaves behind: the bridge knows these contacts as subscribed
        conn.execute(
            contact_state.insert(),
            [
                {
                    "sync_name": "crm",
                    "source_key": str(i),
                    "email_hash": email_hash(email_of(i)),
                    "provider_status": "subscribed",
                    "managed": True,
                }
                for i in range(PEOPLE)
            ],
        )
    try:
        yield PullEnv(
            database_url, engine, mailchimp_sandbox, settings_for(database_url, mailchimp_sandbox)
        )
    finally:
        engine.dispose()
