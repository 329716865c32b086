"""Alerts reach a real HTTP receiver through Apprise (``json://`` to a loopback server), once per
incident and once on recovery, from what the state store says; and `serve` runs the loop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from campaign_bridge import migrations
from campaign_bridge.alerts import Alerter
from campaign_bridge.config import Settings
from campaign_bridge.observe import health
from campaign_bridge.server import create_app
from campaign_bridge.state import webhook_events
from campaign_bridge.store import Rejection, StateStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Receiver:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail = False
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if received.fail:
                    self.send_response(500)
                else:
                    received.messages.append(json.loads(body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/alerts"

    def titles(self) -> list[str]:
        titles = [m["title"] for m in self.messages]
        self.messages.clear()
        return titles


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    item = Receiver()
    thread = threading.Thread(target=item.server.serve_forever, daemon=True)
    thread.start()
    yield item
    item.server.shutdown()
    item.server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC) - timedelta(hours=10)

    def __call__(self) -> datetime:
        return self.now


def settings_for(tmp_path: Path, state_url: str, url: str, **alerts: Any) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "state_url": state_url,
            "alerts": {"urls": [url], "check_seconds": 1, "rejections_threshold": 2, **alerts},
            "syncs": {
                "crm": {
                    "source": {"url": "sqlite://", "table": "contacts"},
                    "destination": {"api_key": "0" * 32 + "-us1", "list_id": "l1"},
                    "schedule": {"push": "every 1h"},
                }
            },
        }
    )


async def test_alert_sequence_through_apprise(
    tmp_path: Path, database_url: str, receiver: Receiver
) -> None:
    migrations.upgrade(database_url)
    clock = Clock()
    store = StateStore(database_url, clock=clock)
    settings = settings_for(tmp_path, database_url, receiver.url)
    alerter = Alerter(settings.alerts, lambda: health(store.engine, settings, now=clock.now))
    try:
        # never succeeded, scheduled hourly: stale
        assert [m.kind for m in await alerter.check()] == ["firing"]
        stale = "no successful push of sync crm since ever"
        assert receiver.titles() == [f"campaign-bridge ALERT: {stale}"]
        assert await alerter.check() == []  # once per incident
        assert receiver.titles() == []

        run_id = store.start_run("crm", "push")
        clock.now += timedelta(minutes=2)
        store.finish_run(run_id, "failed", {}, "the provider refused the API key")
        assert receiver.titles() == []  # nothing is sent between checks
        await alerter.check()
        assert receiver.titles() == ["campaign-bridge ALERT: the last push of sync crm failed"]

        # a dry run that succeeds clears neither
        run_id = store.start_run("crm", "push")
        store.finish_run(run_id, "succeeded", {"dry_run": True})
        assert await alerter.check() == []

        run_id = store.start_run("crm", "push")
        store.finish_run(run_id, "succeeded", {"created": 1})
        await alerter.check()
        assert sorted(receiver.titles()) == [
            f"campaign-bridge RESOLVED: {stale}",
            "campaign-bridge RESOLVED: the last push of sync crm failed",
        ]

        # rejections at the threshold, webhook events waiting too long
        store.record_rejections(
            run_id,
            [Rejection("crm", str(k), None, "h", "invalid_email", "bad address") for k in (1, 2)],
        )
        with store.engine.begin() as conn:
            conn.execute(
                webhook_events.insert().values(
                    provider="mailchimp",
                    dedupe_key="d" * 64,
                    event_type="unsubscribe",
                    received_at=clock.now - timedelta(minutes=30),
                    payload="{}",
                )
            )
        receiver.fail = True  # the receiver is down: retried at the next check, not lost
        assert await alerter.check() == []
        receiver.fail = False
        await alerter.check()
        titles = sorted(receiver.titles())
        assert titles == [
            "campaign-bridge ALERT: 2 records of sync crm are rejected",
            "campaign-bridge ALERT: a webhook event has waited 30 min to be applied",
        ]
        with store.engine.begin() as conn:
            conn.execute(webhook_events.update().values(applied_at=clock.now))
        await alerter.check()
        assert receiver.titles() == [
            "campaign-bridge RESOLVED: a webhook event has waited 30 min to be applied"
        ]
    finally:
        store.close()


async def test_serve_runs_the_alerts(tmp_path: Path, receiver: Receiver) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    migrations.upgrade(state_url)
    store = StateStore(state_url)
    run_id = store.start_run("crm", "push")
    store.finish_run(run_id, "failed", {}, "boom")
    settings = settings_for(tmp_path, state_url, receiver.url)
    app = create_app(settings, store=store, checks={})
    try:
        async with app.router.lifespan_context(app):
            for _ in range(100):
                if len(receiver.messages) >= 2:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.2)  # a second check sends nothing new
    finally:
        store.close()
    by_title = {m["title"]: m for m in receiver.messages}
    assert len(receiver.messages) == 2  # one per incident, however many checks ran
    assert sorted(by_title) == [
        "campaign-bridge ALERT: no successful push of sync crm since ever",
        "campaign-bridge ALERT: the last push of sync crm failed",
    ]
    assert "boom" in by_title["campaign-bridge ALERT: the last push of sync crm failed"]["message"]
    assert {m["type"] for m in receiver.messages} == {"failure"}
