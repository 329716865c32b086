"""Webhooks: the SDK manages them; the sandbox delivers marketing events as JSON POSTs to a real
receiver, with Brevo's authentication options, batching and retries."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from brevo import Brevo
from brevo.errors import BadRequestError, NotFoundError
from brevo.webhooks import CreateWebhookRequestAuth, CreateWebhookRequestHeadersItem

from campaign_bridge.sandbox.brevo import BrevoHandle
from tests.integration.sandbox.receiver import Receiver, running_receiver


def _flush(control: httpx.Client) -> dict[str, Any]:
    answer = control.post("/webhooks/flush", json={"timeout": 20})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _bodies(receiver: Receiver) -> list[Any]:
    return [json.loads(r.body) for r in receiver.posts]


def test_webhook_crud(sdk: Brevo) -> None:
    marketing = sdk.webhooks.create_webhook(
        url="https://hooks.example.org/brevo",
        events=["unsubscribed", "hardBounce", "contactUpdated"],
        type="marketing",
        description="bridge",
    )
    transactional = sdk.webhooks.create_webhook(
        url="https://hooks.example.org/t", events=["delivered"]
    )
    # the listing's type defaults to transactional
    assert [h.id for h in sdk.webhooks.get_webhooks().webhooks] == [transactional.id]
    listed = sdk.webhooks.get_webhooks(type="marketing").webhooks
    assert [(h.id, h.type, h.events) for h in listed] == [
        (marketing.id, "marketing", ["unsubscribed", "hardBounce", "contactUpdated"])
    ]
    sdk.webhooks.update_webhook(marketing.id, events=["spam"], description="changed")
    got = sdk.webhooks.get_webhook(marketing.id)
    assert (got.events, got.description) == (["spam"], "changed")
    with pytest.raises(BadRequestError) as bad_event:
        sdk.webhooks.create_webhook(
            url="https://hooks.example.org/x", events=["sent"], type="marketing"
        )
    assert bad_event.value.body == {
        "code": "invalid_parameter",
        "message": "Invalid events for a marketing webhook: sent",
    }
    sdk.webhooks.delete_webhook(marketing.id)
    with pytest.raises(NotFoundError) as gone:
        sdk.webhooks.get_webhook(marketing.id)
    assert gone.value.body == {"code": "document_not_found", "message": "Webhook not found"}


def test_marketing_events_are_posted_with_bearer_auth_and_headers(
    sdk: Brevo, brevo_sandbox: BrevoHandle, control: httpx.Client
) -> None:
    with running_receiver() as receiver:
        hook = sdk.webhooks.create_webhook(
            url=receiver.url("/brevo"),
            events=["unsubscribed", "hardBounce", "contactUpdated", "listAddition"],
            type="marketing",
            auth=CreateWebhookRequestAuth(type="bearer", token="s3cret"),
            headers=[CreateWebhookRequestHeadersItem(key="X-Tenant", value="acme")],
        )
        sdk.contacts.create_contact(email="w@example.org", list_ids=[brevo_sandbox.list_id])
        control.post("/contacts/w@example.org/unsubscribe")
        _flush(control)
        posts = receiver.posts
        assert {p.headers["authorization"] for p in posts} == {"Bearer s3cret"}
        assert {p.headers["x-tenant"] for p in posts} == {"acme"}
        assert {p.headers["content-type"] for p in posts} == {"application/json"}
        events = {b["event"]: b for b in _bodies(receiver)}
        assert events["list_addition"]["list_id"] == [brevo_sandbox.list_id]
        updated = events["contact_updated"]
        assert updated["content"] == [{"emailBlacklisted": True}]
        assert (updated["id"], updated["email"]) == (hook.id, "w@example.org")
        assert updated["api_key_name"] == ""  # the contact unsubscribed, not an API key
        assert events["list_addition"]["api_key_name"] == "default"  # our own write: an echo
        assert "unsubscribed" not in events  # no campaign: a contact change, not a campaign event


def test_campaign_events_payloads_basic_auth_and_batches(
    sdk: Brevo, brevo_sandbox: BrevoHandle, control: httpx.Client
) -> None:
    from .test_sdk_campaigns import _audience, _send

    assert brevo_sandbox.list_id is not None
    with running_receiver() as receiver:
        single = receiver.url("/single").replace("http://", "http://user:pa%3Ass@")
        sdk.webhooks.create_webhook(
            url=single, events=["hardBounce", "unsubscribed", "click"], type="marketing"
        )
        sdk.webhooks.create_webhook(
            url=receiver.url("/batched"), events=["delivered"], type="marketing", batched=True
        )
        _audience(sdk, brevo_sandbox.list_id, 300)
        campaign_id = _send(sdk, brevo_sandbox.list_id)
        _flush(control)
        singles = [json.loads(r.body) for r in receiver.posts if r.path == "/single"]
        batches = [json.loads(r.body) for r in receiver.posts if r.path == "/batched"]
        expected_basic = "Basic " + base64.b64encode(b"user:pa:ss").decode()
        assert {r.headers["authorization"] for r in receiver.posts if r.path == "/single"} == {
            expected_basic
        }
        kinds = {b["event"] for b in singles}
        assert kinds == {"hard_bounce", "unsubscribed", "click"}
        unsub = next(b for b in singles if b["event"] == "unsubscribed")
        assert unsub["camp_id"] == campaign_id
        assert unsub["campaign name"] == "June news"
        assert unsub["list_id"] == [brevo_sandbox.list_id]
        assert unsub["tag"] == "june"
        assert isinstance(unsub["ts_event"], int)
        assert unsub["ts_event"] >= unsub["ts_sent"]
        assert unsub["date_sent"] == "2026-06-01 09:00:00"
        click = next(b for b in singles if b["event"] == "click")
        assert click["URL"].startswith("https://")
        # batched: JSON arrays of at most 500 events, every delivery in them
        assert all(isinstance(b, list) and 0 < len(b) <= 500 for b in batches)
        delivered = [e for b in batches for e in b]
        stats = sdk.email_campaigns.get_email_campaign(campaign_id).statistics.global_stats
        assert len(delivered) == stats.delivered
        assert {e["event"] for e in delivered} == {"delivered"}


def test_failed_deliveries_are_retried_and_4xx_dropped(sdk: Brevo, control: httpx.Client) -> None:
    control.put("/webhooks/settings", json={"retry_compression": 100_000})
    with running_receiver() as receiver:
        receiver.post_statuses = [500, 503, 200]
        sdk.webhooks.create_webhook(
            url=receiver.url("/retry"), events=["contactUpdated"], type="marketing"
        )
        sdk.contacts.create_contact(email="r@example.org")
        sdk.contacts.update_contact("r@example.org", attributes={"FIRSTNAME": "R"})
        summary = _flush(control)
        assert summary["delivered"] == 1
        assert len(receiver.posts) == 3
        log = control.get("/webhooks/deliveries").json()["deliveries"]
        assert [a["status"] for a in log[0]["attempts"]] == [500, 503, 200]
        receiver.post_statuses = [400]
        sdk.contacts.update_contact("r@example.org", attributes={"FIRSTNAME": "S"})
        summary = _flush(control)
        assert summary["failed"] == 1
        dropped = control.get("/webhooks/deliveries", params={"state": "dropped"}).json()
        assert dropped["count"] == 1
        assert len(receiver.posts) == 4  # no retry after a 4xx


def test_import_notify_url_is_called(
    sdk: Brevo, brevo_sandbox: BrevoHandle, control: httpx.Client
) -> None:
    with running_receiver() as receiver:
        started = sdk.contacts.import_contacts(
            json_body=[{"email": "n@example.org"}],
            list_ids=[brevo_sandbox.list_id],
            notify_url=receiver.url("/done"),
        )
        sdk.process.get_process(started.process_id)
        _flush(control)
        deadline = time.monotonic() + 5
        while not receiver.posts and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _bodies(receiver) == [
            {"processId": started.process_id, "name": "IMPORTUSER", "status": "completed"}
        ]


def test_simulated_campaign_events_fire_marketing_webhooks(
    sdk: Brevo, brevo_sandbox: BrevoHandle, control: httpx.Client
) -> None:
    from .test_sdk_campaigns import _audience, _send

    assert brevo_sandbox.list_id is not None
    control.put("/activity", json={"rates": {"hard_bounce": 0, "soft_bounce": 0, "open": 0}})
    _audience(sdk, brevo_sandbox.list_id, 3)
    campaign_id = _send(sdk, brevo_sandbox.list_id)
    with running_receiver() as receiver:
        sdk.webhooks.create_webhook(
            url=receiver.url("/m"), events=["hardBounce", "spam", "unsubscribed"], type="marketing"
        )
        for email, action, body in (
            ("r0@example.org", "bounce", {"type": "hard", "campaignId": campaign_id}),
            ("r1@example.org", "spam", {"campaignId": campaign_id}),
            ("r2@example.org", "unsubscribe", {"campaignId": campaign_id}),
        ):
            assert control.post(f"/contacts/{email}/{action}", json=body).status_code == 200
        _flush(control)
        got = {(b["event"], b["email"], b["camp_id"]) for b in _bodies(receiver)}
        assert got == {
            ("hard_bounce", "r0@example.org", campaign_id),
            ("spam", "r1@example.org", campaign_id),
            ("unsubscribed", "r2@example.org", campaign_id),
        }
        bounce = next(b for b in _bodies(receiver) if b["event"] == "hard_bounce")
        assert bounce["reason"] == "550 5.1.1 mailbox unknown"
        assert bounce["sending_ip"]
