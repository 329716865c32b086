"""The control API's provider-side consent events, over real HTTP, with the webhooks they send.

Self- and admin unsubscribe, bounce, admin archive, permanent delete, a form re-signup and an
email change: each changes the member as Mailchimp would and is delivered to a registered
webhook (sources ``user`` and ``admin``, as the bridge registers them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from campaign_bridge.sandbox.mailchimp.model import subscriber_hash
from tests.integration.sandbox.receiver import Receiver, running_receiver

ADA = "ada@consent-test.org"
BOB = "bob@consent-test.org"
EVENTS = dict.fromkeys(("subscribe", "unsubscribe", "profile", "cleaned", "upemail"), True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


@pytest.fixture
def api(mailchimp_sandbox: Any) -> Iterator[httpx.Client]:
    mc = mailchimp_sandbox
    with httpx.Client(base_url=mc.base_url, auth=("any", mc.api_key), timeout=30) as client:
        yield client


def control(mc: Any, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(mc.control_url + path, json=body or {}, timeout=30)


def member_path(mc: Any, email: str, verb: str) -> str:
    return f"/lists/{mc.list_id}/members/{subscriber_hash(email)}/{verb}"


def subscribe(api: httpx.Client, mc: Any, email: str, status: str = "subscribed") -> Any:
    return api.put(
        f"/lists/{mc.list_id}/members/{subscriber_hash(email)}",
        json={"email_address": email, "status_if_new": status, "status": status},
    )


def hooks_after(mc: Any, receiver: Receiver, api: httpx.Client) -> list[dict[str, str]]:
    """Register a webhook now; later calls' deliveries are read with ``delivered``."""
    answer = api.post(
        f"/lists/{mc.list_id}/webhooks",
        json={"url": receiver.url(), "events": EVENTS, "sources": {"user": True, "admin": True}},
    )
    assert answer.status_code == 200, answer.text
    return []


def delivered(mc: Any, receiver: Receiver) -> list[dict[str, str]]:
    flushed = control(mc, "/webhooks/flush", {"timeout": 20})
    assert flushed.status_code == 200, flushed.text
    return [r.form for r in receiver.posts]


def test_self_and_admin_unsubscribe_differ_in_origin_and_compliance(
    mailchimp_sandbox: Any, api: httpx.Client, receiver: Receiver
) -> None:
    mc = mailchimp_sandbox
    for email in (ADA, BOB):
        assert subscribe(api, mc, email).status_code == 200
    hooks_after(mc, receiver, api)

    self_unsub = control(mc, member_path(mc, ADA, "unsubscribe"), {"reason": "too many emails"})
    admin_unsub = control(mc, member_path(mc, BOB, "unsubscribe"), {"source": "admin"})
    assert self_unsub.status_code == admin_unsub.status_code == 200
    assert self_unsub.json()["status"] == admin_unsub.json()["status"] == "unsubscribed"
    assert self_unsub.json()["unsubscribe_reason"] == "too many emails"
    assert admin_unsub.json()["unsubscribe_reason"] == "N/A (Unsubscribed by an admin)"

    refused = subscribe(api, mc, ADA)  # the member opted out: a compliance state
    assert refused.status_code == 400
    assert refused.json()["title"] == "Member In Compliance State"
    assert subscribe(api, mc, ADA, "pending").json()["status"] == "pending"
    assert subscribe(api, mc, BOB).json()["status"] == "subscribed"  # an admin's may be undone

    forms = delivered(mc, receiver)
    unsubscribes = [f for f in forms if f["type"] == "unsubscribe"]
    assert [(f["data[email]"], f["data[action]"]) for f in unsubscribes] == [
        (ADA, "unsub"),
        (BOB, "unsub"),
    ]
    assert not [f for f in forms if f["type"] == "subscribe"]  # API changes: source api is off


def test_bounce_cleans_and_the_api_cannot_resubscribe(
    mailchimp_sandbox: Any, api: httpx.Client, receiver: Receiver
) -> None:
    mc = mailchimp_sandbox
    subscribe(api, mc, ADA)
    hooks_after(mc, receiver, api)
    answer = control(mc, member_path(mc, ADA, "bounce"), {"campaign_id": "c0ffee0001"})
    assert answer.status_code == 200
    assert answer.json()["status"] == "cleaned"
    refused = subscribe(api, mc, ADA)
    assert refused.status_code == 400
    assert refused.json()["title"] == "Member In Compliance State"
    [cleaned] = delivered(mc, receiver)
    assert (cleaned["type"], cleaned["data[email]"], cleaned["data[reason]"]) == (
        "cleaned",
        ADA,
        "hard",
    )
    assert cleaned["data[campaign_id]"] == "c0ffee0001"


