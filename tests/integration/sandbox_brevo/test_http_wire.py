"""Brevo's wire over plain HTTP: auth and error bodies, rate limits, faults, latency."""

from __future__ import annotations

import time

import httpx
import pytest
from brevo.errors import TooEarlyError, TooManyRequestsError
from starlette.applications import Starlette

from campaign_bridge.sandbox.brevo import BrevoHandle

from .conftest import sdk_client


def test_authentication_errors(brevo_sandbox: BrevoHandle) -> None:
    missing = httpx.get(f"{brevo_sandbox.base_url}/contacts")
    assert missing.status_code == 401
    assert missing.json() == {
        "message": "authentication not found in headers",
        "code": "unauthorized",
    }
    wrong = httpx.get(f"{brevo_sandbox.base_url}/contacts", headers={"api-key": "xkeysib-nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"message": "Key not found", "code": "unauthorized"}
    bearer = httpx.get(
        f"{brevo_sandbox.base_url}/contacts",
        headers={"Authorization": f"Bearer {brevo_sandbox.api_key}"},
    )
    assert bearer.status_code == 200


def test_error_bodies(http: httpx.Client) -> None:
    cases = [
        (
            http.get("/contacts/nobody@example.org"),
            404,
            "document_not_found",
            "Contact does not exist",
        ),
        (http.put("/contacts/42", json={}), 404, "document_not_found", "Contact does not exist"),
        (http.delete("/contacts/lists/999"), 404, "document_not_found", "List ID does not exist"),
        (
            http.post("/contacts", json={"email": "not an address"}),
            400,
            "invalid_parameter",
            "Invalid email address",
        ),
        (
            http.post("/contacts", json={"attributes": {"FIRSTNAME": "X"}}),
            400,
            "missing_parameter",
            "Please provide either email, ext_id or SMS attribute for the contact",
        ),
        (
            http.get("/contacts", params={"limit": 1001}),
            400,
            "out_of_range",
            "Limit exceeds max value. Maximum allowed limit is 1000",
        ),
        (
            http.get("/contacts/x@example.org", params={"identifierType": "nick"}),
            400,
            "invalid_parameter",
            "identifierType must be one of email_id, contact_id, ext_id, phone_id, "
            "whatsapp_id, landline_number_id",
        ),
        (
            http.patch("/contacts"),
            405,
            "method_not_allowed",
            "Method not allowed for this endpoint",
        ),
        (
            http.post("/contacts", content=b"{nope"),
            400,
            "bad_request",
            "Input must be a valid JSON object",
        ),
    ]
    for answer, status, code, message in cases:
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/json; charset=utf-8"
        assert answer.json() == {"code": code, "message": message}


def test_success_statuses_and_empty_bodies(http: httpx.Client) -> None:
    created = http.post("/contacts", json={"email": "s@example.org"})
    assert (created.status_code, created.json()) == (201, {"id": 1})
    upsert = http.post("/contacts", json={"email": "s@example.org", "updateEnabled": True})
    assert (upsert.status_code, upsert.content) == (204, b"")
    updated = http.put(
        "/contacts/s%40example.org",
        params={"identifierType": "email_id"},
        json={"attributes": {"FIRSTNAME": "S"}},
    )
    assert (updated.status_code, updated.content) == (204, b"")
    got = http.get("/contacts/1").json()
    assert got["createdAt"].endswith("Z")
    assert got["attributes"] == {"FIRSTNAME": "S"}


def test_rate_limits_headers_and_429(
    brevo_sandbox: BrevoHandle, http: httpx.Client, control: httpx.Client
) -> None:
    # limits off: like an endpoint Brevo does not limit, no limit headers
    assert not [h for h in http.get("/contacts").headers if h.startswith("x-sib-ratelimit")]
    control.post("/limits", json={"rate_limits": True})
    control.post("/clock", json={"advance": 3600})  # fresh windows
    first = http.get("/contacts")
    assert first.headers["x-sib-ratelimit-limit"] == "10"
    assert int(first.headers["x-sib-ratelimit-remaining"]) <= 9
    assert http.get("/processes").headers["x-sib-ratelimit-limit"] == "100"
    control.post("/clock", json={"advance": 3600})
    statuses = [http.get("/contacts").status_code for _ in range(12)]
    assert statuses == [200] * 10 + [429] * 2
    refused = http.get("/contacts")
    assert refused.json() == {
        "code": "too_many_requests",
        "message": "The expected rate limit is exceeded.",
    }
    assert refused.headers["x-sib-ratelimit-remaining"] == "0"
    assert refused.headers["x-sib-ratelimit-reset"] == "1"
    assert "retry-after" not in refused.headers  # Brevo sends none
    with (
        sdk_client(brevo_sandbox.base_url, brevo_sandbox.api_key) as sdk,
        pytest.raises(TooManyRequestsError),
    ):
        sdk.contacts.get_contacts()
    control.post("/clock", json={"advance": 1})
    assert http.get("/contacts").status_code == 200  # the next second's window
    # the hourly window of "everything else": 100 per hour
    control.post("/limits", json={"other_rph": 3, "retry_after": True})
    assert [http.get("/processes").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert int(http.get("/processes").headers["retry-after"]) > 0
    counted = control.get("/limits").json()
    assert counted["rejected"] >= 4
    assert counted["served"]["contacts"] >= 11
    assert counted["served"]["other"] >= 4


def test_faults(brevo_sandbox: BrevoHandle, http: httpx.Client, control: httpx.Client) -> None:
    control.post(
        "/faults",
        json={
            "faults": [
                {"kind": "425", "path": "^/contacts$", "method": "POST"},
                {"kind": "503", "path": "^/processes"},
            ]
        },
    )
    with (
        sdk_client(brevo_sandbox.base_url, brevo_sandbox.api_key) as sdk,
        pytest.raises(TooEarlyError) as early,
    ):
        sdk.contacts.create_contact(email="e@example.org")
    assert early.value.body.code == "account_in_process"
    assert http.post("/contacts", json={"email": "e@example.org"}).status_code == 201  # once
    down = http.get("/processes")
    assert (down.status_code, down.headers["content-type"]) == (503, "text/html")
    control.post("/faults", json={"kind": "drop", "path": "^/contacts$"})
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/contacts")
    control.post("/faults", json={"kind": "timeout", "delay": 0.3, "path": "^/contacts$"})
    started = time.monotonic()
    assert http.get("/contacts").status_code == 200
    assert time.monotonic() - started >= 0.3
    bad = control.post("/faults", json={"kind": "404"})
    assert bad.status_code == 400
    assert control.get("/faults").json() == {"faults": []}


def test_latency(http: httpx.Client, control: httpx.Client) -> None:
    control.post("/limits", json={"latency": 0.2, "latency_per_item": 0.001})
    started = time.monotonic()
    http.post(
        "/contacts/import",
        json={"jsonBody": [{"email": f"l{i}@example.org"} for i in range(100)], "listIds": [1]},
    )
    assert time.monotonic() - started >= 0.3
    control.post("/limits", json={"latency": 0, "latency_per_item": 0})


@pytest.mark.anyio
async def test_in_process_app_with_asgi_transport(brevo_sandbox_app: Starlette) -> None:
    app = brevo_sandbox_app
    sandbox = app.state.sandbox
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sandbox/v3",
        headers={"api-key": sandbox.default_api_key},
    ) as client:
        created = await client.post("/contacts", json={"email": "ada@example.org", "listIds": [1]})
        assert created.status_code == 201
        listed = await client.get("/contacts/lists/1/contacts")
        assert [c["email"] for c in listed.json()["contacts"]] == ["ada@example.org"]
    assert sandbox.contacts[1].email == "ada@example.org"
