"""``campaign-bridge serve``: one ASGI app (Starlette on uvicorn) for webhooks, health and status.

Routes:

- ``/webhooks/{provider}/{token}``: a provider's deliveries (and Mailchimp's validating GET);
  the provider's :class:`~campaign_bridge.providers.base.WebhookParser` authenticates and reads
  them, the inbox stores them, the applier applies them.
- ``/-/health`` (alive), ``/-/ready`` (state store, migrations, provider; cached ~10 s),
  ``/-/metrics`` (Prometheus text), ``/-/version``.
- ``/`` the status page (admin token when configured), ``/-/login``, ``/-/logout``.

Graceful shutdown: uvicorn stops accepting connections on SIGTERM/SIGINT and lets requests in
flight finish; a webhook is answered 200 only after its row is committed, so nothing acknowledged
is lost. Then the lifespan stops the scheduler (runs in flight finish), drains the inbox and stops
the applier; events stored but not applied are applied by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    Response,
)
from starlette.routing import Route

from campaign_bridge import __version__, status_routes
from campaign_bridge.config import Settings
from campaign_bridge.db import normalize_url, redact_url
from campaign_bridge.errors import BridgeError, WebhookPayloadError
from campaign_bridge.metrics import Metrics
from campaign_bridge.providers import webhook_parser
from campaign_bridge.providers.base import WebhookRequest
from campaign_bridge.retention import retention_job, with_retention
from campaign_bridge.scheduler import JobRunner, Scheduler
from campaign_bridge.status_routes import ADMIN_COOKIE, STORE_DOWN, log_store_problem
from campaign_bridge.webhook_applier import AppliedChunk, WebhookApplier
from campaign_bridge.webhook_inbox import InboxRow, InboxStore, WebhookInbox
from campaign_bridge.webhook_parking import is_store_failure
from campaign_bridge.webhook_registration import register_webhooks
from campaign_bridge.workers_seen import deferral, refuse_if_workers

__all__ = [
    "ADMIN_COOKIE",
    "Readiness",
    "ServerState",
    "WebhookEndpoint",
    "create_app",
    "default_runner",
    "open_store",
    "readiness_checks",
    "register_webhooks",
    "serve",
    "use_fast_event_loop",
]

log = logging.getLogger(__name__)

READY_TTL = 10.0
CHECK_TIMEOUT = 5.0

Check = Callable[[], Awaitable[None]]


# --------------------------------------------------------------------------- readiness


@dataclass
class Readiness:
    """Named async checks, run together and cached for ``ttl`` seconds."""

    checks: dict[str, Check]
    ttl: float = READY_TTL
    _cached: tuple[float, dict[str, str | None]] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def results(self) -> dict[str, str | None]:
        """check name -> None when it passed, else what failed."""
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.ttl:
                return self._cached[1]
            names = list(self.checks)
            outcomes = await asyncio.gather(*(self._one(self.checks[n]) for n in names))
            results = dict(zip(names, outcomes, strict=True))
            self._cached = (time.monotonic(), results)
            return results

    @staticmethod
    async def _one(check: Check) -> str | None:
        try:
            await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT)
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT:.0f} s"
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return None


# --------------------------------------------------------------------------- app state


@dataclass
class ServerState:
    """Everything the routes share; built by :func:`create_app`, started by the lifespan."""

    settings: Settings
    store: Any
    metrics: Metrics
    readiness: Readiness
    inbox: WebhookInbox
    applier: WebhookApplier | None
    inbox_store: InboxStore | None = None
    scheduler: Scheduler | None = None
    alerter: Any = None  # campaign_bridge.alerts.Alerter when [alerts] urls are set
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def tokens(self) -> list[str]:
        return [t.get_secret_value() for t in self.settings.server.webhook_tokens]

    @property
    def admin_token(self) -> str | None:
        token = self.settings.server.admin_token
        return token.get_secret_value() if token is not None else None


def create_app(
    settings: Settings,
    *,
    store: Any | None = None,
    schedule: bool = False,
    runner: JobRunner | None = None,
    checks: Mapping[str, Check] | None = None,
    apply_events: bool = True,
) -> Starlette:
    """The service's ASGI app. ``store`` defaults to the state store in ``settings``.

    ``schedule`` runs the scheduler (with ``runner``, default: the real push and pull).
    ``checks`` replaces the readiness checks (default: database, migrations, each provider).
    """
    store = store if store is not None else open_store(settings)
    metrics = Metrics()
    writers = 1 if store.engine.dialect.name == "sqlite" else 4
    inbox_store = InboxStore(store.engine)
    inbox = WebhookInbox(inbox_store, writers=writers)
    applier = None
    if apply_events:
        applier = WebhookApplier(
            store.engine,
            settings.syncs,
            state_url=settings.effective_state_url(),
            busy=inbox.busy,
            locks=store if hasattr(store, "try_acquire_lock") else None,
            on_chunk=lambda chunk: _count_applied(metrics, chunk),
            log_emails=settings.log_emails,
        )
    readiness = Readiness(dict(checks) if checks is not None else readiness_checks(settings, store))
    state = ServerState(settings, store, metrics, readiness, inbox, applier, inbox_store)
    inbox.on_stored = lambda new, dup: _count_stored(state, new, dup)
    if schedule:
        state.scheduler = Scheduler.from_settings(
            settings.syncs,
            with_retention(runner or default_runner(settings), settings),
            store,
            on_run=lambda *a: _record_run(state, *a),
            defer=deferral(store.engine),
        )
        purge_job = retention_job(settings)  # the retention purge (campaign_bridge.retention)
        if purge_job is not None:
            state.scheduler.jobs.append(purge_job)

    if settings.alerts.urls:
        state.alerter = _alerter(settings, store)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await _start(state)
        try:
            yield
        finally:
            await _stop(state)

    routes = [
        Route("/-/health", _health, methods=["GET", "HEAD"]),
        Route("/-/ready", _ready, methods=["GET", "HEAD"]),
        Route("/-/metrics", _metrics, methods=["GET"]),
        Route("/-/version", _version, methods=["GET"]),
        *status_routes.ROUTES,
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, middleware=[Middleware(WebhookEndpoint, state=state)]
    )
    app.state.bridge = state
    return app


def _alerter(settings: Settings, store: Any) -> Any:
    from campaign_bridge.alerts import Alerter
    from campaign_bridge.observe import health

    return Alerter(settings.alerts, lambda: health(store.engine, settings))


async def _start(state: ServerState) -> None:
    try:
        await asyncio.to_thread(state.store.check)
    except Exception as exc:  # serve anyway: /-/ready says what is wrong, webhooks get 503
        log.error("the state store is not ready: %s", exc, extra={"action": "serve"})
    state.tasks.append(asyncio.create_task(state.inbox.run(), name="webhook-inbox"))
    if state.applier is not None:
        state.tasks.append(asyncio.create_task(state.applier.run(), name="webhook-applier"))
    if state.scheduler is not None:
        state.tasks.append(asyncio.create_task(state.scheduler.run(), name="scheduler"))
    if state.alerter is not None:
        state.tasks.append(asyncio.create_task(state.alerter.run(), name="alerts"))
    log.info(
        "serving: %d sync(s), %d webhook token(s), scheduler %s",
        len(state.settings.syncs),
        len(state.tokens),
        "on" if state.scheduler else "off",
        extra={"action": "serve"},
    )


async def _stop(state: ServerState) -> None:
    if state.scheduler is not None:
        state.scheduler.stop()
    if state.alerter is not None:
        state.alerter.stop()
    state.inbox.close()
    if state.applier is not None:
        state.applier.stop()
    results = await asyncio.gather(*state.tasks, return_exceptions=True)
    for task, result in zip(state.tasks, results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.error("%s stopped with %r", task.get_name(), result, extra={"action": "serve"})
    if state.inbox_store is not None:
        await state.inbox_store.aclose()
    log.info("stopped", extra={"action": "serve"})


def _bridge(request: Request) -> ServerState:
    state: ServerState = request.app.state.bridge
    return state


def _count_stored(state: ServerState, new: list[InboxRow], duplicates: int) -> None:
    if new and state.applier is not None:
        state.applier.notify(row.key for row in new)


def _count_applied(metrics: Metrics, chunk: AppliedChunk) -> None:
    for (provider, kind), count in chunk.applied.items():
        metrics.webhook_applied.labels(provider, kind, "applied").inc(count)
    if chunk.unmatched:
        metrics.webhook_applied.labels("any", "any", "no_sync").inc(chunk.unmatched)
    if chunk.failed:
        metrics.webhook_applied.labels("any", "any", "failed").inc(chunk.failed)
    if chunk.parked:
        metrics.webhook_applied.labels("any", "any", "parked").inc(chunk.parked)


# --------------------------------------------------------------------------- webhooks


WEBHOOK_PREFIX = "/webhooks/"


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class WebhookEndpoint:
    """The webhook route as plain ASGI middleware: the hot path skips the framework's layers.

    ``/webhooks/{provider}/{token}``: the provider's parser authenticates the request (``404``
    when it does not, or when no provider has that name) and answers anything but ``POST``
    (Mailchimp's validating ``GET``); a ``POST`` body is read while streaming (refused past
    ``max_body_bytes``), parsed into events, and answered only after they are committed. Every
    other path goes to ``app``.
    """

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state
        metrics = state.metrics
        self._answers = {
            code: metrics.webhook_requests.labels(str(code))
            for code in (200, 400, 404, 405, 413, 503)
        }

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(WEBHOOK_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            status, text = await self._handle(scope, receive)
        except _Disconnected:
            return
        body = text.encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode("ascii")),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""}
        )
        counter = self._answers.get(status)
        (counter or self.state.metrics.webhook_requests.labels(str(status))).inc()
        self.state.metrics.webhook_latency.observe(time.perf_counter() - started)

    async def _handle(self, scope: Any, receive: Any) -> tuple[int, str]:
        state = self.state
        client = scope.get("client")
        provider, _, token = scope["path"][len(WEBHOOK_PREFIX) :].partition("/")
        parser = webhook_parser(provider)
        extra = {
            "action": "webhook",
            "provider": provider if parser is not None else "?",
            "client": client[0] if client else "?",
        }
        request = _request(scope, token)
        if parser is None or not parser.authenticate(request, state.tokens):
            log.warning("webhook refused: unknown token or provider (nothing stored)", extra=extra)
            return 404, "not found"
        if request.method != "POST":
            answer = parser.handshake(request)
            return (200, answer) if answer is not None else (405, "method not allowed")
        limit = state.settings.server.max_body_bytes
        try:
            body = await _read_limited(scope, receive, limit)
        except _TooLarge:
            log.warning("webhook refused: body larger than %d bytes", limit, extra=extra)
            return 413, "payload too large"
        try:
            events = parser.parse(replace(request, body=body))
        except WebhookPayloadError as exc:
            log.warning("webhook refused: %s", exc, extra={**extra, "bytes": len(body)})
            return 400, f"bad request: {exc}"
        received = datetime.now(UTC)
        rows = [InboxRow.from_event(provider, event, received) for event in events]
        try:
            if len(rows) == 1:
                new = [await state.inbox.put(rows[0])]
            else:
                new = list(await asyncio.gather(*(state.inbox.put(row) for row in rows)))
        except Exception as exc:
            log.error("webhook not stored (%s); the provider will retry", exc, extra=extra)
            return 503, "temporarily unavailable"
        metrics = state.metrics
        for row, is_new in zip(rows, new, strict=True):
            if is_new:
                metrics.webhook_received.labels(provider, row.event_type).inc()
            else:
                metrics.webhook_duplicate.labels(provider).inc()
        return 200, "ok" if any(new) or not rows else "ok (duplicate)"


def _request(scope: Any, token: str) -> WebhookRequest:
    """The request's method, path token, headers and query, for the provider's parser."""
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }
    query = scope.get("query_string") or b""
    return WebhookRequest(
        method=scope["method"],
        token=token,
        headers=headers,
        query=dict(parse_qsl(query.decode("latin-1"))) if query else {},
    )


async def _read_limited(scope: Any, receive: Any, limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit`` bytes (never buffered beyond it)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# --------------------------------------------------------------------------- operations


async def _health(_request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def _ready(request: Request) -> Response:
    results = await _bridge(request).readiness.results()
    failing = {name: problem for name, problem in results.items() if problem is not None}
    body: dict[str, Any] = {
        "status": "ready" if not failing else "not ready",
        "checks": {name: (problem or "ok") for name, problem in results.items()},
    }
    if failing:
        body["failing"] = sorted(failing)
    return JSONResponse(body, status_code=503 if failing else 200)


async def _metrics(request: Request) -> Response:
    state = _bridge(request)
    from campaign_bridge.observe import health

    try:
        snapshot = await asyncio.to_thread(health, state.store.engine, state.settings)
    except Exception as exc:  # the counters still answer; the gauges keep their last values
        log.warning("metrics: the state store did not answer: %s", exc, extra={"action": "serve"})
    else:
        state.metrics.observe_health(snapshot)
    return Response(state.metrics.exposition(), media_type=state.metrics.content_type)


async def _version(request: Request) -> Response:
    state = _bridge(request)
    return JSONResponse(
        {
            "name": "campaign-bridge",
            "version": __version__,
            "python": platform.python_version(),
            "started_at": state.started_at.isoformat(),
        }
    )


# --------------------------------------------------------------------------- runner


def use_fast_event_loop() -> None:
    """Make the next ``asyncio.run`` use uvloop where it is installed (not on Windows)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional on some platforms
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(
    settings: Settings,
    *,
    schedule: bool = False,
    host: str | None = None,
    port: int | None = None,
    graceful_seconds: float = 30.0,
    sockets: Sequence[Any] | None = None,
    public_status: bool = False,
) -> None:
    """Run the app on uvicorn until SIGTERM/SIGINT, then shut down gracefully."""
    import uvicorn

    check_bind(settings, host or settings.server.host, public_status=public_status)
    if schedule:
        await asyncio.to_thread(_refuse_beside_workers, settings)

    app = create_app(settings, schedule=schedule)
    config = uvicorn.Config(
        app,
        host=host or settings.server.host,
        port=port if port is not None else settings.server.port,
        log_config=None,  # logging is configured at the CLI edge
        access_log=False,  # request paths carry the webhook token
        lifespan="on",
        timeout_graceful_shutdown=int(graceful_seconds),
        server_header=False,
        proxy_headers=True,
    )
    logging.getLogger("uvicorn.access").addFilter(_no_webhook_paths)
    # Database threads (the applier; the inbox too on SQLite/MariaDB) hand the GIL back to the
    # event loop sooner.
    sys.setswitchinterval(0.001)
    server = uvicorn.Server(config)
    try:
        await server.serve(sockets=list(sockets) if sockets else None)
    except BridgeError:
        raise
    if not server.started:
        from campaign_bridge.errors import FatalError

        raise FatalError(
            f"could not start the server on {config.host}:{config.port}; "
            "is the port in use? set server.port or --port"
        )


