"""Webhook form encoding (PHP brackets) and payloads built from member events."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl

from campaign_bridge.sandbox.mailchimp.model import (
    AudienceList,
    Interest,
    InterestCategory,
    MemberEvent,
)
from campaign_bridge.sandbox.mailchimp.webhooks import (
    Hook,
    campaign_payload,
    encode_form,
    fired_at,
    form_pairs,
    member_payloads,
)

MEMBER = {
    "id": "b10927d43f13b99d3838ddf28b8208ab",
    "email_address": "ada@mail.example.org",
    "unique_email_id": "fdc0bc2913",
    "web_id": 383140681,
    "email_type": "html",
    "ip_opt": "198.51.100.7",
    "ip_signup": "",
    "merge_fields": {
        "FNAME": "Ada",
        "LNAME": "",
        "ADDRESS": {"addr1": "1 Main St", "city": "Springfield", "zip": "12345"},
    },
    "interests": {"int1": True, "int2": False, "int3": True},
}


def audience() -> AudienceList:
    a = AudienceList("a6b5da1054", 1, "News", "", {}, "", {})
    a.categories["cat1"] = InterestCategory("cat1", "Topics", "checkboxes")
    a.interests["int1"] = Interest("int1", "cat1", "Cooking")
    a.interests["int2"] = Interest("int2", "cat1", "Hiking")
    a.interests["int3"] = Interest("int3", "cat1", "Chess")
    return a


def event(kind: str, source: str = "api", **extra: object) -> MemberEvent:
    return MemberEvent(
        kind, "a6b5da1054", MEMBER, source, datetime(2024, 1, 2, tzinfo=UTC), dict(extra)
    )  # type: ignore[arg-type]


def decoded(type_: str, data: dict[str, object]) -> dict[str, str]:
    body = encode_form({"type": type_, "fired_at": "2009-03-26 21:35:57", "data": data})
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


def test_php_bracket_keys_nest_mappings_and_lists() -> None:
    pairs = form_pairs({"data": {"merges": {"A": {"b": 1}}, "l": ["x", "y"], "t": True}})
    assert pairs == [
        ("data[merges][A][b]", "1"),
        ("data[l][0]", "x"),
        ("data[l][1]", "y"),
        ("data[t]", "1"),
    ]
    assert b"data%5Bmerges%5D%5BA%5D%5Bb%5D=1" in encode_form({"data": {"merges": {"A": {"b": 1}}}})


def test_subscribe_payload_carries_the_documented_fields() -> None:
    [(type_, data)] = member_payloads(event("subscribe"), audience())
    form = decoded(type_, data)
    assert form["type"] == "subscribe"
    assert form["data[id]"] == "fdc0bc2913"
    assert form["data[list_id]"] == "a6b5da1054"
    assert form["data[email]"] == "ada@mail.example.org"
    assert form["data[email_type]"] == "html"
    assert form["data[ip_opt]"] == "198.51.100.7"
    assert form["data[web_id]"] == "383140681"
    assert form["data[merges][EMAIL]"] == "ada@mail.example.org"
    assert form["data[merges][FNAME]"] == "Ada"
    assert form["data[merges][ADDRESS][addr1]"] == "1 Main St"
    assert form["data[merges][INTERESTS]"] == "Cooking, Chess"
    assert form["data[merges][GROUPINGS][0][id]"] == "cat1"
    assert form["data[merges][GROUPINGS][0][name]"] == "Topics"
    assert form["data[merges][GROUPINGS][0][groups]"] == "Cooking, Chess"


def test_unsubscribe_from_a_campaign_and_archive() -> None:
    [(type_, data)] = member_payloads(event("unsubscribe", "user", campaign_id="cb398d21d2"), None)
    form = decoded(type_, data)
    assert (form["type"], form["data[action]"], form["data[reason]"]) == (
        "unsubscribe",
        "unsub",
        "manual",
    )
    assert form["data[campaign_id]"] == "cb398d21d2"
    [(type_, data)] = member_payloads(event("archive"), None)
    assert (type_, data["action"]) == ("unsubscribe", "delete")
    assert member_payloads(event("pending"), None) == []


def test_cleaned_and_email_change() -> None:
    [(type_, data)] = member_payloads(
        event("cleaned", "user", reason="hard", campaign_id="4fjk2ma9xd"), None
    )
    assert decoded(type_, data) == {
        "type": "cleaned",
        "fired_at": "2009-03-26 21:35:57",
        "data[list_id]": "a6b5da1054",
        "data[campaign_id]": "4fjk2ma9xd",
        "data[reason]": "hard",
        "data[email]": "ada@mail.example.org",
    }
    payloads = member_payloads(
        event("upemail", old_email="old@mail.example.org", new_email="ada@mail.example.org"), None
    )
    assert [t for t, _ in payloads] == ["upemail"]
    upemail = decoded(*payloads[0])
    assert upemail["data[new_id]"] == "fdc0bc2913"
    assert upemail["data[old_email]"] == "old@mail.example.org"
    assert upemail["data[new_email]"] == "ada@mail.example.org"


def test_campaign_payload_and_fired_at() -> None:
    form = decoded("campaign", campaign_payload("5aa2102003", "Hello", "a6b5da1054"))
    assert (form["data[status]"], form["data[reason]"]) == ("sent", "")
    assert fired_at(datetime(2009, 3, 26, 21, 35, 57, tzinfo=UTC)) == "2009-03-26 21:35:57"


def test_filters_events_then_sources_with_campaign_ignoring_sources() -> None:
    hook = Hook(
        "h",
        "l",
        "http://x",
        {"subscribe": True, "campaign": True},
        {"user": True, "admin": False, "api": False},
    )
    assert hook.wants("subscribe", "user")
    assert not hook.wants("subscribe", "api")
    assert not hook.wants("unsubscribe", "user")
    assert hook.wants("campaign", None)
