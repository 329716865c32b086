"""The raw-ASGI plumbing every emulator's app shares: reading a request, matching routes,
sending a reply, cutting a connection. What a provider's answers look like (error envelopes,
media types, status codes) stays in its own ``wire.py`` and ``app.py``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import parse_qsl

import httpx
import orjson
from starlette.types import Receive, Scope, Send

__all__ = [
    "REAL_SOCKET_KEY",
    "NoRoute",
    "PathRoute",
    "Reply",
    "Request",
    "control_token_refused",
    "cut_connection",
    "dumps",
    "loads",
    "match_route",
    "path_regex",
    "play_fault",
    "read_control_call",
    "read_request",
    "root_url",
    "send_reply",
    "send_response",
]

#: scope key set by ``_server`` on requests served over a socket, so that a "drop" fault cuts
#: a real connection (in-process, through httpx's ASGITransport, it raises what httpx would)
REAL_SOCKET_KEY = "campaign_bridge.real_socket"


@dataclass
class Reply:
    """A handler's answer: JSON ``body`` (None: an empty body) or ``raw`` bytes with
    ``media_type``."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    media_type: str | None = None
    #: items served or accepted (the per-item latency knob)
    items: int = 0


@dataclass
class Request:
    """An HTTP request as read off the wire, before a provider makes it an ``ApiRequest``."""

    method: str
    #: the path below the app's prefix, ``/`` + the rest without surrounding slashes
    path: str
    headers: dict[str, str]
    raw: bytes
    #: query pairs in order, repeated keys kept
    pairs: list[tuple[str, str]]


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            break
    return b"".join(chunks)


async def read_request(scope: Scope, receive: Receive, prefix: str = "") -> Request:
    """The whole request (its body read to the end), its path taken below ``prefix``."""
    return Request(
        method=scope["method"].upper(),
        path="/" + scope["path"][len(prefix) :].strip("/"),
        headers=_headers(scope),
        raw=await _read_body(receive),
        pairs=parse_qsl(scope.get("query_string", b"").decode("latin-1")),
    )


def control_token_refused(headers: Mapping[str, str], token: str | None) -> bool:
    """Whether a control call lacks the configured ``X-Sandbox-Token`` (none configured: no)."""
    return bool(token) and headers.get("x-sandbox-token") != token


async def read_control_call(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    token: str | None,
    refused: Callable[[], Reply],
    not_json: Callable[[], Reply],
    answer: Callable[[Send, Reply], Awaitable[None]],
) -> tuple[Request, Any] | None:
    """A ``/_sandbox`` call read and checked: the request and its JSON body (None when empty);
    None once it has been answered with ``refused()`` (no or a wrong ``X-Sandbox-Token`` while
    ``token`` is set) or ``not_json()`` (a body that is not JSON)."""
    incoming = await read_request(scope, receive, "/_sandbox")
    if control_token_refused(incoming.headers, token):
        await answer(send, refused())
        return None
    try:
        body = loads(incoming.raw) if incoming.raw.strip() else None
    except ValueError:
        await answer(send, not_json())
        return None
    return incoming, body


def root_url(scope: Scope, headers: Mapping[str, str], scheme: str | None = None) -> str:
    """``scheme://host[:port]`` as the client addressed the app (``Host`` header first)."""
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scheme or scope.get('scheme', 'http')}://{host}"


# --- routes -------------------------------------------------------------------------------------


def path_regex(template: str, *, optional_slash: bool = False) -> re.Pattern[str]:
    """``/lists/{list_id}`` as a regular expression; parameters are whole segments.
    ``optional_slash``: a trailing slash is allowed (and ignored in the template)."""
    if optional_slash:
        template = template.rstrip("/") or "/"
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return re.compile(f"^{pattern}/?$" if optional_slash else f"^{pattern}$")


def dumps(value: Any) -> bytes:
    """Compact JSON."""
    return orjson.dumps(value)


def loads(raw: bytes) -> Any:
    """Parse a JSON request body; raises ``ValueError`` when it is not JSON."""
    return orjson.loads(raw)


