"""Mailchimp's form-encoded webhooks read into provider-neutral events, and the status changes
the applier makes of them (no I/O)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from campaign_bridge.errors import WebhookPayloadError
from campaign_bridge.providers import webhook_parser
from campaign_bridge.providers._mailchimp_webhooks import MailchimpWebhooks, dedupe_key, parse_form
from campaign_bridge.providers.base import MemberStatus, WebhookEvent, WebhookKind, WebhookRequest
from campaign_bridge.tokens import match_token
from campaign_bridge.webhook_applier import change_from_event
from campaign_bridge.webhook_inbox import InboxRow

PARSER = MailchimpWebhooks()


def form(pairs: list[tuple[str, str]]) -> bytes:
    return urlencode(pairs).encode()


def parse(body: bytes) -> WebhookEvent:
    [event] = PARSER.parse(WebhookRequest("POST", "t", body=body))
    return event


SUBSCRIBE = [
    ("type", "subscribe"),
    ("fired_at", "2009-03-26 21:35:57"),
    ("data[id]", "8a25ff1d98"),
    ("data[list_id]", "a6b5da1054"),
    ("data[email]", "api@mailchimp.com"),
    ("data[email_type]", "html"),
    ("data[merges][EMAIL]", "api@mailchimp.com"),
    ("data[merges][FNAME]", "Mailchimp"),
    ("data[merges][LNAME]", "API"),
    ("data[merges][INTERESTS]", "Group1,Group2"),
    ("data[ip_opt]", "10.20.10.30"),
    ("data[ip_signup]", "10.20.10.30"),
    ("data[web_id]", "123"),
]


def test_subscribe_with_every_documented_field() -> None:
    event = parse(form(SUBSCRIBE))
    assert event.kind is WebhookKind.SUBSCRIBE
    assert event.list_id == "a6b5da1054"
    assert event.occurred_at == datetime(2009, 3, 26, 21, 35, 57, tzinfo=UTC)
    assert event.email == "api@mailchimp.com"
    assert event.member_id is None  # data[id] is the unique_email_id, not the contact_id
    assert event.raw["data"]["merges"] == {
        "EMAIL": "api@mailchimp.com",
        "FNAME": "Mailchimp",
        "LNAME": "API",
        "INTERESTS": "Group1,Group2",
    }
    assert event.event_id == dedupe_key(form(SUBSCRIBE))


def test_nested_address_and_groupings_are_kept_in_the_raw_payload() -> None:
    pairs = [
        ("type", "profile"),
        ("data[list_id]", "a6b5da1054"),
        ("data[email]", "api@mailchimp.com"),
        ("data[merges][ADDRESS][addr1]", "1 Main St"),
        ("data[merges][ADDRESS][city]", "Springfield"),
        ("data[merges][GROUPINGS][0][name]", "Topics"),
        ("data[merges][GROUPINGS][0][groups]", "News, Offers"),
        ("data[merges][GROUPINGS][1][name]", "Region"),
    ]
    event = parse(form(pairs))
    assert event.kind is WebhookKind.PROFILE
    merges = event.raw["data"]["merges"]
    assert merges["ADDRESS"] == {"addr1": "1 Main St", "city": "Springfield"}
    assert [g["name"] for g in merges["GROUPINGS"]] == ["Topics", "Region"]
    assert change_from_event("mailchimp", event) is None  # a profile changes no status


def test_unsubscribe_with_action_delete_is_an_archive_with_reason_and_campaign() -> None:
    pairs = [
        ("type", "unsubscribe"),
        ("fired_at", "2009-03-26 21:40:57"),
        ("data[action]", "delete"),
        ("data[reason]", "manual"),
        ("data[id]", "8a25ff1d98"),
        ("data[list_id]", "a6b5da1054"),
        ("data[email]", "api+unsub@mailchimp.com"),
        ("data[merges][EMAIL]", "api+unsub@mailchimp.com"),
        ("data[campaign_id]", "cb398d21d2"),
    ]
    event = parse(form(pairs))
    assert event.kind is WebhookKind.ARCHIVE
    assert (event.reason, event.campaign_id) == ("manual", "cb398d21d2")
    change = change_from_event("mailchimp", event)
    assert change is not None
    assert (change.status, change.origin, change.reason) == (
        MemberStatus.ARCHIVED,
        "webhook",
        "manual",
    )
    assert change.occurred_at == datetime(2009, 3, 26, 21, 40, 57, tzinfo=UTC)


def test_unsubscribe_without_action_is_an_unsubscribe_at_the_time_received() -> None:
    pairs = [("type", "unsubscribe"), ("data[list_id]", "l1"), ("data[email]", "a@b.org")]
    event = parse(form(pairs))
    assert (event.kind, event.occurred_at) == (WebhookKind.UNSUBSCRIBE, None)
    received = datetime(2030, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    change = change_from_event("mailchimp", event, received)
    assert change is not None
    assert (change.status, change.list_id, change.email) == (
        MemberStatus.UNSUBSCRIBED,
        "l1",
        "a@b.org",
    )
    assert change.occurred_at == received.replace(microsecond=0)


def test_cleaned_upemail_and_campaign() -> None:
    cleaned = parse(
        form(
            [
                ("type", "cleaned"),
                ("fired_at", "2009-03-26 22:01:00"),
                ("data[list_id]", "a6b5da1054"),
                ("data[campaign_id]", "4fjk2ma9xd"),
                ("data[reason]", "hard"),
                ("data[email]", "api+cleaned@mailchimp.com"),
            ]
        )
    )
    assert cleaned.kind is WebhookKind.CLEANED
    assert (cleaned.reason, cleaned.campaign_id) == ("hard", "4fjk2ma9xd")
    change = change_from_event("mailchimp", cleaned)
    assert change is not None
    assert change.status is MemberStatus.CLEANED

    upemail = parse(
        form(
            [
                ("type", "upemail"),
                ("fired_at", "2009-03-26 22:15:09"),
                ("data[list_id]", "a6b5da1054"),
                ("data[new_id]", "51da8c3259"),
                ("data[new_email]", "api+new@mailchimp.com"),
                ("data[old_email]", "api+old@mailchimp.com"),
            ]
        )
    )
    assert upemail.kind is WebhookKind.ADDRESS_CHANGE
    assert (upemail.previous_email, upemail.email, upemail.member_id) == (
        "api+old@mailchimp.com",
        "api+new@mailchimp.com",
        None,  # data[new_id] is the new unique_email_id, not the contact_id
    )
    moved = change_from_event("mailchimp", upemail)
    assert moved is not None
    assert (moved.status, moved.previous_email, moved.email) == (
        None,
        "api+old@mailchimp.com",
        "api+new@mailchimp.com",
    )

    campaign = parse(
        form(
            [
                ("type", "campaign"),
                ("fired_at", "2009-03-26 21:31:21"),
                ("data[id]", "5aa2102003"),
                ("data[subject]", "Test Campaign Subject"),
                ("data[status]", "sent"),
                ("data[reason]", ""),
                ("data[list_id]", "a6b5da1054"),
            ]
        )
    )
    assert (campaign.kind, campaign.campaign_id, campaign.email) == (
        WebhookKind.CAMPAIGN,
        "5aa2102003",
        None,
    )
    assert change_from_event("mailchimp", campaign) is None


def test_a_stored_event_loads_back_the_same() -> None:
    event = parse(form(SUBSCRIBE))
    row = InboxRow.from_event("mailchimp", event, datetime.now(UTC))
    assert (row.event_type, row.dedupe_key, row.list_id) == (
        "subscribe",
        event.event_id,
        "a6b5da1054",
    )
    assert PARSER.load(json.loads(row.payload), row.dedupe_key) == event


def test_the_parser_is_found_by_name_and_checks_the_url_token() -> None:
    parser = webhook_parser("mailchimp")
    assert isinstance(parser, MailchimpWebhooks)
    assert webhook_parser("no-such-provider") is None
    tokens = ["a-long-secret-token"]
    assert parser.authenticate(WebhookRequest("POST", "a-long-secret-token"), tokens)
    assert not parser.authenticate(WebhookRequest("POST", "a-long-secret-toke"), tokens)
    assert not parser.authenticate(WebhookRequest("POST", "a-long-secret-token/x"), tokens)
    assert parser.handshake(WebhookRequest("GET", "t")) == "ok"
    assert parser.handshake(WebhookRequest("PUT", "t")) is None


def test_parse_form_append_and_plain_keys() -> None:
    assert parse_form(b"a=1&b[]=x&b[]=y&c[k]=v") == {"a": "1", "b": ["x", "y"], "c": {"k": "v"}}
    assert parse_form(b"m[2]=x&m[5]=y") == {"m": {"2": "x", "5": "y"}}  # not 0..n-1: a dict


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"\xff\xfe", "UTF-8"),
        (b"no-equals-sign", "form-encoded"),
        (b"type=subscribe&data[email=a@b.org", "malformed form key"),
        (b"type=subscribe&data=1&data[email]=a@b.org", "conflicts"),
        (b"fired_at=2020-01-01+00:00:00", "no 'type'"),
        (b"type=teleport&data[email]=a@b.org", "unsupported webhook type"),
        (b"type=subscribe&data[list_id]=l1", "missing data[email]"),
        (b"type=upemail&data[new_email]=a@b.org", "missing data[old_email]"),
        (b"type=campaign&data[status]=sent", "missing data[id]"),
        (b"type=subscribe", "no data"),
        (b"type=subscribe&data[email]=a@b.org&data[merges]=x", "not a group"),
        (b"type=subscribe&data[email]=a@b.org&fired_at=yesterday", "fired_at"),
        (b"type=subscribe&data[email][x]=a@b.org", "plain value"),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(body: bytes, message: str) -> None:
    with pytest.raises(WebhookPayloadError, match=re.escape(message)):
        parse(body)


def test_dedupe_key_ignores_pair_order_but_not_content() -> None:
    body = form(SUBSCRIBE)
    reordered = form(list(reversed(SUBSCRIBE)))
    changed = form([*SUBSCRIBE[:-1], ("data[web_id]", "124")])
    assert dedupe_key(body) == dedupe_key(reordered)
    assert dedupe_key(body) != dedupe_key(changed)
    assert len(dedupe_key(body)) == 64


def test_match_token_accepts_either_rotation_token_only() -> None:
    tokens = ["old-secret-token", "new-secret-token"]
    assert match_token("old-secret-token", tokens)
    assert match_token("new-secret-token", tokens)
    assert not match_token("new-secret-toke", tokens)
    assert not match_token("", tokens)
    assert not match_token("", ["", ""])
    assert not match_token("anything", [])
