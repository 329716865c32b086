"""Fixtures for the Mailchimp sandbox tests: a real-socket sandbox and clients aimed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from campaign_bridge.sandbox.mailchimp.server import SandboxHandle


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def mc(mailchimp_sandbox: SandboxHandle) -> SandboxHandle:
    """The running sandbox: ``base_url``, ``api_key``, ``list_id``, ``control_url``, ``sandbox``."""
    return mailchimp_sandbox


@pytest.fixture
def api(mc: SandboxHandle) -> Iterator[httpx.Client]:
    """A plain HTTP client on ``/3.0`` with Basic auth, for wire-level assertions."""
    with httpx.Client(base_url=mc.base_url, auth=("anystring", mc.api_key), timeout=10) as client:
        yield client


@pytest.fixture
def control(mc: SandboxHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mc.control_url, timeout=10) as client:
        yield client


@pytest.fixture
def official(mc: SandboxHandle) -> Any:
    """The official ``mailchimp_marketing`` SDK aimed at the sandbox."""
    import mailchimp_marketing

    client = mailchimp_marketing.Client()
    client.set_config({"api_key": mc.api_key, "timeout": 30})
    client.api_client.host = mc.base_url
    return client


@pytest.fixture
def mc3(mc: SandboxHandle) -> Any:
    """``mailchimp3`` aimed at the sandbox (its base URL needs the trailing slash)."""
    from mailchimp3 import MailChimp

    client = MailChimp(mc_api=mc.api_key, timeout=30)
    client.base_url = mc.base_url + "/"
    return client
