"""Wire-level fidelity of the sandbox over a real socket: auth, content types, problems, paging,
partial responses, query booleans, 405/Allow, parse errors."""

from __future__ import annotations

import httpx
import pytest

from campaign_bridge.sandbox.mailchimp.server import SandboxHandle
from tests.integration.sandbox.schema import assert_matches

JSON = "application/json; charset=utf-8"
PROBLEM = "application/problem+json; charset=utf-8"
WRONG_DC = "Your API key may be invalid, or you've attempted to access the wrong datacenter."


def _problem(response: httpx.Response, status: int, title: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["title"] == title
    assert body["status"] == status
    assert body["type"].startswith("https://mailchimp.com/developer/")
    assert body["instance"] == response.headers["x-request-id"]
    assert set(body) >= {"type", "title", "status", "detail", "instance"}
    return body  # type: ignore[no-any-return]


def test_ping_and_root_need_a_key(mc: SandboxHandle, api: httpx.Client) -> None:
    pong = api.get("/ping")
    assert pong.status_code == 200
    assert pong.headers["content-type"] == JSON
    assert pong.json() == {"health_status": "Everything's Chimpy!"}
    root = api.get("/")
    assert root.status_code == 200
    assert root.json()["account_id"] == mc.sandbox.account.account_id
    assert_matches(root.json(), "/", "GET")
    body = _problem(httpx.get(mc.base_url + "/ping"), 401, "API Key Missing")
    assert body["detail"] == "Your request did not include an API key."


@pytest.mark.parametrize(
    "auth_header",
    [
        "Basic " + __import__("base64").b64encode(b"user:" + b"0" * 32 + b"-us6").decode(),
        "Basic " + __import__("base64").b64encode(b"user:not-a-key").decode(),
        "Bearer " + "f" * 32,
        "Digest abc",
    ],
)
def test_invalid_credentials_get_api_key_invalid(mc: SandboxHandle, auth_header: str) -> None:
    response = httpx.get(mc.base_url + "/ping", headers={"Authorization": auth_header})
    assert _problem(response, 401, "API Key Invalid")["detail"] == WRONG_DC


def test_wrong_datacenter_is_rejected_even_for_a_known_key(mc: SandboxHandle) -> None:
    secret = mc.api_key.rsplit("-", 1)[0]
    mc.sandbox.new_api_key(f"{secret}-us19")  # same secret, other dc: still wrong here
    response = httpx.get(mc.base_url + "/ping", auth=("anystring", f"{secret}-us19"))
    assert _problem(response, 401, "API Key Invalid")["detail"] == WRONG_DC


def test_bearer_and_oauth_tokens(mc: SandboxHandle) -> None:
    token = mc.sandbox.new_oauth_token()
    for scheme in ("Bearer", "OAuth"):
        ok = httpx.get(mc.base_url + "/ping", headers={"Authorization": f"{scheme} {token}"})
        assert ok.status_code == 200
    key_as_bearer = httpx.get(
        mc.base_url + "/ping", headers={"Authorization": f"Bearer {mc.api_key}"}
    )
    assert key_as_bearer.status_code == 200


def test_unknown_resources_and_methods(mc: SandboxHandle, api: httpx.Client) -> None:
    body = _problem(api.get("/lists/0000000000"), 404, "Resource Not Found")
    assert body["detail"] == "The requested resource could not be found."
    _problem(api.get("/no/such/thing"), 404, "Resource Not Found")
    not_allowed = api.put(f"/lists/{mc.list_id}", json={})
    _problem(not_allowed, 405, "Method Not Allowed")
    assert set(not_allowed.headers["allow"].split(", ")) == {"GET", "PATCH", "DELETE", "POST"}


def test_malformed_json_and_wrong_body_type(mc: SandboxHandle, api: httpx.Client) -> None:
    bad = api.post(
        f"/lists/{mc.list_id}/members",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    _problem(bad, 400, "JSON Parse Error")
    wrong = api.post(f"/lists/{mc.list_id}/members", json=["a"])
    body = _problem(wrong, 400, "Invalid Resource")
    assert body["errors"] == [
        {"field": "", "message": "Schema describes object, list found instead"}
    ]


def test_method_override_only_on_post(mc: SandboxHandle, api: httpx.Client) -> None:
    api.post(
        f"/lists/{mc.list_id}/members",
        json={"email_address": "override@real.org", "status": "subscribed"},
    )
    path = f"/lists/{mc.list_id}/members/override@real.org"
    patched = api.post(
        path, json={"merge_fields": {"FNAME": "O"}}, headers={"X-HTTP-Method-Override": "PATCH"}
    )
    assert patched.status_code == 200
    assert patched.json()["merge_fields"]["FNAME"] == "O"
    refused = api.put(path, json={}, headers={"X-HTTP-Method-Override": "PATCH"})
    _problem(refused, 422, "Invalid Method Override")


def test_204_has_an_empty_body_and_json_content_type(mc: SandboxHandle, api: httpx.Client) -> None:
    api.post(
        f"/lists/{mc.list_id}/members",
        json={"email_address": "t@real.org", "status": "subscribed"},
    )
    response = api.post(
        f"/lists/{mc.list_id}/members/t@real.org/tags",
        json={"tags": [{"name": "a", "status": "active"}]},
    )
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["content-type"] == JSON


def _seed_members(mc: SandboxHandle, count: int) -> None:
    from campaign_bridge.sandbox.mailchimp.control import seed

    members = [{"email_address": f"p{i:04d}@real.org"} for i in range(count)]
    seed(mc.sandbox, {"lists": [{"id": mc.list_id, "members": members}]})


def test_paging_defaults_and_limits(mc: SandboxHandle, api: httpx.Client) -> None:
    _seed_members(mc, 25)
    first = api.get(f"/lists/{mc.list_id}/members").json()
    assert len(first["members"]) == 10
    assert first["total_items"] == 25
    last = api.get(f"/lists/{mc.list_id}/members", params={"count": 10, "offset": 20}).json()
    assert [m["email_address"] for m in last["members"]] == [
        f"p{i:04d}@real.org" for i in range(20, 25)
    ]
    assert last["total_items"] == 25
    assert (
        len(api.get(f"/lists/{mc.list_id}/members", params={"count": 1000}).json()["members"]) == 25
    )
    too_many = api.get(f"/lists/{mc.list_id}/members", params={"count": 1001})
    _problem(too_many, 400, "Invalid Resource")
    assert_matches(first, f"/lists/{mc.list_id}/members")


def test_fields_and_exclude_fields(mc: SandboxHandle, api: httpx.Client) -> None:
    _seed_members(mc, 3)
    path = f"/lists/{mc.list_id}/members"
    only = api.get(path, params={"fields": "members.email_address,members.merge_fields.FNAME"})
    assert only.json() == {
        "members": [
            {"email_address": f"p{i:04d}@real.org", "merge_fields": {"FNAME": ""}} for i in range(3)
        ]
    }  # total_items is dropped unless asked for
    counted = api.get(path, params={"fields": "total_items,members.id"}).json()
    assert counted["total_items"] == 3
    assert set(counted["members"][0]) == {"id"}
    excluded = api.get(path, params={"exclude_fields": "members._links,_links,members.stats"})
    body = excluded.json()
    assert "_links" not in body
    assert "_links" not in body["members"][0]
    assert "stats" not in body["members"][0]
    assert "merge_fields" in body["members"][0]
    assert body["total_items"] == 3


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "1"])
def test_query_booleans_accept_sdk_spelling(
    mc: SandboxHandle, api: httpx.Client, value: str
) -> None:
    api.post(
        f"/lists/{mc.list_id}/merge-fields", json={"name": "Req", "type": "text", "required": True}
    )
    response = api.post(
        f"/lists/{mc.list_id}/members",
        params={"skip_merge_validation": value},
        json={"email_address": "bool@real.org", "status": "subscribed"},
    )
    assert response.status_code == 200, response.text


