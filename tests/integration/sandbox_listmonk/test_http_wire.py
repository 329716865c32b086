"""listmonk's wire over plain HTTP: auth (403s with listmonk's texts, token and BasicAuth,
permissions), envelopes, error texts and status codes, the ``query`` subset, blocklist rules and
``PUT /api/subscribers/lists``."""

from __future__ import annotations

import base64

import httpx
import pytest

from campaign_bridge.sandbox.listmonk import ListmonkHandle


def _basic(user: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "invalid session"),
        ({"Authorization": "token bridge:nope"}, "invalid API credentials"),
        ({"Authorization": "Bearer abc"}, "code=400, message=unknown Authorization scheme"),
        ({"Authorization": "token bridge"}, "code=400, message=api_key:token missing"),
        ({"Authorization": "token :abc"}, "code=400, message=empty `api_key` or `token`"),
        (
            {"Authorization": "Basic %%%"},
            "code=400, message=invalid Base64 value in Basic Authorization header",
        ),
    ],
)
def test_auth_failures_are_403_with_listmonks_texts(
    listmonk_sandbox: ListmonkHandle, headers: dict[str, str], message: str
) -> None:
    answer = httpx.get(f"{listmonk_sandbox.base_url}/api/subscribers", headers=headers)
    assert answer.status_code == 403
    assert answer.json() == {"message": message}


def test_token_and_basic_auth_both_work_and_a_session_cookie_wins(
    listmonk_sandbox: ListmonkHandle,
) -> None:
    url = f"{listmonk_sandbox.base_url}/api/health"
    user, token = listmonk_sandbox.api_user, listmonk_sandbox.api_token
    assert httpx.get(url, headers=listmonk_sandbox.auth_header).json() == {"data": True}
    assert httpx.get(url, headers=_basic(user, token)).json() == {"data": True}
    cookie = {**listmonk_sandbox.auth_header, "Cookie": "session=abc"}
    assert httpx.get(url, headers=cookie).json() == {"message": "invalid session"}


def test_permissions_of_a_limited_api_user(
    listmonk_sandbox: ListmonkHandle, control: httpx.Client
) -> None:
    made = control.post(
        "/keys", json={"username": "reader", "perms": ["subscribers:get_all"]}
    ).json()
    headers = {"Authorization": f"token reader:{made['token']}"}
    base = listmonk_sandbox.base_url
    assert httpx.get(f"{base}/api/subscribers", headers=headers).status_code == 200
    denied = httpx.post(f"{base}/api/subscribers", headers=headers, json={"email": "a@b.org"})
    assert (denied.status_code, denied.json()) == (
        403,
        {"message": "permission denied: subscribers:manage"},
    )
    query = httpx.get(
        f"{base}/api/subscribers", headers=headers, params={"query": "subscribers.id = 1"}
    )
    assert (query.status_code, query.json()) == (
        403,
        {"message": "Permission denied: subscribers:sql_query"},
    )


def test_envelopes_and_not_found_texts(http: httpx.Client) -> None:
    page = http.get("/api/subscribers").json()
    assert page == {
        "data": {"results": [], "query": "", "search": "", "total": 0, "per_page": 20, "page": 1}
    }
    missing = http.get("/api/subscribers/42")
    assert (missing.status_code, missing.json()) == (
        400,
        {"message": "Subscriber (42: ) not found"},
    )
    assert http.get("/api/subscribers/abc").json() == {"message": "invalid ID"}
    assert http.get("/api/nothing-here").json() == {"message": "404 unknown endpoint"}
    assert http.get("/api/nothing-here").status_code == 404
    wrong = http.patch("/api/lists")
    assert (wrong.status_code, wrong.json()) == (405, {"message": "Method Not Allowed"})
    assert http.post("/api/subscribers", json={"email": "nope"}).json() == {
        "message": "Invalid email."
    }


