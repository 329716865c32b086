"""Webhook application as a job: events stored while no ``serve`` applied them are applied by a
worker (procrastinate, in process), with the same applier ``serve`` uses."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from campaign_bridge.config import Settings
from campaign_bridge.webhook_queue import pending_events
from campaign_bridge.worker import WorkerOptions, build_app, enqueue
from tests.integration.hostile.test_webhook_parking import (  # the same contacts and events
    email_of,
    engine,
    statuses,
    store,
    sync_config,
    unsubscribe_body,
)

__all__ = ["engine"]  # a fixture, used by name


@pytest.fixture
def database_url(postgresql_url: str) -> str:
    """Worker mode lives in PostgreSQL: the imported fixture runs on it only."""
    return postgresql_url


def test_a_worker_applies_stored_webhook_events(engine: sa.Engine, database_url: str) -> None:
    settings = Settings.model_validate(
        {"state_url": database_url, "syncs": {"crm": sync_config(database_url).model_dump()}}
    )
    store(engine, [unsubscribe_body(email_of(i)) for i in (1, 2)])
    assert len(pending_events(engine, 100)) == 2

    async def main() -> tuple[int | None, int | None]:
        first = await enqueue(settings, "", "webhooks")
        second = await enqueue(settings, "", "webhooks")  # one is already waiting
        app = build_app(settings, WorkerOptions(schedule=False))
        async with app.open_async():
            await app.run_worker_async(
                queues=["webhooks"], wait=False, install_signal_handlers=False
            )
        return first, second

    first, second = asyncio.run(main())
    assert first is not None
    assert second is None
    assert {i for i, s in statuses(engine).items() if s == "unsubscribed"} == {1, 2}
    assert pending_events(engine, 100) == []
    with engine.connect() as conn:
        status = conn.execute(
            sa.text("SELECT status FROM procrastinate_jobs WHERE id = :i"), {"i": first}
        ).scalar_one()
    assert status == "succeeded"
