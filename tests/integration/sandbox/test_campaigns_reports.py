"""Campaigns, seeded sends and reports, driven through both SDKs over a real socket.

The report counters must equal what the per-email collections list and what happened to the
members (hard bounce → cleaned, unsubscribe → unsubscribed by the user).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest
from mailchimp_marketing.api_client import ApiClientError

from campaign_bridge.sandbox.mailchimp.model import subscriber_hash
from tests.integration.sandbox.schema import assert_matches
from tests.integration.sandbox.sdk_clients import mailchimp3, official

HTML = (
    '<p>Hello *|FNAME|*</p><a href="https://shop.mail.example.org/sale">sale</a>'
    '<a href="https://blog.mail.example.org/post?id=1">post</a><a href="*|UNSUB|*">unsubscribe</a>'
)
N = 400


def seed_members(client: Any, list_id: str, n: int = N) -> None:
    for start in range(0, n, 200):
        members = [
            {
                "email_address": f"reader{i}@mail.example.org",
                "status": "subscribed",
                "merge_fields": {"FNAME": f"R{i}"},
            }
            for i in range(start, min(n, start + 200))
        ]
        result = client.lists.batch_list_members(list_id, {"members": members})
        assert result["error_count"] == 0


def create_campaign(client: Any, list_id: str, title: str = "Spring") -> str:
    campaign = client.campaigns.create(
        {
            "type": "regular",
            "recipients": {"list_id": list_id},
            "settings": {
                "subject_line": f"{title} news",
                "title": title,
                "from_name": "Shop",
                "reply_to": "news@mail.example.org",
            },
        }
    )
    assert_matches(campaign, "/campaigns", "POST")
    assert campaign["status"] == "save"
    client.campaigns.set_content(campaign["id"], {"html": HTML})
    return str(campaign["id"])


def control(handle: Any, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, handle.control_url + path, json=body, timeout=30)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


@pytest.fixture
def sent(mailchimp_sandbox: Any) -> tuple[Any, Any, str]:
    client = official(mailchimp_sandbox)
    seed_members(client, mailchimp_sandbox.list_id)
    cid = create_campaign(client, mailchimp_sandbox.list_id)
    response = client.campaigns.send(cid)
    assert response.status_code == 204  # the SDK hands back the raw response on 204
    return mailchimp_sandbox, client, cid


def test_report_counters_agree_with_activity_and_member_state(sent: tuple[Any, Any, str]) -> None:
    handle, client, cid = sent
    report = client.reports.get_campaign_report(cid)
    assert_matches(report, f"/reports/{cid}")
    campaign = client.campaigns.get(cid)
    assert_matches(campaign, f"/campaigns/{cid}")
    assert campaign["status"] == "sent"
    assert campaign["emails_sent"] == report["emails_sent"] == N

    mc3 = mailchimp3(handle)
    emails = mc3.reports.email_activity.all(cid, get_all=True)["emails"]
    assert len(emails) == N
    actions = Counter(a["action"] for e in emails for a in e["activity"])
    opened = {e["email_id"] for e in emails if any(a["action"] == "open" for a in e["activity"])}
    clickers = {e["email_id"] for e in emails if any(a["action"] == "click" for a in e["activity"])}
    bounce_types = Counter(
        a["type"] for e in emails for a in e["activity"] if a["action"] == "bounce"
    )
    assert report["opens"]["opens_total"] == actions["open"] > 0
    assert report["opens"]["unique_opens"] == len(opened)
    assert report["clicks"]["clicks_total"] == actions["click"] > 0
    assert report["clicks"]["unique_subscriber_clicks"] == len(clickers)
    assert report["bounces"]["hard_bounces"] == bounce_types["hard"] > 0
    assert report["bounces"]["soft_bounces"] == bounce_types["soft"] > 0
    delivered = N - bounce_types["hard"] - bounce_types["soft"]
    assert report["opens"]["open_rate"] == pytest.approx(len(opened) / delivered, abs=1e-4)
    assert report["clicks"]["click_rate"] == pytest.approx(len(clickers) / delivered, abs=1e-4)
    clicked_urls = {a["url"] for e in emails for a in e["activity"] if a["action"] == "click"}
    assert clicked_urls <= {
        "https://shop.mail.example.org/sale",
        "https://blog.mail.example.org/post?id=1",
    }

    members = mc3.lists.members.all(handle.list_id, get_all=True)["members"]
    by_status = Counter(m["status"] for m in members)
    assert by_status["cleaned"] == report["bounces"]["hard_bounces"]
    assert by_status["unsubscribed"] == report["unsubscribed"] > 0
    hard = {e["email_id"] for e in emails for a in e["activity"] if a.get("type") == "hard"}
    assert {m["id"] for m in members if m["status"] == "cleaned"} == hard

    unsubs = client.reports.get_unsubscribed_list_for_campaign(cid, count=1000)
    assert_matches(unsubs, f"/reports/{cid}/unsubscribed")
    assert unsubs["total_items"] == report["unsubscribed"]
    status_of = {m["id"]: m for m in members}
    for entry in unsubs["unsubscribes"]:
        member = status_of[entry["email_id"]]
        assert member["status"] == "unsubscribed"
        assert member["unsubscribe_reason"] == entry["reason"]
        assert entry["campaign_id"] == cid
        assert entry["merge_fields"]["FNAME"] == member["merge_fields"]["FNAME"]

    sent_to = client.reports.get_campaign_recipients(cid, count=1000)
    assert_matches(sent_to, f"/reports/{cid}/sent-to")
    statuses = Counter(s["status"] for s in sent_to["sent_to"])
    assert statuses["hard"] == report["bounces"]["hard_bounces"]
    assert statuses["soft"] == report["bounces"]["soft_bounces"]
    assert sum(s["open_count"] for s in sent_to["sent_to"]) == report["opens"]["opens_total"]

    assert_matches(client.reports.get_campaign_click_details(cid), f"/reports/{cid}/click-details")
    clicks = httpx.get(
        f"{handle.base_url}/reports/{cid}/click-details",
        params={"sort_field": "total_clicks", "sort_dir": "DESC"},
        auth=("anystring", handle.api_key),
    ).json()
    totals = [u["total_clicks"] for u in clicks["urls_clicked"]]
    assert totals == sorted(totals, reverse=True)
    assert sum(totals) == report["clicks"]["clicks_total"]
    assert (
        sum(u["unique_clicks"] for u in clicks["urls_clicked"]) == report["clicks"]["unique_clicks"]
    )
    top = clicks["urls_clicked"][0]
    link_members = client.reports.get_subscribers_info(cid, top["id"], count=1000)
    assert_matches(link_members, f"/reports/{cid}/click-details/{top['id']}/members")
    assert link_members["total_items"] == top["unique_clicks"]
    assert sum(m["clicks"] for m in link_members["members"]) == top["total_clicks"]


def test_activity_feed_shows_the_unsubscribe_and_the_campaign_events(
    sent: tuple[Any, Any, str],
) -> None:
    handle, client, cid = sent
    unsubs = client.reports.get_unsubscribed_list_for_campaign(cid)
    email_id = unsubs["unsubscribes"][0]["email_id"]
    feed = client.lists.get_list_member_activity_feed(handle.list_id, email_id)
    assert_matches(feed, f"/lists/{handle.list_id}/members/{email_id}/activity-feed")
    kinds = [item["activity_type"] for item in feed["activity"]]
    assert "sent" in kinds
    assert "unsub" in kinds
    stamps = [item["created_at_timestamp"] for item in feed["activity"]]
    assert stamps == sorted(stamps, reverse=True)
    unsub = next(item for item in feed["activity"] if item["activity_type"] == "unsub")
    assert unsub["campaign_id"] == cid
    assert unsub["unsubscribe_reason"] == unsubs["unsubscribes"][0]["reason"]
    legacy = mailchimp3(handle).lists.members.activity.all(handle.list_id, email_id)
    assert_matches(legacy, f"/lists/{handle.list_id}/members/{email_id}/activity")
    assert [a["action"] for a in legacy["activity"]] == kinds[:50]
    assert {a["campaign_id"] for a in legacy["activity"]} == {cid}


def test_email_activity_since_and_one_member(sent: tuple[Any, Any, str]) -> None:
    _, client, cid = sent
    everything = client.reports.get_email_activity_for_campaign(cid, count=1000)
    assert_matches(everything, f"/reports/{cid}/email-activity")
    stamps = sorted(a["timestamp"] for e in everything["emails"] for a in e["activity"])
    middle = stamps[len(stamps) // 2]
    later = client.reports.get_email_activity_for_campaign(cid, count=1000, since=middle)
    assert later["total_items"] == len(later["emails"]) > 0
    assert all(a["timestamp"] > middle for e in later["emails"] for a in e["activity"])
    expected = {
        e["email_id"]
        for e in everything["emails"]
        if any(a["timestamp"] > middle for a in e["activity"])
    }
    assert {e["email_id"] for e in later["emails"]} == expected
    one = everything["emails"][3]
    alone = client.reports.get_email_activity_for_subscriber(cid, one["email_id"])
    assert alone["activity"] == one["activity"]


def test_sending_twice_or_to_an_empty_audience_is_refused(sent: tuple[Any, Any, str]) -> None:
    _, client, cid = sent
    with pytest.raises(ApiClientError) as again:
        client.campaigns.send(cid)
    problem = json.loads(again.value.text)
    assert (again.value.status_code, problem["title"]) == (400, "Bad Request")
    assert problem["detail"].startswith("Your Campaign is not ready to send.")

    empty = client.lists.create_list(
        {
            "name": "Empty",
            "permission_reminder": "x",
            "email_type_option": False,
            "contact": {
                "company": "c",
                "address1": "a",
                "city": "c",
                "state": "s",
                "zip": "1",
                "country": "US",
            },
            "campaign_defaults": {
                "from_name": "f",
                "from_email": "f@mail.example.org",
                "subject": "s",
                "language": "en",
            },
        }
    )
    other = create_campaign(client, empty["id"], "Empty")
    with pytest.raises(ApiClientError) as nobody:
        client.campaigns.send(other)
    assert nobody.value.status_code == 400
    assert "not ready to send" in json.loads(nobody.value.text)["detail"]
    with pytest.raises(ApiClientError) as unsent_report:
        client.reports.get_campaign_report(other)
    assert unsent_report.value.status_code == 404


def test_campaign_list_filters_and_reports_list(sent: tuple[Any, Any, str]) -> None:
    handle, client, cid = sent
    draft = create_campaign(client, handle.list_id, "Draft")
    listing = client.campaigns.list(count=100)
    assert_matches(listing, "/campaigns")
    assert {c["id"] for c in listing["campaigns"]} == {cid, draft}
    assert [c["id"] for c in client.campaigns.list(status="sent")["campaigns"]] == [cid]
    assert [c["id"] for c in client.campaigns.list(status="save")["campaigns"]] == [draft]
    newest_first = client.campaigns.list(sort_field="create_time", sort_dir="DESC")["campaigns"]
    assert [c["id"] for c in newest_first] == [draft, cid]
    assert client.campaigns.list(list_id="0000000000")["total_items"] == 0
    sent_at = client.campaigns.get(cid)["send_time"]
    assert client.campaigns.list(since_send_time=sent_at)["total_items"] == 1
    member = subscriber_hash("reader0@mail.example.org")
    assert [c["id"] for c in client.campaigns.list(member_id=member)["campaigns"]] == [cid]
    reports = mailchimp3(handle).reports.all(get_all=True)
    assert_matches(reports, "/reports")
    assert [r["id"] for r in reports["reports"]] == [cid]

    patched = client.campaigns.update(
        draft,
        {
            "settings": {
                "subject_line": "Changed",
                "from_name": "Shop",
                "reply_to": "news@mail.example.org",
            }
        },
    )
    assert patched["settings"]["subject_line"] == "Changed"
    with pytest.raises(ApiClientError) as locked:
        client.campaigns.update(
            cid,
            {
                "settings": {
                    "subject_line": "Late",
                    "from_name": "Shop",
                    "reply_to": "news@mail.example.org",
                }
            },
        )
    assert locked.value.status_code == 400


def test_sending_lasts_until_the_clock_passes_send_duration(mailchimp_sandbox: Any) -> None:
    handle = mailchimp_sandbox
    client = official(handle)
    seed_members(client, handle.list_id, 20)
    control(handle, "PUT", "/campaigns/settings", {"send_duration": 3600})
    cid = create_campaign(client, handle.list_id)
    client.campaigns.send(cid)
    assert client.campaigns.get(cid)["status"] == "sending"
    control(handle, "POST", "/clock", {"advance": 3601})
    assert client.campaigns.get(cid)["status"] == "sent"


def test_missing_campaign_and_bad_type(mailchimp_sandbox: Any) -> None:
    client = official(mailchimp_sandbox)
    with pytest.raises(ApiClientError) as missing:
        client.campaigns.get("0123456789")
    assert json.loads(missing.value.text)["title"] == "Resource Not Found"
    with pytest.raises(ApiClientError) as bad:
        client.campaigns.create(
            {"type": "carrier-pigeon", "recipients": {"list_id": mailchimp_sandbox.list_id}}
        )
    assert json.loads(bad.value.text)["title"] == "Invalid Resource"


def test_per_campaign_rates_and_seed_through_the_control_api(mailchimp_sandbox: Any) -> None:
    handle = mailchimp_sandbox
    client = official(handle)
    seed_members(client, handle.list_id, 30)
    cid = create_campaign(client, handle.list_id)
    everyone_leaves = {"hard_bounce": 0, "soft_bounce": 0, "open": 1, "click": 0, "unsubscribe": 1}
    configured = control(
        handle, "PUT", f"/campaigns/{cid}/activity", {"seed": 5, "rates": everyone_leaves}
    )
    assert configured["rates"]["unsubscribe"] == 1
    client.campaigns.send(cid)
    report = client.reports.get_campaign_report(cid)
    assert report["unsubscribed"] == report["opens"]["unique_opens"] == 30
    assert report["clicks"]["clicks_total"] == 0
    statuses = {
        m["status"]
        for m in mailchimp3(handle).lists.members.all(handle.list_id, get_all=True)["members"]
    }
    assert statuses == {"unsubscribed"}
    # self-unsubscribed by a campaign: the API may not resubscribe them
    with pytest.raises(ApiClientError) as compliance:
        client.lists.update_list_member(
            handle.list_id, subscriber_hash("reader0@mail.example.org"), {"status": "subscribed"}
        )
    assert json.loads(compliance.value.text)["title"] == "Member In Compliance State"
    draft = create_campaign(client, handle.list_id, "Draft")
    bad = httpx.put(
        handle.control_url + f"/campaigns/{draft}/activity", json={"rates": {"open": 2}}
    )
    assert bad.status_code == 400
    assert "open" in bad.json()["detail"]
