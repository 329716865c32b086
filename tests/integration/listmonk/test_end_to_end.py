"""push and pull with provider = "listmonk" against the listmonk sandbox over real HTTP, on
SQLite and PostgreSQL: consent rules hold (a blocklisted or unsubscribed subscriber is never
subscribed again; ledger rows say why), and pull lands campaigns, reports and activity in the
same cb_* tables as any provider, and writes unsubscribes and bounces back."""

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
from campaign_bridge.pull import run_pull
from campaign_bridge.push import run_push
from campaign_bridge.sandbox.listmonk import ListmonkConfig, ListmonkHandle, run_in_thread
from campaign_bridge.status_changes import email_hash

pytestmark = pytest.mark.anyio
PEOPLE = 30
BLOCKED, GONE = 5, 6  # already blocklisted / unsubscribed at listmonk before the first push


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def email_of(i: int) -> str:
    return f"person{i:03d}@lm-tests.org"


@dataclass
class Env:
    url: str
    engine: sa.Engine
    listmonk: ListmonkHandle
    settings: Settings

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, self.listmonk.control_url + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(
            method,
            f"{self.listmonk.base_url}/api{path}",
            json=body,
            headers=self.listmonk.auth_header,
            timeout=30,
        )
        response.raise_for_status()
        return response.json()["data"]

    def subscription(self, i: int) -> tuple[str, str | None]:
        sub = self.listmonk.sandbox.subscriber_by(email_of(i))
        assert sub is not None
        row = sub.lists.get(1)
        return sub.status, row.status if row else None

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def settings_for(url: str, listmonk: ListmonkHandle) -> Settings:
    sync = {
        "source": {"url": url, "table": "contacts", "consent_column": "consent"},
        "destination": {
            "provider": "listmonk",
            "base_url": listmonk.base_url,
            "api_user": listmonk.api_user,
            "api_token": listmonk.api_token,
            "list_id": "1",
        },
        "fields": {"name": "name", "city": "city"},
        "writeback": {
            "table": "contacts",
            "key_column": "id",
            "status_column": "lm_status",
            "unsubscribed_at_column": "unsubscribed_at",
            "bounced_at_column": "bounced_at",
        },
    }
    return Settings.model_validate({"state_url": url, "syncs": {"crm": sync}})


@pytest.fixture(params=["sqlite_url", "postgresql_url"], ids=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    url = str(request.getfixturevalue(request.param))
    migrations.upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE contacts (id INTEGER PRIMARY KEY, email VARCHAR(320) NOT NULL, "
                "name VARCHAR(100), city VARCHAR(100), consent BOOLEAN NOT NULL, "
                "lm_status VARCHAR(32), unsubscribed_at TIMESTAMP NULL, bounced_at TIMESTAMP NULL)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO contacts (id, email, name, city, consent) VALUES (:i,:e,:n,:c,:k)"
            ),
            [
                {"i": i, "e": email_of(i), "n": f"Person {i}", "c": "Oslo", "k": True}
                for i in range(PEOPLE)
            ],
        )
    config = ListmonkConfig(activity_spread_seconds=0)
    with run_in_thread(config=config) as listmonk:
        env = Env(url, engine, listmonk, settings_for(url, listmonk))
        env.control(
            "POST",
            "/seed",
            {
                "subscribers": [
                    {"email": email_of(BLOCKED), "lists": [1], "status": "blocklisted"},
                    {"email": email_of(GONE), "lists": [1], "subscription_status": "unsubscribed"},
                ]
            },
        )
        try:
            yield env
        finally:
            engine.dispose()


def ledger(env: Env, i: int) -> list[tuple[Any, ...]]:
    return env.rows(
        "SELECT old_status, new_status, origin FROM cb_consent_ledger "
        "WHERE email_hash = :h AND provider = 'listmonk' ORDER BY id",
        h=email_hash(email_of(i)),
    )


async def test_push_respects_listmonk_consent(env: Env) -> None:
    pushed = await run_push(env.settings, "crm")
    assert pushed.status == "succeeded", pushed.error
    assert pushed.created == PEOPLE - 2
    assert env.subscription(0) == ("enabled", "confirmed")
    sub = env.listmonk.sandbox.subscriber_by(email_of(0))
    assert sub is not None
    assert sub.name == "Person 0"
    assert sub.attribs == {"city": "Oslo"}
    # what listmonk already had is kept: never re-subscribed
    assert env.subscription(BLOCKED) == ("blocklisted", "unsubscribed")
    assert env.subscription(GONE) == ("enabled", "unsubscribed")
    statuses = dict(
        env.rows(
            "SELECT email, status FROM cb_member_status WHERE provider = 'listmonk' "
            "AND email IN (:a, :b, :c)",
            a=email_of(0),
            b=email_of(BLOCKED),
            c=email_of(GONE),
        )
    )
    assert statuses == {
        email_of(0): "subscribed",
        email_of(BLOCKED): "unsubscribed",
        email_of(GONE): "unsubscribed",
    }
    assert ledger(env, 0)[-1][1:] == ("subscribed", "push")


