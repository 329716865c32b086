"""Serving an emulator's app on a real socket: what the Mailchimp, Brevo and listmonk sandboxes
share. Each provider's ``server.py`` keeps its handle (URLs, keys) and its banner.

- ``bind`` — a listening socket (port 0: a free one, read back with ``getsockname``);
- ``serving_in_thread`` — uvicorn in a daemon thread for tests, stopped when the block ends;
- ``serve_forever`` — uvicorn in the foreground for ``campaign-bridge sandbox serve``, with the
  garbage collector tuned for a process that holds many long-lived objects;
- ``announce_and_serve`` — bind, print the banner, serve; ``ServeRequest`` — what
  ``campaign-bridge sandbox serve`` asks of each provider's ``serve_from_cli``;
- ``ServedSandbox`` — the host and port a handle is built on, with the root and control URLs.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from campaign_bridge.sandbox._asgi import REAL_SOCKET_KEY

__all__ = [
    "KEEP_ALIVE_SECONDS",
    "ServeRequest",
    "ServedSandbox",
    "ThreadRunner",
    "announce_and_serve",
    "bind",
    "serve_forever",
    "serving_in_thread",
]

#: How long an idle keep-alive connection stays open. Longer than clients keep theirs (httpx
#: and most pools: 5 s), so a client never reuses a connection the server is closing at that
#: very moment (uvicorn's default is also 5 s: that race surfaced as ``ReadError``).
KEEP_ALIVE_SECONDS = 75

#: Young-generation threshold of the garbage collector in a process that serves a sandbox.
#: Members and contacts are long-lived objects; with the default (700) a 500-member batch
#: subscribe (or a 10,000-contact import) runs several young collections that promote its
#: transient request and answer objects, which in turn trigger full collections walking every
#: member: at 1,000,000 members about a quarter of the CPU of such a call. With 50,000 most
#: transient objects are freed by reference counting before any collection sees them.
_GC_YOUNG_THRESHOLD = 50_000

#: how long ``serving_in_thread`` waits for uvicorn to start
_START_SECONDS = 10


class _RealSocket:
    """Marks HTTP scopes as served over a socket (a dropped connection is then a real one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, REAL_SOCKET_KEY: True}
        await self.app(scope, receive, send)


@dataclass
class ServedSandbox:
    """Where a running sandbox listens; each provider's handle adds its keys and state."""

    host: str
    port: int

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        """The control API root, ``http://127.0.0.1:<port>/_sandbox``."""
        return f"{self.root_url}/_sandbox"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one; read it with ``getsockname``). It listens at
    once, so a client that read the printed port may connect before uvicorn has started."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _server(app: ASGIApp, *, quiet: bool, date_header: bool) -> uvicorn.Server:
    """uvicorn for a sandbox: long keep-alive; ``quiet`` (in a test's thread) logs nothing and
    stops within a second. ``date_header=False`` when the app sets ``Date`` itself."""
    options: dict[str, Any] = {"log_level": "info", "date_header": date_header}
    if quiet:
        options.update(log_level="critical", timeout_graceful_shutdown=1, access_log=False)
    return uvicorn.Server(
        uvicorn.Config(
            _RealSocket(app), lifespan="on", timeout_keep_alive=KEEP_ALIVE_SECONDS, **options
        )
    )


@contextlib.contextmanager
def serving_in_thread(
    app: ASGIApp, sock: socket.socket, *, label: str, date_header: bool = True
) -> Iterator[None]:
    """Serve ``app`` on ``sock`` from a daemon thread until the block ends (then the socket is
    closed); ``RuntimeError`` naming ``label`` when it does not start within 10 s."""
    server = _server(app, quiet=True, date_header=date_header)
    thread = threading.Thread(
        target=server.run,
        kwargs={"sockets": [sock]},
        name=f"{label.split()[0].lower()}-sandbox",
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + _START_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the {label} sandbox did not start")
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=_START_SECONDS)
        sock.close()


C = TypeVar("C")
H = TypeVar("H")


def _any_host(_host: str) -> None:
    pass


class ThreadRunner(Generic[C, H]):
    """A provider's ``run_in_thread``: ``with run_in_thread(port, config, host=…, app=…) as
    handle`` serves the app (``app``, or one ``create_app(config)`` builds) on a real socket
    from a background thread and yields ``handle(host, bound_port, app)``."""

    def __init__(
        self,
        create_app: Callable[[C | None], Starlette],
        handle: Callable[[str, int, Starlette], H],
        *,
        label: str,
        date_header: bool = True,
        check_host: Callable[[str], None] = _any_host,
    ) -> None:
        self.create_app = create_app
        self.handle = handle
        self.label = label
        self.date_header = date_header
        self.check_host = check_host

    @contextlib.contextmanager
    def __call__(
        self,
        port: int = 0,
        config: C | None = None,
        *,
        host: str = "127.0.0.1",
        app: Starlette | None = None,
    ) -> Iterator[H]:
        self.check_host(host)
        app = app or self.create_app(config)
        sock = bind(host, port)
        with serving_in_thread(app, sock, label=self.label, date_header=self.date_header):
            yield self.handle(host, sock.getsockname()[1], app)


def serve_forever(app: ASGIApp, sock: socket.socket, *, date_header: bool = True) -> None:
    """Serve on ``sock`` in the foreground until interrupted (the app's lifespan saves its state
    at exit). The process is the sandbox's own, so its garbage collector is tuned for it."""
    _, *older = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *older)
    try:
        _server(app, quiet=False, date_header=date_header).run(sockets=[sock])
    finally:
        sock.close()


def announce_and_serve(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    banner: Callable[[int], Sequence[str]],
    echo: Callable[[str], None],
    date_header: bool = True,
) -> None:
    """Bind ``host``/``port`` (0: a free port), print ``banner(bound_port)``, serve."""
    sock = bind(host, port)
    for line in banner(sock.getsockname()[1]):
        echo(line)
    sys.stdout.flush()
    serve_forever(app, sock, date_header=date_header)


@dataclass(frozen=True)
class ServeRequest:
    """What ``campaign-bridge sandbox serve`` asks for; a provider's ``serve_from_cli`` builds
    its app from ``config_options()`` and hands it to ``serve``."""

    host: str
    port: int
    state_file: str | None
    autosave: float
    seed_demo: bool
    seed: int
    control_token: str | None
    echo: Callable[[str], None]

    def config_options(self) -> dict[str, Any]:
        """The settings every sandbox's config takes, by their config names."""
        return {
            "seed": self.seed,
            "state_file": self.state_file,
            "autosave_seconds": self.autosave,
            "control_token": self.control_token,
        }

    def serve(
        self,
        app: ASGIApp,
        *,
        banner: Callable[[int], Sequence[str]],
        add_demo: Callable[[], object] | None,
        date_header: bool = True,
    ) -> None:
        """Add the demo content when asked (``add_demo`` None: there is content already),
        announce the app with ``banner(port)`` and serve it until interrupted."""
        if self.seed_demo and add_demo is not None:
            add_demo()
        announce_and_serve(
            app,
            host=self.host,
            port=self.port,
            banner=banner,
            echo=self.echo,
            date_header=date_header,
        )
