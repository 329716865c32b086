"""Campaigns over HTTP: status rules, recipients, deterministic activity from the seed,
analytics (hourly/daily buckets, links, from/to validation), bounces and bounce actions, the
bounce webhook, and the public unsubscribe and opt-in pages."""

from __future__ import annotations

from typing import Any

import httpx

from campaign_bridge.sandbox.listmonk import ListmonkConfig, ListmonkHandle, run_in_thread

from .conftest import START


def _seed_people(http: httpx.Client, count: int) -> list[int]:
    return [
        http.post(
            "/api/subscribers",
            json={"email": f"r{i}@example.org", "lists": [1], "preconfirm_subscriptions": True},
        ).json()["data"]["id"]
        for i in range(count)
    ]


def _campaign(http: httpx.Client, lists: list[int]) -> dict[str, Any]:
    made = http.post(
        "/api/campaigns",
        json={
            "name": "News",
            "subject": "Hi",
            "lists": lists,
            "body": '<a href="https://example.org/x">x</a> <a href="https://example.org/y">y</a>',
        },
    )
    return dict(made.json()["data"])


def test_status_rules_and_recipients(http: httpx.Client, control: httpx.Client) -> None:
    ids = _seed_people(http, 6)
    http.put(f"/api/subscribers/{ids[0]}/blocklist")
    http.put(
        "/api/subscribers/lists",
        json={"ids": [ids[1]], "action": "unsubscribe", "target_list_ids": [1]},
    )
    # on the double opt-in list only confirmed subscribers receive
    http.put(
        "/api/subscribers/lists",
        json={"ids": ids[2:4], "action": "add", "target_list_ids": [2], "status": "unconfirmed"},
    )
    http.put(
        "/api/subscribers/lists",
        json={"ids": [ids[4]], "action": "add", "target_list_ids": [2], "status": "confirmed"},
    )
    single = _campaign(http, [1])
    double = _campaign(http, [2])
    assert http.put(f"/api/campaigns/{single['id']}/status", json={"status": "paused"}).json() == {
        "message": "Only active campaigns can be paused."
    }
    control.post("/limits", json={"campaign_send_seconds": 60})
    running = http.put(f"/api/campaigns/{single['id']}/status", json={"status": "running"})
    assert running.json()["data"]["to_send"] == 4  # 6 minus the blocklisted and unsubscribed
    assert http.get(f"/api/campaigns/{single['id']}").json()["data"]["status"] == "running"
    control.post("/clock", json={"advance": 60})
    finished = http.get(f"/api/campaigns/{single['id']}").json()["data"]
    assert (finished["status"], finished["sent"]) == ("finished", 4)
    assert http.put(f"/api/campaigns/{single['id']}/status", json={"status": "running"}).json() == {
        "message": "Only paused campaigns and drafts can be started."
    }
    started = http.put(f"/api/campaigns/{double['id']}/status", json={"status": "running"})
    assert started.json()["data"]["to_send"] == 1
    assert http.post("/api/campaigns", json={"name": "x", "subject": "y"}).json() == {
        "message": "Invalid list IDs."
    }
    # a value outside listmonk's enum is PostgreSQL's error; "finished" is written unchecked
    assert http.put("/api/campaigns/1/status", json={"status": "done"}).status_code == 500
    forced = http.put(f"/api/campaigns/{double['id']}/status", json={"status": "finished"})
    assert forced.json()["data"]["status"] == "finished"
    scheduled = http.put(f"/api/campaigns/{single['id']}/status", json={"status": "scheduled"})
    assert scheduled.json() == {"message": "Campaign needs a date to be scheduled."}


def test_running_with_send_at_is_scheduled_and_starts_on_the_clock(
    http: httpx.Client, control: httpx.Client
) -> None:
    _seed_people(http, 3)
    made = http.post(
        "/api/campaigns",
        json={"name": "Later", "subject": "s", "lists": [1], "send_at": "2026-06-01T10:00:00Z"},
    ).json()["data"]
    started = http.put(f"/api/campaigns/{made['id']}/status", json={"status": "running"})
    assert started.json()["data"]["status"] == "scheduled"
    control.post("/clock", json={"advance": 3600})
    control.post("/processes/run")  # starts it; the next request finishes it
    done = http.get(f"/api/campaigns/{made['id']}").json()["data"]
    assert (done["status"], done["sent"]) == ("finished", 3)


def _activity(seed: int) -> tuple[list[Any], list[Any], list[Any], dict[str, Any]]:
    with (
        run_in_thread(config=ListmonkConfig(start_time=START, seed=seed)) as sandbox,
        httpx.Client(base_url=sandbox.base_url, headers=sandbox.auth_header) as http,
    ):
        _seed_people(http, 300)
        campaign = _campaign(http, [1])
        http.put(f"/api/campaigns/{campaign['id']}/status", json={"status": "running"})
        window = {"id": campaign["id"], "from": "2026-06-01", "to": "2026-06-02"}
        views = http.get("/api/campaigns/analytics/views", params=window).json()["data"]
        clicks = http.get("/api/campaigns/analytics/clicks", params=window).json()["data"]
        links = http.get("/api/campaigns/analytics/links", params=window).json()["data"]
        done = http.get(f"/api/campaigns/{campaign['id']}").json()["data"]
        return views, clicks, links, done