def test_query_boolean_false_still_validates(mc: SandboxHandle, api: httpx.Client) -> None:
    api.post(
        f"/lists/{mc.list_id}/merge-fields", json={"name": "Req", "type": "text", "required": True}
    )
    for value in ("false", "False"):
        response = api.post(
            f"/lists/{mc.list_id}/members",
            params={"skip_merge_validation": value},
            json={"email_address": "bool@real.org", "status": "subscribed"},
        )
        assert _problem(response, 400, "Invalid Resource")["detail"] == (
            "Your merge fields were invalid."
        )


def test_timestamps_and_links(mc: SandboxHandle, api: httpx.Client) -> None:
    created = api.post(
        f"/lists/{mc.list_id}/members",
        json={"email_address": "ts@real.org", "status": "pending"},
    ).json()
    assert created["timestamp_opt"] == ""
    assert len(created["last_changed"]) == 25
    assert created["last_changed"].endswith("+00:00")
    assert created["last_changed"][10] == "T"
    rels = {link["rel"] for link in created["_links"]}
    assert rels == {
        "self",
        "parent",
        "update",
        "upsert",
        "delete",
        "activity",
        "goals",
        "notes",
        "events",
        "delete_permanent",
    }
    self_link = next(link for link in created["_links"] if link["rel"] == "self")
    assert api.get(self_link["href"]).json()["id"] == created["id"]


def test_ping_and_root_through_both_sdks(mc: SandboxHandle, official: object, mc3: object) -> None:
    assert official.ping.get() == {"health_status": "Everything's Chimpy!"}  # type: ignore[attr-defined]
    root = official.root.get_root()  # type: ignore[attr-defined]
    assert root["account_id"] == mc.sandbox.account.account_id
    assert mc3.ping.get() == {"health_status": "Everything's Chimpy!"}  # type: ignore[attr-defined]
    assert mc3.root.get()["account_name"] == root["account_name"]  # type: ignore[attr-defined]
