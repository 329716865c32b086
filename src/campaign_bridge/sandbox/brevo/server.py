"""Serving the Brevo sandbox on a real socket: ``run_in_thread`` for tests, ``serve_from_cli``
for ``campaign-bridge sandbox serve --provider brevo`` (the shared part is ``sandbox/_server``)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from starlette.applications import Starlette

from campaign_bridge.sandbox import _server
from campaign_bridge.sandbox._server import KEEP_ALIVE_SECONDS, ServedSandbox, ServeRequest, bind
from campaign_bridge.sandbox.brevo.app import create_app
from campaign_bridge.sandbox.brevo.model import BrevoConfig, BrevoSandbox

__all__ = [
    "KEEP_ALIVE_SECONDS",
    "BrevoHandle",
    "bind",
    "run_in_thread",
    "serve_app",
    "serve_from_cli",
]


@dataclass
class BrevoHandle(ServedSandbox):
    """A running Brevo sandbox: point clients at ``base_url`` with ``api_key``."""

    api_key: str
    list_id: int | None
    sandbox: BrevoSandbox
    app: Starlette

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v3`` (no trailing slash)."""
        return f"{self.root_url}/v3"


def _handle(host: str, port: int, app: Starlette) -> BrevoHandle:
    sandbox: BrevoSandbox = app.state.sandbox
    return BrevoHandle(
        host=host,
        port=port,
        api_key=sandbox.default_api_key,
        list_id=next(iter(sandbox.lists), None),
        sandbox=sandbox,
        app=app,
    )


#: ``with run_in_thread(port=0, config=None, host="127.0.0.1", app=None) as handle``: the
#: sandbox served by uvicorn from a background thread on a real socket
run_in_thread = _server.ThreadRunner(create_app, _handle, label="Brevo")


def serve_app(app: Starlette, *, sock: socket.socket) -> None:
    """Serve on ``sock`` in the foreground until interrupted; the state is saved at exit."""
    _server.serve_forever(app, sock)


def serve_from_cli(request: ServeRequest) -> None:
    """``campaign-bridge sandbox serve --provider brevo``: build, announce, serve."""
    from campaign_bridge.sandbox.brevo.control import seed_demo

    app = create_app(BrevoConfig(**request.config_options()))
    sandbox: BrevoSandbox = app.state.sandbox

    def banner(port: int) -> list[str]:
        return [
            f"Brevo sandbox on http://{request.host}:{port}/v3  (control: /_sandbox)",
            f"  API key: {sandbox.default_api_key or '(none; POST /_sandbox/keys)'}",
            f"  list: {next(iter(sandbox.lists), '(none)')}",
        ]

    empty = not sandbox.contacts
    request.serve(app, banner=banner, add_demo=(lambda: seed_demo(sandbox)) if empty else None)
