"""The ASGI app: routing, auth, limits, faults, latency, and the wire format around handlers.

``create_app()`` assembles routes from the endpoint modules listed in ``API_MODULES``. Each
module may export:

- ``routes``: a list of ``wire.Route`` served under ``/3.0``;
- ``control_routes``: a list of ``wire.Route`` served under ``/_sandbox`` (no Mailchimp auth);
- ``install(sandbox)``: called once per app (register listeners, state hooks, defaults).

A module that does not exist yet is skipped, so the app works while others are being built.
Handlers are plain functions ``(ApiRequest) -> Reply`` (called with ``sandbox.lock`` held) or
coroutine functions (which take the lock themselves). ``Dispatcher.execute`` runs a handler
without HTTP; ``Sandbox.dispatch`` (used by ``/batches``) goes through it.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaign_bridge.sandbox import _asgi
from campaign_bridge.sandbox._asgi import NoRoute, match_route, read_request, root_url
from campaign_bridge.sandbox._persistence import saving_lifespan
from campaign_bridge.sandbox.mailchimp.account import oauth_metadata
from campaign_bridge.sandbox.mailchimp.auth import authenticate
from campaign_bridge.sandbox.mailchimp.limits import (
    HTML_BODIES,
    invalid_resource,
    too_many_requests,
)
from campaign_bridge.sandbox.mailchimp.model import Sandbox, SandboxConfig
from campaign_bridge.sandbox.mailchimp.wire import (
    JSON_TYPE,
    PROBLEM_TYPE,
    ApiRequest,
    Problem,
    Reply,
    Route,
    apply_fields,
    dumps,
    loads,
    not_found,
)

__all__ = ["API_MODULES", "ClockDate", "Dispatcher", "create_app", "load_modules"]

logger = logging.getLogger(__name__)

#: endpoint modules, in routing order; missing ones are skipped
API_MODULES: tuple[str, ...] = (
    "lists",
    "members",
    "campaigns",
    "reports",
    "webhooks",
    "batches",
    "account",
    "control",
)
_PACKAGE = "campaign_bridge.sandbox.mailchimp"


def load_modules(names: Sequence[str] = API_MODULES) -> list[ModuleType]:
    modules = []
    for name in names:
        full = f"{_PACKAGE}.{name}"
        try:
            modules.append(importlib.import_module(full))
        except ModuleNotFoundError as exc:
            if exc.name != full:
                raise
            logger.debug("sandbox module %s not present; skipped", full)
    return modules


def _segments(path: str) -> list[str]:
    return path.strip("/").split("/")


class _RouteTable:
    """Routes by path shape, so a path is tried only against the routes that can match it.

    A route's parameters are whole segments (``[^/]+``) and its first segment is literal, so a
    matching path has the route's number of segments and first segment; when the route's third
    segment is literal too (``/lists/{list_id}/members/…``), the path has that as well. Each
    candidate list keeps the routes' order, so the first match is the one a scan would find.
    """

    def __init__(self, routes: Sequence[Route]) -> None:
        #: (segments, first) -> routes whose third segment is a parameter or absent
        self._any_third: dict[tuple[int, str], list[Route]] = {}
        #: (segments, first, third) -> routes with that literal third segment, plus the above
        self._by_third: dict[tuple[int, str, str], list[Route]] = {}
        for route in routes:
            parts = _segments(route.path)
            if parts[0].startswith("{"):
                raise ValueError(f"route {route.path!r}: the first segment must be literal")
            if len(parts) > 2 and not parts[2].startswith("{"):
                self._by_third.setdefault((len(parts), parts[0], parts[2]), [])
        for route in routes:
            parts = _segments(route.path)
            third = parts[2] if len(parts) > 2 and not parts[2].startswith("{") else None
            if third is None:
                self._any_third.setdefault((len(parts), parts[0]), []).append(route)
            for (count, first, key), candidates in self._by_third.items():
                if (count, first) == (len(parts), parts[0]) and third in (None, key):
                    candidates.append(route)

    def candidates(self, path: str) -> Sequence[Route]:
        parts = _segments(path)
        if len(parts) > 2:
            found = self._by_third.get((len(parts), parts[0], parts[2]))
            if found is not None:
                return found
        return self._any_third.get((len(parts), parts[0]), ())


class Dispatcher:
    """Matches a path to a route and runs its handler, producing a ``Reply``."""

    def __init__(self, sandbox: Sandbox, routes: Sequence[Route]) -> None:
        self.sandbox = sandbox
        self.routes = list(routes)
        self._table = _RouteTable(self.routes)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The first route matching ``path`` and ``method`` (``path`` without a trailing
        slash); 405 with ``Allow`` when only other methods match, else 404."""
        try:
            return match_route(self._table.candidates(path), method, path)
        except NoRoute as miss:
            if not miss.allowed:
                raise not_found() from None
            raise Problem(
                405,
                "Method Not Allowed",
                "The requested method and resource are not compatible. See the Allow header "
                "for this resource's available methods.",
                headers={"Allow": ", ".join(dict.fromkeys(miss.allowed))},
            ) from None

    async def execute(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: Any,
        *,
        api_key: str = "",
        client_ip: str = "127.0.0.1",
        base_url: str = "",
        instance: str | None = None,
    ) -> Reply:
        """Run the operation; problems become problem replies (``reply.body`` = document)."""
        sandbox = self.sandbox
        if instance is None:
            with sandbox.lock:
                instance = sandbox.ids.uuid()
        path = "/" + path.strip("/") if path.strip("/") else "/"
        try:
            route, params = self.match(method, path)
            request = ApiRequest(
                sandbox=sandbox,
                method=method,
                path=path,
                params=params,
                query=query,
                body=body,
                account=sandbox.account,
                client_ip=client_ip,
                api_key=api_key,
                base_url=base_url or f"https://{sandbox.config.dc}.api.mailchimp.com/3.0",
            )
            try:
                with sandbox.lock:
                    result = route.handler(request)
                if inspect.isawaitable(result):
                    result = await result
            finally:
                if method != "GET":
                    with sandbox.lock:
                        sandbox.write_seq += 1
            reply: Reply = result
        except Problem as problem:
            reply = Reply(
                body=problem.document(instance), status=problem.status, headers=problem.headers
            )
            reply.media_type = PROBLEM_TYPE
        except Exception:
            logger.exception("sandbox handler failed for %s %s", method, path)
            reply = Reply(
                body=Problem(
                    500,
                    "Internal Server Error",
                    "An unexpected internal error has occurred. Please contact Support for "
                    "more information.",
                ).document(instance),
                status=500,
                media_type=PROBLEM_TYPE,
            )
        else:
            if reply.raw is None and reply.body is not None and reply.status < 300:
                reply.body = apply_fields(reply.body, query)
        reply.headers.setdefault("X-Request-Id", instance)
        return reply


