"""Brevo's marketing webhooks read into neutral events: the payloads are the ones the Brevo
sandbox sends (its builders follow Brevo's published samples)."""

from __future__ import annotations

import orjson
import pytest

from campaign_bridge.errors import WebhookPayloadError
from campaign_bridge.providers._brevo_webhooks import BrevoWebhooks
from campaign_bridge.providers.base import WebhookKind, WebhookRequest
from campaign_bridge.sandbox.brevo.campaigns import Activity, Campaign
from campaign_bridge.sandbox.brevo.model import ContactEvent
from campaign_bridge.sandbox.brevo.webhooks import Webhook, campaign_payload, contact_payload

HOOK = Webhook(id=9, url="https://bridge.example/webhooks/brevo/tok", events=[], type="marketing")
CAMPAIGN = Campaign(7, "Spring", "Hi", {"email": "a@b.c"}, "", 1.0e9, 1.0e9, list_ids=[3, 4])
K = WebhookKind


def campaign_event(kind: str, name: str, **extra: object) -> dict[str, object]:
    activity = Activity(kind, 7, 1, "Ann@Example.org", 1.7e9, [3, 4], **extra)  # type: ignore[arg-type]
    return campaign_payload(HOOK, activity, CAMPAIGN, name)


def contact_event(kind: str, **extra: object) -> dict[str, object]:
    found = contact_payload(HOOK, ContactEvent(kind, 1, "ann@example.org", 1.7e9, **extra))  # type: ignore[arg-type]
    assert found is not None
    return found[1]


def parse(body: object, token: str = "tok", **headers: str) -> list:  # type: ignore[type-arg]
    return BrevoWebhooks().parse(
        WebhookRequest("POST", token, headers=headers, body=orjson.dumps(body))
    )


def test_an_unsubscribe_is_one_event_per_list_of_the_campaign() -> None:
    events = parse(campaign_event("unsubscribed", "unsubscribed"))
    assert [(e.kind, e.list_id, e.campaign_id) for e in events] == [
        (K.UNSUBSCRIBE, "3", "7"),
        (K.UNSUBSCRIBE, "4", "7"),
    ]
    assert events[0].email == "Ann@Example.org"
    assert events[0].occurred_at is not None
    assert events[0].occurred_at.timestamp() == 1.7e9
    assert len({e.event_id for e in events}) == 2


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("hard_bounce", "hard_bounce", K.CLEANED),
        ("soft_bounce", "soft_bounce", K.BOUNCE),
        ("spam", "spam", K.UNSUBSCRIBE),
        ("opened", "opened", K.CAMPAIGN),
        ("clicked", "click", K.CAMPAIGN),
        ("delivered", "delivered", K.CAMPAIGN),
    ],
)
def test_campaign_events_are_account_wide(kind: str, name: str, expected: WebhookKind) -> None:
    [event] = parse(campaign_event(kind, name))
    assert (event.kind, event.list_id) == (expected, None)


def test_contact_events() -> None:
    blocked = contact_event("blocklisted", changed={"emailBlacklisted": True})
    renamed = contact_event("updated", changed={"FIRSTNAME": "Ann"})
    added = contact_event("list_addition", list_ids=[3])
    deleted = contact_event("deleted", list_ids=[3])
    events = parse([blocked, renamed, added, deleted])  # a batched delivery
    assert [(e.kind, e.list_id) for e in events] == [
        (K.UNSUBSCRIBE, None),  # a blocklisting concerns every list
        (K.PROFILE, None),
        (K.OTHER, None),  # joining a list says nothing about consent
        (K.DELETE, "3"),
    ]
    assert events[0].reason == "blocklisted"


def test_the_event_id_does_not_depend_on_field_order_and_load_reads_it_back() -> None:
    payload = campaign_event("hard_bounce", "hard_bounce", reason="550")
    [first] = parse(payload)
    [second] = parse(dict(reversed(list(payload.items()))))
    assert first.event_id == second.event_id
    again = BrevoWebhooks().load(first.raw, first.event_id)
    assert again == first


def test_authentication_takes_the_url_token_and_a_matching_bearer() -> None:
    webhooks = BrevoWebhooks()

    def ok(token: str, **headers: str) -> bool:
        return webhooks.authenticate(WebhookRequest("POST", token, headers=headers), ["tok"])

    assert ok("tok")
    assert ok("tok", authorization="Bearer tok")
    assert not ok("tok", authorization="Bearer other")
    assert not ok("tok", authorization="Basic dG9rOg==")
    assert not ok("nope")
    assert not ok("tok/more")
    assert webhooks.handshake(WebhookRequest("GET", "tok")) is None


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1]", b'{"email": "a@b.c"}', b'{"event": "opened", "email": 3}'],
)
def test_bodies_that_are_not_brevo_events_are_refused(body: bytes) -> None:
    with pytest.raises(WebhookPayloadError):
        BrevoWebhooks().parse(WebhookRequest("POST", "tok", body=body))
