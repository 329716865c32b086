"""At rest: applied webhook bodies, webhook errors and rejection messages hold no address."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from campaign_bridge.privacy import scrub_addresses
from campaign_bridge.state import member_status, rejected_records, webhook_events
from campaign_bridge.store import Rejection, StateStore
from campaign_bridge.webhook_applier import WebhookApplier
from campaign_bridge.webhook_inbox import InboxStore
from campaign_bridge.webhook_parking import error_text
from campaign_bridge.webhook_queue import mark_events
from tests.integration.privacy.conftest import migrated
from tests.integration.serve.test_webhook_applier import subscribe, sync
from tests.webhook_rows import store_event


def bodies(store: StateStore) -> list[tuple[str, str | None]]:
    with store.engine.connect() as conn:
        query = sa.select(webhook_events.c.payload, webhook_events.c.error)
        return [tuple(row) for row in conn.execute(query.order_by(webhook_events.c.id))]


@pytest.mark.parametrize("keep", [False, True], ids=["log_emails-off", "log_emails-on"])
def test_applied_bodies_lose_their_addresses_unless_log_emails(
    database_url: str, keep: bool
) -> None:
    store = StateStore(migrated(database_url))
    inbox = InboxStore(store.engine)
    try:
        assert asyncio.run(inbox([subscribe("Ann.Lee@Example.org")])) == [True]
        assert "Ann.Lee@Example.org" in bodies(store)[0][0]
        applier = WebhookApplier(store.engine, {"crm": sync()}, log_emails=keep)
        applier._apply_chunk(100, None)
        with store.engine.connect() as conn:  # applied: the status carries the address
            assert conn.execute(sa.select(member_status.c.email)).scalar() == "Ann.Lee@Example.org"
        payload = bodies(store)[0][0]
        assert ("Ann.Lee@Example.org" in payload) is keep
        assert ("example.org" in payload.lower()) is keep
        if not keep:
            assert "<email>" in payload
            assert '"type":"subscribe"' in payload
    finally:
        asyncio.run(inbox.aclose())
        store.close()


def test_errors_and_rejection_messages_are_stored_without_addresses(database_url: str) -> None:
    with StateStore(migrated(database_url)) as store:
        event_id = store_event(store.engine, "k" * 64, "profile", None, "{}")
        failure = ValueError("no member ann@example.org")
        mark_events(store.engine, {}, {event_id: error_text(failure, log_emails=False)})
        run_id = store.start_run("crm", "push")
        store.finish_run(run_id, "failed", {}, "Mailchimp refused ann@example.org")
        assert store.recent_runs()[0].error_summary == "Mailchimp refused <email>"
        store.record_rejections(
            None, [Rejection("crm", "7", None, None, "invalid", "Bob.Ray@Mail.test looks fake")]
        )
        with store.engine.connect() as conn:
            error = conn.execute(sa.select(webhook_events.c.error)).scalar()
            message = conn.execute(sa.select(rejected_records.c.message)).scalar()
    assert error.startswith("ValueError: no member ")
    assert "ann@example.org" not in error
    assert message == "<email> looks fake"


def test_scrub_addresses_rule() -> None:
    assert scrub_addresses("to a.b+c@x.co.uk, then") == "to <email>, then"
    assert scrub_addresses("postgresql://user@host/db") == "postgresql://user@host/db"
    assert scrub_addresses("ann@example.org", log_emails=True) == "ann@example.org"
    assert scrub_addresses(None) is None


def test_a_parked_webhook_error_follows_the_same_rule() -> None:
    """A failed apply's stored error: addresses scrubbed as everywhere at rest (not hashed: a
    hash of an address is the address to anyone holding a list), secrets masked."""
    exc = ValueError("no member Ann@Example.org (ann%40example.org) at postgresql://u:pw-123@db/x")
    stored = error_text(exc)
    assert stored == "ValueError: no member <email> (<email>) at postgresql://u:********@db/x"
    assert "email:" not in stored
    kept = error_text(ValueError("no member Ann@Example.org"), log_emails=True)
    assert kept == "ValueError: no member Ann@Example.org"
