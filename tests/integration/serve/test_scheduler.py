"""The scheduler: two schedulers on one database never run a sync at once (the database lock),
and a failed run is retried on the next tick and counted in /-/metrics."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge.config import Settings
from campaign_bridge.scheduler import Interval, Job, Scheduler
from campaign_bridge.server import create_app
from campaign_bridge.state import locks, sync_runs
from tests.integration.serve.conftest import close_store, open_store

pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=[
        "sqlite_url",
        pytest.param("postgresql_url", marks=pytest.mark.postgresql),
        pytest.param("mariadb_url", marks=pytest.mark.mariadb),
    ]
)
def state_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


@pytest.fixture
def two_stores(state_url: str) -> Iterator[tuple[Any, Any]]:
    """Two stores with their own engines and connections: two machines sharing one database."""
    first = open_store(state_url)
    second = open_store(state_url)
    yield first, second
    close_store(first)
    close_store(second)


@dataclass
class Summary:
    """What push and pull return: a status, counts and how long it took."""

    status: str
    counts: dict[str, Any]
    seconds: float


def lock_holder(store: Any, name: str) -> str | None:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(locks.c.owner).where(locks.c.name == name)).scalar()


def recording_runner(store: Any, owner: str, holders: list[tuple[str, str | None]]) -> Any:
    """A run that records itself in cb_sync_runs (as push and pull do) and takes 0.3 s."""

    async def run(sync_name: str, direction: str) -> None:
        run_id = await asyncio.to_thread(store.start_run, sync_name, direction)
        holders.append((owner, await asyncio.to_thread(lock_holder, store, f"sync:{sync_name}")))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(store.finish_run, run_id, "succeeded", {"owner_" + owner: 1})

    return run


async def test_two_schedulers_never_run_one_sync_at_once(two_stores: tuple[Any, Any]) -> None:
    first, second = two_stores
    holders: list[tuple[str, str | None]] = []
    statuses: list[tuple[str, str, str]] = []

    def jobs() -> list[Job]:
        return [
            Job("alpha", "push", Interval(1)),
            Job("alpha", "pull", Interval(1)),
            Job("beta", "push", Interval(1)),
        ]

    schedulers = [
        Scheduler(
            jobs(),
            recording_runner(store, owner, holders),
            store,
            owner=owner,
            lock_ttl=3,
            on_run=lambda sync, _d, status, _r, owner=owner: statuses.append((owner, sync, status)),
        )
        for owner, store in (("machine-a", first), ("machine-b", second))
    ]
    tasks = [asyncio.create_task(s.run()) for s in schedulers]
    await asyncio.sleep(4.2)
    for scheduler in schedulers:
        scheduler.stop()
    await asyncio.gather(*tasks)

    with first.engine.connect() as conn:
        runs = conn.execute(
            sa.select(sync_runs).order_by(sync_runs.c.sync_name, sync_runs.c.started_at)
        ).all()
        left = conn.execute(sa.select(sa.func.count()).select_from(locks)).scalar()
    assert left == 0, "every lock is released when its run ends"
    assert all(owner == holder for owner, holder in holders), "a run always holds its lock"
    for sync in ("alpha", "beta"):
        mine = [r for r in runs if r.sync_name == sync]
        assert len(mine) >= 3
        for earlier, later in itertools.pairwise(mine):
            assert earlier.finished_at is not None
            assert later.started_at >= earlier.finished_at, f"{sync} ran twice at once"
    # both machines wanted the same ticks: one ran, the other found the lock taken
    assert any(status == "skipped" for _o, _s, status in statuses), "the lock was contended"
    assert any(status == "succeeded" for _o, _s, status in statuses)


async def test_a_failed_run_is_retried_next_tick_and_counted(sqlite_url: str) -> None:
    state_url = sqlite_url
    store = open_store(state_url)
    attempts: list[datetime] = []

    async def flaky(sync_name: str, direction: str) -> Summary:
        attempts.append(datetime.now(UTC))
        run_id = await asyncio.to_thread(store.start_run, sync_name, direction)
        if len(attempts) == 1:
            await asyncio.to_thread(store.finish_run, run_id, "failed", {}, "provider said 503")
            raise RuntimeError("provider said 503")
        await asyncio.to_thread(store.finish_run, run_id, "succeeded", {"created": 5})
        return Summary("succeeded", {"created": 5, "rejected": {"invalid_email": 2}}, 0.2)

    settings = Settings.model_validate(
        {
            "state_url": state_url,
            "syncs": {
                "crm": {
                    "source": {"url": "sqlite://", "table": "contacts"},
                    "destination": {"api_key": "0" * 32 + "-us6", "list_id": "a6b5da1054"},
                    "schedule": {"push": "every 1s"},
                }
            },
        }
    )
    app = create_app(settings, store=store, schedule=True, runner=flaky, checks={})
    try:
        async with app.router.lifespan_context(app):
            for _ in range(100):
                if len(attempts) >= 2:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                metrics = (await client.get("/-/metrics")).text
                page = (await client.get("/")).text
    finally:
        close_store(store)
    assert len(attempts) >= 2
    assert (attempts[1] - attempts[0]).total_seconds() <= 3, "retried at the next tick (1 s)"
    assert 'campaign_bridge_runs_total{direction="push",status="failed",sync="crm"} 1.0' in metrics
    assert 'campaign_bridge_runs_total{direction="push",status="succeeded",sync="crm"}' in metrics
    assert 'campaign_bridge_contacts_pushed_total{outcome="created",sync="crm"} 5.0' in metrics
    assert (
        'campaign_bridge_contacts_rejected_total{reason="invalid_email",sync="crm"} 2.0' in metrics
    )
    assert 'data-status="failed"' in page
    assert "provider said 503" in page