async def _send(send: Send, reply: Reply) -> None:
    await _asgi.send_reply(
        send,
        reply,
        dumps=dumps,
        json_type=JSON_TYPE,
        error_type=PROBLEM_TYPE,
        fixed=((b"vary", b"Accept-Encoding"),),
    )


async def _send_html(send: Send, status: int, request_id: str) -> None:
    payload = HTML_BODIES[status].encode()
    await _asgi.send_response(send, status, payload, "text/html", {"x-request-id": request_id})


def _base_url(scope: Scope, headers: Mapping[str, str]) -> str:
    # Mailchimp's own host names arrive through a TLS-terminating proxy (tests of clients that
    # only talk to https://<dc>.api.mailchimp.com): links use https, as Mailchimp's do
    https = headers.get("host", "").endswith(".mailchimp.com")
    return root_url(scope, headers, "https" if https else None) + "/3.0"


class ApiEndpoint:
    """Raw ASGI endpoint for everything under ``/3.0``."""

    def __init__(self, sandbox: Sandbox, dispatcher: Dispatcher) -> None:
        self.sandbox = sandbox
        self.dispatcher = dispatcher

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sandbox = self.sandbox
        limits = sandbox.limits
        arrived = limits.timer()
        incoming = await read_request(scope, receive, "/3.0")
        headers, raw_body, method = incoming.headers, incoming.raw, incoming.method
        path = scope["path"][len("/3.0") :] or "/"
        query = dict(incoming.pairs)
        with sandbox.lock:
            instance = sandbox.ids.uuid()
        try:
            key = authenticate(sandbox, headers)
        except Problem as problem:
            await _send(send, _problem_reply(problem, instance))
            return
        if not limits.acquire(key):
            await _send(send, _problem_reply(too_many_requests(limits.max_concurrent), instance))
            return
        try:
            await self._serve(
                scope, send, key, method, path, query, headers, raw_body, instance, arrived
            )
        finally:
            limits.release(key)

    async def _serve(
        self,
        scope: Scope,
        send: Send,
        key: str,
        method: str,
        path: str,
        query: dict[str, str],
        headers: Mapping[str, str],
        raw_body: bytes,
        instance: str,
        arrived: float,
    ) -> None:
        """Answer one authenticated request; the answer leaves no sooner than the modelled
        latency after ``arrived`` (``limits.timer`` time)."""
        limits = self.sandbox.limits

        async def answer(
            kind: str,
        ) -> None:  # 429 and 400 as Mailchimp words them; the rest in HTML
            if kind in ("429", "400"):
                problem = (
                    too_many_requests(limits.max_concurrent)
                    if kind == "429"
                    else invalid_resource()
                )
                await _send(send, _problem_reply(problem, instance))
            else:
                await _send_html(send, int(kind), instance)

        fault = limits.pick_fault(method, path)
        if await _asgi.play_fault(
            fault, scope, send, answer=answer, media_type=JSON_TYPE, partial=b'{"id":'
        ):
            return
        override = headers.get("x-http-method-override")
        if override:
            if method != "POST":
                problem = Problem(
                    422,
                    "Invalid Method Override",
                    "You can only use the X-HTTP-Method-Override header with the POST method.",
                )
                await _send(send, _problem_reply(problem, instance))
                return
            method = override.upper()
        body: Any = None
        if raw_body.strip():
            try:
                body = loads(raw_body)
            except ValueError:
                problem = Problem(
                    400, "JSON Parse Error", "We encountered an unspecified JSON parsing error."
                )
                await _send(send, _problem_reply(problem, instance))
                return
        client = scope.get("client") or ("127.0.0.1", 0)
        reply = await self.dispatcher.execute(
            method,
            path,
            query,
            body,
            api_key=key,
            client_ip=client[0],
            base_url=_base_url(scope, headers),
            instance=instance,
        )
        wait = limits.wait_before_answer(arrived, reply.items)
        if wait > 0:
            await asyncio.sleep(wait)
        await _send(send, reply)


