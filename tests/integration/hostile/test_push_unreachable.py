"""Defect 4: a push to a provider nobody listens for fails at once with the URL, instead of
25 s and about 70 retry lines before a clear error."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from campaign_bridge import migrations
from campaign_bridge.push import run_push

from ..push.conftest import Sandbox, make_source, push_settings
from ..push.conftest import sandbox as sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_push_to_a_closed_port_fails_fast_naming_the_url(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    migrations.upgrade(sqlite_url)
    make_source(sqlite_url, rows=20)
    settings = push_settings(tmp_path, sqlite_url, sandbox, state_url=sqlite_url)
    settings.syncs["crm"].destination.base_url = f"http://127.0.0.1:{port}/3.0"

    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        summary = await run_push(settings, "crm")
    elapsed = time.monotonic() - started

    assert summary.status == "failed"
    assert summary.error is not None
    assert f"connection refused: nothing listens at 127.0.0.1:{port}" in summary.error
    assert elapsed < 5
    retries = [r for r in caplog.records if getattr(r, "action", None) == "provider_retry"]
    assert retries == []
