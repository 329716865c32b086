"""The Brevo sandbox's ASGI app: auth, rate limits, faults, latency and routing around handlers.

- ``/v3/…`` — the emulated Brevo API (``api-key`` header);
- ``/_sandbox/…`` — the control API (``X-Sandbox-Token`` when a control token is configured);
- ``/_files/…`` — files the API hands out URLs to (import reports), no auth, as Brevo's links.

``create_app()`` builds it; ``app.state.sandbox`` is the ``BrevoSandbox`` for white-box asserts.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route as StarletteRoute
from starlette.types import Receive, Scope, Send

from campaign_bridge.sandbox import _asgi
from campaign_bridge.sandbox._asgi import NoRoute, match_route, read_request, root_url
from campaign_bridge.sandbox._persistence import saving_lifespan
from campaign_bridge.sandbox.brevo import (
    campaigns,
    contacts,
    control,
    imports,
    lists,
    persistence,
    webhooks,
)
from campaign_bridge.sandbox.brevo.limits import RateLimiter, group_of
from campaign_bridge.sandbox.brevo.model import BrevoConfig, BrevoSandbox
from campaign_bridge.sandbox.brevo.wire import (
    JSON_TYPE,
    ApiRequest,
    BrevoError,
    Reply,
    Route,
    dumps,
    loads,
)

__all__ = ["Dispatcher", "create_app"]

logger = logging.getLogger(__name__)
API_PREFIX = "/v3"

#: literal /contacts/… routes first: /contacts/{identifier} would swallow them
API_ROUTES: list[Route] = [
    *contacts.routes,
    *lists.routes,
    *imports.routes,
    *campaigns.routes,
    *contacts.identifier_routes,
    *webhooks.routes,
]
CONTROL_ROUTES: list[Route] = [*control.control_routes, *webhooks.control_routes]

UNAUTHENTICATED = BrevoError(401, "unauthorized", "authentication not found in headers")
UNKNOWN_KEY = BrevoError(401, "unauthorized", "Key not found")
HTML_ERRORS = {
    502: b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
    b"</h1></center></body></html>",
    503: b"<html><head><title>503 Service Temporarily Unavailable</title></head><body><center>"
    b"<h1>503 Service Temporarily Unavailable</h1></center></body></html>",
}


class Dispatcher:
    """Finds a route for (method, path) and runs its handler; errors become error replies."""

    def __init__(
        self, sandbox: BrevoSandbox, routes: Sequence[Route], *, bumps_on_read: bool = False
    ) -> None:
        self.sandbox = sandbox
        self.routes = list(routes)
        #: every call counts as a write (the control API: its GETs may apply imports)
        self.bumps_on_read = bumps_on_read

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        try:
            return match_route(self.routes, method, path)
        except NoRoute as miss:
            if miss.allowed:
                raise BrevoError(
                    405, "method_not_allowed", "Method not allowed for this endpoint"
                ) from None
            raise BrevoError(404, "document_not_found", "Invalid route") from None

    async def execute(self, request: ApiRequest) -> Reply:
        sandbox = self.sandbox
        try:
            route, request.params = self.match(request.method, request.path)
            try:
                with sandbox.lock:
                    sandbox.acting_key_name = request.key_name
                    try:
                        result = route.handler(request)
                    finally:
                        sandbox.acting_key_name = ""
                if inspect.isawaitable(result):
                    result = await result
            finally:
                if request.method != "GET" or self.bumps_on_read:
                    with sandbox.lock:
                        sandbox.write_seq += 1
            reply: Reply = result
        except BrevoError as error:
            reply = Reply(error.body(), status=error.status, headers=dict(error.headers))
        except Exception:
            logger.exception("brevo sandbox handler failed: %s %s", request.method, request.path)
            reply = Reply(
                {"code": "internal_error", "message": "Internal server error"}, status=500
            )
        return reply


def _error_reply(error: BrevoError) -> Reply:
    return Reply(error.body(), status=error.status, headers=dict(error.headers))


async def send_reply(send: Send, reply: Reply) -> None:
    await _asgi.send_reply(send, reply, dumps=dumps, json_type=JSON_TYPE)


def _api_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get("api-key")
    if key:
        return key
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


class ApiEndpoint:
    def __init__(self, sandbox: BrevoSandbox, dispatcher: Dispatcher, limiter: RateLimiter) -> None:
        self.sandbox = sandbox
        self.dispatcher = dispatcher
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sandbox = self.sandbox
        arrived = sandbox.latency.timer()
        incoming = await read_request(scope, receive, API_PREFIX)
        method, path, raw = incoming.method, incoming.path, incoming.raw
        key = _api_key(incoming.headers)
        if not key:
            await send_reply(send, Reply(UNAUTHENTICATED.body(), status=401))
            return
        key_info = sandbox.api_keys.get(key)
        if key_info is None:
            await send_reply(send, Reply(UNKNOWN_KEY.body(), status=401))
            return
        verdict = self.limiter.check(key, group_of(path), sandbox.now(), path)
        if not verdict.allowed:
            error = verdict.error(sandbox.config.retry_after)
            await send_reply(send, Reply(error.body(), status=429, headers=error.headers))
            return

        async def answer(kind: str) -> None:
            # an injected 429 says what a real one says, limits enforced or not
            limit_headers = replace(verdict, enforced=True).headers()
            await send_reply(send, _fault_reply(int(kind), limit_headers))

        fault = sandbox.faults.pick(method, path)
        if await _asgi.play_fault(
            fault, scope, send, answer=answer, media_type=JSON_TYPE, partial=b'{"id":'
        ):
            return
        body: Any = None
        if raw.strip():
            try:
                body = loads(raw)
            except ValueError:
                error = BrevoError(400, "bad_request", "Input must be a valid JSON object")
                await send_reply(send, Reply(error.body(), status=400))
                return
        request = ApiRequest(
            sandbox=sandbox,
            method=method,
            path=path,
            params={},
            pairs=incoming.pairs,
            body=body,
            root_url=root_url(scope, incoming.headers),
            size=len(raw),
            key_name=str(key_info.get("name", "")),
        )
        with sandbox.lock:
            imports.run_due(sandbox)
        reply = await self.dispatcher.execute(request)
        reply.headers.update(verdict.headers())
        wait = sandbox.latency.wait_before_answer(arrived, reply.items)
        if wait > 0:
            await asyncio.sleep(wait)
        await send_reply(send, reply)


def _fault_reply(status: int, limit_headers: dict[str, str]) -> Reply:
    if status in HTML_ERRORS:
        return Reply(raw=HTML_ERRORS[status], status=status, media_type="text/html")
    if status == 400:  # Brevo's error document: the call is refused and changes nothing
        body = {"code": "invalid_parameter", "message": "The request was refused (sandbox fault)"}
    elif status == 425:
        body = {"code": "account_in_process", "message": "Your account is being processed"}
    elif status == 429:
        return Reply(
            {"code": "too_many_requests", "message": "The expected rate limit is exceeded."},
            status=429,
            headers={**limit_headers, "x-sib-ratelimit-remaining": "0"},
        )
    else:
        body = {"code": "internal_error", "message": "Internal server error"}
    return Reply(body, status=status)


class ControlEndpoint:
    def __init__(self, sandbox: BrevoSandbox, dispatcher: Dispatcher) -> None:
        self.sandbox = sandbox
        self.dispatcher = dispatcher

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sandbox = self.sandbox
        call = await _asgi.read_control_call(
            scope,
            receive,
            send,
            token=sandbox.config.control_token,
            refused=lambda: _error_reply(
                BrevoError(401, "unauthorized", "Send the control token in X-Sandbox-Token")
            ),
            not_json=lambda: _error_reply(
                BrevoError(400, "bad_request", "The request body is not valid JSON")
            ),
            answer=send_reply,
        )
        if call is None:
            return
        incoming, body = call
        request = ApiRequest(
            sandbox=sandbox,
            method=incoming.method,
            path=incoming.path,
            params={},
            pairs=incoming.pairs,
            body=body,
            root_url=root_url(scope, incoming.headers),
            size=len(incoming.raw),
        )
        await send_reply(send, await self.dispatcher.execute(request))


class FilesEndpoint:
    """``/_files/imports/{process}/{token}/{kind}.csv`` — an import's report files;
    ``/_files/exports/{process}/{token}/export.csv`` — an export's file."""

    def __init__(self, sandbox: BrevoSandbox) -> None:
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await read_request(scope, receive)
        parts = scope["path"].strip("/").split("/")
        text: str | None = None
        if len(parts) == 5 and parts[1] in ("imports", "exports") and parts[2].isdigit():
            with self.sandbox.lock:
                process = imports.processes(self.sandbox).items.get(int(parts[2]))
                if process is not None and process.token == parts[3]:
                    text = process.reports.get(parts[4].removesuffix(".csv"))
        if text is None:
            await send_reply(send, Reply(raw=b"Not Found", status=404, media_type="text/plain"))
            return
        await send_reply(send, Reply(raw=text.encode(), media_type="text/csv; charset=utf-8"))