def _problem_reply(problem: Problem, instance: str) -> Reply:
    headers = dict(problem.headers)
    headers["X-Request-Id"] = instance
    return Reply(
        body=problem.document(instance),
        status=problem.status,
        headers=headers,
        media_type=PROBLEM_TYPE,
    )


class ControlEndpoint:
    """Raw ASGI endpoint for the control API under ``/_sandbox`` (not Mailchimp's surface)."""

    def __init__(self, sandbox: Sandbox, dispatcher: Dispatcher) -> None:
        self.sandbox = sandbox
        self.dispatcher = dispatcher

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = await _asgi.read_control_call(
            scope,
            receive,
            send,
            token=self.sandbox.config.control_token,
            refused=lambda: self._problem(
                401, "Unauthorized", "Send the control token in X-Sandbox-Token."
            ),
            not_json=lambda: self._problem(
                400, "JSON Parse Error", "The request body is not valid JSON."
            ),
            answer=_send,
        )
        if call is None:
            return
        incoming, body = call
        reply = await self.dispatcher.execute(
            incoming.method,
            incoming.path,
            dict(incoming.pairs),
            body,
            base_url=_base_url(scope, incoming.headers),
            instance=self._instance(),
        )
        await _send(send, reply)

    def _instance(self) -> str:
        """A request id (one per control call, from the seeded ids)."""
        with self.sandbox.lock:
            return self.sandbox.ids.uuid()

    def _problem(self, status: int, title: str, detail: str) -> Reply:
        return _problem_reply(Problem(status, title, detail), self._instance())


class ClockDate:
    """Sets the HTTP ``Date`` header of every answer from the sandbox clock, so a clock moved
    through the control API moves ``Date`` too (servers must not add their own: ``serve`` and
    ``run_in_thread`` turn uvicorn's off)."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.clock = sandbox.clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"date", self.clock.http_date()),
                ]
            await send(message)

        await self.app(scope, receive, dated)


def attach(sandbox: Sandbox) -> tuple[Dispatcher, Dispatcher]:
    """Install every module on ``sandbox``; return the API and control dispatchers."""
    modules = load_modules()
    api_routes: list[Route] = []
    control_routes: list[Route] = []
    for module in modules:
        api_routes.extend(getattr(module, "routes", ()))
        control_routes.extend(getattr(module, "control_routes", ()))
    for module in modules:
        install = getattr(module, "install", None)
        if install is not None:
            install(sandbox)
    api = Dispatcher(sandbox, api_routes)
    sandbox.dispatcher = api
    return api, Dispatcher(sandbox, control_routes)


def create_app(config: SandboxConfig | None = None, *, sandbox: Sandbox | None = None) -> Starlette:
    """Build the emulator app. ``app.state.sandbox`` is the state (for white-box asserts)."""
    from campaign_bridge.sandbox.mailchimp import persistence

    fresh = sandbox is None
    if sandbox is None:
        sandbox = Sandbox(config)
    api, control = attach(sandbox)
    if fresh:
        loaded = persistence.load_if_present(sandbox)
        if not loaded and sandbox.config.seed_default:
            from campaign_bridge.sandbox.mailchimp.control import seed_default

            seed_default(sandbox)
    api_endpoint = ApiEndpoint(sandbox, api)
    control_endpoint = ControlEndpoint(sandbox, control)

    app = Starlette(
        routes=[
            StarletteRoute("/3.0", api_endpoint),
            StarletteRoute("/3.0/{rest:path}", api_endpoint),
            StarletteRoute("/_sandbox/{rest:path}", control_endpoint),
            StarletteRoute("/oauth2/metadata", oauth_metadata, methods=["GET"]),
        ],
        middleware=[Middleware(ClockDate, sandbox=sandbox)],
        lifespan=saving_lifespan(lambda: persistence.autosave(sandbox)),
    )
    app.state.sandbox = sandbox
    app.state.control_dispatcher = control  # campaign_bridge.testing runs control calls with it
    return app
