"""The Brevo sandbox's control API, persistence and ``sandbox serve --provider brevo``."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from campaign_bridge.sandbox.brevo import BrevoConfig, BrevoHandle, create_app, run_in_thread

from .conftest import START, sdk_client

CLI = Path(sys.executable).with_name("campaign-bridge")


def test_health_seed_state_reset(
    brevo_sandbox: BrevoHandle, control: httpx.Client, http: httpx.Client
) -> None:
    health = control.get("/health").json()
    assert health == {
        "ok": True,
        "api_key": brevo_sandbox.api_key,
        "list_id": 1,
        "now": "2026-06-01T09:00:00.000Z",
    }
    seeded = control.post(
        "/seed",
        json={
            "api_keys": ["xkeysib-mine"],
            "attributes": [{"name": "TIER", "category": "normal", "type": "text"}],
            "lists": [{"name": "Seeded"}],
            "contacts": [
                {
                    "email": "s1@example.org",
                    "attributes": {"TIER": "gold", "UNKNOWN": "x"},
                    "listIds": [1],
                },
                {"email": "s2@example.org", "emailBlacklisted": True, "listUnsubscribed": [1]},
            ],
        },
    )
    assert seeded.status_code == 200
    assert seeded.json() == {
        "api_keys": ["xkeysib-mine"],
        "folders": [],
        "lists": [2],
        "contacts": [1, 2],
    }
    mine = httpx.get(
        f"{brevo_sandbox.base_url}/contacts/s1@example.org", headers={"api-key": "xkeysib-mine"}
    )
    assert mine.json()["attributes"] == {"TIER": "gold"}
    s2 = control.get("/contacts/s2@example.org").json()
    assert (s2["emailBlacklisted"], s2["listUnsubscribed"], s2["blacklistReason"]) == (
        True,
        [1],
        "admin",
    )
    state = control.get("/state").json()
    assert [c["email"] for c in state["contacts"]] == ["s1@example.org", "s2@example.org"]
    assert state["limits"]["rate_limits"] is False
    reset = control.post("/reset").json()
    assert reset["list_id"] == 1
    assert control.get("/state").json()["contacts"] == []
    assert http.get("/contacts").status_code == 401  # the old key is gone with the account
    assert (
        httpx.get(
            f"{brevo_sandbox.base_url}/contacts", headers={"api-key": reset["api_key"]}
        ).status_code
        == 200
    )


def test_clock_and_keys(control: httpx.Client, brevo_sandbox: BrevoHandle) -> None:
    moved = control.post("/clock", json={"advance": 90}).json()
    assert moved == {"now": "2026-06-01T09:01:30.000Z", "offset": 90.0}
    key = control.post("/keys", json={"name": "bridge"}).json()["api_key"]
    assert key.startswith("xkeysib-")
    assert (
        httpx.get(f"{brevo_sandbox.base_url}/contacts", headers={"api-key": key}).status_code == 200
    )


def test_control_token() -> None:
    with run_in_thread(config=BrevoConfig(control_token="t0ken")) as handle:
        denied = httpx.get(f"{handle.control_url}/health")
        assert denied.status_code == 401
        allowed = httpx.get(f"{handle.control_url}/health", headers={"X-Sandbox-Token": "t0ken"})
        assert allowed.status_code == 200


def test_state_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "brevo.json"
    config = BrevoConfig(start_time=START, state_file=str(path))
    with run_in_thread(config=config) as handle, sdk_client(handle.base_url, handle.api_key) as sdk:
        sdk.contacts.create_attribute("normal", "SCORE", type="float")
        sdk.contacts.create_contact(
            email="keep@example.org", attributes={"SCORE": 3.5}, list_ids=[1], ext_id="k-1"
        )
        sdk.webhooks.create_webhook(
            url="https://hooks.example.org/x", events=["spam"], type="marketing"
        )
        started = sdk.contacts.import_contacts(
            json_body=[{"email": "imp@example.org"}], list_ids=[1]
        )
        sdk.process.get_process(started.process_id)
        saved = httpx.post(f"{handle.control_url}/save")
        assert saved.json() == {"saved": str(path)}
    app = create_app(BrevoConfig(start_time=START, state_file=str(path)))
    sandbox = app.state.sandbox
    with run_in_thread(app=app) as again, sdk_client(again.base_url, again.api_key) as sdk:
        kept = sdk.contacts.get_contact_info("k-1", identifier_type="ext_id")
        assert (kept.email, kept.attributes.SCORE, kept.list_ids) == ("keep@example.org", 3.5, [1])  # type: ignore[attr-defined]
        assert sdk.contacts.get_list(1).unique_subscribers == 2
        assert [h.url for h in sdk.webhooks.get_webhooks(type="marketing").webhooks] == [
            "https://hooks.example.org/x"
        ]
        assert sdk.process.get_process(started.process_id).status == "completed"
        created = sdk.contacts.create_contact(email="after@example.org")
        assert created is not None
        assert created.id == 3  # the id counters were saved too
    assert sandbox.default_api_key == again.api_key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(port: int, state_file: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_BRIDGE_", "BREVO_"))}
    command = [
        str(CLI),
        "sandbox",
        "serve",
        "--provider",
        "brevo",
        "--port",
        str(port),
        "--state-file",
        str(state_file),
        *extra,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=1)
            return process, str(health.json()["api_key"])
        except httpx.TransportError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"sandbox serve did not start: {process.communicate()[0]}")


def test_cli_serve_brevo_survives_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "brevo.json"
    port = _free_port()
    process, key = _serve(port, state_file, "--seed-demo")
    base = f"http://127.0.0.1:{port}/v3"
    try:
        demo = httpx.get(f"{base}/contacts", headers={"api-key": key}).json()
        assert demo["count"] == 25
        assert sum(c["emailBlacklisted"] for c in demo["contacts"]) == 2
        added = httpx.post(
            f"{base}/contacts", headers={"api-key": key}, json={"email": "kept@example.org"}
        )
        assert added.status_code == 201
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert f"Brevo sandbox on http://127.0.0.1:{port}/v3  (control: /_sandbox)" in output
    assert f"API key: {key}" in output
    process, key_again = _serve(port, state_file)
    try:
        assert key_again == key
        kept = httpx.get(f"{base}/contacts/kept@example.org", headers={"api-key": key})
        assert kept.status_code == 200
        assert httpx.get(f"{base}/contacts", headers={"api-key": key}).json()["count"] == 26
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)


def test_cli_serve_brevo_on_port_zero_prints_the_port_it_took() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_BRIDGE_", "BREVO_"))}
    command = [str(CLI), "sandbox", "serve", "--provider", "brevo", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        found = re.match(r"Brevo sandbox on http://127\.0\.0\.1:(\d+)/v3 ", banner)
        assert found, banner
        key = process.stdout.readline().split("API key: ")[1].strip()
        base = f"http://127.0.0.1:{found.group(1)}/v3"
        answer = httpx.get(f"{base}/contacts", headers={"api-key": key})
        assert answer.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