async def test_pull_lands_campaigns_and_writes_back(env: Env) -> None:
    assert (await run_push(env.settings, "crm")).status == "succeeded"
    env.control("POST", f"/subscribers/{email_of(3)}/unsubscribe", {"list_id": 1})
    env.control("POST", f"/subscribers/{email_of(4)}/bounce", {"type": "hard"})
    campaign = env.api(
        "POST", "/campaigns", {"name": "June news", "subject": "Hello", "lists": [1]}
    )
    env.api("PUT", f"/campaigns/{campaign['id']}/status", {"status": "running"})
    env.api("GET", f"/campaigns/{campaign['id']}")  # the sandbox finishes it on a request

    pulled = await run_pull(env.settings, "crm")
    assert pulled.status_changes >= 2
    [(status, sent)] = env.rows(
        "SELECT status, emails_sent FROM cb_campaigns WHERE provider = 'listmonk' "
        "AND campaign_id = :c",
        c=str(campaign["id"]),
    )
    assert status == "sent"
    recipients = PEOPLE - 2 - 2  # blocklisted/unsubscribed before and by this test
    assert sent == recipients
    detail = env.api("GET", f"/campaigns/{campaign['id']}")
    [(opens, clicks, bounces)] = env.rows(
        "SELECT opens_total, clicks_total, hard_bounces + soft_bounces FROM cb_campaign_reports "
        "WHERE provider = 'listmonk' AND campaign_id = :c",
        c=str(campaign["id"]),
    )
    assert (opens, clicks, bounces) == (detail["views"], detail["clicks"], detail["bounces"])
    activity = env.rows(
        "SELECT COUNT(*) FROM cb_email_activity WHERE provider = 'listmonk' AND campaign_id = :c "
        "AND action = 'bounce'",
        c=str(campaign["id"]),
    )
    assert activity == [(detail["bounces"],)]
    # write-back: the list unsubscribe and the bounce (listmonk blocklisted the address)
    back = {
        row[0]: row[1:]
        for row in env.rows(
            "SELECT id, lm_status, unsubscribed_at IS NOT NULL, bounced_at IS NOT NULL "
            "FROM contacts WHERE id IN (3, 4)"
        )
    }
    assert back[3] == ("unsubscribed", True, False)
    assert back[4] == ("cleaned", False, True)
    assert ledger(env, 3)[-1][1:] == ("unsubscribed", "pull")

    # the next push, with the source unchanged, re-subscribes neither
    again = await run_push(env.settings, "crm")
    assert again.status == "succeeded", again.error
    assert env.subscription(3) == ("enabled", "unsubscribed")
    assert env.subscription(4) == ("blocklisted", "unsubscribed")


async def test_reconsent_never_lifts_a_blocklist(env: Env) -> None:
    assert (await run_push(env.settings, "crm")).status == "succeeded"
    with env.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE contacts SET consent = :f WHERE id = :i"), {"f": False, "i": BLOCKED}
        )
    assert (await run_push(env.settings, "crm")).status == "succeeded"
    with env.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE contacts SET consent = :t WHERE id = :i"), {"t": True, "i": BLOCKED}
        )
    summary = await run_push(env.settings, "crm")
    assert summary.status == "succeeded", summary.error
    assert env.subscription(BLOCKED) == ("blocklisted", "unsubscribed")
    assert env.listmonk.sandbox.optin_mails == []


async def test_taken_off_the_list_is_archived_and_deleted_is_forgotten(env: Env) -> None:
    assert (await run_push(env.settings, "crm")).status == "succeeded"
    off = env.listmonk.sandbox.subscriber_by(email_of(7))
    gone = env.listmonk.sandbox.subscriber_by(email_of(8))
    assert off is not None
    assert gone is not None
    env.api(
        "PUT", "/subscribers/lists", {"ids": [off.id], "action": "remove", "target_list_ids": [1]}
    )
    env.api("DELETE", f"/subscribers/{gone.id}")
    pulled = await run_pull(env.settings, "crm")
    assert pulled.transitions == 2  # one ledger row each
    statuses = dict(
        env.rows(
            "SELECT email, status FROM cb_member_status WHERE provider = 'listmonk' "
            "AND email IN (:a, :b)",
            a=email_of(7),
            b=email_of(8),
        )
    )
    assert statuses == {email_of(7): "archived", email_of(8): "forgotten"}
    assert ledger(env, 8)[-1][1:] == ("forgotten", "pull")


