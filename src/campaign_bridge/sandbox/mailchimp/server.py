"""Serving the Mailchimp emulator on a real socket: ``run_in_thread`` for tests, ``serve`` and
``serve_from_cli`` for ``campaign-bridge sandbox serve`` (the shared part is ``sandbox/_server``).

The host name must not contain "server": the official ``mailchimp_marketing`` SDK replaces that
substring in every URL with the data centre.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from starlette.applications import Starlette

from campaign_bridge.sandbox import _server
from campaign_bridge.sandbox._server import KEEP_ALIVE_SECONDS, ServedSandbox
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


@contextlib.contextmanager
def run_in_thread(
    port: int = 0,
    config: SandboxConfig | None = None,
    *,
    host: str = "127.0.0.1",
    app: Starlette | None = None,
) -> Iterator[SandboxHandle]:
    """Run the sandbox with uvicorn in a background thread on a real socket."""
    _check_host(host)
    app = app or create_app(config)
    sandbox: Sandbox = app.state.sandbox
    sock = _server.bind(host, port)
    # the app's ClockDate sets Date from the sandbox clock
    with _server.serving_in_thread(app, sock, label="Mailchimp", date_header=False):
        yield SandboxHandle(
            host=host,
            port=sock.getsockname()[1],
            api_key=sandbox.default_api_key,
            list_id=sandbox.default_list_id,
            sandbox=sandbox,
            app=app,
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


def serve_from_cli(
    *,
    host: str,
    port: int,
    dc: str,
    state_file: str | None,
    autosave: float,
    seed_demo: bool,
    seed: int,
    control_token: str | None,
    echo: Callable[[str], None],
) -> None:
    """``campaign-bridge sandbox serve``: build, announce, serve."""
    from campaign_bridge.sandbox.mailchimp.control import seed_demo as add_demo

    _check_host(host)
    config = SandboxConfig(
        dc=dc,
        seed=seed,
        state_file=state_file,
        autosave_seconds=autosave,
        control_token=control_token,
    )
    app = create_app(config)
    sandbox: Sandbox = app.state.sandbox
    if seed_demo and not any(lst.members for lst in sandbox.lists.values()):
        add_demo(sandbox)

    def banner(bound: int) -> list[str]:
        return [
            f"Mailchimp sandbox on http://{host}:{bound}/3.0  (control: /_sandbox)",
            f"  API key: {sandbox.default_api_key or '(none; POST /_sandbox/keys)'}",
            f"  audience: {sandbox.default_list_id or '(none)'}",
        ]

    _server.announce_and_serve(
        app, host=host, port=port, banner=banner, echo=echo, date_header=False
    )
