"""Parsing Mailchimp's form-encoded webhook bodies into typed events (no I/O)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from campaign_bridge.errors import WebhookPayloadError
from campaign_bridge.webhooks import (
    CampaignEvent,
    CleanedEvent,
    EmailChangedEvent,
    ProfileEvent,
    SubscribeEvent,
    UnsubscribeEvent,
    dedupe_key,
    match_token,
    parse_delivery,
    parse_form,
)


def form(pairs: list[tuple[str, str]]) -> bytes:
    return urlencode(pairs).encode()


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
    event = parse_delivery(form(SUBSCRIBE)).event
    assert isinstance(event, SubscribeEvent)
    assert event.list_id == "a6b5da1054"
    assert event.fired_at == datetime(2009, 3, 26, 21, 35, 57, tzinfo=UTC)
    assert event.email == "api@mailchimp.com"
    assert event.unique_email_id == "8a25ff1d98"
    assert event.email_type == "html"
    assert event.web_id == "123"
    assert event.ip_signup == "10.20.10.30"
    assert event.merges["FNAME"] == "Mailchimp"
    assert event.interest_names == ("Group1", "Group2")


def test_nested_address_and_groupings_become_dicts_and_lists() -> None:
    pairs = [
        ("type", "profile"),
        ("fired_at", "2024-01-02 03:04:05"),
        ("data[list_id]", "a6b5da1054"),
        ("data[email]", "x@example.org"),
        ("data[merges][ADDRESS][addr1]", "1 Main St"),
        ("data[merges][ADDRESS][addr2]", ""),
        ("data[merges][ADDRESS][city]", "Springfield"),
        ("data[merges][ADDRESS][state]", "IL"),
        ("data[merges][ADDRESS][zip]", "62701"),
        ("data[merges][ADDRESS][country]", "US"),
        ("data[merges][GROUPINGS][0][id]", "1"),
        ("data[merges][GROUPINGS][0][unique_id]", "abc123"),
        ("data[merges][GROUPINGS][0][name]", "Topics"),
        ("data[merges][GROUPINGS][0][groups]", "News, Offers"),
        ("data[merges][GROUPINGS][1][id]", "2"),
        ("data[merges][GROUPINGS][1][name]", "Region"),
        ("data[merges][GROUPINGS][1][groups]", "Europe"),
    ]
    event = parse_delivery(form(pairs)).event
    assert isinstance(event, ProfileEvent)
    assert event.address == {
        "addr1": "1 Main St",
        "addr2": "",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "country": "US",
    }
    assert [g["name"] for g in event.groupings] == ["Topics", "Region"]
    assert event.groupings[0]["unique_id"] == "abc123"
    assert event.interest_names == ("News", "Offers", "Europe")


def test_unsubscribe_carries_action_reason_and_campaign() -> None:
    pairs = [
        ("type", "unsubscribe"),
        ("fired_at", "2009-03-26 21:40:57"),
        ("data[action]", "delete"),
        ("data[reason]", "manual"),
        ("data[id]", "8a25ff1d98"),
        ("data[list_id]", "a6b5da1054"),
        ("data[email]", "api+unsub@mailchimp.com"),
        ("data[email_type]", "html"),
        ("data[merges][EMAIL]", "api+unsub@mailchimp.com"),
        ("data[ip_opt]", "10.20.10.30"),
        ("data[campaign_id]", "cb398d21d2"),
    ]
    event = parse_delivery(form(pairs)).event
    assert isinstance(event, UnsubscribeEvent)
    assert (event.action, event.reason, event.campaign_id) == ("delete", "manual", "cb398d21d2")


def test_unsubscribe_without_action_defaults_to_unsub() -> None:
    pairs = [("type", "unsubscribe"), ("data[list_id]", "l1"), ("data[email]", "a@b.org")]
    event = parse_delivery(form(pairs)).event
    assert isinstance(event, UnsubscribeEvent)
    assert event.action == "unsub"
    assert event.fired_at is None


def test_cleaned_upemail_and_campaign() -> None:
    cleaned = parse_delivery(
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
    ).event
    assert isinstance(cleaned, CleanedEvent)
    assert (cleaned.reason, cleaned.campaign_id) == ("hard", "4fjk2ma9xd")

    upemail = parse_delivery(
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
    ).event
    assert isinstance(upemail, EmailChangedEvent)
    assert (upemail.old_email, upemail.new_email, upemail.new_id) == (
        "api+old@mailchimp.com",
        "api+new@mailchimp.com",
        "51da8c3259",
    )

    campaign = parse_delivery(
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
    ).event
    assert isinstance(campaign, CampaignEvent)
    assert (campaign.campaign_id, campaign.status, campaign.subject) == (
        "5aa2102003",
        "sent",
        "Test Campaign Subject",
    )


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
        parse_delivery(body)


def test_dedupe_key_ignores_pair_order_but_not_content() -> None:
    body = form(SUBSCRIBE)
    reordered = form(list(reversed(SUBSCRIBE)))
    changed = form([*SUBSCRIBE[:-1], ("data[web_id]", "124")])
    assert dedupe_key(body) == dedupe_key(reordered)
    assert dedupe_key(body) != dedupe_key(changed)
    assert len(dedupe_key(body)) == 64


def test_payload_json_round_trips_the_nested_form() -> None:
    parsed = parse_delivery(form(SUBSCRIBE))
    assert '"FNAME":"Mailchimp"' in parsed.payload_json


def test_match_token_accepts_either_rotation_token_only() -> None:
    tokens = ["old-secret-token", "new-secret-token"]
    assert match_token("old-secret-token", tokens)
    assert match_token("new-secret-token", tokens)
    assert not match_token("new-secret-toke", tokens)
    assert not match_token("", tokens)
    assert not match_token("", ["", ""])
    assert not match_token("anything", [])
