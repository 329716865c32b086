"""Async /batches end to end: lifecycle, the same rules as direct calls, a real tar.gz, limits,
batch webhooks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mailchimp_marketing.api_client import ApiClientError

from campaign_bridge.sandbox.mailchimp.app import create_app
from campaign_bridge.sandbox.mailchimp.batches import read_archive
from campaign_bridge.sandbox.mailchimp.model import subscriber_hash
from tests.integration.sandbox.receiver import Receiver, running_receiver
from tests.integration.sandbox.schema import assert_matches
from tests.integration.sandbox.sdk_clients import mailchimp3, official


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def control(handle: Any, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, handle.control_url + path, json=body, timeout=60)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def wait_finished(client: Any, batch_id: str) -> tuple[dict[str, Any], list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        batch: dict[str, Any] = client.batches.status(batch_id)
        if not seen or seen[-1] != batch["status"]:
            seen.append(batch["status"])
        if batch["status"] == "finished":
            return batch, seen
        time.sleep(0.005)
    raise AssertionError(f"batch {batch_id} did not finish: {seen}")


def operations(list_id: str) -> list[dict[str, Any]]:
    return [
        {
            "method": "POST",
            "path": f"/lists/{list_id}/members",
            "operation_id": "add-ok",
            "body": json.dumps({"email_address": "ops1@mail.example.org", "status": "subscribed"}),
        },
        {
            "method": "POST",
            "path": f"/lists/{list_id}/members",
            "operation_id": "add-fake",
            "body": json.dumps({"email_address": "nobody@example.com", "status": "subscribed"}),
        },
        {
            "method": "PUT",
            "path": f"/lists/{list_id}/members/{subscriber_hash('ops2@mail.example.org')}",
            "operation_id": "upsert",
            "body": json.dumps(
                {"email_address": "ops2@mail.example.org", "status_if_new": "subscribed"}
            ),
        },
        {
            "method": "GET",
            "path": f"/lists/{list_id}/members",
            "operation_id": "page",
            "params": {"count": 1, "fields": "members.email_address,total_items"},
        },
        {"method": "GET", "path": "/lists/0000000000", "operation_id": "missing"},
        {
            "method": "POST",
            "path": f"/lists/{list_id}/members",
            "operation_id": "broken",
            "body": "{not json",
        },
    ]


def test_batch_runs_every_operation_like_a_direct_call(mailchimp_sandbox: Any) -> None:
    handle = mailchimp_sandbox
    control(handle, "PUT", "/batches/settings", {"step_seconds": 0.05})
    client = official(handle)
    started = client.batches.start({"operations": operations(handle.list_id)})
    assert_matches(started, "/batches", "POST")
    assert started["status"] == "pending"
    assert started["total_operations"] == 6
    batch, seen = wait_finished(client, started["id"])
    assert_matches(batch, f"/batches/{started['id']}")
    assert seen[-1] == "finished"
    order = ["pending", "preprocessing", "started", "finalizing", "finished"]
    assert [s for s in order if s in seen] == seen  # never goes backwards
    dump = control(handle, "GET", "/state")["extensions"]["batches"]["batches"]
    assert dump[0]["history"] == order
    assert (batch["finished_operations"], batch["errored_operations"]) == (6, 3)
    assert batch["completed_at"] >= batch["submitted_at"]

    archive = httpx.get(batch["response_body_url"], timeout=10)
    assert archive.status_code == 200
    results = {r["operation_id"]: r for r in read_archive(archive.content)}
    assert results["add-ok"]["status_code"] == 200
    assert json.loads(results["add-ok"]["response"])["email_address"] == "ops1@mail.example.org"
    fake = json.loads(results["add-fake"]["response"])
    direct = httpx.post(
        f"{handle.base_url}/lists/{handle.list_id}/members",
        json={"email_address": "nobody@example.com", "status": "subscribed"},
        auth=("x", handle.api_key),
    ).json()
    assert results["add-fake"]["status_code"] == 400
    assert (fake["title"], fake["detail"]) == (direct["title"], direct["detail"])
    assert results["upsert"]["status_code"] == 200
    page = json.loads(results["page"]["response"])
    assert set(page) == {"members", "total_items"}
    assert results["missing"]["status_code"] == 404
    assert results["broken"]["status_code"] == 400
    assert json.loads(results["broken"]["response"])["title"] == "JSON Parse Error"
    member = client.lists.get_list_member(handle.list_id, subscriber_hash("ops2@mail.example.org"))
    assert member["status"] == "subscribed"


def test_list_delete_and_manual_processing(mailchimp_sandbox: Any) -> None:
    handle = mailchimp_sandbox
    control(handle, "PUT", "/batches/settings", {"auto": False})
    client = official(handle)
    first = client.batches.start({"operations": [{"method": "GET", "path": "/ping"}]})
    second = client.batches.start({"operations": []})
    listing = mailchimp3(handle).batches.all(get_all=True)
    assert_matches(listing, "/batches")
    assert {b["id"] for b in listing["batches"]} == {first["id"], second["id"]}
    time.sleep(0.1)
    assert client.batches.status(first["id"])["status"] == "pending"  # nothing runs by itself
    done = control(handle, "POST", "/batches/process")
    assert done["processed"] == 2
    assert client.batches.status(first["id"])["status"] == "finished"
    assert client.batches.delete_request(first["id"]).status_code == 204
    with pytest.raises(ApiClientError) as gone:
        client.batches.status(first["id"])
    assert gone.value.status_code == 404
    with pytest.raises(ApiClientError) as bad:
        client.batches.start({"operations": [{"method": "POST", "path": "/x", "body": {"a": 1}}]})
    assert json.loads(bad.value.text)["title"] == "Invalid Resource"


@pytest.mark.anyio
async def test_more_than_500_pending_batches_get_429() -> None:
    app = create_app()
    sandbox = app.state.sandbox
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        await http.put("/_sandbox/batches/settings", json={"auto": False, "step_seconds": 0})
        auth = ("x", sandbox.default_api_key)
        body = {"operations": [{"method": "GET", "path": "/ping"}]}
        for _ in range(500):
            assert (await http.post("/3.0/batches", json=body, auth=auth)).status_code == 200
        refused = await http.post("/3.0/batches", json=body, auth=auth)
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("application/problem+json")
        await http.post("/_sandbox/batches/process")
        assert (await http.post("/3.0/batches", json=body, auth=auth)).status_code == 200


def test_batch_webhooks_are_validated_capped_and_called(
    mailchimp_sandbox: Any, receiver: Receiver
) -> None:
    handle = mailchimp_sandbox
    client = official(handle)
    hook = client.batchWebhooks.create({"url": receiver.url("/batches?k=1")})
    assert_matches(hook, "/batch-webhooks", "POST")
    assert receiver.requests[0].headers["user-agent"] == "MailChimp.com WebHook Validator"
    for n in range(19):
        client.batchWebhooks.create({"url": receiver.url(f"/other{n}"), "enabled": False})
    with pytest.raises(ApiClientError) as capped:
        client.batchWebhooks.create({"url": receiver.url("/one-too-many")})
    assert capped.value.status_code == 400
    listing = client.batchWebhooks.list(count=100)
    assert_matches(listing, "/batch-webhooks")
    assert listing["total_items"] == 20

    started = client.batches.start(
        {"operations": [{"method": "GET", "path": "/ping", "operation_id": "p"}]}
    )
    batch, _ = wait_finished(client, started["id"])
    control(handle, "POST", "/webhooks/flush", {"timeout": 20})
    [post] = receiver.posts  # disabled hooks get nothing
    assert post.path == "/batches"
    assert post.headers["content-type"] == "application/x-www-form-urlencoded"
    assert post.form["data[id]"] == batch["id"]
    assert post.form["data[status]"] == "finished"
    assert post.form["data[response_body_url]"] == batch["response_body_url"]
    results = read_archive(httpx.get(post.form["data[response_body_url]"]).content)
    assert results == [
        {
            "status_code": 200,
            "operation_id": "p",
            "response": json.dumps(
                {"health_status": "Everything's Chimpy!"}, separators=(",", ":")
            ),
        }
    ]
