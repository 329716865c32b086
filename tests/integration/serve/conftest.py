"""Helpers for the serve tests: a migrated state store, and the app on a real socket."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from campaign_bridge import migrations

TOKEN = "test-webhook-token-0123456789abcdef"
OLD_TOKEN = "older-webhook-token-fedcba9876543210"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def open_store(url: str) -> Any:
    """The real state store on ``url``, migrated to head."""
    from campaign_bridge.store import StateStore

    migrations.upgrade(url)
    return StateStore(url)


def close_store(store: Any) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        close()
    store.engine.dispose()


@contextlib.contextmanager
def serving(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free port; yield its root URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