def _refuse_beside_workers(settings: Settings) -> None:
    from campaign_bridge.db import create_engine

    engine = create_engine(settings.effective_state_url())
    try:
        refuse_if_workers(engine)
    except sa.exc.SQLAlchemyError:  # an unreachable store: serve starts and /-/ready says why
        pass
    finally:
        engine.dispose()


def check_bind(settings: Settings, host: str, *, public_status: bool = False) -> None:
    """Secure by default: a status page reachable from other machines needs an admin token.

    Raises ConfigurationError for a non-loopback ``host`` without ``server.admin_token``, unless
    the operator said ``public_status`` (``serve --public-status``).
    """
    from campaign_bridge._net import is_loopback
    from campaign_bridge.errors import ConfigProblem, ConfigurationError

    if public_status or settings.server.admin_token is not None or is_loopback(host):
        return
    raise ConfigurationError(
        [
            ConfigProblem(
                "server.admin_token",
                f"serve would listen on {host}, reachable from other machines, with the status "
                "page open to anyone (runs, errors, sync names)",
                "an admin token (CAMPAIGN_BRIDGE_SERVER__ADMIN_TOKEN_FILE=/path/to/token), a "
                "loopback address (server.host 127.0.0.1 behind a reverse proxy), or "
                "`serve --public-status` to publish it knowingly",
            )
        ]
    )


