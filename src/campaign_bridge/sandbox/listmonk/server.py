"""Serving the listmonk sandbox on a real socket: ``run_in_thread`` for tests, ``serve_from_cli``
for ``campaign-bridge sandbox serve --provider listmonk`` (the shared part is
``sandbox/_server``)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from starlette.applications import Starlette

from campaign_bridge.sandbox import _server
from campaign_bridge.sandbox._server import ServedSandbox, bind
from campaign_bridge.sandbox.listmonk.app import create_app
from campaign_bridge.sandbox.listmonk.model import ListmonkConfig, ListmonkSandbox

__all__ = ["ListmonkHandle", "bind", "run_in_thread", "serve_app", "serve_from_cli"]


@dataclass
class ListmonkHandle(ServedSandbox):
    """A running listmonk sandbox: point clients at ``base_url`` with ``api_user``/``api_token``
    (``Authorization: token user:token`` or BasicAuth)."""

    api_user: str
    api_token: str
    list_id: int | None
    sandbox: ListmonkSandbox
    app: Starlette

    @property
    def base_url(self) -> str:
        """The instance root ``http://127.0.0.1:<port>`` (the API is under ``/api``)."""
        return self.root_url

    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"token {self.api_user}:{self.api_token}"}


@contextlib.contextmanager
def run_in_thread(
    port: int = 0,
    config: ListmonkConfig | None = None,
    *,
    host: str = "127.0.0.1",
    app: Starlette | None = None,
) -> Iterator[ListmonkHandle]:
    """Run the sandbox with uvicorn in a background thread on a real socket."""
    app = app or create_app(config)
    sandbox: ListmonkSandbox = app.state.sandbox
    sock = bind(host, port)
    with _server.serving_in_thread(app, sock, label="listmonk"):
        yield ListmonkHandle(
            host=host,
            port=sock.getsockname()[1],
            api_user=sandbox.default_user,
            api_token=sandbox.default_token,
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
    """``campaign-bridge sandbox serve --provider listmonk``: build, announce, serve."""
    from campaign_bridge.sandbox.listmonk.control import seed_demo as add_demo

    config = ListmonkConfig(
        seed=seed, state_file=state_file, autosave_seconds=autosave, control_token=control_token
    )
    app = create_app(config)
    sandbox: ListmonkSandbox = app.state.sandbox
    if seed_demo and not sandbox.subscribers:
        add_demo(sandbox)

    def banner(bound: int) -> list[str]:
        return [
            f"listmonk sandbox on http://{host}:{bound}  (API: /api, control: /_sandbox)",
            f"  API user: {sandbox.default_user or '(none; POST /_sandbox/keys)'}",
            f"  API token: {sandbox.default_token or '(none)'}",
            f"  list: {next(iter(sandbox.lists), '(none)')}",
        ]

    _server.announce_and_serve(app, host=host, port=port, banner=banner, echo=echo)