def ids_stored(env: Env, email: str) -> tuple[list[Any], list[Any]]:
    """(cb_member_status, cb_contact_state) provider ids stored for the address."""
    members = env.rows(
        "SELECT provider_member_id FROM cb_member_status WHERE provider = 'listmonk' "
        "AND member_id = :h",
        h=email_hash(email),
    )
    contacts = env.rows(
        "SELECT source_key, provider_member_id FROM cb_contact_state WHERE email_hash = :h",
        h=email_hash(email),
    )
    return [m[0] for m in members], contacts


def listmonk_id(env: Env, email: str) -> str:
    sub = env.listmonk.sandbox.subscriber_by(email)
    assert sub is not None
    return str(sub.id)


MOVED = "moved3@elsewhere.test"


async def test_an_address_change_then_a_signup_at_the_old_address_are_two_members(
    env: Env,
) -> None:
    """Consent model finding F15 with listmonk: the bridge stores listmonk's subscriber id
    beside its key. An admin edits person 3's address in listmonk (no webhooks): pull finds the
    stored id under the new address and moves contact 3 with its member, not a permanent
    delete. Someone then signs up at the address person 3 left: another subscriber (another
    id), a member the bridge first sees there, linked to no contact."""
    assert (await run_push(env.settings, "crm")).status == "succeeded"
    theirs = listmonk_id(env, email_of(3))
    assert ids_stored(env, email_of(3)) == ([theirs], [("3", theirs)])

    env.control("POST", f"/subscribers/{email_of(3)}/change-email", {"email": MOVED})
    pulled = await run_pull(env.settings, "crm")
    assert pulled.status == "succeeded", pulled.error
    assert ids_stored(env, MOVED)[0] == [theirs]
    assert env.rows("SELECT email_hash FROM cb_contact_state WHERE source_key = '3'") == [
        (email_hash(MOVED),)
    ]
    assert ids_stored(env, email_of(3)) == ([], [])
    contact_rows = env.rows(
        "SELECT old_status, new_status, origin FROM cb_consent_ledger WHERE source_key = '3' "
        "ORDER BY id"
    )
    # the move (no status change), then the end of the old address's history
    assert contact_rows[-2:] == [
        ("subscribed", "subscribed", "pull"),
        ("subscribed", "vacated", "pull"),
    ]
    assert not env.rows("SELECT 1 FROM cb_consent_ledger WHERE new_status = 'forgotten'")

    env.control("POST", "/seed", {"subscribers": [{"email": email_of(3), "lists": [1]}]})
    newcomer = listmonk_id(env, email_of(3))
    assert newcomer != theirs
    before = env.rows("SELECT COUNT(*) FROM cb_consent_ledger WHERE source_key = '3'")
    pulled = await run_pull(env.settings, "crm")
    assert pulled.status == "succeeded", pulled.error
    # two members: the newcomer at the old address, person 3 (contact 3) at the new one
    assert ids_stored(env, email_of(3)) == ([newcomer], [])
    assert ids_stored(env, MOVED) == ([theirs], [("3", theirs)])
    assert env.rows("SELECT COUNT(*) FROM cb_consent_ledger WHERE source_key = '3'") == before


async def test_a_signup_at_an_address_just_left_is_another_member_to_the_bridge(
    env: Env,
) -> None:
    """The same two events before any pull: listmonk lists the moved subscriber (its id,
    stored for contact 3) under the new address and the newcomer (another id) under the old
    one, and pull stores each beside its own address: the bridge holds two members, and
    the id it stored for contact 3 is found at the new address, not at the old one."""
    assert (await run_push(env.settings, "crm")).status == "succeeded"
    theirs = listmonk_id(env, email_of(3))
    env.control("POST", f"/subscribers/{email_of(3)}/change-email", {"email": MOVED})
    env.control("POST", "/seed", {"subscribers": [{"email": email_of(3), "lists": [1]}]})
    newcomer = listmonk_id(env, email_of(3))
    assert newcomer != theirs

    pulled = await run_pull(env.settings, "crm")
    assert pulled.status == "succeeded", pulled.error
    assert ids_stored(env, MOVED)[0] == [theirs]
    assert ids_stored(env, email_of(3))[0] == [newcomer]
    assert not env.rows("SELECT 1 FROM cb_consent_ledger WHERE new_status = 'forgotten'")
