"""A faithful emulator of the Mailchimp Marketing API v3 (see docs/sandbox.md).

In-process::

    app = create_app()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox/3.0")

On a real socket (tests)::

    with run_in_thread() as mc:
        ...  # mc.base_url, mc.api_key, mc.list_id, mc.control_url, mc.sandbox
"""

from __future__ import annotations

from campaign_bridge.sandbox.mailchimp.app import create_app
from campaign_bridge.sandbox.mailchimp.model import (
    MemberEvent,
    Sandbox,
    SandboxConfig,
    subscriber_hash,
)
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle, run_in_thread, serve

__all__ = [
    "MemberEvent",
    "Sandbox",
    "SandboxConfig",
    "SandboxHandle",
    "create_app",
    "run_in_thread",
    "serve",
    "subscriber_hash",
]
