"""Fixtures for the Brevo sandbox: the emulator on a real socket and the official SDK on it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from brevo import Brevo

from campaign_bridge.sandbox.brevo import BrevoConfig, BrevoHandle, run_in_thread

#: a frozen start, so that event times and statistics windows are reproducible
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def brevo_sandbox() -> Iterator[BrevoHandle]:
    """A fresh Brevo sandbox on a real socket, its clock frozen at ``START``."""
    with run_in_thread(config=BrevoConfig(start_time=START)) as handle:
        yield handle


@pytest.fixture
def sdk(brevo_sandbox: BrevoHandle) -> Iterator[Brevo]:
    """The official ``brevo-python`` client, unmodified, pointed at the sandbox (no retries, so
    that a test sees every error as it was answered)."""
    with sdk_client(brevo_sandbox.base_url, brevo_sandbox.api_key) as client:
        yield client


@contextlib.contextmanager
def sdk_client(base_url: str, api_key: str, **options: Any) -> Iterator[Brevo]:
    """A ``Brevo`` client on its own httpx client, closed afterwards."""
    with httpx.Client(timeout=60) as transport:
        yield Brevo(
            api_key=api_key,
            base_url=base_url,
            httpx_client=transport,
            **{"max_retries": 0, **options},
        )


@pytest.fixture
def http(brevo_sandbox: BrevoHandle) -> Iterator[httpx.Client]:
    """Plain HTTP on the API root, with the API key."""
    with httpx.Client(
        base_url=brevo_sandbox.base_url, headers={"api-key": brevo_sandbox.api_key}
    ) as client:
        yield client


@pytest.fixture
def control(brevo_sandbox: BrevoHandle) -> Iterator[httpx.Client]:
    """The control API (``/_sandbox``)."""
    with httpx.Client(base_url=brevo_sandbox.control_url) as client:
        yield client
