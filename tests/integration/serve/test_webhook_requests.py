"""The webhook endpoint over a real socket: auth, size limit, malformed bodies, dedupe, apply."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge.config import Settings
from campaign_bridge.server import create_app
from campaign_bridge.state import consent_ledger, contact_state, member_status, webhook_events
from campaign_bridge.status_changes import email_hash
from tests.integration.serve.conftest import OLD_TOKEN, TOKEN, close_store, open_store, serving

LIST_ID = "a6b5da1054"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def settings_for(state_url: str, **server: Any) -> Settings:
    return Settings.model_validate(
        {
            "state_url": state_url,
            "server": {"webhook_tokens": [TOKEN, OLD_TOKEN], "max_body_bytes": 4096, **server},
            "syncs": {
                "crm": {
                    "source": {"url": "sqlite://", "table": "contacts"},
                    "destination": {"api_key": "0" * 32 + "-us6", "list_id": LIST_ID},
                }
            },
        }
    )


def unsubscribe_body(email: str, fired: str = "2026-11-26 10:00:00") -> bytes:
    return urlencode(
        [
            ("type", "unsubscribe"),
            ("fired_at", fired),
            ("data[action]", "unsub"),
            ("data[reason]", "manual"),
            ("data[list_id]", LIST_ID),
            ("data[email]", email),
            ("data[merges][EMAIL]", email),
            ("data[merges][ADDRESS][city]", "Springfield"),
            ("data[merges][GROUPINGS][0][name]", "Topics"),
            ("data[merges][GROUPINGS][0][groups]", "News,Offers"),
        ]
    ).encode()


@pytest.fixture(
    params=[
        "sqlite_url",
        pytest.param("postgresql_url", marks=pytest.mark.postgresql),
        pytest.param("mariadb_url", marks=pytest.mark.mariadb),
    ]
)
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    url = request.getfixturevalue(request.param)
    store = open_store(url)
    with store.engine.begin() as conn:
        conn.execute(
            contact_state.insert(),
            [
                {
                    "sync_name": "crm",
                    "source_key": "42",
                    "email_hash": email_hash("ann@example.org"),
                    "provider_status": "subscribed",
                    "managed": True,
                }
            ],
        )
    app = create_app(settings_for(url), store=store, checks={})
    try:
        with serving(app) as root:
            yield root, store
    finally:
        close_store(store)


def rows(store: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(webhook_events).order_by(webhook_events.c.id)))


def wait_applied(store: Any, count: int, timeout: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = rows(store)
        if len(found) >= count and all(r.applied_at is not None for r in found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"events not applied in time: {found}")
        time.sleep(0.05)


def test_validating_get_answers_for_either_token(served: tuple[str, Any]) -> None:
    root, store = served
    with httpx.Client(base_url=root) as client:
        assert client.get(f"/webhooks/mailchimp/{TOKEN}").status_code == 200
        assert client.get(f"/webhooks/mailchimp/{OLD_TOKEN}").status_code == 200
        assert client.get("/webhooks/mailchimp/not-the-token").status_code == 404
    assert rows(store) == []


def test_an_unknown_provider_is_404_and_other_methods_405(served: tuple[str, Any]) -> None:
    root, store = served
    body = unsubscribe_body("ann@example.org")
    with httpx.Client(base_url=root) as client:
        unknown = client.post(f"/webhooks/no-such-provider/{TOKEN}", content=body, headers=FORM)
        no_token = client.post("/webhooks/mailchimp", content=body, headers=FORM)
        put = client.put(f"/webhooks/mailchimp/{TOKEN}", content=body, headers=FORM)
    assert (unknown.status_code, no_token.status_code, put.status_code) == (404, 404, 405)
    assert rows(store) == []


def test_wrong_token_is_404_stores_nothing_and_never_logs_the_token(
    served: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    root, store = served
    wrong = "guessed-token-aaaaaaaaaaaaaaaaaaaaa"
    with caplog.at_level(logging.INFO), httpx.Client(base_url=root) as client:
        response = client.post(
            f"/webhooks/mailchimp/{wrong}",
            content=unsubscribe_body("ann@example.org"),
            headers=FORM,
        )
        near_miss = client.post(
            f"/webhooks/mailchimp/{TOKEN}x",
            content=unsubscribe_body("ann@example.org"),
            headers=FORM,
        )
    assert response.status_code == 404
    assert near_miss.status_code == 404
    assert rows(store) == []
    refused = [r for r in caplog.records if "unknown token" in r.getMessage()]
    assert len(refused) == 2
    ours = "\n".join(
        r.getMessage() + repr(r.__dict__)
        for r in caplog.records
        if r.name.startswith("campaign_bridge")
    )
    assert wrong not in ours
    assert TOKEN not in ours


def test_oversized_body_is_413_whether_declared_or_streamed(
    served: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    root, store = served
    big = unsubscribe_body("ann@example.org") + b"&pad=" + b"x" * 5000

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for start in range(0, len(big), 512):
            yield big[start : start + 512]

    with caplog.at_level(logging.INFO), httpx.Client(base_url=root) as client:
        declared = client.post(f"/webhooks/mailchimp/{TOKEN}", content=big, headers=FORM)
        streamed = client.post(f"/webhooks/mailchimp/{TOKEN}", content=chunks(), headers=FORM)
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert rows(store) == []
    assert len([r for r in caplog.records if "larger than 4096 bytes" in r.getMessage()]) == 2


MALFORMED = [
    b"\xff\xfe\x00",
    b"this is not a form",
    b"type=subscribe&data[list_id]=a6b5da1054",
    b"type=teleport&data[email]=x@example.org",
    b"type=subscribe&data[email=x@example.org",
]


def test_malformed_bodies_are_400_logged_and_not_stored(
    served: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    root, store = served
    with caplog.at_level(logging.INFO), httpx.Client(base_url=root) as client:
        statuses = [
            client.post(f"/webhooks/mailchimp/{TOKEN}", content=body, headers=FORM).status_code
            for body in MALFORMED
        ]
    assert statuses == [400] * len(MALFORMED)
    assert rows(store) == []
    refused = [r for r in caplog.records if r.getMessage().startswith("webhook refused:")]
    assert len(refused) == len(MALFORMED)


def test_duplicate_delivery_is_stored_and_applied_once(served: tuple[str, Any]) -> None:
    root, store = served
    body = unsubscribe_body("ann@example.org")
    with httpx.Client(base_url=root) as client:
        first = client.post(f"/webhooks/mailchimp/{TOKEN}", content=body, headers=FORM)
        again = client.post(f"/webhooks/mailchimp/{OLD_TOKEN}", content=body, headers=FORM)
        [event] = wait_applied(store, 1)
        metrics = client.get("/-/metrics").text
    assert (first.status_code, again.status_code) == (200, 200)
    assert event.event_type == "unsubscribe"
    assert event.list_id == LIST_ID
    assert event.error is None
    assert '"city":"Springfield"' in event.payload
    with store.engine.connect() as conn:
        ledger = list(conn.execute(sa.select(consent_ledger)))
        status = conn.execute(
            sa.select(contact_state.c.provider_status).where(contact_state.c.source_key == "42")
        ).scalar_one()
        member = conn.execute(sa.select(member_status)).one()
    assert [(r.source_key, r.old_status, r.new_status, r.origin) for r in ledger] == [
        ("42", "subscribed", "unsubscribed", "webhook")
    ]
    assert status == "unsubscribed"
    assert member.status == "unsubscribed"
    assert member.last_changed == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert (
        'campaign_bridge_webhook_events_received_total{provider="mailchimp",type="unsubscribe"} 1.0'
        in metrics
    )
    assert 'campaign_bridge_webhook_events_duplicate_total{provider="mailchimp"} 1.0' in metrics
    assert (
        'campaign_bridge_webhook_events_applied_total{provider="mailchimp",result="applied",'
        'type="unsubscribe"} 1.0' in metrics
    )


def test_event_for_an_unknown_list_is_kept_with_a_note(served: tuple[str, Any]) -> None:
    root, store = served
    body = unsubscribe_body("bob@example.org").replace(LIST_ID.encode(), b"ffffffffff")
    with httpx.Client(base_url=root) as client:
        assert (
            client.post(f"/webhooks/mailchimp/{TOKEN}", content=body, headers=FORM).status_code
            == 200
        )
    [event] = wait_applied(store, 1)
    assert event.error == "no sync has destination list_id 'ffffffffff'"
