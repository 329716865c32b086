"""Webhook deliveries that cannot be applied: a NUL in a field no longer blocks the queue
(defect 1), and an event that keeps failing is retried a bounded number of times, then parked
with its error (addresses hashed) while every later delivery is applied."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from campaign_bridge import cli, migrations
from campaign_bridge.config import SyncConfig
from campaign_bridge.db import create_engine
from campaign_bridge.state import contact_state, member_status, webhook_events
from campaign_bridge.status_changes import email_hash
from campaign_bridge.webhook_applier import WebhookApplier
from campaign_bridge.webhook_inbox import insert_rows
from campaign_bridge.webhook_parking import parked_events, retry_parked
from campaign_bridge.webhook_queue import pending_events
from tests.webhook_rows import mailchimp_row

LIST_ID = "a6b5da1054"
PEOPLE = 10
REFUSED = 7  # the user's table refuses any opt-out for this contact


def email_of(i: int) -> str:
    return f"person{i:03d}@parking.test"


def unsubscribe_body(email: str, reason: str = "manual") -> bytes:
    fields = [
        ("type", "unsubscribe"),
        ("fired_at", "2026-11-26 10:00:00"),
        ("data[list_id]", LIST_ID),
        ("data[email]", email),
        ("data[reason]", reason),
    ]
    return "&".join(f"{quote(k)}={quote(v, safe='%')}" for k, v in fields).encode()


def sync_config(url: str) -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "source": {"url": url, "table": "contacts"},
            "destination": {"api_key": "0" * 32 + "-us6", "list_id": LIST_ID},
            "writeback": {"table": "contacts", "key_column": "id", "status_column": "mc_status"},
        }
    )


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE contacts (id INTEGER PRIMARY KEY, email VARCHAR(320) NOT NULL, "
                "mc_status VARCHAR(32), "
                f"CONSTRAINT no_opt_out_for_seven CHECK (id <> {REFUSED} OR mc_status IS NULL "
                "OR mc_status = 'subscribed'))"
            )
        )
        conn.execute(
            sa.text("INSERT INTO contacts (id, email) VALUES (:i, :e)"),
            [{"i": i, "e": email_of(i)} for i in range(PEOPLE)],
        )
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
    yield engine
    engine.dispose()


def store(engine: sa.Engine, bodies: list[bytes]) -> None:
    rows = [mailchimp_row(b) for b in bodies]
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        insert_rows(conn, rows)


def statuses(engine: sa.Engine) -> dict[int, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id, mc_status FROM contacts")).all())  # type: ignore[arg-type]


def test_a_nul_in_a_field_neither_blocks_nor_stops_the_queue(
    engine: sa.Engine, database_url: str
) -> None:
    store(engine, [unsubscribe_body(email_of(1), "bad%00reason")])
    store(engine, [unsubscribe_body(email_of(i)) for i in (2, 3)])
    applier = WebhookApplier(engine, {"crm": sync_config(database_url)}, retry_pause=0.01)

    chunk = applier.apply_pending_once()
    applier.close()

    assert chunk.failed == 0
    assert pending_events(engine, 100) == []
    assert {i for i, s in statuses(engine).items() if s == "unsubscribed"} == {1, 2, 3}
    with engine.connect() as conn:
        reason = conn.execute(
            sa.select(member_status.c.unsubscribe_reason).where(
                member_status.c.member_id == email_hash(email_of(1))
            )
        ).scalar_one()
    assert reason == "badreason"


def test_an_event_that_keeps_failing_is_parked_and_the_rest_goes_on(
    engine: sa.Engine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    applier = WebhookApplier(
        engine, {"crm": sync_config(database_url)}, retry_pause=0.01, max_attempts=3
    )
    store(engine, [unsubscribe_body(email_of(i)) for i in (1, REFUSED, 2)])

    first = applier.apply_pending_once()
    assert first.failed == 1  # only the refused one
    assert {i for i, s in statuses(engine).items() if s == "unsubscribed"} == {1, 2}

    for later in (3, 4):  # new deliveries keep being applied while the bad one is retried
        store(engine, [unsubscribe_body(email_of(later))])
        chunk = applier.apply_pending_once()
        assert chunk.failed == 1
    assert chunk.parked == 1
    assert {i for i, s in statuses(engine).items() if s == "unsubscribed"} == {1, 2, 3, 4}
    assert pending_events(engine, 100) == []  # parked: no longer in the queue

    parked = parked_events(engine)
    assert [(p.attempts, p.list_id) for p in parked] == [(3, LIST_ID)]
    error = parked[0].error or ""
    assert error
    assert email_of(REFUSED) not in error  # addresses are hashed in stored errors

    store(engine, [unsubscribe_body(email_of(5))])
    assert applier.apply_pending_once().failed == 0  # the parked one is left alone
    applier.close()

    # the status page names it
    from campaign_bridge import status_page
    from campaign_bridge.config import Settings

    settings = Settings.model_validate(
        {"state_url": database_url, "syncs": {"crm": sync_config(database_url).model_dump()}}
    )
    data = status_page.gather(engine, settings)
    assert data.webhooks_parked == 1
    assert any("1 webhook event(s) parked" in p.message for p in data.problems)

    # the CLI lists it and puts it back in the queue
    monkeypatch.setenv("CAMPAIGN_BRIDGE_STATE_URL", database_url)
    try:
        assert cli.run(["webhooks", "parked", "--json"]) == 0
        listed = capsys.readouterr().out
        assert cli.run(["webhooks", "retry-parked"]) == 0
        retried = capsys.readouterr().out
    finally:  # the CLI installed its log handler on pytest's capture stream
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_campaign_bridge_handler", 0)]:
            root.removeHandler(handler)
    assert '"attempts": 3' in listed
    assert email_of(REFUSED) not in listed
    assert "1 parked webhook event(s) back in the queue" in retried
    assert len(pending_events(engine, 100)) == 1
    assert retry_parked(engine) == 0
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(webhook_events.c.attempts).where(webhook_events.c.applied_at.is_(None))
            ).scalar_one()
            == 0
        )


def test_a_misconfigured_write_back_holds_its_events_visibly_and_never_parks_them(
    engine: sa.Engine, database_url: str
) -> None:
    """A write-back column that does not exist is no event's fault: the sync's events wait
    with the error recorded (not counted as attempts, never parked), the other syncs' events
    are applied meanwhile, and the status page says why; fixed, they are applied."""
    broken = sync_config(database_url).model_copy(deep=True)
    broken.writeback.status_column = "no_such_column"  # type: ignore[union-attr]
    healthy = sync_config(database_url).model_copy(deep=True)
    healthy.destination.list_id = "bbbbbbbbbb"
    healthy.writeback = None
    store(engine, [unsubscribe_body(email_of(i)) for i in (1, 2)])
    store(engine, [unsubscribe_body(email_of(3)).replace(LIST_ID.encode(), b"bbbbbbbbbb")])

    applier = WebhookApplier(
        engine, {"crm": broken, "other": healthy}, retry_pause=0.01, max_attempts=2
    )
    for _ in range(4):  # more rounds than max_attempts
        chunk = applier.apply_pending_once()
        assert chunk.failed == 2
        assert chunk.parked == 0
    applier.close()

    waiting = pending_events(engine, 100)
    assert sorted(row.list_id or "" for row in waiting) == [LIST_ID, LIST_ID]  # "other" applied
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(webhook_events.c.attempts, webhook_events.c.error).where(
                webhook_events.c.applied_at.is_(None)
            )
        ).all()
    assert [attempts for attempts, _error in rows] == [0, 0]
    assert all("sync crm" in error and "no_such_column" in error for _a, error in rows)
    assert parked_events(engine) == []

    from campaign_bridge import status_page
    from campaign_bridge.config import Settings

    settings = Settings.model_validate({"state_url": database_url, "syncs": {"crm": broken}})
    messages = [p.message for p in status_page.gather(engine, settings).problems]
    assert any(
        m.startswith("2 webhook event(s) could not be applied yet; the latest error: sync crm")
        for m in messages
    ), messages

    fixed = WebhookApplier(engine, {"crm": sync_config(database_url)}, retry_pause=0.01)
    assert fixed.apply_pending_once().failed == 0
    fixed.close()
    assert pending_events(engine, 100) == []
    assert {i for i, s in statuses(engine).items() if s == "unsubscribed"} == {1, 2}


def stored_outcomes(engine: sa.Engine) -> dict[int, tuple[int, str | None, bool]]:
    """Person -> (attempts, error, parked) of the events not applied."""
    t = webhook_events
    query = sa.select(t.c.email_hash, t.c.attempts, t.c.error, t.c.parked_at).where(
        t.c.applied_at.is_(None)
    )
    person = {email_hash(email_of(i)): i for i in range(PEOPLE)}
    with engine.connect() as conn:
        return {
            person[digest]: (attempts, error, parked is not None)
            for digest, attempts, error, parked in conn.execute(query)
        }


def test_an_event_failing_in_one_sync_while_another_waits_for_its_configuration(
    engine: sa.Engine, database_url: str
) -> None:
    """Two syncs share the audience: in "crm" one event fails on its own (the user's table
    refuses it), "broken" is misconfigured. Each event carries each sync's outcome: its error
    names both syncs, and no attempt is counted while a sync waits for its configuration
    (parking would take the event from that sync); fixed, the event's own failures count and
    park it, with crm's error alone."""
    broken = sync_config(database_url).model_copy(deep=True)
    broken.writeback.status_column = "no_such_column"  # type: ignore[union-attr]
    store(engine, [unsubscribe_body(email_of(i)) for i in (1, REFUSED)])
    applier = WebhookApplier(
        engine, {"crm": sync_config(database_url), "broken": broken}, max_attempts=2
    )
    for _ in range(3):  # more rounds than max_attempts
        chunk = applier.apply_pending_once()
        assert (chunk.failed, chunk.parked) == (2, 0)
    applier.close()

    waiting = stored_outcomes(engine)
    assert sorted(waiting) == [1, REFUSED]
    for attempts, error, parked in waiting.values():
        assert (attempts, parked) == (0, False)
        assert "sync broken: " in (error or "")
        assert "no_such_column" in (error or "")
    refused_error = waiting[REFUSED][1] or ""
    assert "sync crm: " in refused_error  # its own failure is not hidden by the other's
    assert "sync crm: " not in (waiting[1][1] or "")  # applied to crm: only broken's error
    assert email_of(REFUSED) not in refused_error

    healthy = broken.model_copy(deep=True)
    healthy.writeback = None  # the configuration is fixed
    fixed = WebhookApplier(
        engine, {"crm": sync_config(database_url), "broken": healthy}, max_attempts=2
    )
    assert fixed.apply_pending_once().failed == 1
    assert fixed.apply_pending_once().parked == 1
    fixed.close()
    [parked] = parked_events(engine)
    assert parked.attempts == 2
    assert (parked.error or "").startswith("sync crm: ")
    assert "sync broken" not in (parked.error or "")
    assert {i for i, s in statuses(engine).items() if s == "unsubscribed"} == {1}
