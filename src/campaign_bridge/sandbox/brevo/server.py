"""Serving the Brevo sandbox on a real socket: ``run_in_thread`` for tests, ``serve_from_cli``
for ``campaign-bridge sandbox serve --provider brevo`` (the shared part is ``sandbox/_server``)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from starlette.applications import Starlette

from campaign_bridge.sandbox import _server
from campaign_bridge.sandbox._server import KEEP_ALIVE_SECONDS, ServedSandbox, bind
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


@contextlib.contextmanager
def run_in_thread(
    port: int = 0,
    config: BrevoConfig | None = None,
    *,
    host: str = "127.0.0.1",
    app: Starlette | None = None,
) -> Iterator[BrevoHandle]:
    """Run the sandbox with uvicorn in a background thread on a real socket."""
    app = app or create_app(config)
    sandbox: BrevoSandbox = app.state.sandbox
    sock = bind(host, port)
    with _server.serving_in_thread(app, sock, label="Brevo"):
        yield BrevoHandle(
            host=host,
            port=sock.getsockname()[1],
            api_key=sandbox.default_api_key,
            list_id=next(iter(sandbox.lists), None),
            sandbox=sandbox,
            app=app,
        )


def serve_app(app: Starlette, *, sock: socket.socket) -> None:
    """Serve on ``sock`` in the foreground until interrupted; the state is saved at exit."""
    _server.serve_forever(app, sock)


def serve_from_cli(
    *,
    host: str,
    port: int,
    state_file: str | None,
    autosave: float,
    seed_demo: bool,
    seed: int,
    control_token: str | None,
    echo: Callable[[str], None],
) -> None:
    """``campaign-bridge sandbox serve --provider brevo``: build, announce, serve."""
    from campaign_bridge.sandbox.brevo.control import seed_demo as add_demo

    config = BrevoConfig(
        seed=seed,
        state_file=state_file,
        autosave_seconds=autosave,
        control_token=control_token,
    )
    app = create_app(config)
    sandbox: BrevoSandbox = app.state.sandbox
    if seed_demo and not sandbox.contacts:
        add_demo(sandbox)

    def banner(bound: int) -> list[str]:
        return [
            f"Brevo sandbox on http://{host}:{bound}/v3  (control: /_sandbox)",
            f"  API key: {sandbox.default_api_key or '(none; POST /_sandbox/keys)'}",
            f"  list: {next(iter(sandbox.lists), '(none)')}",
        ]

    _server.announce_and_serve(app, host=host, port=port, banner=banner, echo=echo)
