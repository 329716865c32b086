"""Member identity is the bridge's own: with Brevo, whose contact ids are numbers and not the md5
of the address, push, pull, the consent rules and erasure all find the member by the bridge's
key, and keep Brevo's id beside it (the Brevo adapter against the Brevo sandbox over a socket)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.erasure import forget
from campaign_bridge.mapping import email_hash
from campaign_bridge.pull import run_pull
from campaign_bridge.push import run_push
from campaign_bridge.testing.brevo import ServedBrevo

from .conftest import email_of

pytestmark = pytest.mark.anyio
PEOPLE = 6


@pytest.fixture
def env(database_url: str) -> Iterator[tuple[str, sa.Engine]]:
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
        yield database_url, engine
    finally:
        engine.dispose()


def brevo_settings(url: str, brevo: ServedBrevo) -> Settings:
    sync: dict[str, Any] = {
        "source": {"url": url, "table": "contacts", "consent_column": "consent"},
        "destination": {
            "provider": "brevo",
            "api_key": brevo.api_key,
            "base_url": brevo.base_url,
            "list_id": brevo.list_id,
            "max_retries": 3,
        },
        "writeback": {
            "table": "contacts",
            "key_column": "id",
            "status_column": "mc_status",
            "unsubscribed_at_column": "unsubscribed_at",
            "consent_column": "consent",
        },
    }
    return Settings.model_validate({"state_url": url, "syncs": {"crm": sync}})


def brevo_id(brevo: ServedBrevo, email: str) -> str:
    return str(brevo.sandbox.by_email[email])


def stored(engine: sa.Engine, email: str) -> tuple[Any, ...]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                sa.text(
                    "SELECT status, provider_member_id FROM cb_member_status "
                    "WHERE provider = 'brevo' AND member_id = :h"
                ),
                {"h": email_hash(email)},
            ).one()
        )


async def test_brevo_members_are_keyed_by_the_bridge_not_by_brevo_ids(
    env: tuple[str, sa.Engine], brevo_server: ServedBrevo
) -> None:
    url, engine = env
    settings = brevo_settings(url, brevo_server)
    pushed = await run_push(settings, "crm")
    assert pushed.status == "succeeded", pushed.error
    assert pushed.created == PEOPLE

    who = email_of(2)
    their_id = brevo_id(brevo_server, who)
    assert their_id.isdigit()
    assert their_id != email_hash(who)
    assert stored(engine, who) == ("subscribed", their_id)
    with engine.connect() as conn:
        ids = dict(
            conn.execute(
                sa.text("SELECT email_hash, provider_member_id FROM cb_contact_state")
            ).all()
        )
    assert ids == {email_hash(email_of(i)): brevo_id(brevo_server, email_of(i)) for i in range(6)}

    # The person unsubscribes at Brevo: pull finds the member by the bridge's key, records the
    # status there (Brevo's id kept beside it) and writes the opt-out back.
    brevo_server.control.call("POST", f"/contacts/{who}/unsubscribe", {})
    pulled = await run_pull(settings, "crm")
    assert pulled.status == "succeeded", pulled.error
    assert pulled.written_back == 1
    assert stored(engine, who) == ("unsubscribed", their_id)
    with engine.connect() as conn:
        consent = conn.execute(sa.text("SELECT consent FROM contacts WHERE id = 2")).scalar_one()
    assert not consent

    # The source says yes again: the consent rules see the stored unsubscribe (under our key)
    # and never lift Brevo's blocklist.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE contacts SET consent = :t WHERE id = 2"), {"t": True})
    again = await run_push(settings, "crm")
    assert again.status == "succeeded", again.error
    assert again.consent.get("resubscribe", 0) == 0
    assert brevo_server.sandbox.contacts[int(their_id)].email_blacklisted
    with engine.connect() as conn:
        keys = set(conn.execute(sa.text("SELECT member_id FROM cb_member_status")).scalars())
    assert keys == {email_hash(email_of(i)) for i in range(PEOPLE)}  # no row under a Brevo id

    # Erasure by source key: the address is looked up, Brevo's id is what names the contact.
    report = await forget(settings, "2")
    assert report.provider == {f"crm ({brevo_server.list_id})": "deleted"}
    assert who not in brevo_server.sandbox.by_email


async def test_a_brevo_address_change_is_recognised_by_the_contact_id(
    env: tuple[str, sa.Engine], brevo_server: ServedBrevo
) -> None:
    """Consent model finding F15, with Brevo: the contact's address is changed in Brevo (an
    admin edits it; no webhook). The next pull misses the old address, finds Brevo's contact id
    listed under the new one, and moves the contact with its member: an address change, not a
    permanent delete. Nothing in the core knows which provider it is."""
    url, engine = env
    settings = brevo_settings(url, brevo_server)
    pushed = await run_push(settings, "crm")
    assert pushed.status == "succeeded", pushed.error
    who, new = email_of(3), "moved3@elsewhere.test"
    their_id = brevo_id(brevo_server, who)
    async with httpx.AsyncClient(
        base_url=brevo_server.base_url, headers={"api-key": brevo_server.api_key}
    ) as client:
        answer = await client.put(
            f"/contacts/{their_id}",
            params={"identifierType": "contact_id"},
            json={"attributes": {"EMAIL": new}},
        )
    assert answer.status_code == 204, answer.text
    assert brevo_id(brevo_server, new) == their_id

    pulled = await run_pull(settings, "crm")
    assert pulled.status == "succeeded", pulled.error
    with engine.connect() as conn:
        moved = conn.execute(
            sa.text("SELECT email_hash FROM cb_contact_state WHERE source_key = '3'")
        ).scalar_one()
        ledger = conn.execute(
            sa.text(
                "SELECT old_status, new_status, origin FROM cb_consent_ledger "
                "WHERE source_key = '3' ORDER BY id"
            )
        ).all()
    assert moved == email_hash(new)
    assert stored(engine, new) == ("subscribed", their_id)
    assert [tuple(r) for r in ledger[-2:]] == [
        ("subscribed", "subscribed", "pull"),
        ("subscribed", "vacated", "pull"),
    ]
    assert all(r[1] != "forgotten" for r in ledger)
