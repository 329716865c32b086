"""The webhook inbox and applier against real databases: events handed over by key are applied
without a scan, events nobody handed over are found by the scan, the apply lock is let go when
idle (another machine may then apply)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from campaign_bridge.config import SyncConfig
from campaign_bridge.errors import StateStoreError
from campaign_bridge.state import locks, member_status, webhook_events
from campaign_bridge.webhook_applier import APPLY_LOCK, WebhookApplier
from campaign_bridge.webhook_inbox import InboxRow, InboxStore
from tests.integration.serve.conftest import close_store, open_store
from tests.webhook_rows import mailchimp_row

pytestmark = pytest.mark.anyio

LIST_ID = "a6b5da1054"


def subscribe(email: str) -> InboxRow:
    body = urlencode(
        [
            ("type", "subscribe"),
            ("fired_at", "2026-11-26 10:00:00"),
            ("data[list_id]", LIST_ID),
            ("data[email]", email),
            ("data[merges][EMAIL]", email),
        ]
    ).encode()
    return mailchimp_row(body)


def sync() -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "source": {"url": "sqlite://", "table": "contacts"},
            "destination": {"api_key": "0" * 32 + "-us6", "list_id": LIST_ID},
        }
    )


def applied(store: Any) -> dict[str, bool]:
    """dedupe key -> whether the event is applied."""
    with store.engine.connect() as conn:
        found = conn.execute(sa.select(webhook_events.c.dedupe_key, webhook_events.c.applied_at))
        return {key: at is not None for key, at in found}


async def until(condition: Callable[[], bool]) -> None:
    """Poll the database (another connection's commits signal nothing) for up to 10 s."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met within 10 s")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Any]:
    opened = open_store(database_url)
    yield opened
    close_store(opened)


async def run_applier(store: Any, poll_seconds: float) -> tuple[WebhookApplier, asyncio.Task[None]]:
    """An applier that has finished its start-up scan."""
    scans = asyncio.Event()
    applier = WebhookApplier(
        store.engine,
        {"crm": sync()},
        poll_seconds=poll_seconds,
        settle_seconds=0.01,
        locks=store,
        on_chunk=lambda _chunk: scans.set(),
    )
    task = asyncio.create_task(applier.run())
    await asyncio.wait_for(scans.wait(), timeout=10)
    return applier, task


async def test_events_handed_over_are_applied_without_a_scan(store: Any) -> None:
    inbox = InboxStore(store.engine)
    applier, task = await run_applier(store, poll_seconds=60)
    try:
        ours, theirs = subscribe("ann@example.org"), subscribe("bob@example.org")
        assert await inbox([ours, theirs]) == [True, True]
        applier.notify([ours.key])  # ``theirs`` as if another process stored it
        await until(lambda: applied(store)[ours.dedupe_key])
        assert applied(store)[theirs.dedupe_key] is False  # no scan for another minute
        with store.engine.connect() as conn:
            members = conn.execute(sa.select(member_status.c.email, member_status.c.status))
            assert members.all() == [("ann@example.org", "subscribed")]
    finally:
        applier.stop()
        await task
        await inbox.aclose()


async def test_events_nobody_handed_over_are_found_by_the_scan(store: Any) -> None:
    inbox = InboxStore(store.engine)
    applier, task = await run_applier(store, poll_seconds=0.2)
    try:
        rows = [subscribe(f"member{i}@example.org") for i in range(5)]
        assert await inbox(rows) == [True] * 5
        await until(lambda: all(applied(store).values()))
    finally:
        applier.stop()
        await task
        await inbox.aclose()


async def test_the_apply_lock_is_let_go_when_idle(store: Any) -> None:
    inbox = InboxStore(store.engine)
    applier, task = await run_applier(store, poll_seconds=60)

    def lock_holders() -> list[str]:
        with store.engine.connect() as conn:
            query = sa.select(locks.c.owner).where(locks.c.name == APPLY_LOCK)
            return list(conn.execute(query).scalars())

    try:
        await until(lambda: not lock_holders())  # released after the start-up scan
        row = subscribe("ann@example.org")
        assert await inbox([row]) == [True]
        applier.notify([row.key])
        await until(lambda: applied(store)[row.dedupe_key])
        await until(lambda: not lock_holders())
    finally:
        applier.stop()
        await task
        await inbox.aclose()


@pytest.mark.postgresql
async def test_the_inbox_reconnects_after_its_connection_is_killed(postgresql_url: str) -> None:
    store = open_store(postgresql_url)
    inbox = InboxStore(store.engine)
    try:
        assert await inbox([subscribe("ann@example.org")]) == [True]
        with store.engine.begin() as conn:  # what a database restart does to the connection
            killed = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
        assert killed
        with pytest.raises(StateStoreError, match="could not store webhook events"):
            await inbox([subscribe("bob@example.org")])  # that batch is answered 503
        assert await inbox([subscribe("bob@example.org")]) == [True]  # the retry gets through
        assert await inbox([subscribe("ann@example.org")]) == [False]
    finally:
        await inbox.aclose()
        close_store(store)
