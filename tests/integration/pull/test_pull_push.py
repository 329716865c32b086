"""An unsubscribe at the provider, written back by the pull, is respected by the next push."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.db import create_engine
from campaign_bridge.pull import run_pull
from campaign_bridge.push import run_push
from campaign_bridge.status_changes import email_hash

from .conftest import email_of, settings_for

pytestmark = pytest.mark.anyio
PEOPLE = 12


@pytest.fixture
def env(database_url: str, mailchimp_sandbox: Any) -> Iterator[tuple[str, sa.Engine, Any]]:
    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE contacts (id INTEGER PRIMARY KEY, email VARCHAR(320) NOT NULL, "
                "consent BOOLEAN NOT NULL, mc_status VARCHAR(32), "
                "unsubscribed_at TIMESTAMP NULL, bounced_at TIMESTAMP NULL)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO contacts (id, email, consent) VALUES (:i, :e, :c)"),
            [{"i": i, "e": email_of(i), "c": True} for i in range(PEOPLE)],
        )
    try:
        yield database_url, engine, mailchimp_sandbox
    finally:
        engine.dispose()


def member_status(sandbox: Any, email: str) -> str:
    response = httpx.get(
        f"{sandbox.base_url}/lists/{sandbox.list_id}/members/{email_hash(email)}",
        auth=("any", sandbox.api_key),
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["status"])


def unsubscribe(sandbox: Any, email: str) -> None:
    """The person clicks the unsubscribe link (sandbox control API)."""
    response = httpx.post(
        f"{sandbox.control_url}/lists/{sandbox.list_id}/members/{email_hash(email)}/unsubscribe",
        json={},
        timeout=30,
    )
    response.raise_for_status()


async def test_written_back_unsubscribe_blocks_resubscription(
    env: tuple[str, sa.Engine, Any],
) -> None:
    url, engine, sandbox = env
    settings = settings_for(
        url, sandbox, source={"url": url, "table": "contacts", "consent_column": "consent"}
    )
    pushed = await run_push(settings, "crm")
    assert pushed.status == "succeeded", pushed.error
    assert pushed.created == PEOPLE
    who = email_of(3)
    assert member_status(sandbox, who) == "subscribed"

    unsubscribe(sandbox, who)
    pulled = await run_pull(settings, "crm")
    assert pulled.written_back == 1
    with engine.connect() as conn:
        consent, status = conn.execute(
            sa.text("SELECT consent, mc_status FROM contacts WHERE id = 3")
        ).one()
    assert (bool(consent), status) == (False, "unsubscribed")

    # the next push changes nothing for that contact
    again = await run_push(settings, "crm")
    assert again.status == "succeeded", again.error
    assert member_status(sandbox, who) == "unsubscribed"

    # even if the user's application flips consent back on, the bridge never subscribes them:
    # at most it asks the person to confirm (pending), per the consent rules
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE contacts SET consent = :t WHERE id = 3"), {"t": True})
    last = await run_push(settings, "crm")
    assert last.status == "succeeded", last.error
    assert member_status(sandbox, who) in {"unsubscribed", "pending"}
    assert last.consent.get("resubscribe", 0) == 0
