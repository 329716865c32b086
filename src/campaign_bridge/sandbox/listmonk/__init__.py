"""A faithful emulator of the parts of listmonk's HTTP API (v6.2.0) a database sync uses (see
docs/sandbox.md).

In-process::

    app = create_app()
    sb = app.state.sandbox
    auth = {"Authorization": f"token {sb.default_user}:{sb.default_token}"}
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                               base_url="http://sandbox", headers=auth)

On a real socket (tests)::

    with run_in_thread() as listmonk:
        ...  # listmonk.base_url, .api_user, .api_token, .list_id, .control_url, .sandbox
"""

from __future__ import annotations

from campaign_bridge.sandbox.listmonk.app import create_app
from campaign_bridge.sandbox.listmonk.model import (
    ListmonkConfig,
    ListmonkSandbox,
    MailingList,
    Subscriber,
)
from campaign_bridge.sandbox.listmonk.server import ListmonkHandle, run_in_thread, serve_app

__all__ = [
    "ListmonkConfig",
    "ListmonkHandle",
    "ListmonkSandbox",
    "MailingList",
    "Subscriber",
    "create_app",
    "run_in_thread",
    "serve_app",
]
