"""``/api/import/subscribers`` over HTTP: multipart CSV and ZIP, params validation, the single
import lock, asynchronous progress on the sandbox clock, logs, overwrite rules, blocklist mode."""

from __future__ import annotations

import io
import json
import zipfile

import httpx

from campaign_bridge.sandbox.listmonk import ListmonkHandle


def _upload(
    http: httpx.Client, params: dict[str, object] | str, text: str, name: str = "subs.csv"
) -> httpx.Response:
    payload = text.encode() if name.endswith(".csv") else _zip(text)
    return http.post(
        "/api/import/subscribers",
        data={"params": params if isinstance(params, str) else json.dumps(params)},
        files={"file": (name, payload, "application/octet-stream")},
    )


def _zip(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not a csv")
        archive.writestr("people.csv", text)
    return buffer.getvalue()


CSV = (
    "email,name,attributes,extra\n"
    'ann@example.org,Ann,"{""city"": ""Oslo""}",x\n'
    "not-an-email,Bad,,x\n"
    'bob@example.org,,"{broken",x\n'
    "Cy@Example.org,,,x\n"
    "short\n"
)


def test_import_is_asynchronous_and_logs_skips(
    http: httpx.Client, control: httpx.Client, listmonk_sandbox: ListmonkHandle
) -> None:
    control.post("/limits", json={"import_seconds_per_10k": 10})
    started = _upload(http, {"mode": "subscribe", "delim": ",", "lists": [1]}, CSV)
    assert started.json() == {
        "data": {"name": "subs.csv", "total": 2, "imported": 0, "status": "importing"}
    }
    again = _upload(http, {"mode": "subscribe", "delim": ",", "lists": [1]}, CSV)
    assert again.json() == {
        "message": "An import is already running. Wait for it to finish or stop it before "
        "trying again."
    }
    control.post("/clock", json={"advance": 10})
    done = http.get("/api/import/subscribers").json()["data"]
    assert done == {"name": "subs.csv", "total": 2, "imported": 2, "status": "finished"}
    logs = http.get("/api/import/subscribers/logs").json()["data"]
    assert "processing 'subs.csv'" in logs
    assert "skipping line 2: invalid email" in logs
    assert "skipping invalid attributes JSON on line 3 for 'bob@example.org'" in logs
    assert "skipping line 5. column count (1) does not match minimum header count (4)" in logs
    assert "ignoring unknown header 'extra'" in logs
    assert "imported finished" in logs
    people = {s.email: s for s in listmonk_sandbox.sandbox.subscribers.values()}
    assert set(people) == {"ann@example.org", "cy@example.org"}
    assert people["ann@example.org"].attribs == {"city": "Oslo"}
    assert people["cy@example.org"].name == "Cy"
    assert people["ann@example.org"].lists[1].status == "unconfirmed"
    assert http.delete("/api/import/subscribers").json()["data"]["status"] == "none"


def test_overwrite_rules_and_blocklist_mode(
    http: httpx.Client, listmonk_sandbox: ListmonkHandle
) -> None:
    sub = http.post(
        "/api/subscribers", json={"email": "ann@example.org", "name": "Old", "lists": [1]}
    ).json()["data"]
    http.put(
        "/api/subscribers/lists",
        json={"ids": [sub["id"]], "action": "unsubscribe", "target_list_ids": [1]},
    )
    csv = "email,name\nann@example.org,New\n"
    params = {"mode": "subscribe", "delim": ",", "lists": [1], "subscription_status": "confirmed"}
    _upload(http, {**params, "overwrite": False}, csv)
    kept = http.get(f"/api/subscribers/{sub['id']}").json()["data"]
    assert kept["name"] == "Old"
    assert kept["lists"][0]["subscription_status"] == "unsubscribed"
    http.delete("/api/import/subscribers")
    _upload(http, {**params, "overwrite": True}, csv, name="again.zip")
    assert http.get("/api/import/subscribers").json()["data"]["name"] == "again.zip"
    changed = http.get(f"/api/subscribers/{sub['id']}").json()["data"]
    assert changed["name"] == "New"
    assert changed["lists"][0]["subscription_status"] == "confirmed"
    http.delete("/api/import/subscribers")
    _upload(http, {"mode": "blocklist", "delim": ","}, "email\nann@example.org\nnew@example.org\n")
    assert http.get("/api/import/subscribers").json()["data"]["imported"] == 2
    for email in ("ann@example.org", "new@example.org"):
        held = listmonk_sandbox.sandbox.subscriber_by(email)
        assert held is not None
        assert held.status == "blocklisted"
        assert {s.status for s in held.lists.values()} <= {"unsubscribed"}


def test_params_validation_in_listmonks_order(http: httpx.Client) -> None:
    def message(params: dict[str, object] | str) -> tuple[int, str]:
        answer = _upload(http, params, "email\na@example.org\n")
        return answer.status_code, answer.json()["message"]

    assert message("{oops")[0] == 400
    assert message("{oops")[1].startswith("Invalid params: ")
    assert message({"mode": "subscribe", "delim": ","}) == (403, "Permission denied: lists")
    assert message({"mode": "other", "lists": [1], "delim": ","}) == (400, "Invalid mode")
    assert message(
        {"mode": "subscribe", "lists": [1], "delim": ",", "subscription_status": "x"}
    ) == (400, "Invalid subscription status")
    assert message({"mode": "subscribe", "lists": [1], "delim": ",,"}) == (
        400,
        "Delimiter should be a single character.",
    )
    no_file = http.post(
        "/api/import/subscribers",
        data={"params": json.dumps({"mode": "subscribe", "lists": [1], "delim": ","})},
        files={"other": ("x.txt", b"x")},
    )
    assert no_file.json()["message"].startswith("Invalid file: ")
    failed = _upload(http, {"mode": "subscribe", "lists": [1], "delim": ","}, "name\nAnn\n")
    assert failed.json()["data"]["status"] == "failed"


def test_imported_subscribers_read_back_by_id(http: httpx.Client) -> None:
    """What an importer's caller reads back: the newest id before the upload (``order=desc``,
    one per page), then keyset pages of ``subscribers.id > N`` in id order, after deletes too;
    times to the microsecond, so one read back compares equal to the stored one."""
    for i in range(3):
        http.post("/api/subscribers", json={"email": f"old{i}@example.org"})
    http.delete("/api/subscribers/3")
    newest = http.get("/api/subscribers", params={"order_by": "id", "per_page": "1"})
    assert [s["id"] for s in newest.json()["data"]["results"]] == [2]
    rows = "".join(f"new{i}@example.org,N{i},\n" for i in range(5))
    _upload(http, {"mode": "subscribe", "delim": ",", "lists": [1]}, "email,name,x\n" + rows)

    def above(n: int, per_page: int) -> list[int]:
        params = {"query": f"subscribers.id > {n}", "order_by": "id", "order": "asc"}
        got = http.get("/api/subscribers", params={**params, "per_page": str(per_page)})
        return [s["id"] for s in got.json()["data"]["results"]]

    assert above(2, 3) == [4, 5, 6]
    assert above(6, 3) == [7, 8]
    assert above(8, 3) == []
    assert above(0, 10) == [1, 2, 4, 5, 6, 7, 8]
    stamp = http.get("/api/subscribers/8").json()["data"]["updated_at"]
    later = {"query": f"subscribers.updated_at > '{stamp}'", "per_page": "all"}
    assert http.get("/api/subscribers", params=later).json()["data"]["results"] == []
