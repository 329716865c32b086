"""A tiny real HTTP receiver for webhook tests (Starlette on uvicorn, in a thread)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    form: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every request; answers ``get_status`` to GETs and pops ``post_statuses``
    (then 200) for POSTs."""

    host: str = "127.0.0.1"
    port: int = 0
    get_status: int = 200
    post_statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    @property
    def posts(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]

    def posts_of(self, event_type: str) -> list[Received]:
        return [r for r in self.posts if r.form.get("type") == event_type]

    async def _handle(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        with self.lock:
            self.requests.append(
                Received(
                    request.method,
                    request.url.path,
                    request.url.query,
                    {k.lower(): v for k, v in request.headers.items()},
                    form,
                    body,
                )
            )
            if request.method == "GET":
                status = self.get_status
            else:
                status = self.post_statuses.pop(0) if self.post_statuses else 200
        return PlainTextResponse("ok", status_code=status)


@contextlib.contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver._handle, methods=["GET", "POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    receiver.port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("receiver did not start")
        time.sleep(0.01)
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