def test_activity_is_deterministic_and_bucketed() -> None:
    views, clicks, links, done = _activity(seed=7)
    assert (views, clicks, links, done["views"]) == (*_activity(seed=7)[:3], done["views"])
    assert _activity(seed=8)[0] != views
    assert sum(b["count"] for b in views) == done["views"] > 0
    assert sum(b["count"] for b in clicks) == done["clicks"] > 0
    # under a week: hourly buckets, ascending
    assert all(b["timestamp"].endswith(":00:00Z") for b in views)
    assert [b["timestamp"] for b in views] == sorted(b["timestamp"] for b in views)
    assert {x["url"] for x in links} == {"https://example.org/x", "https://example.org/y"}
    assert sum(x["count"] for x in links) == done["clicks"]
    assert 0 < done["bounces"] < 300


def test_analytics_validation_and_daily_buckets(http: httpx.Client) -> None:
    _seed_people(http, 50)
    campaign = _campaign(http, [1])
    http.put(f"/api/campaigns/{campaign['id']}/status", json={"status": "running"})
    base = "/api/campaigns/analytics/views"
    assert http.get(base, params={"from": "2026-06-01", "to": "2026-06-02"}).json() == {
        "message": "Missing field(s): `id`"
    }
    assert http.get(base, params={"id": 1, "from": "2026", "to": "2026-06-02"}).json() == {
        "message": "Invalid `from` or `to` dates."
    }
    week = http.get(base, params={"id": 1, "from": "2026-05-25", "to": "2026-06-08"}).json()
    assert [b["timestamp"] for b in week["data"]] == ["2026-06-01T00:00:00Z"]
    bounces = http.get(
        "/api/campaigns/analytics/bounces",
        params={"id": 1, "from": "2026-05-25", "to": "2026-06-08"},
    ).json()["data"]
    assert (
        sum(b["count"] for b in bounces) == http.get("/api/campaigns/1").json()["data"]["bounces"]
    )


def test_bounce_actions_and_webhook(
    http: httpx.Client, control: httpx.Client, listmonk_sandbox: ListmonkHandle
) -> None:
    ids = _seed_people(http, 3)
    control.post(f"/subscribers/{ids[0]}/bounce", json={"type": "soft"})
    assert http.get(f"/api/subscribers/{ids[0]}").json()["data"]["status"] == "enabled"
    control.post(f"/subscribers/{ids[0]}/bounce", json={"type": "soft"})  # 2 soft: action none
    assert http.get(f"/api/subscribers/{ids[0]}").json()["data"]["status"] == "enabled"
    control.post(f"/subscribers/{ids[1]}/bounce", json={"type": "hard"})  # 1 hard: blocklist
    hard = http.get(f"/api/subscribers/{ids[1]}").json()["data"]
    assert hard["status"] == "blocklisted"
    listed = http.get("/api/bounces", params={"order": "asc"}).json()["data"]
    assert [(b["subscriber_id"], b["type"]) for b in listed["results"]] == [
        (ids[0], "soft"),
        (ids[0], "soft"),
        (ids[1], "hard"),
    ]
    assert listed["results"][2]["subscriber_status"] == "blocklisted"
    # the webhook route exists only when bounce webhooks are enabled
    body = {"email": f"r{2}@example.org", "type": "complaint", "source": "api"}
    assert http.post("/webhooks/bounce", json=body).status_code == 404
    control.post(
        "/limits",
        json={
            "bounce_webhooks": True,
            "bounce_actions": {"complaint": {"count": 1, "action": "delete"}},
        },
    )
    assert http.post("/webhooks/bounce", json={**body, "type": "x"}).status_code == 400
    assert http.post("/webhooks/bounce", json=body).json() == {"data": True}
    assert ids[2] not in listmonk_sandbox.sandbox.subscribers
    assert http.delete("/api/bounces", params={"all": "true"}).json() == {"data": True}
    assert http.get("/api/bounces").json()["data"]["total"] == 0


def test_public_unsubscribe_link_and_optin_page(
    http: httpx.Client, listmonk_sandbox: ListmonkHandle
) -> None:
    ids = _seed_people(http, 2)
    http.put(
        "/api/subscribers/lists",
        json={"ids": ids, "action": "add", "target_list_ids": [2]},
    )
    campaign = _campaign(http, [1])
    subs = [http.get(f"/api/subscribers/{i}").json()["data"] for i in ids]
    public = httpx.Client(base_url=listmonk_sandbox.base_url)  # no credentials
    with public:
        gone = public.post(f"/subscription/{campaign['uuid']}/{subs[0]['uuid']}")
        assert gone.status_code == 200
        optin = listmonk_sandbox.sandbox.lists[2].uuid
        confirmed = public.post(f"/subscription/optin/{subs[1]['uuid']}", data={"l": optin})
        assert confirmed.status_code == 200
        block = public.post(
            f"/subscription/{campaign['uuid']}/{subs[1]['uuid']}", data={"blocklist": "true"}
        )
        assert block.status_code == 200
    first = http.get(f"/api/subscribers/{ids[0]}").json()["data"]
    assert {x["id"]: x["subscription_status"] for x in first["lists"]} == {
        1: "unsubscribed",
        2: "unconfirmed",
    }
    second = http.get(f"/api/subscribers/{ids[1]}").json()["data"]
    assert second["status"] == "blocklisted"
    assert {x["subscription_status"] for x in second["lists"]} == {"unsubscribed"}