def test_create_rules(http: httpx.Client, listmonk_sandbox: ListmonkHandle) -> None:
    made = http.post(
        "/api/subscribers",
        json={"email": "X@Example.org", "lists": [1, 2, 99], "attribs": {"k": {"n": [1]}}},
    )
    sub = made.json()["data"]
    assert sub["email"] == "x@example.org"
    assert sub["name"] == "X"
    assert [(x["id"], x["subscription_status"]) for x in sub["lists"]] == [
        (1, "unconfirmed"),
        (2, "unconfirmed"),
    ]
    # the double opt-in list's confirmation e-mail was "sent"
    assert listmonk_sandbox.sandbox.optin_mails[-1]["list_ids"] == [2]
    blocked = http.post(
        "/api/subscribers", json={"email": "y@example.org", "status": "blocklisted", "lists": [1]}
    ).json()["data"]
    assert blocked["lists"][0]["subscription_status"] == "unsubscribed"
    bad_status = http.post("/api/subscribers", json={"email": "z@example.org", "status": "foo"})
    assert bad_status.status_code == 500


def test_put_replaces_and_keeps_unsubscribed(http: httpx.Client) -> None:
    sub = http.post(
        "/api/subscribers", json={"email": "a@example.org", "lists": [1, 2], "attribs": {"x": 1}}
    ).json()["data"]
    http.put(
        "/api/subscribers/lists",
        json={"ids": [sub["id"]], "action": "unsubscribe", "target_list_ids": [1]},
    )
    after = http.put(
        f"/api/subscribers/{sub['id']}",
        json={"email": "a@example.org", "lists": [1], "preconfirm_subscriptions": True},
    ).json()["data"]
    assert after["attribs"] == {}  # attribs replaced (omitted → {})
    assert after["name"] == "A"  # blank name kept
    assert [(x["id"], x["subscription_status"]) for x in after["lists"]] == [(1, "unsubscribed")]
    # only an explicit bulk "add" with a status overwrites an unsubscribe
    http.put(
        "/api/subscribers/lists",
        json={"ids": [sub["id"]], "action": "add", "target_list_ids": [1]},
    )
    kept = http.get(f"/api/subscribers/{sub['id']}").json()["data"]
    assert kept["lists"][0]["subscription_status"] == "unsubscribed"
    http.put(
        "/api/subscribers/lists",
        json={"ids": [sub["id"]], "action": "add", "target_list_ids": [1], "status": "confirmed"},
    )
    back = http.get(f"/api/subscribers/{sub['id']}").json()["data"]
    assert back["lists"][0]["subscription_status"] == "confirmed"


def test_bulk_list_management_errors(http: httpx.Client) -> None:
    assert http.put("/api/subscribers/lists", json={"action": "add"}).json() == {
        "message": "No IDs given."
    }
    assert http.put("/api/subscribers/lists", json={"ids": [1], "action": "add"}).json() == {
        "message": "No lists given."
    }
    assert http.put(
        "/api/subscribers/lists", json={"ids": [1], "action": "x", "target_list_ids": [1]}
    ).json() == {"message": "Invalid action."}


def test_blocklist_single_and_bulk_and_delete(http: httpx.Client) -> None:
    ids = [
        http.post("/api/subscribers", json={"email": f"d{i}@example.org", "lists": [1, 2]}).json()[
            "data"
        ]["id"]
        for i in range(4)
    ]
    assert http.put(f"/api/subscribers/{ids[0]}/blocklist").json() == {"data": True}
    assert http.put("/api/subscribers/blocklist", json={"ids": ids[1:3]}).json() == {"data": True}
    for sub_id in ids[:3]:
        sub = http.get(f"/api/subscribers/{sub_id}").json()["data"]
        assert sub["status"] == "blocklisted"
        assert {x["subscription_status"] for x in sub["lists"]} == {"unsubscribed"}
    assert http.put("/api/subscribers/blocklist", json={"ids": []}).json() == {
        "message": "One or more IDs are invalid: ids"
    }
    assert http.delete("/api/subscribers", params=[("id", ids[0]), ("id", ids[1])]).json() == {
        "data": True
    }
    assert http.delete(f"/api/subscribers/{ids[2]}").json() == {"data": True}
    assert http.delete("/api/subscribers/9999").json() == {"data": True}  # not an error
    assert [s["id"] for s in http.get("/api/subscribers").json()["data"]["results"]] == [ids[3]]


