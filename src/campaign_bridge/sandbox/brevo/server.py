"""Serving the Brevo sandbox on a real socket: ``run_in_thread`` for tests, ``serve_app`` for
``campaign-bridge sandbox serve --provider brevo``."""

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

from campaign_bridge.sandbox.brevo.app import REAL_SOCKET_KEY, create_app
from campaign_bridge.sandbox.brevo.model import BrevoConfig, BrevoSandbox

__all__ = [
    "KEEP_ALIVE_SECONDS",
    "BrevoHandle",
    "bind",
    "run_in_thread",
    "serve_app",
    "serve_from_cli",
]

#: idle keep-alive longer than client pools keep theirs (httpx: 5 s), so a client never reuses
#: a connection the server is closing at that moment
KEEP_ALIVE_SECONDS = 75

#: young-generation threshold of the garbage collector in a process that serves the sandbox:
#: contacts are long-lived objects, and with the default (700) an import of 10,000 contacts
#: runs collections that walk every contact already held (as in the Mailchimp sandbox's serve)
_GC_YOUNG_THRESHOLD = 50_000


class _RealSocket:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, REAL_SOCKET_KEY: True}
        await self.app(scope, receive, send)


@dataclass
class BrevoHandle:
    """A running Brevo sandbox: point clients at ``base_url`` with ``api_key``."""

    host: str
    port: int
    api_key: str
    list_id: int | None
    sandbox: BrevoSandbox
    app: Starlette

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v3`` (no trailing slash)."""
        return f"{self.root_url}/v3"

    @property
    def control_url(self) -> str:
        return f"{self.root_url}/_sandbox"


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
        target=server.run, kwargs={"sockets": [sock]}, name="brevo-sandbox", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Brevo sandbox did not start")
        time.sleep(0.01)
    try:
        yield BrevoHandle(
            host=host,
            port=sock.getsockname()[1],
            api_key=sandbox.default_api_key,
            list_id=next(iter(sandbox.lists), None),
            sandbox=sandbox,
            app=app,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one; read it with ``getsockname``). It listens at
    once, so a client that read the printed port may connect before uvicorn has started."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def serve_app(app: Starlette, *, sock: socket.socket) -> None:
    """Serve on ``sock`` in the foreground until interrupted; the state is saved at exit. The
    process is the sandbox's own, so its garbage collector is tuned for it."""
    _, *older = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *older)
    server = uvicorn.Server(
        uvicorn.Config(
            _RealSocket(app),
            log_level="info",
            lifespan="on",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
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
    sock = bind(host, port)  # port 0: a free port, printed below
    port = sock.getsockname()[1]
    echo(f"Brevo sandbox on http://{host}:{port}/v3  (control: /_sandbox)")
    echo(f"  API key: {sandbox.default_api_key or '(none; POST /_sandbox/keys)'}")
    echo(f"  list: {next(iter(sandbox.lists), '(none)')}")
    sys.stdout.flush()
    serve_app(app, sock=sock)
