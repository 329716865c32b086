"""Serving the emulator on a real socket: ``run_in_thread`` for tests, ``serve`` for the CLI.

The host name must not contain "server": the official ``mailchimp_marketing`` SDK replaces that
substring in every URL with the data centre.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from campaign_bridge.sandbox.mailchimp.app import REAL_SOCKET_KEY, create_app
from campaign_bridge.sandbox.mailchimp.model import Sandbox, SandboxConfig

__all__ = [
    "KEEP_ALIVE_SECONDS",
    "SandboxHandle",
    "bind",
    "run_in_thread",
    "serve",
    "serve_app",
]

#: How long an idle keep-alive connection stays open. Longer than clients keep theirs (httpx
#: and most pools: 5 s), so a client never reuses a connection the server is closing at that
#: very moment (uvicorn's default is also 5 s: that race surfaced as ``ReadError``).
KEEP_ALIVE_SECONDS = 75

#: Young-generation threshold of the garbage collector in a process that serves the sandbox.
#: Members are long-lived objects; with the default (700) a 500-member batch subscribe runs
#: several young collections that promote its transient request and answer objects, which in
#: turn trigger full collections walking every member: at 1,000,000 members about a quarter
#: of the CPU of such a call. With 50,000 most transient objects are freed by reference
#: counting before any collection sees them.
_GC_YOUNG_THRESHOLD = 50_000


class _RealSocket:
    """Marks HTTP scopes as served over a socket (a dropped connection is then a real one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, REAL_SOCKET_KEY: True}
        await self.app(scope, receive, send)


@dataclass
class SandboxHandle:
    """A running sandbox: point clients at ``base_url`` with ``api_key``."""

    host: str
    port: int
    api_key: str
    list_id: str
    sandbox: Sandbox
    app: Starlette

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API root, ``http://127.0.0.1:<port>/3.0`` (no trailing slash)."""
        return f"{self.root_url}/3.0"

    @property
    def control_url(self) -> str:
        """The control API root, ``http://127.0.0.1:<port>/_sandbox``."""
        return f"{self.root_url}/_sandbox"


@contextlib.contextmanager
def run_in_thread(
    port: int = 0,
    config: SandboxConfig | None = None,
    *,
    host: str = "127.0.0.1",
    app: Starlette | None = None,
) -> Iterator[SandboxHandle]:
    """Run the sandbox with uvicorn in a background thread on a real socket."""
    if "server" in host.lower():
        raise ValueError("the host name must not contain 'server' (official SDK bug)")
    app = app or create_app(config)
    sandbox: Sandbox = app.state.sandbox
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            _RealSocket(app),
            log_level="critical",
            lifespan="on",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            access_log=False,
            date_header=False,  # the app's ClockDate sets it from the sandbox clock
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="mailchimp-sandbox", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Mailchimp sandbox did not start")
        time.sleep(0.01)
    try:
        yield SandboxHandle(
            host=host,
            port=bound_port,
            api_key=sandbox.default_api_key,
            list_id=sandbox.default_list_id,
            sandbox=sandbox,
            app=app,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve(host: str = "127.0.0.1", port: int = 8089, config: SandboxConfig | None = None) -> None:
    """Serve in the foreground until interrupted (``campaign-bridge sandbox serve``)."""
    serve_app(create_app(config), host=host, port=port)


def bind(host: str = "127.0.0.1", port: int = 8089) -> socket.socket:
    """A listening socket for ``serve_app`` (``port`` 0: a free port, read it back with
    ``sock.getsockname()[1]``)."""
    if "server" in host.lower():
        raise ValueError("the host name must not contain 'server' (official SDK bug)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def serve_app(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 8089,
    sock: socket.socket | None = None,
) -> None:
    """Serve an app made by ``create_app`` in the foreground; the state is saved at exit.

    ``sock`` (from ``bind``) is served instead of binding ``host``/``port``. The process is the
    sandbox's own, so its garbage collector is tuned for it."""
    if sock is None:
        sock = bind(host, port)
    _, *older = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *older)
    server = uvicorn.Server(
        uvicorn.Config(
            _RealSocket(app),
            log_level="info",
            lifespan="on",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            date_header=False,  # the app's ClockDate sets it from the sandbox clock
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