def test_admin_archive(mailchimp_sandbox: Any, api: httpx.Client, receiver: Receiver) -> None:
    mc = mailchimp_sandbox
    subscribe(api, mc, ADA)
    hooks_after(mc, receiver, api)
    answer = control(mc, member_path(mc, ADA, "archive"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "archived"
    got = api.get(f"/lists/{mc.list_id}/members/{subscriber_hash(ADA)}")
    assert got.json()["status"] == "archived"
    again = control(mc, member_path(mc, ADA, "archive"))
    assert again.status_code == 405
    assert again.json()["detail"] == "This list member cannot be removed.  Please contact support."
    [archived] = delivered(mc, receiver)
    assert (archived["type"], archived["data[email]"], archived["data[action]"]) == (
        "unsubscribe",
        ADA,
        "delete",
    )


def test_permanent_delete_then_only_a_form_signup_brings_the_address_back(
    mailchimp_sandbox: Any, api: httpx.Client, receiver: Receiver
) -> None:
    mc = mailchimp_sandbox
    subscribe(api, mc, ADA)
    hooks_after(mc, receiver, api)
    answer = control(mc, member_path(mc, ADA, "delete-permanent"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "forgotten"
    assert answer.json()["email_address"] == ADA
    assert api.get(f"/lists/{mc.list_id}/members/{subscriber_hash(ADA)}").status_code == 404
    refused = subscribe(api, mc, ADA)
    assert refused.status_code == 400
    assert refused.json()["title"] == "Forgotten Email Not Subscribed"
    assert refused.json()["detail"] == (
        f"{ADA} was permanently deleted and cannot be re-imported. The contact must "
        "re-subscribe to get back on the list."
    )
    assert control(mc, member_path(mc, ADA, "delete-permanent")).status_code == 404

    signup = control(mc, f"/lists/{mc.list_id}/signup", {"email_address": ADA})
    assert signup.status_code == 200, signup.text
    assert signup.json()["status"] == "subscribed"
    assert signup.json()["source"] == "Hosted Signup Form"
    forms = delivered(mc, receiver)
    assert [(f["type"], f.get("data[action]")) for f in forms] == [
        ("unsubscribe", "delete"),
        ("subscribe", None),
    ]


def test_form_resignup_clears_a_self_unsubscribe(
    mailchimp_sandbox: Any, api: httpx.Client, receiver: Receiver
) -> None:
    mc = mailchimp_sandbox
    subscribe(api, mc, ADA)
    control(mc, member_path(mc, ADA, "unsubscribe"))
    hooks_after(mc, receiver, api)
    signup = control(mc, f"/lists/{mc.list_id}/signup", {"email_address": ADA})
    assert signup.json()["status"] == "subscribed"
    # re-consented: an API unsubscribe and resubscribe are allowed again
    assert subscribe(api, mc, ADA, "unsubscribed").json()["status"] == "unsubscribed"
    assert subscribe(api, mc, ADA).json()["status"] == "subscribed"
    assert [f["type"] for f in delivered(mc, receiver)] == ["subscribe"]


def test_email_change_moves_the_member_and_its_compliance_state(
    mailchimp_sandbox: Any, api: httpx.Client, receiver: Receiver
) -> None:
    mc = mailchimp_sandbox
    subscribe(api, mc, ADA)
    control(mc, member_path(mc, ADA, "unsubscribe"))
    hooks_after(mc, receiver, api)
    answer = control(mc, member_path(mc, ADA, "change-email"), {"new_email": BOB})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["email_address"], answer.json()["status"]) == (BOB, "unsubscribed")
    assert api.get(f"/lists/{mc.list_id}/members/{subscriber_hash(ADA)}").status_code == 404
    assert subscribe(api, mc, BOB).status_code == 400  # still the member who opted out
    upemail = [f for f in delivered(mc, receiver) if f["type"] == "upemail"]
    assert [(f["data[old_email]"], f["data[new_email]"]) for f in upemail] == [(ADA, BOB)]
