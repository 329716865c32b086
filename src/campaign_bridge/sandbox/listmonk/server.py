"""Serving the listmonk sandbox on a real socket: ``run_in_thread`` for tests, ``serve_app`` for
``campaign-bridge sandbox serve --provider listmonk``."""

from __future__ import annotations

import contextlib
import gc
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from campaign_bridge.sandbox.listmonk.app import REAL_SOCKET_KEY, create_app
from campaign_bridge.sandbox.listmonk.model import ListmonkConfig, ListmonkSandbox

__all__ = ["ListmonkHandle", "bind", "run_in_thread", "serve_app", "serve_from_cli"]

#: idle keep-alive longer than client pools keep theirs (httpx: 5 s)
KEEP_ALIVE_SECONDS = 75
#: young-generation GC threshold in a process that serves the sandbox (see the Brevo server)
_GC_YOUNG_THRESHOLD = 50_000


class _RealSocket:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, REAL_SOCKET_KEY: True}
        await self.app(scope, receive, send)


@dataclass
class ListmonkHandle:
    """A running listmonk sandbox: point clients at ``base_url`` with ``api_user``/``api_token``
    (``Authorization: token user:token`` or BasicAuth)."""

    host: str
    port: int
    api_user: str
    api_token: str
    list_id: int | None
    sandbox: ListmonkSandbox
    app: Starlette

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The instance root ``http://127.0.0.1:<port>`` (the API is under ``/api``)."""
        return self.root_url

    @property
    def control_url(self) -> str:
        return f"{self.root_url}/_sandbox"

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
    server = uvicorn.Server(
        uvicorn.Config(
            _RealSocket(app),
            log_level="critical",
            lifespan="on",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            access_log=False,
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="listmonk-sandbox", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the listmonk sandbox did not start")
        time.sleep(0.01)
    try:
        yield ListmonkHandle(
            host=host,
            port=sock.getsockname()[1],
            api_user=sandbox.default_user,
            api_token=sandbox.default_token,
            list_id=next(iter(sandbox.lists), None),
            sandbox=sandbox,
            app=app,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def serve_app(app: Starlette, *, sock: socket.socket) -> None:
    """Serve on ``sock`` in the foreground until interrupted; the state is saved at exit."""
    _, *older = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *older)
    server = uvicorn.Server(
        uvicorn.Config(
            _RealSocket(app), log_level="info", lifespan="on", timeout_keep_alive=KEEP_ALIVE_SECONDS
        )
    )
    server.run(sockets=[sock])


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
    sock = bind(host, port)  # port 0: a free port, printed below
    port = sock.getsockname()[1]
    echo(f"listmonk sandbox on http://{host}:{port}  (API: /api, control: /_sandbox)")
    echo(f"  API user: {sandbox.default_user or '(none; POST /_sandbox/keys)'}")
    echo(f"  API token: {sandbox.default_token or '(none)'}")
    echo(f"  list: {next(iter(sandbox.lists), '(none)')}")
    sys.stdout.flush()
    serve_app(app, sock=sock)