def _no_webhook_paths(record: logging.LogRecord) -> bool:
    """Drop access-log lines of webhook requests: their path is the secret token."""
    return "/webhooks/" not in str(record.args)


# --------------------------------------------------------------------------- wiring


def open_store(settings: Settings) -> Any:
    """The state store named by ``settings`` (SQLite in ``data_dir`` by default)."""
    from campaign_bridge.store import StateStore

    return StateStore(settings.effective_state_url())


def readiness_checks(settings: Settings, store: Any) -> dict[str, Check]:
    """``database``, ``migrations`` and one ``provider:<sync>`` check per sync."""
    from campaign_bridge import migrations

    url = settings.effective_state_url()

    # Anyone may read /-/ready: its answers name what is down, never the database's host, user
    # or name (those go to the server's log).
    async def database() -> None:
        try:
            await asyncio.to_thread(store.check)
        except Exception as exc:
            log_store_problem("readiness check", exc)
            raise RuntimeError(_public_store_problem(exc, url)) from exc

    async def migrations_current() -> None:
        try:
            current = await asyncio.to_thread(migrations.is_current, url)
        except Exception as exc:
            log_store_problem("migrations check", exc)
            raise RuntimeError(_public_store_problem(exc, url)) from exc
        if not current:
            raise RuntimeError("the state store is not at the latest migration; run `migrate`")

    checks: dict[str, Check] = {"database": database, "migrations": migrations_current}
    for name, sync in settings.syncs.items():
        checks[f"provider:{name}"] = _provider_check(sync.destination)
    return checks


