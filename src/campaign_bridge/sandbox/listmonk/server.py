"""Serving the listmonk sandbox on a real socket: ``run_in_thread`` for tests, ``serve_from_cli``
for ``campaign-bridge sandbox serve --provider listmonk`` (the shared part is
``sandbox/_server``)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from starlette.applications import Starlette

from campaign_bridge.sandbox import _server
from campaign_bridge.sandbox._server import ServedSandbox, ServeRequest, bind
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


def _handle(host: str, port: int, app: Starlette) -> ListmonkHandle:
    sandbox: ListmonkSandbox = app.state.sandbox
    return ListmonkHandle(
        host=host,
        port=port,
        api_user=sandbox.default_user,
        api_token=sandbox.default_token,
        list_id=next(iter(sandbox.lists), None),
        sandbox=sandbox,
        app=app,
    )


#: ``with run_in_thread(port=0, config=None, host="127.0.0.1", app=None) as handle``: the
#: sandbox served by uvicorn from a background thread on a real socket
run_in_thread = _server.ThreadRunner(create_app, _handle, label="listmonk")


def serve_app(app: Starlette, *, sock: socket.socket) -> None:
    """Serve on ``sock`` in the foreground until interrupted; the state is saved at exit."""
    _server.serve_forever(app, sock)


def serve_from_cli(request: ServeRequest) -> None:
    """``campaign-bridge sandbox serve --provider listmonk``: build, announce, serve."""
    from campaign_bridge.sandbox.listmonk.control import seed_demo

    app = create_app(ListmonkConfig(**request.config_options()))
    sandbox: ListmonkSandbox = app.state.sandbox

    def banner(port: int) -> list[str]:
        return [
            f"listmonk sandbox on http://{request.host}:{port}  (API: /api, control: /_sandbox)",
            f"  API user: {sandbox.default_user or '(none; POST /_sandbox/keys)'}",
            f"  API token: {sandbox.default_token or '(none)'}",
            f"  list: {next(iter(sandbox.lists), '(none)')}",
        ]

    empty = not sandbox.subscribers
    request.serve(app, banner=banner, add_demo=(lambda: seed_demo(sandbox)) if empty else None)
