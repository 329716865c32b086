"""run_pull against the sandbox over a real socket, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from campaign_bridge.providers._http import RetryPolicy
from campaign_bridge.providers.mailchimp import MailchimpProvider
from campaign_bridge.pull import run_pull
from campaign_bridge.status_changes import email_hash

from .conftest import PullEnv, email_of

pytestmark = pytest.mark.anyio


def expected_rows(env: PullEnv, campaign_id: str) -> Counter[str]:
    """What the sandbox's own report says the campaign produced, per action."""
    report = env.api(f"/reports/{campaign_id}")
    return Counter(
        {
            "sent": report["emails_sent"],
            "open": report["opens"]["opens_total"],
            "click": report["clicks"]["clicks_total"],
            "bounce": report["bounces"]["hard_bounces"] + report["bounces"]["soft_bounces"],
            "unsubscribe": report["unsubscribed"],
        }
    )


def landed_rows(env: PullEnv, campaign_id: str) -> Counter[str]:
    return Counter(
        dict(
            env.rows(
                "SELECT action, COUNT(*) FROM cb_email_activity WHERE campaign_id = :c "
                "GROUP BY action",
                c=campaign_id,
            )
        )
    )


def sandbox_statuses(env: PullEnv) -> dict[str, str]:
    data = env.api(
        f"/lists/{env.sandbox.list_id}/members",
        count=1000,
        fields="members.email_address,members.status",
    )
    return {m["email_address"]: m["status"] for m in data["members"]}


def fast_provider(env: PullEnv) -> MailchimpProvider:
    destination = env.settings.syncs["crm"].destination
    retry = RetryPolicy(max_retries=30, base_delay=0.01, max_delay=0.05, retry_after_cap=0.05)
    return MailchimpProvider(destination, retry=retry)


async def test_pull_lands_exactly_what_the_sandbox_reports(pull_env: PullEnv) -> None:
    env = pull_env
    first = env.send_campaign(11, unsubscribe=0.15, hard_bounce=0.05, open=0.7)
    second = env.send_campaign(12, click=0.6)

    summary = await run_pull(env.settings, "crm")

    assert summary.status == "succeeded"
    assert summary.campaigns_new == 2
    assert summary.reports == 2
    for campaign_id in (first, second):
        expected = expected_rows(env, campaign_id)
        assert expected["sent"] > 0
        assert expected["open"] > 0
        assert landed_rows(env, campaign_id) == +expected
    assert summary.activity_added == env.scalar("SELECT COUNT(*) FROM cb_email_activity")
    reports = dict(env.rows("SELECT campaign_id, opens_total FROM cb_campaign_reports"))
    assert reports == {
        first: env.api(f"/reports/{first}")["opens"]["opens_total"],
        second: env.api(f"/reports/{second}")["opens"]["opens_total"],
    }

    # members who unsubscribed or bounced in the campaigns are written back, nobody else
    statuses = sandbox_statuses(env)
    unsubscribed = {e for e, s in statuses.items() if s == "unsubscribed"}
    cleaned = {e for e, s in statuses.items() if s == "cleaned"}
    assert unsubscribed
    assert cleaned
    table = env.rows("SELECT email, consent, mc_status FROM contacts")
    for email, consent, status in table:
        assert status == statuses[email]
        assert bool(consent) is (email not in unsubscribed)
    ledger = env.scalar("SELECT COUNT(*) FROM cb_consent_ledger")
    assert ledger == len(unsubscribed) + len(cleaned) == summary.transitions

    # a second pull adds nothing
    rows_before = env.scalar("SELECT COUNT(*) FROM cb_email_activity")
    again = await run_pull(env.settings, "crm")
    assert (again.campaigns_new, again.campaigns_updated) == (0, 0)
    assert again.activity_added == 0
    assert again.transitions == 0
    assert again.written_back == 0
    assert env.scalar("SELECT COUNT(*) FROM cb_email_activity") == rows_before
    assert env.scalar("SELECT COUNT(*) FROM cb_consent_ledger") == ledger
    runs = env.rows("SELECT status FROM cb_sync_runs WHERE direction = 'pull'")
    assert runs == [("succeeded",), ("succeeded",)]


