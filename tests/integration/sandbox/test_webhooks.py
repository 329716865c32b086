"""List webhooks: validation GET, form-encoded deliveries to a real receiver, filters, retries."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mailchimp3.mailchimpclient import MailChimpError
from mailchimp_marketing.api_client import ApiClientError

from campaign_bridge.sandbox.mailchimp.model import subscriber_hash
from tests.integration.sandbox.receiver import Receiver, running_receiver
from tests.integration.sandbox.schema import assert_matches
from tests.integration.sandbox.sdk_clients import mailchimp3, official

ALL_EVENTS = dict.fromkeys(
    ("subscribe", "unsubscribe", "profile", "cleaned", "upemail", "campaign"), True
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


def control(handle: Any, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, handle.control_url + path, json=body, timeout=60)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def flush(handle: Any) -> dict[str, Any]:
    result: dict[str, Any] = control(handle, "POST", "/webhooks/flush", {"timeout": 20})
    return result


def register(
    handle: Any, receiver: Receiver, path: str = "/hook", **sources: bool
) -> dict[str, Any]:
    hook: dict[str, Any] = official(handle).lists.create_list_webhook(
        handle.list_id,
        {
            "url": receiver.url(path),
            "events": ALL_EVENTS,
            "sources": {"user": True, "admin": True, "api": True} | sources,
        },
    )
    return hook


def test_registration_validates_the_url_with_a_get(
    mailchimp_sandbox: Any, receiver: Receiver
) -> None:
    handle = mailchimp_sandbox
    hook = register(handle, receiver, "/hook?key=s3cret")
    assert_matches(hook, f"/lists/{handle.list_id}/webhooks", "POST")
    [validation] = receiver.requests
    assert (validation.method, validation.query) == ("GET", "key=s3cret")
    assert validation.headers["user-agent"] == "MailChimp.com WebHook Validator"

    client = official(handle)
    with pytest.raises(ApiClientError) as duplicate:
        client.lists.create_list_webhook(handle.list_id, {"url": receiver.url("/hook?key=other")})
    assert json.loads(duplicate.value.text)["title"] == "Invalid Resource"

    receiver.get_status = 404
    with pytest.raises(ApiClientError) as refused:
        client.lists.create_list_webhook(handle.list_id, {"url": receiver.url("/elsewhere")})
    problem = json.loads(refused.value.text)
    assert (refused.value.status_code, problem["title"]) == (400, "Invalid Resource")
    assert problem["detail"] == (
        "We couldn't verify the URL is working. Please double check and try again. HTTP Code: 404"
    )
    with pytest.raises(ApiClientError) as unreachable:
        client.lists.create_list_webhook(handle.list_id, {"url": "http://127.0.0.1:9/nothing"})
    assert "We couldn't verify the URL is working" in json.loads(unreachable.value.text)["detail"]


def test_crud_through_both_sdks(mailchimp_sandbox: Any, receiver: Receiver) -> None:
    handle = mailchimp_sandbox
    mc3 = mailchimp3(handle)
    # mailchimp3's own URL check refuses 127.0.0.1, so create with the official SDK
    created = official(handle).lists.create_list_webhook(
        handle.list_id,
        {"url": receiver.url("/a"), "events": {"subscribe": True}, "sources": {"api": True}},
    )
    assert created["events"]["subscribe"] is True
    assert created["sources"] == {"user": False, "admin": False, "api": True}
    assert created["events"]["unsubscribe"] is False
    listing = mc3.lists.webhooks.all(handle.list_id)
    assert_matches(listing, f"/lists/{handle.list_id}/webhooks")
    assert listing["total_items"] == 1
    got = official(handle).lists.get_list_webhook(handle.list_id, created["id"])
    assert_matches(got, f"/lists/{handle.list_id}/webhooks/{created['id']}")
    updated = mc3.lists.webhooks.update(
        handle.list_id, created["id"], {"events": {"profile": True}}
    )
    assert_matches(updated, f"/lists/{handle.list_id}/webhooks/{created['id']}", "PATCH")
    assert updated["events"]["profile"] is True
    mc3.lists.webhooks.delete(handle.list_id, created["id"])
    with pytest.raises(MailChimpError):
        mc3.lists.webhooks.get(handle.list_id, created["id"])


def test_deliveries_carry_mailchimp_form_fields(mailchimp_sandbox: Any, receiver: Receiver) -> None:
    handle = mailchimp_sandbox
    register(handle, receiver)
    client = official(handle)
    member = client.lists.add_list_member(
        handle.list_id,
        {
            "email_address": "ada@mail.example.org",
            "status": "subscribed",
            "merge_fields": {
                "FNAME": "Ada",
                "ADDRESS": {
                    "addr1": "1 Main St",
                    "city": "Springfield",
                    "state": "IL",
                    "zip": "62701",
                },
            },
        },
    )
    flush(handle)
    [post] = receiver.posts_of("subscribe")
    assert post.headers["user-agent"] == "MailChimp.com"
    assert post.headers["content-type"] == "application/x-www-form-urlencoded"
    form = post.form
    assert form["data[id]"] == member["unique_email_id"]
    assert form["data[list_id]"] == handle.list_id
    assert form["data[email]"] == "ada@mail.example.org"
    assert form["data[email_type]"] == "html"
    assert form["data[web_id]"] == str(member["web_id"])
    assert form["data[merges][FNAME]"] == "Ada"
    assert form["data[merges][EMAIL]"] == "ada@mail.example.org"
    assert form["data[merges][ADDRESS][addr1]"] == "1 Main St"
    assert len(form["fired_at"]) == 19
    assert form["fired_at"][10] == " "

    h = subscriber_hash("ada@mail.example.org")
    control(
        handle,
        "POST",
        f"/lists/{handle.list_id}/members/{h}/change-email",
        {"new_email": "ada.l@mail.example.org"},
    )
    control(
        handle,
        "POST",
        f"/lists/{handle.list_id}/members/{subscriber_hash('ada.l@mail.example.org')}/unsubscribe",
        {"campaign_id": "cb398d21d2"},
    )
    flush(handle)
    [upemail] = receiver.posts_of("upemail")
    assert upemail.form["data[old_email]"] == "ada@mail.example.org"
    assert upemail.form["data[new_email]"] == "ada.l@mail.example.org"
    assert upemail.form["data[new_id]"] == member["unique_email_id"]
    assert any(
        p.form["data[email]"] == "ada.l@mail.example.org" for p in receiver.posts_of("profile")
    )
    [unsub] = receiver.posts_of("unsubscribe")
    assert unsub.form["data[action]"] == "unsub"
    assert unsub.form["data[reason]"] == "manual"
    assert unsub.form["data[campaign_id]"] == "cb398d21d2"
    log = control(handle, "GET", "/webhooks/deliveries")
    assert {d["state"] for d in log["deliveries"]} == {"delivered"}
    dump = control(handle, "GET", "/state")
    assert len(dump["extensions"]["webhooks"]["deliveries"]) == log["total_items"]


def test_sources_and_events_filter_deliveries(mailchimp_sandbox: Any, receiver: Receiver) -> None:
    handle = mailchimp_sandbox
    official(handle).lists.create_list_webhook(
        handle.list_id,
        {
            "url": receiver.url("/users-only"),
            "events": {"subscribe": True, "unsubscribe": True},
            "sources": {"user": True, "admin": False, "api": False},
        },
    )
    client = official(handle)
    client.lists.add_list_member(
        handle.list_id, {"email_address": "api@mail.example.org", "status": "subscribed"}
    )
    control(
        handle,
        "POST",
        f"/lists/{handle.list_id}/signup",
        {"email_address": "form@mail.example.org"},
    )
    h = subscriber_hash("form@mail.example.org")
    control(
        handle,
        "POST",
        f"/lists/{handle.list_id}/members/{h}/profile",
        {"merge_fields": {"FNAME": "F"}},
    )
    control(handle, "POST", f"/lists/{handle.list_id}/members/{h}/unsubscribe", {"source": "admin"})
    flush(handle)
    assert [(p.form["type"], p.form["data[email]"]) for p in receiver.posts] == [
        ("subscribe", "form@mail.example.org")
    ]


def test_failed_deliveries_are_retried_until_the_receiver_answers(
    mailchimp_sandbox: Any, receiver: Receiver
) -> None:
    handle = mailchimp_sandbox
    control(handle, "PUT", "/webhooks/settings", {"retry_compression": 6000})
    register(handle, receiver)
    receiver.post_statuses = [500, 503]
    official(handle).lists.add_list_member(
        handle.list_id, {"email_address": "retry@mail.example.org", "status": "subscribed"}
    )
    summary = flush(handle)
    assert summary["delivered"] == 1
    assert len(receiver.posts_of("subscribe")) == 3
    [delivery] = control(handle, "GET", "/webhooks/deliveries")["deliveries"]
    assert [a["status"] for a in delivery["attempts"]] == [500, 503, 200]

    receiver.post_statuses = [500] * 10
    official(handle).lists.add_list_member(
        handle.list_id, {"email_address": "never@mail.example.org", "status": "subscribed"}
    )
    summary = flush(handle)
    failed = control(handle, "GET", "/webhooks/deliveries", None)
    gave_up = [d for d in failed["deliveries"] if d["state"] == "failed"]
    assert len(gave_up) == 1
    assert len(gave_up[0]["attempts"]) == 7  # the first try and six retries over ~75 minutes


def test_a_campaign_send_notifies_campaign_unsubscribes_and_cleaned(
    mailchimp_sandbox: Any, receiver: Receiver
) -> None:
    handle = mailchimp_sandbox
    client = official(handle)
    members = [
        {"email_address": f"c{i}@mail.example.org", "status": "subscribed"} for i in range(300)
    ]
    client.lists.batch_list_members(handle.list_id, {"members": members})
    official(handle).lists.create_list_webhook(
        handle.list_id,
        {
            "url": receiver.url(),
            "events": ALL_EVENTS,
            "sources": {"user": True, "admin": False, "api": False},
        },
    )
    sent = control(handle, "POST", "/campaigns/seed", {"list_id": handle.list_id, "subject": "Hi"})
    flush(handle)
    report = client.reports.get_campaign_report(sent["id"])
    [campaign] = receiver.posts_of("campaign")
    assert campaign.form["data[id]"] == sent["id"]
    assert campaign.form["data[subject]"] == "Hi"
    assert campaign.form["data[status]"] == "sent"
    assert campaign.form["data[list_id]"] == handle.list_id
    unsubs = receiver.posts_of("unsubscribe")
    assert len(unsubs) == report["unsubscribed"] > 0
    assert {u.form["data[campaign_id]"] for u in unsubs} == {sent["id"]}
    cleaned = receiver.posts_of("cleaned")
    assert len(cleaned) == report["bounces"]["hard_bounces"] > 0
    assert {c.form["data[reason]"] for c in cleaned} == {"hard"}
    assert receiver.posts_of("subscribe") == []  # the batch subscribe came from the API


def test_advancing_the_sandbox_clock_makes_a_retry_due(
    mailchimp_sandbox: Any, receiver: Receiver
) -> None:
    handle = mailchimp_sandbox
    register(handle, receiver)  # real-time schedule: the first retry is a minute away
    receiver.post_statuses = [500]
    official(handle).lists.add_list_member(
        handle.list_id, {"email_address": "clock@mail.example.org", "status": "subscribed"}
    )
    deadline = time.monotonic() + 10
    while not receiver.posts and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    [pending] = control(handle, "GET", "/webhooks/deliveries", None)["deliveries"]
    assert (pending["state"], len(pending["attempts"])) == ("pending", 1)
    control(handle, "POST", "/clock", {"advance": 61})
    assert flush(handle)["delivered"] == 1
    assert len(receiver.posts_of("subscribe")) == 2