H = TypeVar("H")


class PathRoute(Generic[H]):
    """A (method, path template, handler) triple, ``("GET", "/contacts/{identifier}",
    handler)``; parameters are whole segments."""

    def __init__(self, method: str, path: str, handler: H) -> None:
        self.method = method
        self.path = path
        self.handler = handler
        self.regex = path_regex(path)


class _Route(Protocol):
    @property
    def method(self) -> str: ...

    @property
    def regex(self) -> re.Pattern[str]: ...


R = TypeVar("R", bound=_Route)


class NoRoute(LookupError):
    """No route serves (method, path): ``allowed`` lists the methods that would (empty: the
    path is unknown, a 404; else a 405)."""

    def __init__(self, allowed: Sequence[str]) -> None:
        super().__init__(f"no route; allowed: {list(allowed)}")
        self.allowed = list(allowed)


def match_route(routes: Iterable[R], method: str, path: str) -> tuple[R, dict[str, str]]:
    """The first of ``routes`` matching ``method`` and ``path``, with its path parameters."""
    allowed: list[str] = []
    for route in routes:
        found = route.regex.match(path)
        if found is None:
            continue
        if route.method == method:
            return route, found.groupdict()
        allowed.append(route.method)
    raise NoRoute(allowed)


# --- answers ------------------------------------------------------------------------------------


async def send_response(
    send: Send,
    status: int,
    payload: bytes,
    media_type: str,
    headers: Mapping[str, str] | None = None,
    *,
    fixed: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """One whole answer: content type and length, the ``fixed`` header pairs, then ``headers``
    (names lower-cased)."""
    pairs = [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(payload)).encode()),
    ]
    pairs += fixed
    pairs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": payload})


async def send_reply(
    send: Send,
    reply: Reply,
    *,
    dumps: Callable[[Any], bytes],
    json_type: str,
    raw_type: str = "application/octet-stream",
    error_type: str | None = None,
    fixed: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Send ``reply``: its ``raw`` bytes (``raw_type`` unless it names one), nothing (204 or no
    body) or its body encoded by ``dumps`` (``json_type``, or ``error_type`` for a status of
    400 and above, unless it names one)."""
    if reply.raw is not None:
        payload, media = reply.raw, reply.media_type or raw_type
    elif reply.status == 204 or reply.body is None:
        payload, media = b"", json_type
    else:
        default = error_type if error_type is not None and reply.status >= 400 else json_type
        payload, media = dumps(reply.body), reply.media_type or default
    await send_response(send, reply.status, payload, media, reply.headers, fixed=fixed)


async def cut_connection(scope: Scope, send: Send, *, media_type: str, partial: bytes) -> None:
    """A "drop" fault. Over a socket: start an answer promising 4096 bytes, send ``partial``
    and stop (the server closes the transport; the client sees an incomplete body). In-process:
    raise what httpx raises when a server disconnects."""
    if scope.get(REAL_SOCKET_KEY):
        start = [(b"content-type", media_type.encode()), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": start})
        await send({"type": "http.response.body", "body": partial, "more_body": True})
        return
    raise httpx.RemoteProtocolError("Server disconnected without sending a response.")


class _Fault(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def delay(self) -> float: ...


async def play_fault(
    fault: _Fault | None,
    scope: Scope,
    send: Send,
    *,
    answer: Callable[[str], Awaitable[None]],
    media_type: str,
    partial: bytes,
) -> bool:
    """Inject ``fault`` (the rule a fault box picked for this request, if any): ``drop`` cuts
    the connection (see ``cut_connection``), ``timeout`` holds the request ``delay`` seconds
    and lets it be answered as usual, any other kind is answered by ``answer(kind)``. Whether
    the request has been answered."""
    if fault is None:
        return False
    if fault.kind == "drop":
        await cut_connection(scope, send, media_type=media_type, partial=partial)
        return True
    if fault.kind == "timeout":
        await asyncio.sleep(fault.delay)
        return False
    await answer(fault.kind)
    return True
