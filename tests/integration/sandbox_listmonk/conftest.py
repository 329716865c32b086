"""Fixtures for the listmonk sandbox: the emulator on a real socket and the PyPI ``listmonk``
client (0.6.32, unmodified) pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType

import httpx
import listmonk
import pytest

from campaign_bridge.sandbox.listmonk import ListmonkConfig, ListmonkHandle, run_in_thread

#: a frozen start, so that event times and analytics windows are reproducible
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def listmonk_sandbox() -> Iterator[ListmonkHandle]:
    """A fresh listmonk sandbox on a real socket, its clock frozen at ``START``."""
    with run_in_thread(config=ListmonkConfig(start_time=START)) as handle:
        yield handle


@pytest.fixture
def client(listmonk_sandbox: ListmonkHandle) -> ModuleType:
    """The ``listmonk`` client module, logged in to the sandbox (it keeps module-level state:
    every test logs in again)."""
    listmonk.set_url_base(listmonk_sandbox.base_url)
    assert listmonk.login(listmonk_sandbox.api_user, listmonk_sandbox.api_token)
    return listmonk


@pytest.fixture
def http(listmonk_sandbox: ListmonkHandle) -> Iterator[httpx.Client]:
    """Plain HTTP on the instance root, with ``Authorization: token user:token``."""
    with httpx.Client(
        base_url=listmonk_sandbox.base_url, headers=listmonk_sandbox.auth_header
    ) as session:
        yield session


@pytest.fixture
def control(listmonk_sandbox: ListmonkHandle) -> Iterator[httpx.Client]:
    """The control API (``/_sandbox``)."""
    with httpx.Client(base_url=listmonk_sandbox.control_url) as session:
        yield session
