"""`serve --schedule` runs the real push against the sandbox; the run shows on the status page
and in /-/metrics (runs, contacts pushed, provider requests by status)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.server import create_app
from campaign_bridge.state import sync_runs
from tests.integration.serve.conftest import close_store, open_store

pytestmark = pytest.mark.anyio


def make_source(url: str) -> None:
    engine = create_engine(url)
    meta = sa.MetaData()
    table = sa.Table(
        "contacts",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(200)),
        sa.Column("consent", sa.Boolean),
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [{"id": i, "email": f"sched{i}@bridge-test.org", "consent": True} for i in (1, 2, 3)],
        )
    engine.dispose()


async def test_scheduled_push_runs_and_reports(tmp_path: Path, mailchimp_sandbox: Any) -> None:
    mc = mailchimp_sandbox
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    make_source(source_url)
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "state_url": state_url,
            "syncs": {
                "crm": {
                    "source": {"url": source_url, "table": "contacts", "consent_column": "consent"},
                    "destination": {
                        "api_key": mc.api_key,
                        "list_id": mc.list_id,
                        "base_url": mc.base_url,
                    },
                    "schedule": {"push": "every 1h"},
                }
            },
        }
    )
    store = open_store(state_url)
    app = create_app(settings, store=store, schedule=True, checks={})
    try:
        async with app.router.lifespan_context(app):
            runs: list[Any] = []
            for _ in range(300):  # the first run is due at start
                with store.engine.connect() as conn:
                    runs = conn.execute(
                        sa.select(sync_runs).where(sync_runs.c.status != "running")
                    ).all()
                if runs:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.2)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                metrics = (await client.get("/-/metrics")).text
                page = (await client.get("/")).text
    finally:
        close_store(store)
    [run] = runs
    assert (run.direction, run.status) == ("push", "succeeded"), run.error_summary
    assert run.counts["created"] == 3
    assert (
        'campaign_bridge_runs_total{direction="push",status="succeeded",sync="crm"} 1.0' in metrics
    )
    assert 'campaign_bridge_contacts_pushed_total{outcome="created",sync="crm"} 3.0' in metrics
    assert (
        'campaign_bridge_provider_requests_total{method="GET",provider="mailchimp",status="200"}'
        in metrics
    )
    assert 'data-series="pushed" data-value="3"' in page
    assert len(mc.sandbox.lists[mc.list_id].members) == 3
