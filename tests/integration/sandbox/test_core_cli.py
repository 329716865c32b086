"""``campaign-bridge sandbox serve`` as a user runs it: a subprocess on a real port, stopped with
SIGTERM, restarted from its state file."""

from __future__ import annotations

import base64
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CLI = Path(sys.executable).with_name("campaign-bridge")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(port: int, state_file: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    process = subprocess.Popen(
        [
            str(CLI),
            "sandbox",
            "serve",
            "--port",
            str(port),
            "--state-file",
            str(state_file),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
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


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    return output


def test_serve_persists_across_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "sandbox.json"
    port = _free_port()
    process, key = _start(port, state_file, "--seed-demo")
    base = f"http://127.0.0.1:{port}/3.0"
    try:
        lists = httpx.get(f"{base}/lists", auth=("x", key)).json()
        list_id = lists["lists"][0]["id"]
        demo = httpx.get(f"{base}/lists/{list_id}/members", auth=("x", key)).json()
        assert demo["total_items"] == 25
        added = httpx.post(
            f"{base}/lists/{list_id}/members",
            auth=("x", key),
            json={"email_address": "kept@real.org", "status": "subscribed"},
        )
        assert added.status_code == 200
    finally:
        output = _stop(process)
    assert f"API key: {key}" in output
    assert state_file.exists()
    process, key_again = _start(port, state_file, "--seed-demo")
    try:
        assert key_again == key
        member = httpx.get(f"{base}/lists/{list_id}/members/kept@real.org", auth=("x", key))
        assert member.json()["status"] == "subscribed"
        total = httpx.get(f"{base}/lists/{list_id}/members", auth=("x", key)).json()["total_items"]
        assert total == 26  # the demo is not seeded twice
    finally:
        _stop(process)


@pytest.mark.slow
def test_serve_keeps_an_idle_connection_longer_than_clients_do(tmp_path: Path) -> None:
    """httpx (like most pools) drops idle connections after 5 s; a server that closes them at
    5 s as well races with the client's reuse, which then fails with a read error."""
    port = _free_port()
    process, key = _start(port, tmp_path / "sandbox.json")
    auth = {"Authorization": "Basic " + base64.b64encode(f"x:{key}".encode()).decode()}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/3.0/ping", headers=auth)
        first = connection.getresponse()
        assert (first.status, first.getheader("connection")) == (200, None)
        first.read()
        socket_used = connection.sock
        time.sleep(6)
        connection.request("GET", "/3.0/ping", headers=auth)
        again = connection.getresponse()
        assert again.status == 200
        assert connection.sock is socket_used  # the same connection, not a new one
        again.read()
    finally:
        connection.close()
        _stop(process)
