"""Request bodies and answer parsing for Mailchimp (no I/O)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime, timedelta, timezone

import pytest

from campaign_bridge.errors import ConfigurationError
from campaign_bridge.providers._mailchimp_wire import (
    BATCH_SUBSCRIBE_MAX,
    Operation,
    activity_events,
    api_base_url,
    batch_operation,
    batch_subscribe_body,
    batch_subscribe_error,
    campaign_from,
    format_time,
    member_put_body,
    outcome_from_error,
    outcome_from_member,
    parse_batch_results,
    parse_time,
    report_from,
    since_param,
    snapshot_from,
    subscriber_hash,
)
from campaign_bridge.providers.base import MemberStatus, MemberUpsert, OutcomeKind


def member(**changes: object) -> MemberUpsert:
    values: dict[str, object] = {
        "key": "42",
        "email": "  Jane.Doe@Example.ORG ",
        "status_if_new": MemberStatus.SUBSCRIBED,
    }
    values.update(changes)
    return MemberUpsert(**values)  # type: ignore[arg-type]


def test_subscriber_hash_is_md5_of_trimmed_lowercase() -> None:
    assert subscriber_hash("  Jane.Doe@Example.ORG ") == subscriber_hash("jane.doe@example.org")
    assert subscriber_hash("A@B.co") == hashlib.md5(b"a@b.co").hexdigest()


def test_base_url_from_the_key_data_centre_unless_overridden() -> None:
    key = "0123456789abcdef0123456789abcdef-us21"
    assert api_base_url(key, None) == "https://us21.api.mailchimp.com/3.0"
    assert api_base_url(key, "http://127.0.0.1:8089/3.0/") == "http://127.0.0.1:8089/3.0"
    with pytest.raises(ConfigurationError) as caught:
        api_base_url("0123456789abcdef0123456789abcdef", None)
    assert "data-centre" in str(caught.value)
    assert "0123456789abcdef" not in str(caught.value)


def test_put_without_status_never_sends_a_status() -> None:
    body = member_put_body(member(status=None, merge_fields={"FNAME": "Jane"}, tags=("vip",)))
    assert "status" not in body
    assert body["status_if_new"] == "subscribed"
    assert body["email_address"] == "Jane.Doe@Example.ORG"
    assert body["merge_fields"] == {"FNAME": "Jane"}
    assert body["tags"] == ["vip"]


def test_put_with_an_approved_status_sends_it() -> None:
    body = member_put_body(
        member(
            status=MemberStatus.PENDING,
            status_if_new=MemberStatus.PENDING,
            interests={"abc123": True},
            marketing_permissions={"perm1": True, "perm2": False},
            language="fr",
        )
    )
    assert body["status"] == "pending"
    assert body["status_if_new"] == "pending"
    assert body["interests"] == {"abc123": True}
    assert body["language"] == "fr"
    assert body["marketing_permissions"] == [
        {"marketing_permission_id": "perm1", "enabled": True},
        {"marketing_permission_id": "perm2", "enabled": False},
    ]


def test_batch_subscribe_creates_only_with_status_if_new() -> None:
    body = batch_subscribe_body(
        [member(status_if_new=MemberStatus.TRANSACTIONAL, tags=("a", "b")), member(key="2")]
    )
    assert body["update_existing"] is False
    first = body["members"][0]
    assert first == {
        "email_address": "Jane.Doe@Example.ORG",
        "status": "transactional",
        "tags": ["a", "b"],
    }
    with pytest.raises(ValueError, match="500"):
        batch_subscribe_body([member(key=str(i)) for i in range(BATCH_SUBSCRIBE_MAX + 1)])


def test_batch_operation_body_is_a_json_string() -> None:
    op = Operation("k1", "PUT", "/lists/l1/members/h", {"email_address": "é@x.org"})
    item = batch_operation(op)
    assert item == {
        "method": "PUT",
        "path": "/lists/l1/members/h",
        "operation_id": "k1",
        "body": '{"email_address":"é@x.org"}',
    }
    assert "body" not in batch_operation(Operation("k2", "DELETE", "/lists/l1/members/h"))


def _archive(files: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        folder = tarfile.TarInfo("results")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, content in files.items():
            data = json.dumps(content).encode() if not isinstance(content, bytes) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_batch_result_archive_is_parsed_per_operation() -> None:
    member_json = {"id": "h1", "email_address": "a@x.org", "status": "unsubscribed"}
    problem = {
        "type": "https://mailchimp.com/developer/marketing/docs/errors/",
        "title": "Member In Compliance State",
        "status": 400,
        "detail": "a@x.org is in a compliance state due to unsubscribe, bounce, or compliance "
        "review and cannot be subscribed.",
        "instance": "",
    }
    archive = _archive(
        {
            "results/a.json": [
                {"status_code": 200, "operation_id": "k1", "response": json.dumps(member_json)},
                {"status_code": 400, "operation_id": "k2", "response": json.dumps(problem)},
            ],
            "results/b.json": [
                {"status_code": 204, "operation_id": "k3", "response": ""},
                {"status_code": 503, "operation_id": "k4", "response": "<html>down</html>"},
                {"status_code": 200, "operation_id": None, "response": "{}"},
            ],
            "results/readme.txt": b"not json",
        }
    )
    results = parse_batch_results(archive)
    assert set(results) == {"k1", "k2", "k3", "k4"}
    assert results["k1"].status == 200
    assert results["k1"].body == member_json
    assert results["k2"].problem is not None
    assert results["k2"].problem.title == "Member In Compliance State"
    assert results["k3"].status == 204
    assert results["k3"].body is None
    assert results["k4"].problem is not None
    assert results["k4"].problem.is_json is False


def test_outcomes_from_answers() -> None:
    created = outcome_from_member(
        "7", OutcomeKind.CREATED, {"id": "abc", "status": "pending", "email_address": "x@y.org"}
    )
    assert (created.kind, created.member_id, created.status) == (
        OutcomeKind.CREATED,
        "abc",
        MemberStatus.PENDING,
    )
    entry = {
        "email_address": "x@y.org",
        "error": "x@y.org looks fake or invalid, please enter a real email address.",
        "error_code": "ERROR_GENERIC",
    }
    rejected = outcome_from_error("7", "abc", batch_subscribe_error(entry, "X@Y.org"))
    assert rejected.kind is OutcomeKind.REJECTED
    assert rejected.reason_code == "fake_or_invalid_email"
    assert rejected.message is not None
    assert "x@y.org" not in rejected.message.lower()


def test_time_formats() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2026-01-02T01:04:05+00:00"
    assert since_param(moment) == "2026-01-02T01:04:04+00:00"
    with pytest.raises(ValueError, match="aware"):
        format_time(datetime(2026, 1, 1))
    assert parse_time("2021-02-27T00:30:39+00:00") == datetime(2021, 2, 27, 0, 30, 39, tzinfo=UTC)
    assert parse_time("2021-02-27T02:30:39+02:00") == datetime(2021, 2, 27, 0, 30, 39, tzinfo=UTC)
    assert parse_time("") is None
    assert parse_time(None) is None
    assert parse_time("garbage") is None


def test_snapshot_campaign_report_and_activity_parsing() -> None:
    snap = snapshot_from(
        {
            "id": "h",
            "email_address": "a@x.org",
            "status": "archived",
            "last_changed": "2026-01-01T00:00:00+00:00",
            "unsubscribe_reason": "",
            "merge_fields": {"FNAME": "A"},
            "tags": [{"id": 1, "name": "vip"}],
        }
    )
    assert snap is not None
    assert snap.status is MemberStatus.ARCHIVED
    assert snap.tags == ("vip",)
    assert snap.unsubscribe_reason is None
    assert snapshot_from({"id": "h", "status": "weird"}) is None

    campaign = campaign_from(
        {
            "id": "c1",
            "status": "sent",
            "create_time": "2026-01-01T00:00:00+00:00",
            "send_time": "",
            "emails_sent": 12,
            "recipients": {"list_id": "l1"},
            "settings": {"title": "T", "subject_line": "S"},
        }
    )
    assert (campaign.list_id, campaign.title, campaign.subject, campaign.send_time) == (
        "l1",
        "T",
        "S",
        None,
    )
    report = report_from(
        {
            "id": "c1",
            "emails_sent": 10,
            "abuse_reports": 1,
            "unsubscribed": 2,
            "bounces": {"hard_bounces": 3, "soft_bounces": 4, "syntax_errors": 0},
            "opens": {"opens_total": 9, "unique_opens": 5, "last_open": ""},
            "clicks": {"clicks_total": 7, "unique_clicks": 6, "last_click": "2026-01-01T00:00:00Z"},
        }
    )
    assert (report.hard_bounces, report.soft_bounces, report.unique_clicks) == (3, 4, 6)
    assert report.last_open is None
    assert report.last_click == datetime(2026, 1, 1, tzinfo=UTC)

    entry = {
        "email_address": "a@x.org",
        "activity": [
            {"action": "open", "timestamp": "2026-01-01T10:00:00+00:00", "ip": "1.2.3.4"},
            {"action": "click", "timestamp": "2026-01-01T11:00:00+00:00", "url": "https://e.org"},
            {"action": "bounce", "type": "hard", "timestamp": "2026-01-01T09:00:00+00:00"},
        ],
    }
    since = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)
    events = activity_events("c1", entry, since)
    assert [(e.action, e.url, e.ip) for e in events] == [
        ("open", None, "1.2.3.4"),
        ("click", "https://e.org", None),
    ]
    bounce = activity_events("c1", entry, None)[2]
    assert (bounce.action, bounce.bounce_type) == ("bounce", "hard")


def test_unsendable_text_is_found_by_field() -> None:
    from campaign_bridge.providers._mailchimp_wire import unsendable_field

    bad = "caf\udce9"  # an undecodable byte kept as a lone surrogate
    assert unsendable_field(member(merge_fields={"FNAME": "Zoë", "NUL": "a\x00b"})) is None
    assert unsendable_field(member(merge_fields={"CITY": bad})) == "merge_fields.CITY"
    assert unsendable_field(member(merge_fields={"ADDRESS": {"city": bad}})) == (
        "merge_fields.ADDRESS"
    )
    assert unsendable_field(member(tags=("ok", bad))) == "tags"
    assert unsendable_field(member(email=f"{bad}@x.org")) == "email"
    assert len(subscriber_hash(f"{bad}@x.org")) == 32
