"""The status page in a real browser (headless Chromium): login, tables and charts show the
figures seeded in a real database."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from campaign_bridge.config import Settings
from campaign_bridge.server import create_app
from campaign_bridge.state import (
    consent_ledger,
    contact_state,
    rejected_records,
    sync_runs,
    webhook_events,
)
from campaign_bridge.status_changes import email_hash
from tests.integration.serve.conftest import close_store, open_store, serving

pytestmark = pytest.mark.browser

ADMIN_TOKEN = "status-page-admin-token-0123456789"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _browser_or_skip() -> Any:
    try:
        from selenium import webdriver
    except ImportError as exc:  # pragma: no cover - depends on the environment
        reason = f"selenium is not installed ({exc})"
    else:
        if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
            return webdriver
        reason = "Debian packages chromium and chromium-driver are not installed"
    pytest.fail(
        reason + "; install them (`.ci/run` does: apt-get install chromium chromium-driver). "
        "To leave this test out on purpose: pytest -m 'not browser'",
        pytrace=False,
    )


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = _browser_or_skip()
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="cb-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,2000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# Set again when a page is seeded (below): the ages the page shows are counted from it, and a
# module imported minutes before its test runs would shift them.
NOW = datetime.now(UTC).replace(microsecond=0)

# (direction, minutes ago, status, counts, error)
RUNS = [
    ("push", 200, "succeeded", {"created": 40, "updated": 2, "unchanged": 500, "rejected": {}}),
    ("pull", 190, "succeeded", {"activity_added": 120, "status_changes": 3}),
    (
        "push",
        100,
        "succeeded",
        {"created": 7, "updated": 5, "rejected": {"invalid_email": 3, "fake_address": 1}},
    ),
    ("pull", 90, "succeeded", {"activity_added": 64, "status_changes": 1}),
    ("push", 10, "failed", {"created": 0}),
]
WEBHOOKS_PER_HOUR = {0: 5, 2: 12, 7: 1}  # hours ago -> events


def seed(store: Any) -> None:
    with store.engine.begin() as conn:
        for i, (direction, ago, status, counts) in enumerate(RUNS):
            started = NOW - timedelta(minutes=ago)
            conn.execute(
                sync_runs.insert().values(
                    id=f"run-{i}",
                    sync_name="crm",
                    direction=direction,
                    started_at=started,
                    finished_at=started + timedelta(seconds=30 + i),
                    status=status,
                    counts=counts,
                    error_summary="provider answered 503 five times"
                    if status == "failed"
                    else None,
                )
            )
        hour = NOW.replace(minute=0, second=0)
        rows = [
            {
                "provider": "mailchimp",
                "dedupe_key": f"{ago}-{n}",
                "event_type": "subscribe",
                "list_id": "a6b5da1054",
                "fired_at": None,
                "received_at": hour - timedelta(hours=ago) + timedelta(minutes=n % 50),
                "payload": "{}",
                "applied_at": NOW,
            }
            for ago, count in WEBHOOKS_PER_HOUR.items()
            for n in range(count)
        ]
        conn.execute(webhook_events.insert(), rows)
        seed_operations(conn)


ANN = "ann@example.com"
ANN_HASH = email_hash(ANN)


def seed_operations(conn: Any) -> None:
    """A healthy second sync with a dry run, open rejections, one contact's story, and a
    webhook event that has waited 30 hours."""
    for i, (ago, counts) in enumerate(((50, {"created": 3}), (5, {"created": 9, "dry_run": True}))):
        started = NOW - timedelta(minutes=ago)
        conn.execute(
            sync_runs.insert().values(
                id=f"shop-{i}",
                sync_name="shop",
                direction="push",
                started_at=started,
                finished_at=started + timedelta(seconds=3),
                status="succeeded",
                counts=counts,
            )
        )
    conn.execute(
        rejected_records.insert(),
        [
            {
                "sync_name": "crm",
                "source_key": key,
                "email_hash": None,
                "content_hash": "c",
                "reason_code": reason,
                "message": f"{reason} <b>not bold</b>",
                "attempts": 1,
                "first_seen": NOW - timedelta(days=2),
                "last_seen": NOW,
            }
            for key, reason in (("43", "invalid_email"), ("44", "invalid_email"), ("45", "fake"))
        ],
    )
    conn.execute(
        contact_state.insert().values(
            sync_name="crm",
            source_key="42",
            email_hash=ANN_HASH,
            provider_member_id=ANN_HASH,
            content_hash="c",
            pushed_at=NOW - timedelta(days=3),
            provider_status="unsubscribed",
            managed=True,
            last_run_id="run-0",
        )
    )
    conn.execute(
        consent_ledger.insert().values(
            sync_name="crm",
            provider="mailchimp",
            email_hash=ANN_HASH,
            source_key="42",
            old_status="subscribed",
            new_status="unsubscribed",
            origin="webhook",
            reason="manual",
            occurred_at=NOW - timedelta(days=1),
        )
    )
    conn.execute(
        webhook_events.insert().values(
            provider="mailchimp",
            dedupe_key="waiting",
            event_type="unsubscribe",
            list_id="a6b5da1054",
            received_at=NOW - timedelta(hours=30),
            payload="{}",
            email_hash=ANN_HASH,
        )
    )


@pytest.fixture
def page_url(sqlite_url: str) -> Iterator[str]:
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)
    store = open_store(sqlite_url)
    seed(store)
    settings = Settings.model_validate(
        {
            "state_url": sqlite_url,
            "server": {"admin_token": ADMIN_TOKEN},
            "syncs": {
                "shop": {
                    "source": {"url": "sqlite://", "table": "contacts"},
                    "destination": {"api_key": "0" * 32 + "-us6", "list_id": "a6b5da1054"},
                    "schedule": {"push": "every 1h"},
                },
                "crm": {
                    "source": {"url": "sqlite://", "table": "contacts"},
                    "destination": {"api_key": "0" * 32 + "-us6", "list_id": "a6b5da1054"},
                    "schedule": {"push": "every 15m", "pull": "every 1h"},
                },
            },
        }
    )
    try:
        app = create_app(settings, store=store, checks={}, apply_events=False)
        with serving(app) as root:
            yield root
    finally:
        close_store(store)


def test_status_page_renders_runs_charts_and_problems(browser: Any, page_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    browser.get(page_url + "/")
    assert "sign in" in browser.title
    browser.find_element(By.ID, "token").send_keys("wrong-token")
    browser.find_element(By.CSS_SELECTOR, "form button").click()
    WebDriverWait(browser, 15).until(lambda b: "not valid" in b.page_source)
    browser.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form button").click()
    WebDriverWait(browser, 15).until(lambda b: b.title == "campaign-bridge status")

    shot = Path(tempfile.gettempdir()) / "campaign-bridge-status-page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    # the runs table, newest first
    rows = browser.find_elements(By.CSS_SELECTOR, "#sync-crm table.runs tbody tr")
    assert [r.get_attribute("data-direction") for r in rows] == [
        "push",
        "pull",
        "push",
        "pull",
        "push",
    ]
    assert rows[0].get_attribute("data-status") == "failed"
    cells = rows[2].find_elements(By.TAG_NAME, "td")
    assert cells[1].text == "push"
    assert cells[3].text == "32.0 s"
    assert "created 7" in cells[4].text
    assert cells[5].text == "invalid_email 3 · fake_address 1"
    assert "provider answered 503" in rows[0].text

    # the chart: one bar per run, oldest first, heights proportional to the figures
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.runs-chart[data-sync=crm] rect.bar")
    values = [(b.get_attribute("data-series"), int(b.get_attribute("data-value"))) for b in bars]
    assert values == [
        ("pushed", 42),
        ("pulled", 123),
        ("pushed", 12),
        ("pulled", 65),
        ("pushed", 0),
    ]
    heights = [b.rect["height"] for b in bars]
    assert heights[1] > heights[0] > heights[3] / 2 > 0
    assert abs(heights[0] / heights[1] - 42 / 123) < 0.03
    assert bars[1].value_of_css_property("fill") != bars[0].value_of_css_property("fill")

    # webhook events per hour
    hours = browser.find_elements(By.CSS_SELECTOR, "svg.webhook-chart rect.hour")
    counts = [int(h.get_attribute("data-value")) for h in hours]
    assert len(counts) == 24
    assert counts[-1] == 5
    assert counts[-3] == 12
    assert counts[-8] == 1
    assert sum(counts) == 18  # the event waiting 30 h is older than the chart
    assert browser.find_element(By.ID, "webhooks").get_attribute("data-total") == "18"

    # current problems: the failed push
    problems = [p.text for p in browser.find_elements(By.CSS_SELECTOR, "#problems li.problem")]
    assert any("last push failed" in p and "503" in p for p in problems), problems
    assert any("no successful push since" in p for p in problems)  # every 15m, last 100 min ago
    assert not any("pull" in p for p in problems)  # every 1h, last 90 min ago: within 2 h


def login(browser: Any, page_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    browser.get(page_url + "/")
    browser.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form button").click()
    WebDriverWait(browser, 15).until(lambda b: b.title == "campaign-bridge status")


def test_operations_views(browser: Any, page_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    login(browser, page_url)
    # the failing sync comes first, though configured second; the healthy one is not marked
    sections = browser.find_elements(By.CSS_SELECTOR, "section.sync")
    assert [s.get_attribute("data-sync") for s in sections] == ["crm", "shop"]
    assert sections[0].get_attribute("data-failing") == "true"
    assert sections[1].get_attribute("data-failing") == "false"
    # the dry run is marked in the table and in the chart
    rows = browser.find_elements(By.CSS_SELECTOR, "#sync-shop table.runs tbody tr")
    assert [r.get_attribute("data-dry-run") for r in rows] == ["true", "false"]
    assert "dry run" in rows[0].find_element(By.CSS_SELECTOR, "td.status").text
    assert "dry run" not in rows[1].text
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.runs-chart[data-sync=shop] rect.bar")
    assert [b.get_attribute("data-dry-run") for b in bars] == ["false", "true"]
    # webhook lag as an age
    lag = browser.find_element(By.ID, "webhook-lag")
    assert lag.text == "oldest waiting 30.0 h"
    assert browser.find_element(By.ID, "webhooks").get_attribute("data-pending") == "1"
    # the rejections summary links to the rejected-records view, filtered
    summary = browser.find_element(By.ID, "rejected-summary")
    assert summary.get_attribute("data-total") == "3"
    summary.find_element(By.CSS_SELECTOR, "a[data-reason=invalid_email]").click()
    WebDriverWait(browser, 15).until(lambda b: "rejected records" in b.title)
    shown = browser.find_elements(By.CSS_SELECTOR, "#rejected tr.rejection")
    assert [(r.get_attribute("data-key"), r.get_attribute("data-reason")) for r in shown] == [
        ("43", "invalid_email"),
        ("44", "invalid_email"),
    ]
    assert "invalid_email <b>not bold</b>" in shown[0].text  # escaped, shown as text
    browser.find_element(By.LINK_TEXT, "all").click()
    WebDriverWait(browser, 15).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#rejected tr.rejection")) == 3
    )
    # contact lookup: the same story as `campaign-bridge history`
    browser.get(page_url + "/contact")
    browser.find_element(By.ID, "q").send_keys(ANN)
    browser.find_element(By.CSS_SELECTOR, "#lookup button").click()
    WebDriverWait(browser, 15).until(lambda b: b.find_elements(By.ID, "history"))
    assert ANN not in browser.current_url
    answers = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "li.answer")]
    assert any(
        a.startswith("unsubscribed since") and "by webhook" in a and "manual" in a for a in answers
    ), answers
    kinds = [
        e.get_attribute("data-kind") for e in browser.find_elements(By.CSS_SELECTOR, "tr.event")
    ]
    assert kinds == ["push", "webhook", "ledger"]  # 3 days, 30 h, 24 h ago
    now = browser.find_element(By.CSS_SELECTOR, "tr.now")
    assert now.get_attribute("data-status") == "unsubscribed"
    # a rejected record's key opens its story
    browser.get(page_url + "/rejected?sync=crm&reason=fake")
    browser.find_element(By.CSS_SELECTOR, "tr.rejection button.link").click()
    WebDriverWait(browser, 15).until(lambda b: b.find_elements(By.ID, "history"))
    answers = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "li.answer")]
    assert any("not sent (crm)" in a and "fake" in a for a in answers), answers
    # a key no push recorded: the source cannot be read here, and the page says so
    browser.get(page_url + "/contact")
    browser.find_element(By.ID, "q").send_keys("no-such-key")
    browser.find_element(By.CSS_SELECTOR, "#lookup button").click()
    WebDriverWait(browser, 15).until(lambda b: b.find_elements(By.ID, "history"))
    answers = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "li.answer")]
    assert [a.split(":")[0] for a in answers] == ["shop", "crm"], answers
    assert all("could not read the source to check: " in a for a in answers), answers
    # log out, and the views ask for the token again
    browser.get(page_url + "/")
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    WebDriverWait(browser, 15).until(lambda b: "sign in" in b.title)
    browser.get(page_url + "/rejected")
    assert "sign in" in browser.title
