"""What third-party clients rely on: paged GETs in /batches, empty collections, OAuth metadata,
audience campaign stats, the HTTP Date header following the sandbox clock."""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaign_bridge.sandbox.mailchimp.account import EMPTY_COLLECTIONS
from campaign_bridge.sandbox.mailchimp.batches import read_archive
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle
from tests.integration.sandbox import schema
from tests.integration.sandbox.schema import assert_matches


def control(handle: SandboxHandle, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, handle.control_url + path, json=body, timeout=30)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def seed_members(handle: SandboxHandle, n: int) -> list[str]:
    emails = [f"reader{i}@mail.example.org" for i in range(n)]
    members = [{"email_address": e, "status": "subscribed"} for e in emails]
    control(handle, "POST", "/seed", {"lists": [{"id": handle.list_id, "members": members}]})
    return emails


def run_batch(api: httpx.Client, operations: list[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    started = api.post("/batches", json={"operations": operations}).json()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        batch = api.get(f"/batches/{started['id']}").json()
        if batch["status"] == "finished":
            archive = httpx.get(batch["response_body_url"], timeout=30)
            return batch, read_archive(archive.content)
        time.sleep(0.01)
    raise AssertionError(f"batch {started['id']} did not finish")


def test_a_batch_get_of_a_collection_returns_every_page(
    mc: SandboxHandle, api: httpx.Client
) -> None:
    emails = seed_members(mc, 25)
    path = f"/lists/{mc.list_id}/members"
    batch, results = run_batch(
        api,
        [
            {"method": "GET", "path": path, "operation_id": "default-count"},
            {
                "method": "GET",
                "path": path,
                "operation_id": "by-7-from-3",
                "params": {"count": 7, "offset": 3, "fields": "members.email_address"},
            },
            {"method": "GET", "path": f"/lists/{mc.list_id}", "operation_id": "one"},
            {"method": "GET", "path": "/lists/0000000000/members", "operation_id": "missing"},
        ],
    )
    assert_matches(batch, f"/batches/{batch['id']}")
    # 25 members: 3 pages of 10, 4 pages of 7 from offset 3 (22 members), 1 + 1 single results
    assert batch["total_operations"] == 3 + 4 + 1 + 1
    assert (batch["finished_operations"], batch["errored_operations"]) == (9, 1)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_id.setdefault(result["operation_id"], []).append(result)
    pages = [json.loads(r["response"]) for r in by_id["default-count"]]
    assert [len(p["members"]) for p in pages] == [10, 10, 5]
    assert all(p["total_items"] == 25 for p in pages)
    for page in pages:
        assert_matches(page, path)
    assert [m["email_address"] for p in pages for m in p["members"]] == emails
    cut = [json.loads(r["response"]) for r in by_id["by-7-from-3"]]
    assert [m["email_address"] for p in cut for m in p["members"]] == emails[3:]
    assert all(set(p) == {"members"} for p in cut)  # the operation's own `fields` still apply
    assert [r["status_code"] for r in by_id["one"] + by_id["missing"]] == [200, 404]


def test_a_batch_of_email_activity_lands_every_record(mc: SandboxHandle, api: httpx.Client) -> None:
    seed_members(mc, 40)
    campaign = control(mc, "POST", "/campaigns/seed", {"list_id": mc.list_id})
    control(mc, "POST", "/clock", {"advance": 3 * 86400})
    path = f"/reports/{campaign['id']}/email-activity"
    since = "2000-01-01T00:00:00Z"  # as tap-mailchimp sends it: emails with any activity
    direct: list[dict[str, Any]] = []
    total = 1
    while len(direct) < total:
        query = {"count": 13, "offset": len(direct), "since": since, "fields": "emails,total_items"}
        answer = api.get(path, params=query).json()
        direct, total = direct + answer["emails"], answer["total_items"]
    _, results = run_batch(
        api,
        [
            {
                "method": "GET",
                "path": path,
                "operation_id": campaign["id"],
                "params": {"since": since, "fields": "emails.email_address"},
            }
        ],
    )
    assert {r["operation_id"] for r in results} == {campaign["id"]}
    landed = [e["email_address"] for r in results for e in json.loads(r["response"])["emails"]]
    assert landed == [e["email_address"] for e in direct]
    assert 10 < len(landed) <= campaign["emails_sent"] == 40  # more than one page's worth


@pytest.mark.parametrize(("path", "key"), sorted(EMPTY_COLLECTIONS.items()))
def test_an_account_without_the_feature_lists_nothing(
    api: httpx.Client, path: str, key: str
) -> None:
    response = api.get(path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body[key], body["total_items"]) == ([], 0)
    assert_matches(body, path)
    assert api.get(path, params={"count": 1001}).status_code == 400
    assert api.get(f"{path}/0000000000").status_code == 404


def test_oauth_metadata_names_the_data_centre_and_endpoint(mc: SandboxHandle) -> None:
    token = control(mc, "POST", "/oauth-tokens", {})["access_token"]
    url = f"{mc.root_url}/oauth2/metadata"
    for scheme in ("OAuth", "Bearer"):
        answer = httpx.get(url, headers={"Authorization": f"{scheme} {token}"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["dc"], body["api_endpoint"]) == ("us6", mc.root_url)
        assert set(body) >= {"accountname", "login", "login_url", "role", "user_id"}
    # the endpoint it names serves the API with the same token
    lists = httpx.get(
        body["api_endpoint"] + "/3.0/lists", headers={"Authorization": f"OAuth {token}"}
    )
    assert lists.status_code == 200
    via_login_host = httpx.get(
        url, headers={"Authorization": f"OAuth {token}", "Host": "login.mailchimp.com"}
    )
    assert via_login_host.json()["api_endpoint"] == "https://us6.api.mailchimp.com"
    for header in ({}, {"Authorization": "OAuth not-a-token"}, {"Authorization": mc.api_key}):
        refused = httpx.get(url, headers=header)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_token"


def test_audience_stats_count_campaigns_and_their_rates(
    mc: SandboxHandle, api: httpx.Client
) -> None:
    seed_members(mc, 60)
    stats = api.get(f"/lists/{mc.list_id}").json()["stats"]
    assert (stats["campaign_count"], stats["campaign_last_sent"]) == (0, "")
    assert (stats["open_rate"], stats["click_rate"]) == (0, 0)
    assert stats["member_count_since_send"] == stats["member_count"] == 60
    draft = api.post(
        "/campaigns", json={"type": "regular", "recipients": {"list_id": mc.list_id}}
    ).json()
    sends = [control(mc, "POST", "/campaigns/seed", {"list_id": mc.list_id}) for _ in range(2)]
    listed = api.get("/lists").json()["lists"]
    stats = next(lst for lst in listed if lst["id"] == mc.list_id)["stats"]
    assert api.get(f"/lists/{mc.list_id}").json()["stats"] == stats
    assert stats["campaign_count"] == 3  # any status: the draft counts too
    assert draft["status"] == "save"
    assert stats["campaign_last_sent"] == max(s["send_time"] for s in sends) != ""
    reports = [api.get(f"/reports/{s['id']}").json() for s in sends]
    mean_open = sum(r["opens"]["open_rate"] for r in reports) / 2
    mean_click = sum(r["clicks"]["click_rate"] for r in reports) / 2
    assert stats["open_rate"] == pytest.approx(100 * mean_open, abs=0.01)
    assert mean_open > 0
    assert stats["click_rate"] == pytest.approx(100 * mean_click, abs=0.01)
    assert mean_click > 0
    after = stats["unsubscribe_count"] + stats["cleaned_count"]
    assert after > 0  # the sends unsubscribed and bounced some members
    assert stats["member_count_since_send"] == 0  # nobody joined since the last send
    assert_matches(api.get(f"/lists/{mc.list_id}").json(), f"/lists/{mc.list_id}")


def test_the_date_header_follows_the_sandbox_clock(mc: SandboxHandle, api: httpx.Client) -> None:
    def date_of(response: httpx.Response) -> float:
        assert len(response.headers.get_list("date")) == 1
        return parsedate_to_datetime(response.headers["date"]).timestamp()

    before = date_of(api.get("/ping"))
    assert abs(before - time.time()) < 5
    control(mc, "POST", "/clock", {"advance": 30 * 86400})
    for response in (
        api.get("/ping"),
        api.get("/lists/0000000000"),  # errors too
        httpx.get(mc.control_url + "/health"),
        httpx.get(mc.root_url + "/oauth2/metadata"),
    ):
        assert date_of(response) - before == pytest.approx(30 * 86400, abs=5)
    now = httpx.get(mc.control_url + "/health").json()["now"]
    assert abs(date_of(api.get("/ping")) - parsedate_to_datetime_iso(now)) < 2


def parsedate_to_datetime_iso(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


def test_a_missing_openapi_file_fails_with_where_it_was_looked_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(schema.ENV, str(tmp_path / "absent.json"))
    with pytest.raises(pytest.fail.Exception, match=r"absent\.json.*MAILCHIMP_OPENAPI"):
        schema.spec_path()
    monkeypatch.delenv(schema.ENV)
    assert schema.spec_path().name == "mailchimp-marketing-openapi.json"  # found from here


@pytest.mark.anyio
async def test_batch_pages_concatenate_to_the_collection_from_its_offset() -> None:
    """Every (audience size, count, offset) around the page boundaries: the results of a batch
    GET, in order, are the direct listing from ``offset`` on, one result per page."""
    from campaign_bridge.sandbox.mailchimp import batches, create_app

    app = create_app()
    sandbox = app.state.sandbox
    batches.state(sandbox).auto = False
    list_id = sandbox.default_list_id
    transport = httpx.ASGITransport(app=app)
    auth = ("x", sandbox.default_api_key)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://sb/3.0", auth=auth) as api,
        httpx.AsyncClient(transport=transport, base_url="http://sb/_sandbox") as control,
    ):
        size = 0
        for target in (0, 1, 9, 10, 11, 25):
            new = [
                {"email_address": f"m{i}@mail.example.org", "status": "subscribed"}
                for i in range(size, target)
            ]
            body = {"lists": [{"id": list_id, "members": new}]}
            seeded = await control.post("/seed", json=body)
            assert seeded.status_code == 200, seeded.text
            size = target
            path = f"/lists/{list_id}/members"
            direct = (await api.get(path, params={"count": 1000})).json()["members"]
            everyone = [m["email_address"] for m in direct]
            for count in (1, 3, 10, 25):
                for offset in (0, 1, 10, 24, 30):
                    params = {"count": count, "offset": offset, "fields": "members.email_address"}
                    op = {"method": "GET", "path": path, "params": params, "operation_id": "x"}
                    started = (await api.post("/batches", json={"operations": [op]})).json()
                    await batches.process_all(sandbox)
                    archive = batches.state(sandbox).batches[started["id"]].archive
                    assert archive is not None
                    results = batches.read_archive(archive)
                    pages = [json.loads(r["response"])["members"] for r in results]
                    where = (size, count, offset)
                    got = [m["email_address"] for p in pages for m in p]
                    assert got == everyone[offset:], where
                    assert len(results) == max(1, -(-(size - offset) // count)), where
                    assert all(len(p) == count for p in pages[:-1]), where


@pytest.mark.anyio
async def test_in_process_seeding_is_seen_by_the_next_listing() -> None:
    from campaign_bridge.sandbox.mailchimp import create_app
    from campaign_bridge.sandbox.mailchimp.control import seed

    sandbox = create_app().state.sandbox
    path = f"/lists/{sandbox.default_list_id}/members"
    assert (await sandbox.dispatch("GET", path))[1]["total_items"] == 0  # cached from here on
    members = [{"email_address": "ada@mail.example.org", "status": "subscribed"}]
    seed(sandbox, {"lists": [{"id": sandbox.default_list_id, "members": members}]})
    status, body = await sandbox.dispatch("GET", path)
    assert (status, body["total_items"]) == (200, 1)


def test_the_control_api_audience_view_has_the_campaign_stats(mc: SandboxHandle) -> None:
    seed_members(mc, 12)
    sent = control(mc, "POST", "/campaigns/seed", {"list_id": mc.list_id})
    view = control(mc, "GET", f"/lists/{mc.list_id}")["list"]["stats"]
    assert (view["campaign_count"], view["campaign_last_sent"]) == (1, sent["send_time"])
