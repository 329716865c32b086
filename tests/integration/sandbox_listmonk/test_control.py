"""The control API and ``campaign-bridge sandbox serve --provider listmonk``: reset, seed,
simulate, faults, clock, keys, optins, state file across a restart, the control token."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from campaign_bridge.sandbox.listmonk import ListmonkConfig, ListmonkHandle, run_in_thread

CLI = Path(sys.executable).with_name("campaign-bridge")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(
    port: int, state_file: Path, *extra: str
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    command = [
        str(CLI), "sandbox", "serve", "--provider", "listmonk", "--port", str(port),
        "--state-file", str(state_file), *extra,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=1).json()
            return process, {"Authorization": f"token {health['api_user']}:{health['api_token']}"}
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(process.communicate()[0])


def test_serve_seeds_demo_and_keeps_state_across_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "listmonk.json"
    port = _free_port()
    process, auth = _serve(port, state_file, "--seed-demo")
    base = f"http://127.0.0.1:{port}/api"
    try:
        demo = httpx.get(f"{base}/subscribers", headers=auth, params={"per_page": "all"}).json()
        assert demo["data"]["total"] == 25
        assert sum(s["status"] == "blocklisted" for s in demo["data"]["results"]) == 2
        made = httpx.post(f"{base}/subscribers", headers=auth, json={"email": "kept@example.org"})
        assert made.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert f"listmonk sandbox on http://127.0.0.1:{port}  (API: /api, control: /_sandbox)" in output
    assert "API user: bridge" in output
    process, auth_again = _serve(port, state_file)
    try:
        assert auth_again == auth
        kept = httpx.get(f"{base}/subscribers/{made.json()['data']['id']}", headers=auth)
        assert kept.json()["data"]["email"] == "kept@example.org"
        assert httpx.get(f"{base}/lists/2", headers=auth).json()["data"]["optin"] == "double"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)


def test_control_token_is_required_when_configured() -> None:
    with run_in_thread(config=ListmonkConfig(control_token="s3cret")) as sandbox:
        assert httpx.get(f"{sandbox.control_url}/health").status_code == 401
        ok = httpx.get(f"{sandbox.control_url}/health", headers={"X-Sandbox-Token": "s3cret"})
        assert ok.json()["api_user"] == "bridge"


def test_reset_seed_and_simulate(
    control: httpx.Client, http: httpx.Client, listmonk_sandbox: ListmonkHandle
) -> None:
    http.post("/api/subscribers", json={"email": "gone@example.org"})
    health = control.post("/reset").json()
    assert health["list_id"] == 1
    assert health["api_token"] != listmonk_sandbox.api_token  # users are reseeded too
    auth = {"Authorization": f"token bridge:{health['api_token']}"}
    seeded = control.post(
        "/seed",
        json={
            "lists": [{"name": "Extra", "type": "public", "optin": "single"}],
            "subscribers": [
                {"email": "s@example.org", "lists": [1, 2, 3], "attribs": {"a": 1}},
                {"email": "t@example.org", "lists": [3], "status": "blocklisted"},
            ],
        },
    ).json()
    assert seeded == {"users": [], "lists": [3], "subscribers": [1, 2]}
    unsub = control.post("/subscribers/s@example.org/unsubscribe", json={"list_id": 3}).json()
    assert {x["id"]: x["subscription_status"] for x in unsub["lists"]} == {
        1: "confirmed",
        2: "confirmed",
        3: "unsubscribed",
    }
    blocked = control.post("/subscribers/1/blocklist").json()
    assert blocked["status"] == "blocklisted"
    assert control.post("/subscribers/nobody@example.org/bounce").status_code == 400
    assert control.post("/subscribers/1/dance").json()["message"].startswith("Unknown action")
    held = httpx.get(f"{listmonk_sandbox.base_url}/api/subscribers/1", headers=auth).json()
    assert held["data"]["status"] == "blocklisted"


def test_optin_mail_and_confirm(control: httpx.Client, http: httpx.Client) -> None:
    sub = http.post("/api/subscribers", json={"email": "o@example.org", "lists": [2]}).json()
    assert control.get("/optins").json()["optins"][0]["list_ids"] == [2]
    confirmed = control.post("/subscribers/o@example.org/confirm").json()
    assert confirmed["lists"][0]["subscription_status"] == "confirmed"
    assert control.post("/subscribers/o@example.org/confirm").status_code == 400
    control.post("/limits", json={"send_optin_confirmation": False})
    late = http.post("/api/subscribers", json={"email": "p@example.org", "lists": [2]}).json()
    assert len(control.get("/optins").json()["optins"]) == 1
    # the admin's "send opt-in e-mail" (POST /api/subscribers/{id}/optin) sends regardless
    assert http.post(f"/api/subscribers/{late['data']['id']}/optin").json() == {"data": True}
    mails = control.get("/optins").json()["optins"]
    assert [(m["email"], m["list_ids"]) for m in mails] == [
        ("o@example.org", [2]),
        ("p@example.org", [2]),
    ]
    assert sub["data"]["lists"][0]["subscription_status"] == "unconfirmed"


def test_an_admin_edits_an_address(control: httpx.Client, http: httpx.Client) -> None:
    """``change-email``: the same subscriber (id, subscriptions) under the new address; the old
    address is free for someone else, who is another subscriber."""
    made = http.post(
        "/api/subscribers",
        json={"email": "old@example.org", "lists": [1], "preconfirm_subscriptions": True},
    ).json()["data"]
    control.post("/clock", json={"advance": 60})
    moved = control.post("/subscribers/old@example.org/change-email", json={"email": "New@x.org"})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["id"], moved.json()["email"]) == (made["id"], "new@x.org")
    assert moved.json()["lists"][0]["subscription_status"] == "confirmed"
    assert moved.json()["updated_at"] > made["updated_at"]
    query = {"query": "subscribers.email = 'old@example.org'"}
    assert http.get("/api/subscribers", params=query).json()["data"]["results"] == []
    again = http.post("/api/subscribers", json={"email": "old@example.org", "lists": [1]})
    assert again.json()["data"]["id"] != made["id"]
    taken = control.post("/subscribers/new@x.org/change-email", json={"email": "old@example.org"})
    assert taken.status_code == 500
    assert "duplicate key" in taken.json()["message"]
    bad = control.post("/subscribers/new@x.org/change-email", json={"email": "nope"})
    assert (bad.status_code, bad.json()["message"]) == (400, "Invalid email.")


def test_faults_and_clock(control: httpx.Client, http: httpx.Client) -> None:
    control.post("/faults", json={"kind": "503", "path": "^/subscribers", "count": 1})
    failed = http.get("/api/subscribers")
    assert failed.status_code == 503
    assert failed.headers["content-type"].startswith("text/html")
    assert http.get("/api/subscribers").status_code == 200  # the rule was used up
    control.post("/faults", json={"kind": "drop", "method": "GET", "path": "^/lists$"})
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/api/lists")
    assert control.post("/faults", json={"kind": "418"}).status_code == 400
    before = control.get("/clock").json()
    after = control.post("/clock", json={"advance": 90}).json()
    assert after["offset"] == before["offset"] + 90
    assert after["now"] == "2026-06-01T09:01:30Z"
