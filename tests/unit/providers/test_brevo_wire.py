"""Brevo's wire format to the contract's values, without a server: member status on a list,
times, attributes as fields, campaign statistics, recipient exports, import read-back checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaign_bridge.providers._brevo_members import attributes_of, made_by_import, precheck
from campaign_bridge.providers._brevo_wire import (
    activity_from_export,
    audience_from,
    campaign_from,
    exports_for,
    parse_time,
    report_from,
    status_of,
)
from campaign_bridge.providers.base import CampaignStatus, MemberStatus, MemberUpsert, OutcomeKind

S = MemberStatus


@pytest.mark.parametrize(
    ("contact", "status"),
    [
        ({"listIds": [7]}, S.SUBSCRIBED),
        ({"listIds": [7], "emailBlacklisted": True}, S.UNSUBSCRIBED),
        (
            {"listIds": [7], "emailBlacklisted": True, "statistics": {"hardBounces": [{}]}},
            S.CLEANED,
        ),
        ({"listIds": [], "listUnsubscribed": [7]}, S.UNSUBSCRIBED),
        ({"listIds": [3], "attributes": {"DOUBLE_OPT-IN": 2}}, S.PENDING),
        ({"listIds": [3], "attributes": {"DOUBLE_OPT-IN": 1}}, S.ARCHIVED),
        ({"listIds": [3]}, S.ARCHIVED),
        # a hard bounce without a blocklisting is not "cleaned": Brevo still sends
        ({"listIds": [7], "statistics": {"hardBounces": [{}]}}, S.SUBSCRIBED),
    ],
)
def test_status_on_a_list(contact: dict[str, object], status: MemberStatus) -> None:
    assert status_of(contact, 7) is status


def test_times_with_z_offsets_or_none() -> None:
    assert parse_time("2026-12-07T10:00:00.123Z") == datetime(2026, 12, 7, 10, 0, 0, 123000, UTC)
    assert parse_time("2026-12-07T12:00:00+02:00") == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert parse_time("2026-12-07 10:00:00") == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert parse_time("") is None
    assert parse_time("yesterday") is None


def test_attributes_become_typed_fields() -> None:
    audience = audience_from(
        {"id": 7, "name": "News"},
        [
            {"name": "FIRSTNAME", "category": "normal", "type": "text"},
            {"name": "SCORE", "category": "normal", "type": "float"},
            {"name": "PLAN", "category": "category", "enumeration": [{"value": 1, "label": "pro"}]},
            {"name": "ORDER_ID", "category": "transactional", "type": "id"},
            {"name": "TOTAL", "category": "calculated", "value": "SUM[X]"},
        ],
    )
    assert audience.id == "7"
    fields = {f.tag: (f.type, f.choices) for f in audience.merge_fields}
    assert fields == {
        "FIRSTNAME": ("text", ()),
        "SCORE": ("number", ()),
        "PLAN": ("dropdown", ("pro",)),
    }


def test_campaigns_and_their_statistics() -> None:
    campaign = campaign_from(
        {
            "id": 4,
            "name": "Spring",
            "subject": "Hi",
            "status": "in_process",
            "createdAt": "2026-12-01T09:00:00.000Z",
            "recipients": {"lists": [7, 8]},
            "statistics": {"globalStats": {"sent": 10}},
        }
    )
    assert (campaign.id, campaign.list_id, campaign.status, campaign.emails_sent) == (
        "4",
        "7",
        CampaignStatus.SENDING,
        10,
    )
    assert campaign_from({"id": 5, "status": "weird"}).status is CampaignStatus.UNKNOWN
    report = report_from(
        "4",
        {
            "globalStats": {
                "sent": 10,
                "viewed": 9,
                "uniqueViews": 6,
                "uniqueClicks": 3,
                "hardBounces": 1,
                "softBounces": 2,
                "unsubscriptions": 1,
                "complaints": 1,
            },
            "linksStats": {"https://a": 4, "https://b": 1},
        },
    )
    assert (report.opens_total, report.unique_opens, report.clicks_total) == (9, 6, 5)
    assert (report.unique_clicks, report.hard_bounces, report.abuse_reports) == (3, 1, 1)


def test_recipient_exports_become_events_from_since_on() -> None:
    text = (
        "CONTACT_ID;EMAIL;EVENT;EVENT_TIME\n"
        "1;a@corp.org;hard_bounce;2026-12-07T10:00:00.000Z\n"
        "2;b@corp.org;hard_bounce;2026-12-07T11:00:00.000Z\n"
        "3;;hard_bounce;2026-12-07T11:00:00.000Z\n"
    )
    since = datetime(2026, 12, 7, 10, 30, tzinfo=UTC)
    events = list(activity_from_export("4", "hardBounces", text, since))
    assert [(e.email, e.action, e.bounce_type) for e in events] == [
        ("b@corp.org", "bounce", "hard")
    ]
    assert list(activity_from_export("4", "openers", "", None)) == []


def test_an_import_read_back_is_ours_only_with_our_status_and_values() -> None:
    member = MemberUpsert("k", "a@corp.org", S.SUBSCRIBED, merge_fields={"score": 12.50})
    made = {"listIds": [7], "attributes": {"SCORE": 12.5}}
    assert made_by_import(made, member, 7, S.SUBSCRIBED)
    assert not made_by_import({**made, "emailBlacklisted": True}, member, 7, S.SUBSCRIBED)
    assert not made_by_import({"listIds": [7], "attributes": {"SCORE": 3}}, member, 7, S.SUBSCRIBED)


def test_an_import_read_back_compares_values_by_type_then_as_text() -> None:
    """True is not 1 (a boolean attribute holding a number was not the import's doing), but
    a number Brevo shows as text, or 12.5 for 12.50, is the value sent."""
    sent = {"OPTIN": True, "CODE": "0042", "SCORE": 7}
    member = MemberUpsert("k", "a@corp.org", S.SUBSCRIBED, merge_fields=sent)
    held = {"OPTIN": True, "CODE": "0042", "SCORE": "7"}
    made = {"listIds": [7], "attributes": held}
    assert made_by_import(made, member, 7, S.SUBSCRIBED, sent)
    assert not made_by_import(
        {**made, "attributes": {**held, "OPTIN": 1}}, member, 7, S.SUBSCRIBED, sent
    )
    assert not made_by_import(
        {**made, "attributes": {**held, "CODE": "0043"}}, member, 7, S.SUBSCRIBED, sent
    )


def test_attribute_names_are_sent_upper_case_in_a_new_dict() -> None:
    fields = {"FIRSTNAME": "Ann", "lastName": "Lee", "ÿ": "x"}
    first = attributes_of(MemberUpsert("a", "a@corp.org", S.SUBSCRIBED, merge_fields=fields))
    assert first == {"FIRSTNAME": "Ann", "LASTNAME": "Lee", "Ÿ": "x"}
    upper = {"FIRSTNAME": "Bob", "LASTNAME": "Ray"}
    again = attributes_of(MemberUpsert("b", "b@corp.org", S.SUBSCRIBED, merge_fields=upper))
    assert again == upper
    assert again is not upper  # the caller may add to it (the double opt-in flag)
    mixed = {"FIRSTNAME": "Cy", "lastName": "Doe"}  # known names beside one to upper-case
    assert attributes_of(MemberUpsert("c", "c@corp.org", S.SUBSCRIBED, merge_fields=mixed)) == {
        "FIRSTNAME": "Cy",
        "LASTNAME": "Doe",
    }


def test_records_refused_before_sending() -> None:
    seen: set[str] = set()
    ok = MemberUpsert("a", "Ann@Corp.org", S.SUBSCRIBED)
    assert precheck(ok, seen) is None
    again = precheck(MemberUpsert("b", "ann@corp.org ", S.SUBSCRIBED), seen)
    bad = precheck(MemberUpsert("c", "nope", S.SUBSCRIBED), seen)
    text = precheck(
        MemberUpsert("d", "d@corp.org", S.SUBSCRIBED, merge_fields={"X": "\udce9"}), seen
    )
    address = precheck(MemberUpsert("e", "\udce9e@corp.org", S.SUBSCRIBED), seen)
    accented = precheck(
        MemberUpsert("f", "f@corp.org", S.SUBSCRIBED, merge_fields={"X": "Zoë", "N": 3}), seen
    )
    assert accented is None  # text that is not ASCII, but UTF-8
    assert again is not None
    assert again.reason_code == "duplicate_email"
    assert bad is not None
    assert bad.reason_code == "invalid_email"
    assert text is not None
    assert text.reason_code == "invalid_text"
    assert address is not None
    assert address.reason_code in ("invalid_email", "invalid_text")
    assert all(o.kind is OutcomeKind.REJECTED for o in (again, bad, text, address))


def test_recipient_exports_are_read_as_csv_whatever_the_column_order() -> None:
    """Quoted cells (a ``;`` inside), a comma-separated file with ``DATE`` as the only time,
    short and blank rows; each row's own time, with its offset."""
    text = (
        'EVENT_TIME;"NAME";email;DATE\n'
        '2026-12-07T10:00:00.000Z;"Doe; Jane";jane@corp.org;\n'
        "\n"
        "2026-12-07T10:00:00+02:00;x\n"
        ";Joe;joe@corp.org;2026-12-07T09:00:00Z\n"
        "2026-12-07T11:00:00+02:00;Ann; ann@corp.org ;\n"
    )
    events = list(activity_from_export("4", "openers", text, None))
    assert [(e.email, e.occurred_at) for e in events] == [
        ("jane@corp.org", datetime(2026, 12, 7, 10, tzinfo=UTC)),
        ("joe@corp.org", datetime(2026, 12, 7, 9, tzinfo=UTC)),
        ("ann@corp.org", datetime(2026, 12, 7, 9, tzinfo=UTC)),
    ]
    assert {(e.campaign_id, e.action, e.url, e.ip) for e in events} == {("4", "open", None, None)}
    commas = "CONTACT_ID,EMAIL,DATE\n1,a@corp.org,2026-12-07T10:00:00Z\n2,b@corp.org,soon\n"
    assert [e.email for e in activity_from_export("4", "all", commas, None)] == ["a@corp.org"]
    assert list(activity_from_export("4", "all", "CONTACT_ID;EMAIL\n1;a@corp.org\n", None)) == []


def test_exports_asked_for_are_the_kinds_the_counters_do_not_put_at_zero() -> None:
    every = ["openers", "clickers", "hardBounces", "softBounces", "unsubscribed", "all"]
    assert exports_for(None, include_sent=True) == every
    assert exports_for(None, include_sent=False) == every[:-1]
    stats = {"sent": 10, "uniqueViews": 4, "uniqueClicks": 0, "hardBounces": 1, "softBounces": 0}
    # no unsubscriptions counter: unknown, so asked for
    assert exports_for(stats, include_sent=True) == [
        "openers",
        "hardBounces",
        "unsubscribed",
        "all",
    ]
    assert exports_for({**stats, "unsubscriptions": 0}, include_sent=False) == [
        "openers",
        "hardBounces",
    ]