def create_app(
    config: BrevoConfig | None = None, *, sandbox: BrevoSandbox | None = None
) -> Starlette:
    """Build the emulator app (state loaded from ``config.state_file`` when it exists)."""
    fresh = sandbox is None
    if sandbox is None:
        sandbox = BrevoSandbox(config)
    for module in (imports, campaigns, webhooks):
        module.install(sandbox)
    limiter = RateLimiter(sandbox.config)
    sandbox.extensions["rate_limiter"] = limiter
    if fresh and not persistence.load_if_present(sandbox) and sandbox.config.seed_default:
        control.seed_default(sandbox)
    api = ApiEndpoint(sandbox, Dispatcher(sandbox, API_ROUTES), limiter)
    ctl = ControlEndpoint(sandbox, Dispatcher(sandbox, CONTROL_ROUTES, bumps_on_read=True))
    files = FilesEndpoint(sandbox)

    app = Starlette(
        routes=[
            StarletteRoute(API_PREFIX, api),
            StarletteRoute(API_PREFIX + "/{rest:path}", api),
            StarletteRoute("/_sandbox/{rest:path}", ctl),
            StarletteRoute("/_files/{rest:path}", files),
        ],
        lifespan=saving_lifespan(lambda: persistence.autosave(sandbox)),
    )
    app.state.sandbox = sandbox
    return app