def test_query_subset_and_refusals(http: httpx.Client, control: httpx.Client) -> None:
    for i in range(5):
        http.post(
            "/api/subscribers",
            json={"email": f"q{i}@example.org", "name": f"Q {i}", "attribs": {"city": f"c{i % 2}"}},
        )
    control.post("/clock", json={"advance": 3600})
    http.put("/api/subscribers/2", json={"email": "q1@example.org", "name": "Moved"})

    def emails(**params: str) -> list[str]:
        found = http.get("/api/subscribers", params={**params, "order": "asc"}).json()
        return [s["email"] for s in found["data"]["results"]]

    assert emails(query=" subscribers.email = 'q3@example.org';") == ["q3@example.org"]
    assert emails(query="subscribers.updated_at > '2026-06-01T09:30:00Z'") == ["q1@example.org"]
    assert emails(query="subscribers.attribs->>'city' = 'c1' AND NOT (name = 'Moved')") == [
        "q3@example.org"
    ]
    assert emails(query="subscribers.id IN (1, 5) OR LOWER(email) LIKE 'q2%'") == [
        "q0@example.org",
        "q2@example.org",
        "q4@example.org",
    ]
    assert emails(search="q[34]") == ["q3@example.org", "q4@example.org"]
    refused = http.get("/api/subscribers", params={"query": "subscribers.id IN (SELECT 1)"})
    assert refused.status_code == 400
    assert refused.json()["message"].startswith("Error preparing subscriber query: ")
    # listmonk reads only lower-case "asc"; "ASC" falls back to desc
    upper = http.get("/api/subscribers", params={"order": "ASC", "per_page": "2"}).json()["data"]
    assert [s["id"] for s in upper["results"]] == [5, 4]
    assert upper["total"] == 5
    everyone = http.get("/api/subscribers", params={"per_page": "all"}).json()["data"]
    assert (everyone["per_page"], len(everyone["results"])) == (0, 5)


def test_id_ranges_and_a_lists_members_in_id_order(http: httpx.Client) -> None:
    """Keyset pages by id range (``id > A AND id <= B``, alone or with more conditions), and a
    list's members in id order whatever order they joined it in (as PostgreSQL's index)."""
    for i in range(8):
        http.post("/api/subscribers", json={"email": f"r{i}@example.org", "lists": [1]})
    http.put(
        "/api/subscribers/lists", json={"ids": [3], "action": "remove", "target_list_ids": [1]}
    )
    # 7 joins list 2 first, then 2 (a lower id), then 5
    for sub_id in (7, 2, 5):
        body = {"ids": [sub_id], "action": "add", "target_list_ids": [2]}
        http.put("/api/subscribers/lists", json=body)

    def ids(**params: str) -> list[int]:
        found = http.get("/api/subscribers", params={"order_by": "id", "order": "asc", **params})
        return [s["id"] for s in found.json()["data"]["results"]]

    assert ids(query="subscribers.id > 2 AND subscribers.id <= 5") == [3, 4, 5]
    assert ids(query="id > 2 AND id < 5") == [3, 4]
    assert ids(
        query="subscribers.id > 2 AND subscribers.id <= 6 AND email != 'r4@example.org'"
    ) == [
        3,
        4,
        6,
    ]
    assert ids(query="subscribers.id > 6 AND subscribers.id <= 100") == [7, 8]
    assert ids(query="subscribers.id > 1 AND subscribers.id <= 4 OR id = 8") == [2, 3, 4, 8]
    assert ids(list_id="1", query="subscribers.id > 1 AND subscribers.id <= 4") == [2, 4]
    assert ids(list_id="2") == [2, 5, 7]
    assert ids(list_id="2", query="subscribers.id > 2") == [5, 7]
    http.put(
        "/api/subscribers/lists", json={"ids": [5], "action": "remove", "target_list_ids": [2]}
    )
    assert ids(list_id="2", per_page="1", page="2") == [7]