async def test_unsubscribe_in_the_sandbox_is_written_back(pull_env: PullEnv) -> None:
    env = pull_env
    await run_pull(env.settings, "crm")
    who = email_of(7)
    env.control(
        "POST",
        f"/lists/{env.sandbox.list_id}/members/{email_hash(who)}/unsubscribe",
        {"reason": "too many emails"},
    )
    summary = await run_pull(env.settings, "crm")
    assert summary.transitions == 1
    assert summary.written_back == 1
    assert env.rows("SELECT consent, mc_status FROM contacts WHERE id = 7") in (
        [(False, "unsubscribed")],
        [(0, "unsubscribed")],
    )
    assert env.rows("SELECT COUNT(*) FROM contacts WHERE mc_status IS NOT NULL") == [(40,)]
    state = env.rows("SELECT provider_status FROM cb_contact_state WHERE source_key = '7'")
    assert state == [("unsubscribed",)]
    ledger = env.rows("SELECT old_status, new_status, origin FROM cb_consent_ledger")
    assert ledger == [("subscribed", "unsubscribed", "pull")]


async def test_faults_mid_pull_converge_without_gap_or_duplicate(pull_env: PullEnv) -> None:
    env = pull_env
    campaigns = [env.send_campaign(20 + i, open=0.9, click=0.7) for i in range(3)]
    env.control(
        "POST",
        "/faults",
        {
            "faults": [
                {"kind": "429", "rate": 0.15, "count": None},
                {"kind": "503", "rate": 0.1, "count": None},
                {"kind": "drop", "rate": 0.05, "count": None},
            ]
        },
    )
    provider = fast_provider(env)
    try:
        summary = await run_pull(env.settings, "crm", provider=provider)
    finally:
        await provider.aclose()
    fired = env.control("GET", "/faults")["faults"]
    env.control("DELETE", "/faults")
    assert sum(rule["fired"] for rule in fired) > 0
    assert summary.status == "succeeded"
    for campaign_id in campaigns:
        assert landed_rows(env, campaign_id) == +expected_rows(env, campaign_id)
    again = await run_pull(env.settings, "crm")
    assert again.activity_added == 0


async def test_history_window_bounds_the_first_pull(pull_env: PullEnv) -> None:
    env = pull_env
    env.control("POST", "/clock", {"advance": -10 * 86400})
    env.send_campaign(31)  # sent ten days ago
    env.control("POST", "/clock", {"advance": 10 * 86400})
    recent = env.send_campaign(32)
    settings = env.settings.model_copy(deep=True)
    settings.syncs["crm"].pull.history_days = 5
    summary = await run_pull(settings, "crm")
    landed = {row[0] for row in env.rows("SELECT DISTINCT campaign_id FROM cb_email_activity")}
    assert summary.campaigns_new == 1
    assert landed == {recent}


def _api_write(env: PullEnv, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.request(
        method,
        env.sandbox.base_url + path,
        json=body,
        auth=("anystring", env.sandbox.api_key),
        timeout=30,
    )
    response.raise_for_status()
    return dict(response.json()) if response.content else {}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_unfinished_campaigns_are_rechecked_until_sent(pull_env: PullEnv) -> None:
    env = pull_env
    env.control("POST", "/clock", {"advance": -2 * 3600})
    draft = _api_write(
        env,
        "POST",
        "/campaigns",
        {
            "type": "regular",
            "recipients": {"list_id": env.sandbox.list_id},
            "settings": {
                "subject_line": "Draft one",
                "from_name": "Shop",
                "reply_to": "n@shop.org",
            },
        },
    )["id"]
    env.control("POST", "/clock", {"advance": 2 * 3600})
    env.send_campaign(41)  # moves the campaigns cursor past the draft's creation

    first = await run_pull(env.settings, "crm")
    assert first.campaigns_new == 2
    assert env.rows("SELECT status, subject FROM cb_campaigns WHERE campaign_id = :c", c=draft) == [
        ("draft", "Draft one")
    ]

    # edited, but neither created nor sent since the cursor: only the re-check finds it
    _api_write(env, "PATCH", f"/campaigns/{draft}", {"settings": {"subject_line": "Draft two"}})
    second = await run_pull(env.settings, "crm")
    assert (second.campaigns_new, second.campaigns_updated) == (0, 1)
    assert env.rows("SELECT subject FROM cb_campaigns WHERE campaign_id = :c", c=draft) == [
        ("Draft two",)
    ]

    _api_write(
        env, "PUT", f"/campaigns/{draft}/content", {"html": '<a href="https://s.org/">s</a>'}
    )
    _api_write(env, "POST", f"/campaigns/{draft}/actions/send", {})
    third = await run_pull(env.settings, "crm")
    assert third.campaigns_updated == 1
    assert env.rows("SELECT status FROM cb_campaigns WHERE campaign_id = :c", c=draft) == [
        ("sent",)
    ]
    assert landed_rows(env, draft) == +expected_rows(env, draft)
