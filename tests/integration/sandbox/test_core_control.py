"""The control API, member events, the clock, persistence across a restart, and in-process vs
real-socket parity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaign_bridge.sandbox.mailchimp import (
    MemberEvent,
    SandboxConfig,
    create_app,
    run_in_thread,
)
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle
from campaign_bridge.sandbox.mailchimp.wire import dumps


def h(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def test_seed_and_state_dump(mc: SandboxHandle, control: httpx.Client, api: httpx.Client) -> None:
    seeded = control.post(
        "/seed",
        json={
            "api_keys": [""],
            "lists": [
                {
                    "name": "Shop",
                    "merge_fields": [{"tag": "PLAN", "name": "Plan", "type": "text"}],
                    "interest_categories": [{"title": "Topics", "interests": ["A", "B"]}],
                    "members": [
                        {"email_address": "x@example.com", "merge_fields": {"PLAN": "pro"}},
                        {
                            "email_address": "gone@real.org",
                            "status": "unsubscribed",
                            "unsubscribe_origin": "user",
                        },
                    ],
                }
            ],
        },
    ).json()
    new_key = seeded["api_keys"][0]
    shop = seeded["lists"][0]
    assert shop["member_count"] == 2
    other = httpx.get(mc.base_url + f"/lists/{shop['id']}/members", auth=("x", new_key)).json()
    assert [m["merge_fields"]["PLAN"] for m in other["members"]] == ["pro", ""]
    refused = api.patch(
        f"/lists/{shop['id']}/members/{h('gone@real.org')}", json={"status": "subscribed"}
    )
    assert refused.json()["title"] == "Member In Compliance State"
    state = control.get("/state").json()
    assert {lst["name"] for lst in state["lists"]} == {"Sandbox Audience", "Shop"}
    assert new_key in state["api_keys"]
    one = control.get(f"/lists/{shop['id']}").json()
    assert [m["email_address"] for m in one["members"]] == ["x@example.com", "gone@real.org"]


def test_reset(mc: SandboxHandle, control: httpx.Client) -> None:
    control.post("/seed", json={"lists": [{"name": "Extra"}]})
    control.post("/faults", json={"kind": "500"})
    after = control.post("/reset").json()
    assert after["list_id"]
    assert after["api_key"]
    assert len(mc.sandbox.lists) == 1
    assert mc.sandbox.limits.faults == []
    ping = httpx.get(mc.base_url + "/ping", auth=("x", after["api_key"]))
    assert ping.status_code == 200


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ({"kind": "500", "cout": 3}, "unknown fault fields ['cout']"),
        ({"kind": "teapot"}, "unknown fault kind 'teapot'"),
        ({"kind": "500", "path": "("}, "bad fault rule: missing )"),
        ({"faults": ["500"]}, "each fault rule is a JSON object"),
    ],
)
def test_a_mistyped_fault_rule_is_refused_not_ignored(
    mc: SandboxHandle, control: httpx.Client, rule: dict[str, Any], says: str
) -> None:
    answer = control.post("/faults", json=rule)
    assert answer.status_code == 400
    assert says in answer.json()["detail"]
    assert control.get("/faults").json() == {"faults": []}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([{"name": "Shop"}], "the body must be a JSON object"),
        ({"lists": "Shop"}, "lists must be a list of objects"),
        ({"api_keys": 3}, "api_keys must be a list of strings"),
        (
            {"lists": [{"name": "Shop"}, {"interest_categories": [{"interests": ["A"]}]}]},
            "lists[2]: interest_categories[1] needs a title",
        ),
    ],
)
def test_a_malformed_seed_answers_400_and_seeds_nothing(
    mc: SandboxHandle, control: httpx.Client, body: Any, says: str
) -> None:
    before = len(mc.sandbox.lists)
    answer = control.post("/seed", json=body)
    assert answer.status_code == 400
    assert says in answer.json()["detail"]
    assert len(mc.sandbox.lists) == before


def test_simulated_subscriber_behaviour_emits_events(
    mc: SandboxHandle, control: httpx.Client, api: httpx.Client
) -> None:
    events: list[MemberEvent] = []
    mc.sandbox.listen(events.append)
    for email in ("u@real.org", "b@real.org", "c@real.org"):
        api.post(
            f"/lists/{mc.list_id}/members", json={"email_address": email, "status": "subscribed"}
        )
    assert [(e.kind, e.source) for e in events] == [("subscribe", "api")] * 3
    events.clear()
    base = f"/lists/{mc.list_id}/members"
    control.post(f"{base}/u@real.org/unsubscribe", json={"campaign_id": "abc", "reason": "manual"})
    control.post(f"{base}/{h('b@real.org')}/bounce")
    moved = control.post(
        f"{base}/c@real.org/change-email", json={"new_email": "c2@real.org"}
    ).json()
    assert moved["id"] == h("c2@real.org")
    control.post(f"{base}/c2@real.org/profile", json={"merge_fields": {"FNAME": "C"}})
    signed = control.post(
        f"/lists/{mc.list_id}/signup", json={"email_address": "form@real.org", "source": "admin"}
    ).json()
    assert signed["status"] == "subscribed"
    kinds = [(e.kind, e.source) for e in events]
    assert kinds == [
        ("unsubscribe", "user"),
        ("cleaned", "user"),
        ("upemail", "user"),
        ("profile", "user"),
        ("profile", "user"),
        ("subscribe", "admin"),
    ]
    unsub = events[0]
    assert unsub.extra["campaign_id"] == "abc"
    assert unsub.extra["previous_status"] == "subscribed"
    assert unsub.member["status"] == "unsubscribed"
    assert events[2].extra["old_email"] == "c@real.org"
    assert events[2].extra["new_email"] == "c2@real.org"
    member = api.get(f"{base}/u@real.org").json()
    assert member["status"] == "unsubscribed"
    assert api.patch(f"{base}/u@real.org", json={"status": "subscribed"}).status_code == 400
    # a returning subscriber who signs up through the form again re-consents
    back = control.post(f"/lists/{mc.list_id}/signup", json={"email_address": "u@real.org"}).json()
    assert back["status"] == "subscribed"


def test_archive_and_forget_events(mc: SandboxHandle, api: httpx.Client) -> None:
    events: list[MemberEvent] = []
    mc.sandbox.listen(events.append)
    base = f"/lists/{mc.list_id}/members"
    api.post(base, json={"email_address": "z@real.org", "status": "subscribed"})
    api.delete(f"{base}/z@real.org")
    api.post(f"{base}/z@real.org/actions/delete-permanent")
    assert [e.kind for e in events] == ["subscribe", "archive", "delete"]


def test_clock_advance_moves_timestamps(
    mc: SandboxHandle, control: httpx.Client, api: httpx.Client
) -> None:
    before = control.get("/clock").json()["now"]
    after = control.post("/clock", json={"advance": 86400}).json()
    assert after["offset"] == 86400
    assert after["now"][:10] > before[:10]
    member = api.post(
        f"/lists/{mc.list_id}/members",
        json={"email_address": "later@real.org", "status": "subscribed"},
    ).json()
    assert member["last_changed"][:10] == after["now"][:10]


def test_control_token(tmp_path: Path) -> None:
    with run_in_thread(config=SandboxConfig(control_token="s3cret")) as handle:
        assert httpx.get(handle.control_url + "/state").status_code == 401
        ok = httpx.get(handle.control_url + "/state", headers={"X-Sandbox-Token": "s3cret"})
        assert ok.status_code == 200


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "sandbox.json"
    config = SandboxConfig(state_file=str(state_file))
    with run_in_thread(config=config) as first:
        key, list_id = first.api_key, first.list_id
        with httpx.Client(base_url=first.base_url, auth=("x", key)) as client:
            client.post(
                f"/lists/{list_id}/merge-fields",
                json={"name": "Plan", "type": "text", "tag": "PLAN"},
            )
            client.post(
                f"/lists/{list_id}/members",
                json={
                    "email_address": "p@real.org",
                    "status": "subscribed",
                    "merge_fields": {"PLAN": "x"},
                    "tags": ["t"],
                },
            )
            client.post(
                f"/lists/{list_id}/members",
                json={"email_address": "f@real.org", "status": "subscribed"},
            )
            client.post(f"/lists/{list_id}/members/f@real.org/actions/delete-permanent")
        httpx.post(first.control_url + f"/lists/{list_id}/members/p@real.org/unsubscribe")
    assert state_file.exists()
    with run_in_thread(config=SandboxConfig(state_file=str(state_file))) as second:
        assert (second.api_key, second.list_id) == (key, list_id)
        with httpx.Client(base_url=second.base_url, auth=("x", key)) as client:
            client_member = client.get(f"/lists/{list_id}/members/p@real.org").json()
            snapshot = client.post(
                f"/lists/{list_id}/members",
                json={"email_address": "f@real.org", "status": "subscribed"},
            ).json()
            refused = client.patch(
                f"/lists/{list_id}/members/p@real.org", json={"status": "subscribed"}
            )
            fresh = client.post(
                f"/lists/{list_id}/members",
                json={"email_address": "new@real.org", "status": "subscribed"},
            ).json()
    assert client_member["merge_fields"]["PLAN"] == "x"
    assert client_member["status"] == "unsubscribed"
    assert [t["name"] for t in client_member["tags"]] == ["t"]
    assert snapshot["title"] == "Forgotten Email Not Subscribed"
    assert refused.json()["title"] == "Member In Compliance State"
    assert fresh["unique_email_id"] != client_member["unique_email_id"]


def _steps(list_id: str) -> list[tuple[str, str, Any]]:
    base = f"/lists/{list_id}/members"
    a, b = h("a@real.org"), h("b@real.org")
    return [
        ("POST", base, {"email_address": "a@real.org", "status": "subscribed"}),
        ("POST", base, {"email_address": "a@real.org", "status": "subscribed"}),
        ("PUT", f"{base}/{b}", {"email_address": "b@real.org", "status_if_new": "pending"}),
        ("PATCH", f"{base}/{a}", {"merge_fields": {"FNAME": "A"}}),
        ("DELETE", f"{base}/{a}", None),
        ("DELETE", f"{base}/{a}", None),
        ("GET", f"{base}?fields=members.email_address,members.status,total_items", None),
        (
            "POST",
            f"/lists/{list_id}",
            {"members": [{"email_address": "c@example.com", "status": "subscribed"}]},
        ),
        ("GET", "/nowhere", None),
    ]


def _normalise(response: httpx.Response) -> tuple[int, str, Any]:
    payload = response.json() if response.content else None
    if isinstance(payload, dict):
        for key in ("instance", "_links", "last_changed", "timestamp_opt", "timestamp_signup"):
            payload.pop(key, None)
    return response.status_code, response.headers["content-type"], payload


@pytest.mark.anyio
async def test_in_process_and_real_socket_behave_the_same() -> None:
    import anyio

    def over_socket() -> list[tuple[int, str, Any]]:
        with (
            run_in_thread() as handle,
            httpx.Client(base_url=handle.base_url, auth=("x", handle.api_key)) as client,
        ):
            return [_normalise(client.request(m, p, json=b)) for m, p, b in _steps(handle.list_id)]

    socket_run = await anyio.to_thread.run_sync(over_socket)
    app = create_app()
    sandbox = app.state.sandbox
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sandbox/3.0",
        auth=("x", sandbox.default_api_key),
    ) as client:
        in_process = [
            _normalise(await client.request(m, p, json=b))
            for m, p, b in _steps(sandbox.default_list_id)
        ]
    assert [s for s, _, _ in socket_run] == [200, 400, 200, 200, 204, 405, 200, 200, 404]
    assert in_process == socket_run


def test_signup_limit_per_address(tmp_path: Path) -> None:
    config = SandboxConfig(signup_limit=2, signup_window=60)
    with run_in_thread(config=config) as handle:
        seeded = httpx.post(
            handle.control_url + "/seed", json={"lists": [{"name": "B"}, {"name": "C"}]}
        )
        lists = [handle.list_id] + [lst["id"] for lst in seeded.json()["lists"]]
        with httpx.Client(base_url=handle.base_url, auth=("x", handle.api_key)) as client:
            statuses = [
                client.post(
                    f"/lists/{list_id}/members",
                    json={"email_address": "eager@real.org", "status": "subscribed"},
                ).status_code
                for list_id in lists
            ]
            assert statuses == [200, 200, 400]
            handle.sandbox.clock.advance(61)
            again = client.post(
                f"/lists/{lists[2]}/members",
                json={"email_address": "eager@real.org", "status": "subscribed"},
            )
            assert again.status_code == 200


def test_autosave_writes_while_running(tmp_path: Path) -> None:
    import time

    state_file = tmp_path / "auto.json"
    config = SandboxConfig(state_file=str(state_file), autosave_seconds=0.2)
    with run_in_thread(config=config):
        deadline = time.monotonic() + 5
        while not state_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state_file.exists()


@pytest.mark.anyio
async def test_dispatch_runs_handlers_without_http() -> None:
    app = create_app()
    sandbox = app.state.sandbox
    path = f"/lists/{sandbox.default_list_id}/members"
    status, body = await sandbox.dispatch(
        "POST", path, None, {"email_address": "d@real.org", "status": "subscribed"}
    )
    assert (status, body["email_address"]) == (200, "d@real.org")
    status, body = await sandbox.dispatch(
        "POST", path, None, {"email_address": "d@real.org", "status": "subscribed"}
    )
    assert (status, body["title"]) == (400, "Member Exists")
    status, body = await sandbox.dispatch("GET", path, {"fields": "total_items"})
    assert (status, body) == (200, {"total_items": 1})
    status, body = await sandbox.dispatch("DELETE", f"{path}/{h('d@real.org')}")
    assert (status, body) == (204, None)


@pytest.mark.anyio
async def test_dispatched_batch_subscribe_encodes_to_the_full_answer() -> None:
    app = create_app()
    sandbox = app.state.sandbox
    path = f"/lists/{sandbox.default_list_id}"
    members = [{"email_address": "e@real.org", "status": "subscribed", "tags": ["t"]}]
    status, body = await sandbox.dispatch("POST", path, None, {"members": members})
    assert status == 200
    answer = json.loads(dumps(body))
    _, member = await sandbox.dispatch("GET", f"{path}/members/{h('e@real.org')}")
    assert answer["new_members"] == [member]
    assert answer["total_created"] == 1


def test_timestamp_opt_filters(mc: SandboxHandle, api: httpx.Client) -> None:
    base = f"/lists/{mc.list_id}/members"
    first = api.post(base, json={"email_address": "o1@real.org", "status": "subscribed"}).json()
    mc.sandbox.clock.advance(30)
    api.post(base, json={"email_address": "o2@real.org", "status": "subscribed"})
    api.post(base, json={"email_address": "p@real.org", "status": "pending"})
    after = api.get(base, params={"since_timestamp_opt": first["timestamp_opt"]}).json()
    assert [m["email_address"] for m in after["members"]] == ["o2@real.org"]
    before = api.get(
        base, params={"before_timestamp_opt": after["members"][0]["timestamp_opt"]}
    ).json()
    assert [m["email_address"] for m in before["members"]] == ["o1@real.org"]


def test_pending_workaround_then_confirmation(
    mc: SandboxHandle, control: httpx.Client, api: httpx.Client
) -> None:
    base = f"/lists/{mc.list_id}/members"
    api.post(base, json={"email_address": "re@real.org", "status": "subscribed"})
    control.post(f"{base}/re@real.org/unsubscribe")
    assert api.patch(f"{base}/re@real.org", json={"status": "subscribed"}).status_code == 400
    assert (
        api.patch(f"{base}/re@real.org", json={"status": "pending"}).json()["status"] == "pending"
    )
    # still in compliance until the subscriber confirms
    assert api.patch(f"{base}/re@real.org", json={"status": "subscribed"}).status_code == 400
    confirmed = control.post(f"{base}/re@real.org/confirm").json()
    assert confirmed["status"] == "subscribed"
    assert control.post(f"{base}/re@real.org/confirm").status_code == 400
    api.patch(f"{base}/re@real.org", json={"status": "unsubscribed"})
    assert api.patch(f"{base}/re@real.org", json={"status": "subscribed"}).status_code == 200