def test_bulk_add_with_status_writes_through_a_blocklisting_but_sends_nothing(
    http: httpx.Client,
) -> None:
    """listmonk's ``add-subscribers-to-lists`` has no blocklist check (our notes said every path
    keeps a blocklisted subscriber unsubscribed): the subscription row becomes ``confirmed``,
    the subscriber stays ``blocklisted`` and the send query still leaves them out."""
    sub = http.post("/api/subscribers", json={"email": "b@example.org", "lists": [1]}).json()
    sub_id = sub["data"]["id"]
    http.put(f"/api/subscribers/{sub_id}/blocklist")
    http.put(
        "/api/subscribers/lists",
        json={"ids": [sub_id], "action": "add", "target_list_ids": [1], "status": "confirmed"},
    )
    held = http.get(f"/api/subscribers/{sub_id}").json()["data"]
    assert held["status"] == "blocklisted"
    assert held["lists"][0]["subscription_status"] == "confirmed"
    campaign = http.post("/api/campaigns", json={"name": "n", "subject": "s", "lists": [1]}).json()[
        "data"
    ]
    running = http.put(f"/api/campaigns/{campaign['id']}/status", json={"status": "running"})
    assert running.json()["data"]["to_send"] == 0


def test_bulk_changes_by_query(http: httpx.Client) -> None:
    ids = [
        http.post(
            "/api/subscribers",
            json={"email": f"m{i}@example.org", "lists": [1], "attribs": {"tier": i % 2}},
        ).json()["data"]["id"]
        for i in range(6)
    ]
    assert http.put("/api/subscribers/query/blocklist", json={}).json() == {
        "message": "Invalid fields: query"
    }
    http.put(
        "/api/subscribers/lists",
        json={"ids": [ids[0]], "action": "unsubscribe", "target_list_ids": [1]},
    )
    # query/lists add never touches an existing subscription: m0 stays unsubscribed on list 1
    added = http.put(
        "/api/subscribers/query/lists",
        json={"query": "subscribers.id <= 2", "action": "add", "target_list_ids": [1, 2],
              "status": "confirmed"},
    )  # fmt: skip
    assert added.json() == {"data": True}
    first = http.get(f"/api/subscribers/{ids[0]}").json()["data"]
    assert {x["id"]: x["subscription_status"] for x in first["lists"]} == {
        1: "unsubscribed",
        2: "confirmed",
    }
    blocked = http.put(
        "/api/subscribers/query/blocklist",
        json={"query": "subscribers.attribs->>'tier' = '1'", "list_ids": [1]},
    )
    assert blocked.json() == {"data": True}
    statuses = {
        s["id"]: s["status"]
        for s in http.get("/api/subscribers", params={"per_page": "all"}).json()["data"]["results"]
    }
    assert [i for i in ids if statuses[i] == "blocklisted"] == [ids[1], ids[3], ids[5]]
    gone = http.post("/api/subscribers/query/delete", json={"search": "m[45]@", "list_ids": [1]})
    assert gone.json() == {"data": True}
    left = http.get("/api/subscribers", params={"per_page": "all", "order": "asc"}).json()
    assert [s["id"] for s in left["data"]["results"]] == ids[:4]
    assert http.post("/api/subscribers/query/delete", json={"all": True}).json() == {"data": True}
    assert http.get("/api/subscribers").json()["data"]["total"] == 0


def test_patch_changes_only_what_is_sent(http: httpx.Client) -> None:
    sub = http.post(
        "/api/subscribers",
        json={"email": "p@example.org", "name": "Pat", "lists": [1, 2], "attribs": {"a": 1}},
    ).json()["data"]
    patched = http.patch(f"/api/subscribers/{sub['id']}", json={"attribs": {"b": 2}}).json()
    assert patched["data"]["attribs"] == {"a": 1, "b": 2}  # merged at the top level
    assert patched["data"]["name"] == "Pat"
    assert [x["id"] for x in patched["data"]["lists"]] == [1, 2]  # lists untouched
    # status blocklisted through PATCH without lists: listmonk's query leaves the rows alone
    blocked = http.patch(f"/api/subscribers/{sub['id']}", json={"status": "blocklisted"}).json()
    assert blocked["data"]["status"] == "blocklisted"
    assert {x["subscription_status"] for x in blocked["data"]["lists"]} == {"unconfirmed"}
    relisted = http.patch(f"/api/subscribers/{sub['id']}", json={"lists": [2]}).json()["data"]
    assert [(x["id"], x["subscription_status"]) for x in relisted["lists"]] == [(2, "unsubscribed")]
    assert http.patch("/api/subscribers/99", json={}).json() == {
        "message": "Subscriber (99: ) not found"
    }
