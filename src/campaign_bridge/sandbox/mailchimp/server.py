"""Serving the Mailchimp emulator on a real socket: ``run_in_thread`` for tests, ``serve`` and
``serve_from_cli`` for ``campaign-bridge sandbox serve`` (the shared part is ``sandbox/_server``).

The host name must not contain "server": the official ``mailchimp_marketing`` SDK replaces that
substring in every URL with the data centre.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from starlette.applications import Starlette

from campaign_bridge.sandbox import _server
from campaign_bridge.sandbox._server import KEEP_ALIVE_SECONDS, ServedSandbox, ServeRequest
from campaign_bridge.sandbox.mailchimp.app import create_app
from campaign_bridge.sandbox.mailchimp.model import Sandbox, SandboxConfig

__all__ = [
    "KEEP_ALIVE_SECONDS",
    "SandboxHandle",
    "bind",
    "run_in_thread",
    "serve",
    "serve_app",
    "serve_from_cli",
]


@dataclass
class SandboxHandle(ServedSandbox):
    """A running sandbox: point clients at ``base_url`` with ``api_key``."""

    api_key: str
    list_id: str
    sandbox: Sandbox
    app: Starlette

    @property
    def base_url(self) -> str:
        """The API root, ``http://127.0.0.1:<port>/3.0`` (no trailing slash)."""
        return f"{self.root_url}/3.0"


def _check_host(host: str) -> None:
    if "server" in host.lower():
        raise ValueError("the host name must not contain 'server' (official SDK bug)")


def _handle(host: str, port: int, app: Starlette) -> SandboxHandle:
    sandbox: Sandbox = app.state.sandbox
    return SandboxHandle(
        host=host,
        port=port,
        api_key=sandbox.default_api_key,
        list_id=sandbox.default_list_id,
        sandbox=sandbox,
        app=app,
    )


#: ``with run_in_thread(port=0, config=None, host="127.0.0.1", app=None) as handle``: the
#: sandbox served by uvicorn from a background thread on a real socket (the app's ClockDate
#: sets ``Date`` from the sandbox clock)
run_in_thread = _server.ThreadRunner(
    create_app, _handle, label="Mailchimp", date_header=False, check_host=_check_host
)


def serve(host: str = "127.0.0.1", port: int = 8089, config: SandboxConfig | None = None) -> None:
    """Serve in the foreground until interrupted."""
    serve_app(create_app(config), host=host, port=port)


def bind(host: str = "127.0.0.1", port: int = 8089) -> socket.socket:
    """A listening socket for ``serve_app`` (``port`` 0: a free port, read it back with
    ``sock.getsockname()[1]``)."""
    _check_host(host)
    return _server.bind(host, port)


def serve_app(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 8089,
    sock: socket.socket | None = None,
) -> None:
    """Serve an app made by ``create_app`` in the foreground; the state is saved at exit.
    ``sock`` (from ``bind``) is served instead of binding ``host``/``port``."""
    _server.serve_forever(app, sock or bind(host, port), date_header=False)


def serve_from_cli(request: ServeRequest, *, dc: str = "us6") -> None:
    """``campaign-bridge sandbox serve``: build, announce, serve."""
    from campaign_bridge.sandbox.mailchimp.control import seed_demo

    _check_host(request.host)
    app = create_app(SandboxConfig(dc=dc, **request.config_options()))
    sandbox: Sandbox = app.state.sandbox

    def banner(port: int) -> list[str]:
        return [
            f"Mailchimp sandbox on http://{request.host}:{port}/3.0  (control: /_sandbox)",
            f"  API key: {sandbox.default_api_key or '(none; POST /_sandbox/keys)'}",
            f"  audience: {sandbox.default_list_id or '(none)'}",
        ]

    empty = not any(lst.members for lst in sandbox.lists.values())
    add_demo = (lambda: seed_demo(sandbox)) if empty else None
    request.serve(app, banner=banner, add_demo=add_demo, date_header=False)
