"""A faithful emulator of the parts of Brevo's API v3 a database sync uses (see docs/sandbox.md).

In-process::

    app = create_app()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                               base_url="http://sandbox/v3",
                               headers={"api-key": app.state.sandbox.default_api_key})

On a real socket (tests)::

    with run_in_thread() as brevo:
        ...  # brevo.base_url, brevo.api_key, brevo.list_id, brevo.control_url, brevo.sandbox
"""

from __future__ import annotations

from campaign_bridge.sandbox.brevo.app import create_app
from campaign_bridge.sandbox.brevo.model import BrevoConfig, BrevoSandbox, Contact, ContactEvent
from campaign_bridge.sandbox.brevo.server import BrevoHandle, run_in_thread, serve_app

__all__ = [
    "BrevoConfig",
    "BrevoHandle",
    "BrevoSandbox",
    "Contact",
    "ContactEvent",
    "create_app",
    "run_in_thread",
    "serve_app",
]
