"""The listmonk sandbox's ASGI app: auth, faults, latency and routing around the handlers.

- ``/api/…`` — the emulated listmonk API (``Authorization: token user:token`` or BasicAuth
  ``user:token``); auth failures are 403 as in listmonk v4+;
- ``/webhooks/bounce`` — the native bounce webhook (only when ``bounce_webhooks`` is on);
- ``/subscription/optin/{uuid}`` and ``/subscription/{campaign}/{subscriber}`` — the public
  opt-in confirmation and unsubscribe pages (POST does it; no auth, as in listmonk);
- ``/_sandbox/…`` — the control API (``X-Sandbox-Token`` when a control token is configured).

``create_app()`` builds it; ``app.state.sandbox`` is the ``ListmonkSandbox`` for white-box asserts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.routing import Route as StarletteRoute
from starlette.types import Receive, Scope, Send

from campaign_bridge.sandbox import _asgi
from campaign_bridge.sandbox._asgi import NoRoute, match_route, read_request
from campaign_bridge.sandbox._persistence import saving_lifespan
from campaign_bridge.sandbox.listmonk import (
    bounces,
    bulk,
    campaigns,
    control,
    imports,
    lists,
    persistence,
    subscribers,
)
from campaign_bridge.sandbox.listmonk.model import ApiUser, ListmonkConfig, ListmonkSandbox
from campaign_bridge.sandbox.listmonk.wire import (
    JSON_TYPE,
    ApiRequest,
    ListmonkError,
    Reply,
    Route,
    data,
    dumps,
    loads,
)

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def _health(_request: ApiRequest) -> Reply:
    return data(True)


API_ROUTES: list[Route] = [
    Route("GET", "/health", _health),
    *bounces.routes,
    *bulk.routes,
    *subscribers.routes,
    *lists.routes,
    *imports.routes,
    *campaigns.routes,
]
CONTROL_ROUTES = control.control_routes


def match(routes: Sequence[Route], method: str, path: str) -> tuple[Route, dict[str, str]]:
    try:
        return match_route(routes, method, path)
    except NoRoute as miss:
        if miss.allowed:
            raise ListmonkError(405, "Method Not Allowed") from None
        raise ListmonkError(404, "404 unknown endpoint") from None


async def run(route: Route, request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    try:
        with sandbox.lock:
            request.require(route.perm)
            result = route.handler(request)
        if inspect.isawaitable(result):
            result = await result
        reply: Reply = result
    except ListmonkError as error:
        reply = Reply(error.body(), status=error.status)
    except Exception:
        logger.exception("listmonk sandbox handler failed: %s %s", request.method, request.path)
        reply = Reply({"message": "Internal Server Error"}, status=500)
    return reply


def _json_line(value: Any) -> bytes:
    return dumps(value) + b"\n"  # Echo's c.JSON ends the body with a newline


async def send_reply(send: Send, reply: Reply) -> None:
    await _asgi.send_reply(
        send, reply, dumps=_json_line, json_type=JSON_TYPE, raw_type="text/plain; charset=UTF-8"
    )


def authenticate(sandbox: ListmonkSandbox, headers: Mapping[str, str]) -> ApiUser:
    """listmonk's ``auth.Middleware``: a header is ``token user:token`` or ``Basic …``;
    a request carrying a ``session=`` cookie has its header ignored."""
    header = headers.get("authorization", "").strip()
    if "session=" in headers.get("cookie", ""):
        header = ""
    if not header:
        raise ListmonkError(403, "invalid session")
    if header.startswith("token"):
        pair = header[len("token") :].strip(" ").split(":", 1)
    elif header.startswith("Basic"):
        try:
            decoded = base64.b64decode(header[len("Basic") :].strip(" "), validate=True)
        except (binascii.Error, ValueError):
            raise ListmonkError(
                403, "code=400, message=invalid Base64 value in Basic Authorization header"
            ) from None
        pair = decoded.decode("utf-8", errors="replace").split(":", 1)
    else:
        raise ListmonkError(403, "code=400, message=unknown Authorization scheme")
    if len(pair) < 2:
        raise ListmonkError(403, "code=400, message=api_key:token missing")
    if not pair[0] or not pair[1]:
        raise ListmonkError(403, "code=400, message=empty `api_key` or `token`")
    user = sandbox.users.get(pair[0])
    if user is None or user.token != pair[1]:
        raise ListmonkError(403, "invalid API credentials")
    return user


def _parse_body(
    headers: Mapping[str, str], raw: bytes
) -> tuple[Any, dict[str, str], dict[str, tuple[str, bytes]]]:
    """(json body, form fields, files) as Echo's ``Bind``/``FormValue``/``FormFile`` see them."""
    ctype = headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        return None, *_multipart(ctype, raw)
    if ctype.startswith("application/x-www-form-urlencoded"):
        return None, dict(parse_qsl(raw.decode("utf-8", errors="replace"))), {}
    if not raw.strip():
        return None, {}, {}
    try:
        return loads(raw), {}, {}
    except ValueError:
        raise ListmonkError(400, "Syntax error: offset=1, error=invalid character") from None


