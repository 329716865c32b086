"""push and pull with ``provider = "brevo"`` against the Brevo sandbox on a real socket, on SQLite
and PostgreSQL: the consent rules hold (a blocklisted or list-unsubscribed contact is never
re-subscribed; every change has its ledger row), and pull lands campaigns, reports and activity
in the same ``cb_*`` tables as for Mailchimp, with ``provider = 'brevo'``."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.pull import run_pull
from campaign_bridge.push import run_push
from campaign_bridge.sandbox.brevo import BrevoHandle, control, run_in_thread

pytestmark = pytest.mark.anyio
PEOPLE = 30
START = dt.datetime(2026, 1, 5, 9, 0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def email_of(i: int) -> str:
    return f"person{i:02d}@brevo-e2e.org"


@dataclass
class Env:
    url: str
    engine: sa.Engine
    brevo: BrevoHandle
    settings: Settings
    clock: list[dt.datetime]

    @property
    def lid(self) -> int:
        assert self.brevo.list_id is not None
        return self.brevo.list_id

    def contact(self, email: str) -> Any:
        sandbox = self.brevo.sandbox
        return sandbox.contacts[sandbox.by_email[email]]

    def update(self, key: int, **values: Any) -> None:
        self.clock[0] += dt.timedelta(hours=1)
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE contacts SET "
                    + ", ".join(f"{k} = :{k}" for k in values)
                    + ", updated_at = :at WHERE id = :id"
                ),
                {**values, "at": self.clock[0], "id": key},
            )

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]

    def ledger(self, email_hash_of: str) -> list[tuple[Any, ...]]:
        from campaign_bridge.mapping import email_hash

        return self.rows(
            "SELECT provider, old_status, new_status, origin FROM cb_consent_ledger "
            "WHERE email_hash = :h ORDER BY id",
            h=email_hash(email_hash_of),
        )

    def api(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(
            method,
            self.brevo.base_url + path,
            json=body,
            headers={"api-key": self.brevo.api_key},
            timeout=30,
        )
        response.raise_for_status()
        return response.json() if response.content else None


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    with run_in_thread() as brevo:
        lid = brevo.list_id
        control.seed(
            brevo.sandbox,
            {
                "contacts": [
                    # unsubscribed through Brevo's link: blocklisted for all marketing e-mail
                    {"email": email_of(0), "listIds": [lid], "emailBlacklisted": True},
                    # left this list through a custom unsubscribe page
                    {"email": email_of(1), "listIds": [lid], "listUnsubscribed": [lid]},
                ]
            },
        )
        migrations.upgrade(db_url)
        engine = create_engine(db_url)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE contacts (id INTEGER PRIMARY KEY, email VARCHAR(320) NOT NULL,"
                    " first_name VARCHAR(100), consent BOOLEAN NOT NULL, updated_at TIMESTAMP)"
                )
            )
            conn.execute(
                sa.text("INSERT INTO contacts VALUES (:i, :e, :n, :c, :u)"),
                [
                    {"i": i, "e": email_of(i), "n": f"Name {i}", "c": True, "u": START}
                    for i in range(PEOPLE)
                ],
            )
        sync = {
            "source": {
                "url": db_url,
                "table": "contacts",
                "updated_at_column": "updated_at",
                "consent_column": "consent",
            },
            "destination": {
                "provider": "brevo",
                "api_key": brevo.api_key,
                "list_id": str(lid),
                "base_url": brevo.base_url,
                "max_retries": 3,
            },
            "fields": {"FIRSTNAME": "first_name"},
        }
        settings = Settings.model_validate({"state_url": db_url, "syncs": {"crm": sync}})
        try:
            yield Env(db_url, engine, brevo, settings, [START])
        finally:
            engine.dispose()


async def test_push_creates_contacts_and_never_resubscribes(env: Env) -> None:
    first = await run_push(env.settings, "crm")
    assert first.status == "succeeded", first.error
    assert first.created == PEOPLE - 2
    on_list = [c for c in env.brevo.sandbox.contacts.values() if env.lid in c.list_ids]
    assert len(on_list) == PEOPLE - 1  # the list-unsubscribed contact is not added back
    assert env.contact(email_of(5)).attributes["FIRSTNAME"] == "Name 5"
    assert env.contact(email_of(0)).email_blacklisted is True
    assert env.lid not in env.contact(email_of(1)).list_ids
    statuses = dict(
        env.rows(
            "SELECT email, status FROM cb_member_status WHERE provider = 'brevo' "
            "AND email IN (:a, :b, :c)",
            a=email_of(0),
            b=email_of(1),
            c=email_of(5),
        )
    )
    assert statuses == {
        email_of(0): "unsubscribed",
        email_of(1): "unsubscribed",
        email_of(5): "subscribed",
    }
    assert env.ledger(email_of(5)) == [("brevo", None, "subscribed", "push")]

    # consent withdrawn in the source: the bridge blocklists the contact, one ledger row
    env.update(5, consent=False)
    second = await run_push(env.settings, "crm")
    assert second.status == "succeeded", second.error
    assert env.contact(email_of(5)).email_blacklisted is True
    assert env.ledger(email_of(5))[-1] == ("brevo", "subscribed", "unsubscribed", "push")

    # consent given again: the bridge never lifts a blocklist (no double opt-in configured)
    env.update(5, consent=True)
    env.update(0, first_name="Renamed")
    third = await run_push(env.settings, "crm")
    assert third.status == "succeeded", third.error
    assert env.contact(email_of(5)).email_blacklisted is True
    assert env.contact(email_of(0)).email_blacklisted is True
    assert env.contact(email_of(0)).attributes["FIRSTNAME"] == "Renamed"
    assert third.rejected.get("blocklisted") == 1


async def test_pull_lands_campaigns_reports_and_activity(env: Env) -> None:
    pushed = await run_push(env.settings, "crm")
    assert pushed.status == "succeeded", pushed.error
    campaign = env.api(
        "POST",
        "/emailCampaigns",
        {
            "name": "Spring",
            "subject": "Hello",
            "sender": {"name": "Corp", "email": "news@corp.org"},
            "htmlContent": "<p>hi</p>",
            "recipients": {"listIds": [env.lid]},
        },
    )
    env.api("POST", f"/emailCampaigns/{campaign['id']}/sendNow")
    stats = env.api("GET", f"/emailCampaigns/{campaign['id']}")["statistics"]["globalStats"]

    summary = await run_pull(env.settings, "crm")

    assert summary.status == "succeeded"
    cid = str(campaign["id"])
    assert env.rows("SELECT provider, campaign_id, status, emails_sent FROM cb_campaigns") == [
        ("brevo", cid, "sent", stats["sent"])
    ]
    assert env.rows(
        "SELECT emails_sent, unique_opens, hard_bounces, unsubscribed FROM cb_campaign_reports "
        "WHERE provider = 'brevo'"
    ) == [(stats["sent"], stats["uniqueViews"], stats["hardBounces"], stats["unsubscriptions"])]
    landed = Counter(
        dict(
            env.rows(
                "SELECT action, COUNT(*) FROM cb_email_activity WHERE provider = 'brevo' "
                "GROUP BY action"
            )
        )
    )
    # one row per recipient and kind: "opened at least once", as for any provider's unique count
    assert landed["open"] == stats["uniqueViews"] > 0
    assert landed["click"] == stats["uniqueClicks"]
    assert landed["bounce"] == stats["hardBounces"] + stats["softBounces"]
    assert landed["unsubscribe"] == stats["unsubscriptions"]
    # those who unsubscribed through the campaign are unsubscribed in the bridge's state too
    gone = [c.email for c in env.brevo.sandbox.contacts.values() if c.email_blacklisted]
    statuses = dict(env.rows("SELECT email, status FROM cb_member_status"))
    assert all(statuses[email] in ("unsubscribed", "cleaned") for email in gone)


async def test_pull_writes_each_chunk_while_reading_the_next(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Brevo's adapter reads a whole export without waiting on anything; each chunk's write
    still starts as soon as the chunk is full, not when the next one is."""
    from campaign_bridge import pull
    from campaign_bridge.providers.brevo import BrevoProvider

    assert (await run_push(env.settings, "crm")).status == "succeeded"
    body = {
        "name": "Spring",
        "subject": "Hello",
        "sender": {"name": "Corp", "email": "news@corp.org"},
        "htmlContent": "<p>hi</p>",
        "recipients": {"listIds": [env.lid]},
    }
    campaign = env.api("POST", "/emailCampaigns", body)
    env.api("POST", f"/emailCampaigns/{campaign['id']}/sendNow")
    monkeypatch.setattr(pull, "ACTIVITY_CHUNK", 10)
    monkeypatch.setattr(pull, "ROW_BATCH", 5)
    read = [0]
    started: list[int] = []
    reading = BrevoProvider.email_activity
    running = anyio.to_thread.run_sync

    async def counted(self: BrevoProvider, *args: Any, **kwargs: Any) -> Any:
        async for event in reading(self, *args, **kwargs):
            read[0] += 1
            yield event

    async def noted(func: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(func, "__name__", "") == "_write_activity":
            started.append(read[0])
        return await running(func, *args, **kwargs)

    monkeypatch.setattr(BrevoProvider, "email_activity", counted)
    monkeypatch.setattr(anyio.to_thread, "run_sync", noted)
    summary = await run_pull(env.settings, "crm")
    assert summary.status == "succeeded", summary.error
    assert summary.activity_read > 20
    assert started[:2] == [10, 20]  # events read when each write started


async def test_a_campaign_whose_counters_have_not_moved_is_not_exported_again(env: Env) -> None:
    """Each of a campaign's exports costs a request of Brevo's 100 an hour: a pull finding the
    counters its last complete read of the campaign ended with asks for none; a reset cursor,
    a read that did not end, or ``since`` reads it again (adding nothing twice)."""
    from campaign_bridge.runs import reset_cursors
    from campaign_bridge.sandbox.brevo import imports

    assert (await run_push(env.settings, "crm")).status == "succeeded"
    body = {
        "name": "Spring",
        "subject": "Hello",
        "sender": {"name": "Corp", "email": "news@corp.org"},
        "htmlContent": "<p>hi</p>",
        "recipients": {"listIds": [env.lid]},
    }
    cid = str(env.api("POST", "/emailCampaigns", body)["id"])
    env.api("POST", f"/emailCampaigns/{cid}/sendNow")
    table = imports.processes(env.brevo.sandbox).items

    def exports() -> int:
        return sum(p.name == "CAMPAIGN_USER_DETAILS" for p in table.values())

    first = await run_pull(env.settings, "crm")
    assert first.activity_read == first.activity_added > 0
    asked = exports()
    again = await run_pull(env.settings, "crm")
    assert (again.status, again.activity_read, exports()) == ("succeeded", 0, asked)

    reset_cursors(env.engine, "crm", f"activity:{cid}")
    after_reset = await run_pull(env.settings, "crm")
    assert (after_reset.activity_read, after_reset.activity_added) == (first.activity_read, 0)
    assert exports() > asked
    asked = exports()

    with env.engine.begin() as conn:  # as if the last read had stopped before its end
        conn.execute(
            sa.text("DELETE FROM cb_pull_cursors WHERE stream = :s"),
            {"s": f"activity:{cid}:report"},
        )
    resumed = await run_pull(env.settings, "crm")  # from its cursor, less the overlap
    assert (resumed.activity_added, exports() > asked) == (0, True)
    assert resumed.activity_read > 0
    assert (await run_pull(env.settings, "crm")).activity_read == 0
    since = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert (await run_pull(env.settings, "crm", since=since)).activity_read == first.activity_read
