"""/-/metrics after a known sequence: exact values, each series recorded once.

A scheduled push of three contacts against the sandbox, with one injected 503 (retried), then a
failed run: the provider request counter must equal what the sandbox saw, attempt for attempt.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from campaign_bridge import migrations
from campaign_bridge.config import Settings
from campaign_bridge.sandbox.mailchimp.limits import FaultRule
from campaign_bridge.server import create_app
from campaign_bridge.store import StateStore
from tests.integration.push.conftest import Sandbox, make_source

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


PREFIX = "campaign_bridge_provider_"


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def wait_for_runs(store: StateStore, count: int) -> None:
    for _ in range(300):
        finished = [r for r in store.recent_runs("crm") if r.status != "running"]
        if len(finished) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} finished runs")


async def test_metrics_count_each_request_once(
    tmp_path: Path, sqlite_url: str, sandbox: Sandbox
) -> None:
    handle = sandbox.handle
    source = make_source(sqlite_url, rows=3)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    migrations.upgrade(state_url)
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "state_url": state_url,
            "syncs": {
                "crm": {
                    "source": {"url": sqlite_url, "table": "contacts", "consent_column": "consent"},
                    "destination": {
                        "api_key": handle.api_key,
                        "list_id": handle.list_id,
                        "base_url": handle.base_url,
                        "max_retries": 3,
                    },
                    "fields": {"FNAME": "first_name"},
                    "schedule": {"push": "every 1h"},
                }
            },
        }
    )
    list_path = f"/lists/{handle.list_id}$"
    handle.sandbox.limits.add_fault(FaultRule("503", method="GET", path=list_path, count=1))
    source.update(3, email="not an address")
    sandbox.log.clear()
    store = StateStore(state_url)
    app = create_app(settings, store=store, schedule=True, checks={})
    try:
        async with app.router.lifespan_context(app):
            await wait_for_runs(store, 1)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                text = (await client.get("/-/metrics")).text
    finally:
        store.close()

    seen = collections.Counter(method for method, _path in sandbox.log.requests)
    requests = samples(text, "campaign_bridge_provider_requests_total")
    by_method: collections.Counter[str] = collections.Counter()
    for labels, value in requests.items():
        by_method[dict(labels)["method"]] += int(value)
    assert by_method == seen, sandbox.log.requests  # every attempt, counted once
    assert requests[(("method", "GET"), ("provider", "mailchimp"), ("status", "503"))] == 1
    retries = {dict(k)["reason"]: v for k, v in samples(text, PREFIX + "retries_total").items()}
    assert retries["server_error_503"] == 1
    # every retry follows one failed attempt (on a loaded machine a timeout may add a pair)
    failed = sum(v for k, v in requests.items() if dict(k)["status"] in ("503", "error"))
    assert sum(retries.values()) == failed
    latency = samples(text, "campaign_bridge_provider_request_seconds_count")
    assert sum(latency.values()) == sum(seen.values())
    assert samples(text, "campaign_bridge_runs_total") == {
        (("direction", "push"), ("status", "succeeded"), ("sync", "crm")): 1.0
    }
    assert samples(text, "campaign_bridge_contacts_pushed_total") == {
        (("outcome", "created"), ("sync", "crm")): 2.0
    }
    [(labels, rejected)] = samples(text, "campaign_bridge_contacts_rejected_total").items()
    assert rejected == 1.0
    reason = dict(labels)["reason"]
    assert samples(text, "campaign_bridge_rejected_records") == {
        (("reason", reason), ("sync", "crm")): 1.0
    }
    [run] = [r for r in StateStore(state_url).recent_runs("crm") if r.status == "succeeded"]
    assert run.finished_at is not None
    assert samples(text, "campaign_bridge_last_success_timestamp_seconds") == {
        (("direction", "push"), ("sync", "crm")): pytest.approx(run.finished_at.timestamp())
    }
    assert samples(text, "campaign_bridge_webhook_queue_age_seconds") == {(): 0.0}
    assert samples(text, "campaign_bridge_webhook_events_pending") == {(): 0.0}
