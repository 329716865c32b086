"""Alert conditions from a health snapshot, and once-per-incident messages (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from campaign_bridge.alerts import Incident, Tracker, incidents
from campaign_bridge.config import AlertsConfig
from campaign_bridge.observe import Health, SyncHealth
from campaign_bridge.runs import RunRow

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def run(status: str, *, hours_ago: float, dry: bool = False) -> RunRow:
    started = NOW - timedelta(hours=hours_ago)
    return RunRow(
        "r1", "crm", "push", status, started, started + timedelta(minutes=1),
        {"dry_run": dry}, "provider said no" if status == "failed" else None,
    )  # fmt: skip


def sync(last: RunRow | None, success_hours_ago: float | None, schedule: str | None) -> SyncHealth:
    return SyncHealth(
        "crm",
        "push",
        schedule,
        timedelta(hours=1) if schedule else None,
        last,
        NOW - timedelta(hours=success_hours_ago) if success_hours_ago is not None else None,
    )


def test_conditions() -> None:
    config = AlertsConfig(rejections_threshold=10, webhook_queue_minutes=15)
    healthy = Health(NOW, [sync(run("succeeded", hours_ago=0.5), 0.5, "every 1h")])
    assert incidents(healthy, config) == {}

    failed = Health(NOW, [sync(run("failed", hours_ago=0.2), 0.5, "every 1h")])
    [(key, incident)] = incidents(failed, config).items()
    assert key == "run_failed:crm:push"
    assert "provider said no" in incident.detail

    # scheduled hourly: allowed two hours; 2.5 h without success is stale
    stale = Health(NOW, [sync(run("succeeded", hours_ago=2.5), 2.5, "every 1h")])
    assert list(incidents(stale, config)) == ["stale:crm:push"]
    assert "no successful push of sync crm since 2026-12-07T09:30:00Z" in (
        incidents(stale, config)["stale:crm:push"].summary
    )
    assert incidents(stale, AlertsConfig(stale_after_minutes=180)) == {}
    unscheduled = Health(NOW, [sync(None, None, None)])
    assert incidents(unscheduled, config) == {}
    never = Health(NOW, [sync(None, None, "every 1h")])
    assert "since ever" in incidents(never, config)["stale:crm:push"].summary

    rejected = Health(NOW, [], rejected={("crm", "invalid_email"): 7, ("crm", "fake"): 3})
    assert "10 records of sync crm" in incidents(rejected, config)["rejections:crm"].summary
    assert incidents(rejected, AlertsConfig(rejections_threshold=11)) == {}

    waiting = Health(NOW, [], webhook_pending=4, webhook_oldest=NOW - timedelta(minutes=16))
    assert list(incidents(waiting, config)) == ["webhook_queue"]
    fresh = Health(NOW, [], webhook_pending=4, webhook_oldest=NOW - timedelta(minutes=14))
    assert incidents(fresh, config) == {}
    parked = Health(NOW, [], webhook_parked=2)
    assert "2 webhook event(s) parked" in incidents(parked, config)["webhook_parked"].summary


def test_once_per_incident_then_recovery() -> None:
    tracker = Tracker()
    a = Incident("a", "A")
    b = Incident("b", "B")
    assert [(m.kind, m.incident.key) for m in tracker.step({"a": a})] == [("firing", "a")]
    assert tracker.step({"a": a}) == []  # still open: nothing new
    assert [(m.kind, m.incident.key) for m in tracker.step({"a": a, "b": b})] == [("firing", "b")]
    assert [(m.kind, m.incident.key) for m in tracker.step({"b": b})] == [("resolved", "a")]
    assert [(m.kind, m.incident.key) for m in tracker.step({})] == [("resolved", "b")]
    assert tracker.step({}) == []
    quiet = Tracker(recovery=False)
    quiet.step({"a": a})
    assert quiet.step({}) == []


@given(st.lists(st.sets(st.sampled_from("abcd")), max_size=30))
def test_each_opening_fires_once_and_each_closing_resolves_once(states: list[set[str]]) -> None:
    tracker = Tracker()
    previous: set[str] = set()
    fired: list[str] = []
    resolved: list[str] = []
    for keys in [*states, set()]:
        messages = tracker.step({k: Incident(k, k) for k in keys})
        fired += [m.incident.key for m in messages if m.kind == "firing"]
        resolved += [m.incident.key for m in messages if m.kind == "resolved"]
        assert {m.incident.key for m in messages if m.kind == "firing"} == keys - previous
        assert {m.incident.key for m in messages if m.kind == "resolved"} == previous - keys
        previous = keys
    assert sorted(fired) == sorted(resolved)


def test_alert_urls_stay_out_of_debug_logs() -> None:
    import io
    import logging

    from campaign_bridge.alerts import Message, send_apprise
    from campaign_bridge.logs import configure_logging

    stream = io.StringIO()
    configure_logging("DEBUG", "text", secrets=[], stream=stream)
    url = "json://user:pw@127.0.0.1:9/hooks/T0KEN-IN-THE-PATH"  # nothing listens on port 9
    assert send_apprise([url], Message("firing", Incident("k", "summary"))) is False
    logging.getLogger("campaign_bridge.test").debug("debug is on")
    text = stream.getvalue()
    assert "debug is on" in text
    assert "T0KEN-IN-THE-PATH" not in text