def _multipart(ctype: str, raw: bytes) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    boundary = ""
    for part in ctype.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    form: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    if not boundary:
        return form, files
    for chunk in raw.split(b"--" + boundary.encode()):
        head, sep, body = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        body = body.removesuffix(b"\r\n")
        disposition = ""
        for line in head.decode("utf-8", errors="replace").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                disposition = line
        fields: dict[str, str] = {}
        for item in disposition.split(";")[1:]:
            key, _, value = item.strip().partition("=")
            fields[key.lower()] = value.strip('"')
        name = fields.get("name", "")
        if "filename" in fields:
            files[name] = (fields["filename"], body)
        elif name:
            form[name] = body.decode("utf-8", errors="replace")
    return form, files


def _fault_reply(status: int) -> Reply:
    if status in (502, 503):
        text = {502: b"502 Bad Gateway", 503: b"503 Service Unavailable"}[status]
        return Reply(
            raw=b"<html><body><h1>" + text + b"</h1></body></html>",
            status=status,
            media_type="text/html",
        )
    if status == 429:  # listmonk has no rate limits: this is what a reverse proxy answers
        return Reply(raw=b"429 Too Many Requests", status=429, headers={"retry-after": "1"})
    return Reply({"message": "Internal Server Error"}, status=status)


class ApiEndpoint:
    """``/api/…`` and ``/webhooks/…`` (authenticated), public ``/subscription/…`` pages."""

    def __init__(self, sandbox: ListmonkSandbox) -> None:
        self.sandbox = sandbox
        self.webhook_routes = [
            Route(r.method, "/webhooks" + r.path, r.handler, r.perm) for r in bounces.webhook_routes
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sandbox = self.sandbox
        arrived = sandbox.latency.timer()
        incoming = await read_request(scope, receive)
        headers, raw, method, full = incoming.headers, incoming.raw, incoming.method, incoming.path
        public = full.startswith("/subscription/")
        try:
            if full.startswith("/api"):
                path = "/" + full[len("/api") :].strip("/")
                route, params = match(API_ROUTES, method, path)
            elif public:
                path = full
                route, params = match(PUBLIC_ROUTES, method, path)
            else:
                path = full
                if not sandbox.config.bounce_webhooks:
                    raise ListmonkError(404, "Not Found")
                route, params = match(self.webhook_routes, method, path)
            user = None if public else authenticate(sandbox, headers)
            body, form, files = _parse_body(headers, raw)
        except ListmonkError as error:
            await send_reply(send, Reply(error.body(), status=error.status))
            return

        async def answer(kind: str) -> None:
            await send_reply(send, _fault_reply(int(kind)))

        fault = sandbox.faults.pick(method, path)
        if await _asgi.play_fault(
            fault, scope, send, answer=answer, media_type=JSON_TYPE, partial=b'{"data":'
        ):
            return
        request = ApiRequest(
            sandbox=sandbox,
            method=method,
            path=path,
            params=params,
            pairs=incoming.pairs,
            body=body,
            files=files,
            form=form,
            user=user,
        )
        with sandbox.lock:
            imports.run_due(sandbox)
            campaigns.finish_due(sandbox)
        reply = await run(route, request)
        wait = sandbox.latency.wait_before_answer(arrived, reply.items)
        if wait > 0:
            await asyncio.sleep(wait)
        await send_reply(send, reply)


def _page(status: int, text: str) -> Reply:
    html = f"<!doctype html><html><body><h2>{text}</h2></body></html>".encode()
    return Reply(raw=html, status=status, media_type="text/html; charset=UTF-8")


def _optin_page(request: ApiRequest) -> Reply:
    """``/subscription/optin/{uuid}``: POST (or ``confirm=true``) confirms the subscriber's
    unconfirmed double opt-in lists (those in ``l`` when given)."""
    sandbox = request.sandbox
    sub = sandbox.subscriber_by(request.params["sub"])
    if sub is None:
        return _page(404, "Subscription not found")
    uuids = [v for k, v in request.pairs if k == "l"] + (
        [request.form["l"]] if "l" in request.form else []
    )
    if request.method == "GET" and request.value("confirm") != "true":
        return _page(200, "Confirm subscription")
    if not control.confirm_optin(sandbox, sub, uuids):
        return _page(200, "There are no subscriptions to confirm.")
    return _page(200, "Subscribed")


def _unsubscribe_page(request: ApiRequest) -> Reply:
    """``POST /subscription/{campaign}/{subscriber}``: the unsubscribe link's form;
    ``blocklist=true`` also blocklists (``privacy.allow_blocklist``)."""
    sandbox = request.sandbox
    sub = sandbox.subscriber_by(request.params["sub"])
    campaign = next(
        (c for c in sandbox.campaigns.values() if c.uuid == request.params["campaign"]), None
    )
    if sub is None or campaign is None:
        return _page(404, "Subscription not found")
    if request.method == "GET":
        return _page(200, "Unsubscribe")
    body = {"campaign_id": campaign.id, "blocklist": request.value("blocklist") == "true"}
    control.simulate(sandbox, sub.uuid, "unsubscribe", body)
    return _page(200, "Unsubscribed")


PUBLIC_ROUTES = [
    Route("GET", "/subscription/optin/{sub}", _optin_page),
    Route("POST", "/subscription/optin/{sub}", _optin_page),
    Route("GET", "/subscription/{campaign}/{sub}", _unsubscribe_page),
    Route("POST", "/subscription/{campaign}/{sub}", _unsubscribe_page),
]


class ControlEndpoint:
    def __init__(self, sandbox: ListmonkSandbox) -> None:
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sandbox = self.sandbox
        call = await _asgi.read_control_call(
            scope,
            receive,
            send,
            token=sandbox.config.control_token,
            refused=lambda: Reply(
                ListmonkError(401, "Send the control token in X-Sandbox-Token").body(), status=401
            ),
            not_json=lambda: Reply({"message": "The body is not valid JSON"}, status=400),
            answer=send_reply,
        )
        if call is None:
            return
        incoming, body = call
        method, path = incoming.method, incoming.path
        try:
            route, params = match(CONTROL_ROUTES, method, path)
        except ListmonkError as error:
            await send_reply(send, Reply(error.body(), status=error.status))
            return
        request = ApiRequest(
            sandbox=sandbox,
            method=method,
            path=path,
            params=params,
            pairs=incoming.pairs,
            body=body,
        )
        await send_reply(send, await run(route, request))


def create_app(
    config: ListmonkConfig | None = None, *, sandbox: ListmonkSandbox | None = None
) -> Starlette:
    """Build the emulator app (state loaded from ``config.state_file`` when it exists)."""
    fresh = sandbox is None
    if sandbox is None:
        sandbox = ListmonkSandbox(config)
    if fresh and not persistence.load_if_present(sandbox) and sandbox.config.seed_default:
        control.seed_default(sandbox)
    api = ApiEndpoint(sandbox)
    ctl = ControlEndpoint(sandbox)

    app = Starlette(
        routes=[
            StarletteRoute("/_sandbox/{rest:path}", ctl),
            StarletteRoute("/{rest:path}", api),
        ],
        lifespan=saving_lifespan(lambda: persistence.autosave(sandbox)),
    )
    app.state.sandbox = sandbox
    return app
