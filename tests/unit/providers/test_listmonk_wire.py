"""listmonk's wire format as plain values (no server): statuses, uploads, queries."""

from __future__ import annotations

import base64
import csv
import io
from typing import Any

import httpx
import orjson
import pytest

from campaign_bridge.providers._listmonk_wire import (
    auth_header,
    campaign_from,
    csv_upload,
    email_query,
    existing_from,
    list_state,
    multipart,
    normalize_email,
    quote,
    snapshot_from,
)
from campaign_bridge.providers.base import MemberStatus as S


def subscriber(status: str = "enabled", **lists: tuple[str, str]) -> dict[str, Any]:
    """A subscriber as listmonk renders it; ``lists`` maps list id -> (subscription, optin)."""
    return {
        "id": 7,
        "email": "ann@example.com",
        "name": "Ann",
        "attribs": {"city": "Oslo"},
        "status": status,
        "updated_at": "2026-06-01T10:00:00+02:00",
        "lists": [
            {
                "id": int(key[1:]),
                "optin": optin,
                "subscription_status": sub,
                "subscription_updated_at": "2026-06-02T10:00:00Z",
            }
            for key, (sub, optin) in lists.items()
        ],
    }


@pytest.mark.parametrize(
    ("status", "subscription", "optin", "expected"),
    [
        ("enabled", "confirmed", "single", S.SUBSCRIBED),
        ("enabled", "unconfirmed", "single", S.SUBSCRIBED),  # campaigns reach them
        ("enabled", "unconfirmed", "double", S.PENDING),  # campaigns skip them
        ("enabled", "unsubscribed", "double", S.UNSUBSCRIBED),
        ("disabled", "confirmed", "single", S.SUBSCRIBED),  # the send query ignores disabled
        # listmonk lets a list "add" confirm a blocklisted subscriber: never consent
        ("blocklisted", "confirmed", "single", S.UNSUBSCRIBED),
        ("blocklisted", "unsubscribed", "double", S.UNSUBSCRIBED),
    ],
)
def test_status_on_the_list(status: str, subscription: str, optin: str, expected: S) -> None:
    found = existing_from(subscriber(status, l1=(subscription, optin)), 1)
    assert list_state(found) is expected


def test_blocklisted_after_a_bounce_is_cleaned_and_says_why() -> None:
    found = existing_from(subscriber("blocklisted", l1=("confirmed", "single")), 1)
    bounced = snapshot_from(found, bounced=True)
    assert bounced.status is S.CLEANED
    assert bounced.unsubscribe_reason == "bounced (blocklisted by listmonk)"
    assert snapshot_from(found).unsubscribe_reason == "blocklisted"


def test_not_on_the_list_is_archived_and_the_later_change_time_wins() -> None:
    on_other = existing_from(subscriber(l2=("confirmed", "single")), 1)
    assert list_state(on_other) is S.ARCHIVED
    on_list = snapshot_from(existing_from(subscriber(l1=("unsubscribed", "single")), 1))
    assert on_list.last_changed is not None
    assert on_list.last_changed.isoformat() == "2026-06-02T10:00:00+00:00"
    assert on_list.merge_fields == {"name": "Ann", "city": "Oslo"}


def test_the_member_id_is_listmonks_number_and_not_the_address() -> None:
    """Two subscribers at one address (one left it, one signed up there since) are two
    members; one subscriber under two addresses (before and after an edit) is one."""
    before = snapshot_from(existing_from(subscriber(l1=("confirmed", "single")), 1))
    moved = subscriber(l1=("confirmed", "single"))
    moved["email"] = "ann@elsewhere.org"
    after = snapshot_from(existing_from(moved, 1))
    newcomer = subscriber(l1=("confirmed", "single"))
    newcomer["id"] = 8
    again = snapshot_from(existing_from(newcomer, 1))
    assert before.member_id == after.member_id == "7"
    assert again.email == before.email
    assert again.member_id == "8"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Ann@Example.COM ", "ann@example.com"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("no-at-sign", None),
        ("two@@example.com", None),
        ("a@b", None),
        ("x" * 995 + "@ex.com", None),  # over listmonk's 1000 characters
    ],
)
def test_addresses_are_normalised_as_listmonk_stores_them(raw: str, expected: str | None) -> None:
    assert normalize_email(raw) == expected


def test_queries_quote_addresses() -> None:
    assert quote("o'brien@example.ie") == "'o''brien@example.ie'"
    assert email_query(["a@x.org", "o'b@x.org"]) == (
        "subscribers.email IN ('a@x.org','o''b@x.org')"
    )


def test_csv_upload_round_trips_through_a_csv_reader() -> None:
    rows = [
        ("a@x.org", 'Ann "the, first"', {"city": "Oslo", "n": 3}),
        ("b@x.org", "", {}),
    ]
    parsed = list(csv.reader(io.StringIO(csv_upload(rows).decode())))
    assert parsed[0] == ["email", "name", "attributes"]
    assert parsed[1][:2] == ["a@x.org", 'Ann "the, first"']
    assert orjson.loads(parsed[1][2]) == {"city": "Oslo", "n": 3}
    assert parsed[2] == ["b@x.org", "", "{}"]


def test_multipart_carries_params_and_file() -> None:
    body, content_type = multipart({"params": '{"mode":"subscribe"}'}, "f.csv", b"email\na@x\n")
    boundary = content_type.split("boundary=")[1]
    assert content_type.startswith("multipart/form-data; ")
    assert body.count(f"--{boundary}".encode()) == 3
    assert b'name="params"\r\n\r\n{"mode":"subscribe"}\r\n' in body
    assert b'filename="f.csv"' in body
    assert body.endswith(f"--{boundary}--\r\n".encode())


def test_auth_headers() -> None:
    assert auth_header("bridge", "t0k") == "token bridge:t0k"
    basic = auth_header("bridge", "t0k", "basic")
    assert base64.b64decode(basic.removeprefix("Basic ")) == b"bridge:t0k"


def test_campaigns_use_the_shared_status_words() -> None:
    campaign = campaign_from(
        {
            "id": 4,
            "name": "June",
            "subject": "Hi",
            "status": "finished",
            "lists": [{"id": 3, "name": "L"}],
            "created_at": "2026-06-01T00:00:00Z",
            "started_at": "2026-06-01T01:00:00Z",
            "sent": 12,
        }
    )
    assert (campaign.id, campaign.list_id, campaign.status, campaign.emails_sent) == (
        "4",
        "3",
        "sent",
        12,
    )
    assert campaign.send_time is not None
    assert campaign.send_time.hour == 1


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, b"", "too_many_requests"),  # a proxy in front: listmonk has no limiter
        (502, b"", "server_error_502"),
        (500, b'{"message": "Internal Server Error"}', "server_error_500"),
        # listmonk's database refusing a value: retrying cannot help
        (500, b'{"message": "Error creating Subscriber: invalid input value for enum"}', None),
        (400, b'{"message": "Invalid email."}', None),
        (403, b'{"message": "invalid API credentials"}', None),
    ],
)
def test_which_answers_are_retried(status: int, body: bytes, expected: str | None) -> None:
    from campaign_bridge.providers._listmonk_session import listmonk_retriable

    response = httpx.Response(status, content=body, headers={"content-type": "application/json"})
    assert listmonk_retriable(response) == expected