def _public_store_problem(exc: BaseException, url: str) -> str:
    """What may be said in public about a state-store failure: that it is unreachable, or (when
    it answers) what is wrong with it, without its host, user or database name."""
    if is_store_failure(exc) or not isinstance(exc, BridgeError):
        return STORE_DOWN
    text = str(exc)
    for where in {redact_url(url), normalize_url(url).render_as_string(hide_password=True)}:
        text = text.replace(f" at {where}", "")
    return text if "://" not in text else STORE_DOWN


def _provider_check(destination: Any) -> Check:
    async def check() -> None:
        from campaign_bridge.providers import create_provider

        provider = create_provider(destination)
        try:
            await provider.check()
        finally:
            await provider.aclose()

    return check


def default_runner(settings: Settings) -> JobRunner:
    """Runs the real push or pull of a sync (what ``campaign-bridge push|pull SYNC`` runs).

    The provider adapter's HTTP client records every request and retry in the metrics of every
    live app (:func:`~campaign_bridge.metrics.record_provider_request`), once per attempt; the
    run itself is recorded by the scheduler's ``on_run``.
    """

    async def run(sync_name: str, direction: str) -> Any:
        if direction == "push":
            from campaign_bridge.push import run_push

            return await run_push(settings, sync_name)
        from campaign_bridge.pull import run_pull

        return await run_pull(settings, sync_name)

    return run


def _record_run(state: ServerState, sync: str, direction: str, status: str, outcome: Any) -> None:
    if status == "skipped":
        state.metrics.lock_skips.labels(sync).inc()
        return
    counts = getattr(outcome, "counts", None)
    if callable(counts):
        counts = counts()
    seconds = getattr(outcome, "seconds", None)
    state.metrics.record_run(
        sync,
        direction,
        status,
        seconds=seconds if isinstance(seconds, int | float) else None,
        counts=counts if isinstance(counts, Mapping) else None,
    )
