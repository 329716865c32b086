"""Secure by default: serve refuses a non-loopback bind without an admin token (unless told
`--public-status`), and the status page shows "Log out" only when there is a login."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from campaign_bridge.server import create_app
from tests.integration.serve.conftest import close_store, free_port, open_store
from tests.integration.serve.test_operations import ADMIN, settings_for

CLI = str(Path(sys.executable).with_name("campaign-bridge"))


def _env(tmp_path: Path, host: str, port: int, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    return {
        **clean,
        "CAMPAIGN_BRIDGE_DATA_DIR": str(tmp_path / "data"),
        "CAMPAIGN_BRIDGE_SERVER__HOST": host,
        "CAMPAIGN_BRIDGE_SERVER__PORT": str(port),
        **extra,
    }


@contextmanager
def _serving(args: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [CLI, "serve", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise AssertionError(f"serve exited {process.returncode}: {output}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/-/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not answer within 30 s"
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout:
            process.stdout.close()


def test_non_loopback_bind_without_admin_token_is_refused(tmp_path: Path) -> None:
    port = free_port()
    done = subprocess.run(
        [CLI, "serve"],
        env=_env(tmp_path, "0.0.0.0", port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    output = done.stdout + done.stderr
    assert "server.admin_token" in output
    assert "--public-status" in output
    assert "0.0.0.0" in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/-/health")


def test_public_status_or_an_admin_token_lets_it_start(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path, "0.0.0.0", port)
    subprocess.run([CLI, "migrate", "upgrade"], env=env, check=True, capture_output=True)
    with _serving(["--public-status"], env, port):
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200  # open, as asked
    port = free_port()
    token = {"CAMPAIGN_BRIDGE_SERVER__ADMIN_TOKEN": ADMIN}
    with _serving([], _env(tmp_path, "0.0.0.0", port, **token), port):
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 401
    port = free_port()
    with _serving([], _env(tmp_path, "127.0.0.1", port), port):  # loopback: open is fine
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200


async def _page(sqlite_url: str, headers: dict[str, str], **server: str) -> str:
    store = open_store(sqlite_url)
    app = create_app(settings_for(sqlite_url, **server), store=store)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                response = await client.get("/", headers=headers)
                assert response.status_code == 200
                return response.text
    finally:
        close_store(store)


@pytest.mark.anyio
async def test_log_out_only_when_there_is_a_login(sqlite_url: str) -> None:
    open_page = await _page(sqlite_url, {})
    assert "Log out" not in open_page
    assert "/-/logout" not in open_page
    admin_page = await _page(sqlite_url, {"Authorization": f"Bearer {ADMIN}"}, admin_token=ADMIN)
    assert "Log out" in admin_page
