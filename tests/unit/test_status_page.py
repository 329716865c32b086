"""Status page: problems derived from runs and schedules, and the rendered HTML/SVG (no I/O)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from campaign_bridge.status_page import (
    RunView,
    StatusData,
    SyncView,
    find_problems,
    pulled_count,
    pushed_count,
    render,
    render_login,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def run(direction: str, minutes_ago: int, status: str = "succeeded", **counts: object) -> RunView:
    started = NOW - timedelta(minutes=minutes_ago)
    return RunView(
        id=f"{direction}-{minutes_ago}",
        sync="crm",
        direction=direction,
        started_at=started,
        finished_at=started + timedelta(seconds=42),
        status=status,
        counts=counts,
        error="provider said 503" if status == "failed" else None,
        rejected_by_reason=counts.get("rejected", {}),  # type: ignore[arg-type]
    )


def test_counts_pushed_and_pulled() -> None:
    assert pushed_count({"created": 3, "updated": 4, "unchanged": 100, "archived": 1}) == 8
    assert pushed_count({"pushed": 7, "created": 1}) == 7
    assert pulled_count({"activity_added": 10, "status_changes": 2, "reports": 5}) == 12
    assert pulled_count({"events": 9}) == 9


def test_no_problem_when_recent_success() -> None:
    sync = SyncView("crm", {"push": "every 15m"}, [run("push", 10)])
    assert find_problems([sync], NOW) == []


def test_failed_last_run_is_a_problem() -> None:
    sync = SyncView("crm", {}, [run("push", 5, "failed"), run("push", 30)])
    [problem] = find_problems([sync], NOW)
    assert problem.sync == "crm"
    assert "last push failed" in problem.message
    assert "provider said 503" in problem.message


def test_no_success_within_twice_the_interval_is_a_problem() -> None:
    stale = SyncView("crm", {"pull": "every 15m"}, [run("pull", 45)])
    messages = [p.message for p in find_problems([stale], NOW)]
    assert messages == ["no successful pull since 2026-11-26 11:15:00 UTC (scheduled every 15m)"]
    fresh = SyncView("crm", {"pull": "every 15m"}, [run("pull", 25)])
    assert find_problems([fresh], NOW) == []
    never = SyncView("crm", {"push": "0 * * * *"}, [])
    assert [p.message for p in find_problems([never], NOW)] == [
        "no successful push yet (scheduled 0 * * * *)"
    ]


def test_webhook_failures_are_a_problem() -> None:
    [problem] = find_problems([], NOW, webhooks_failing=3)
    assert problem.sync is None
    assert "3 webhook event(s)" in problem.message


def test_render_shows_runs_chart_and_reasons() -> None:
    runs = [
        run("pull", 5, activity_added=30, status_changes=2),
        run("push", 20, "failed", created=0),
        run("push", 40, created=12, updated=3, rejected={"invalid_email": 2, "fake_address": 1}),
    ]
    hours = [(NOW - timedelta(hours=23 - i), i % 3) for i in range(24)]
    data = StatusData(
        NOW,
        [SyncView("crm", {"push": "every 15m"}, runs)],
        hours,
        webhooks_pending=4,
        problems=find_problems([SyncView("crm", {}, runs)], NOW),
    )
    page = render(data)
    assert page.startswith("<!DOCTYPE html>")
    assert 'data-series="pushed" data-value="15"' in page
    assert 'data-series="pulled" data-value="32"' in page
    assert 'data-reason="invalid_email" data-count="2"' in page
    bars = re.findall(
        r'class="bar (?:pushed|pulled)[^"]*" data-series="(\w+)" data-value="(\d+)"', page
    )
    assert bars == [("pushed", "15"), ("pushed", "0"), ("pulled", "32")]  # oldest first
    hour_values = [
        int(v) for v in re.findall(r'class="bar hour" data-hour="[^"]+" data-value="(\d+)"', page)
    ]
    assert hour_values == [i % 3 for i in range(24)]
    assert f'data-total="{sum(hour_values)}"' in page
    assert 'data-pending="4"' in page
    assert "last push failed" in page


def test_render_escapes_names_and_errors() -> None:
    evil = RunView(
        id="r1",
        sync="<b>x</b>",
        direction="push",
        started_at=NOW,
        finished_at=None,
        status="failed",
        error="<script>alert(1)</script>",
    )
    page = render(StatusData(NOW, [SyncView("<b>x</b>", {}, [evil])], []))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "<b>x</b>" not in page


def test_login_page() -> None:
    assert 'action="/-/login"' in render_login()
    assert "not valid" in render_login(failed=True)


def test_dry_runs_are_marked_and_never_count_as_success() -> None:
    dry = run("push", 5, created=4, dry_run=True)
    real = run("push", 100, created=1)
    sync = SyncView("crm", {"push": "every 15m"}, [dry, real])
    [problem] = find_problems([sync], NOW)  # the dry run 5 min ago is not a success
    assert "no successful push since" in problem.message
    page = render(StatusData(NOW, [sync], []))
    assert page.count('data-dry-run="true"') == 2  # its table row and its chart bar
    assert "dry run</span>" in page


def test_contact_and_rejected_views_escape_what_they_show() -> None:
    from campaign_bridge.history import ContactHistory, HistoryEvent
    from campaign_bridge.rejections import OpenRejection
    from campaign_bridge.status_page import render_contact, render_rejected

    history = ContactHistory(query="<i>q</i>", email_hash=None)
    history.answers = ["<script>x</script>"]
    history.events = [HistoryEvent(NOW, "ledger", "crm", "<img src=x>")]
    page = render_contact("<i>q</i>", history)
    assert "<script>x</script>" not in page
    assert "&lt;script&gt;" in page
    assert "<img src=x>" not in page
    assert 'value="&lt;i&gt;q&lt;/i&gt;"' in page
    rejection = OpenRejection("crm", '"><b>k', "fake", "<u>m</u>", 2, NOW, NOW, None)
    page = render_rejected([rejection], {("crm", "fake"): 1}, sync="crm", reason=None)
    assert "<u>m</u>" not in page
    assert "&lt;u&gt;m&lt;/u&gt;" in page
    assert '"><b>k' not in page
    assert 'href="/rejected?sync=crm&amp;reason=fake"' in page


def test_log_out_only_when_there_is_a_login() -> None:
    data = StatusData(NOW, [], [])
    assert 'action="/-/logout"' not in render(data)
    assert 'action="/-/logout"' in render(data, can_log_out=True)
