"""HTTP machinery every provider adapter shares: client, concurrency budget, retries, counters.

- :func:`budget_for` hands out one :class:`ConcurrencyBudget` (an ``anyio.CapacityLimiter``) per
  (API host, sha256 of the key) and event loop, so every job in the process that uses the same
  key shares one budget.
- :class:`RetryPolicy` is tenacity's exponential backoff with full jitter, honouring
  ``Retry-After``.
- :class:`ApiClient` sends a request under the budget, retries (tenacity) what the provider's
  ``retriable`` hook says is transient (each attempt spaced by the provider's :class:`Pacer`,
  when it has one), counts everything in :class:`HttpStats`, and raises
  :class:`~campaign_bridge.errors.RetriableError` once the retries are exhausted. Any other
  answer (2xx, 4xx) is returned for the adapter to interpret.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

import anyio
import httpx
import orjson
import tenacity

from campaign_bridge import __version__, metrics
from campaign_bridge.errors import NetworkRetriableError, ProviderError, RetriableError
from campaign_bridge.keyslots import key_hash
from campaign_bridge.providers._network import NetworkFault, classify, tls_context

__all__ = [
    "USER_AGENT",
    "ApiClient",
    "ConcurrencyBudget",
    "HttpStats",
    "Pacer",
    "RetryPolicy",
    "budget_for",
    "decode_json",
    "gather_all",
    "gather_both",
    "json_default",
    "latest",
    "parse_retry_after",
    "use_shared_slots",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
U = TypeVar("U")
V = TypeVar("V")

USER_AGENT = f"campaign-bridge/{__version__} (+https://github.com/campaign-bridge/campaign-bridge)"

# Latency histogram bucket bounds in seconds (Prometheus-style cumulative buckets).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def latest(*moments: datetime | None) -> datetime | None:
    """The latest of ``moments`` that are known; None when none is. A provider's clock (its
    ``Date`` header, to the second) and the newest change time its answers to an adapter's own
    writes carried are combined this way: the next window of changes starts at the later."""
    known = [m for m in moments if m is not None]
    return max(known) if known else None


class Pacer(Protocol):
    """Spaces a provider's calls to its rate limit: ``wait`` before each attempt (before the
    request takes its budget slot, so waiting for a turn holds none), then, if it handed out a
    turn, ``left`` when the call leaves (it has its slot) or never will; ``observe`` every
    answer."""

    async def wait(self, method: str, path: str) -> bool: ...

    def left(self, path: str, *, sent: bool) -> None: ...

    def observe(self, path: str, response: httpx.Response) -> None: ...


class SharedSlots(Protocol):
    """Slots of a key shared by every process (:class:`campaign_bridge.keyslots.KeySlots`)."""

    def slot(self, key: str, limit: int) -> contextlib.AbstractAsyncContextManager[int]: ...


_shared: list[SharedSlots | None] = [None]


def use_shared_slots(slots: SharedSlots | None) -> None:
    """From now on every API request also holds a slot of its key in ``slots`` (None: stop)."""
    _shared[0] = slots


class ConcurrencyBudget:
    """At most ``limit`` requests in flight; a slot is held only while a request is in flight.

    An ``anyio.CapacityLimiter`` (first come, first served; a cancelled waiter gives its turn
    back). When :func:`use_shared_slots` installed a cross-process budget (PostgreSQL), each
    request also holds one of its key's shared slots, so all processes together stay under the
    limit. The limit can be lowered after creation (two configurations asking for different
    limits on one key share the smaller one), and the peak is recorded.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a concurrency budget needs at least one slot")
        self._limiter = anyio.CapacityLimiter(limit)
        self.peak = 0
        self.key: str | None = None  # keyslots.key_hash of the key, for the shared slots

    @property
    def limit(self) -> int:
        return int(self._limiter.total_tokens)

    @property
    def in_flight(self) -> int:
        return self._limiter.borrowed_tokens

    def lower_to(self, limit: int) -> None:
        self._limiter.total_tokens = max(1, min(self.limit, limit))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        borrower = object()  # one token per request, even for two requests of one task
        try:  # a free slot is taken at once, without a trip round the event loop
            self._limiter.acquire_on_behalf_of_nowait(borrower)
        except anyio.WouldBlock:
            await self._limiter.acquire_on_behalf_of(borrower)
        try:
            self.peak = max(self.peak, self._limiter.borrowed_tokens)
            shared = _shared[0]
            if shared is None or self.key is None:
                yield
            else:
                async with shared.slot(self.key, self.limit):
                    yield
        finally:
            self._limiter.release_on_behalf_of(borrower)


_budgets: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], ConcurrencyBudget]
] = weakref.WeakKeyDictionary()


def budget_for(host: str, api_key: str, limit: int) -> ConcurrencyBudget:
    """The process-wide budget of one API key on one host (per running event loop).

    The key is identified by its SHA-256, never kept in clear. A second caller asking for a
    smaller limit lowers the shared limit; a larger one does not raise it.
    """
    loop = asyncio.get_running_loop()
    per_loop = _budgets.setdefault(loop, {})
    ident = (host.lower(), hashlib.sha256(api_key.encode()).hexdigest())
    budget = per_loop.get(ident)
    if budget is None:
        budget = per_loop[ident] = ConcurrencyBudget(limit)
        budget.key = key_hash(host, api_key)
    else:
        budget.lower_to(limit)
    return budget


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds)


class _Transient(Exception):
    """An attempt that may succeed if tried again (a 429, a 5xx, a passing network fault)."""

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        fault: NetworkFault | None = None,
        error: httpx.TransportError | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.fault = fault
        self.error = error


@dataclass(frozen=True)
class RawBody:
    """A request body sent as is (not JSON)."""

    content: bytes
    content_type: str


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: tenacity's exponential backoff with full jitter (retry
    ``n``, counted from 1, waits uniform(0, min(max_delay, base_delay·2ⁿ⁻¹))).

    A ``Retry-After`` hint from the provider is honoured instead (up to ``retry_after_cap``).
    """

    max_retries: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    retry_after_cap: float = 300.0

    def wait(self) -> Callable[[tenacity.RetryCallState], float]:
        """The tenacity wait strategy: the provider's ``Retry-After`` if it sent one."""
        backoff = tenacity.wait_random_exponential(multiplier=self.base_delay, max=self.max_delay)

        def wait(state: tenacity.RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome is not None else None
            if isinstance(failure, _Transient) and failure.retry_after is not None:
                return min(failure.retry_after, self.retry_after_cap)
            return float(backoff(state))

        return wait


@dataclass
class HttpStats:
    """Counters a metrics endpoint can read: requests by status, retries by reason, latency."""

    requests: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    exhausted: int = 0
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))

    def observe(self, outcome: str, seconds: float) -> None:
        self.requests[outcome] += 1
        self.latency_count += 1
        self.latency_sum += seconds
        self.latency_max = max(self.latency_max, seconds)
        for index, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_buckets[index] += 1

    def snapshot(self) -> dict[str, object]:
        return {
            "requests": dict(self.requests),
            "retries": dict(self.retries),
            "exhausted": self.exhausted,
            "latency_count": self.latency_count,
            "latency_sum": self.latency_sum,
            "latency_max": self.latency_max,
            "latency_buckets": dict(zip(LATENCY_BUCKETS, self.latency_buckets, strict=True)),
        }


def json_default(value: object) -> object:
    """Values orjson does not know (database types such as Decimal) as JSON scalars."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def decode_json(response: httpx.Response) -> Any:
    """The response body as JSON (orjson: large member lists parse several times faster);
    ``None`` for an empty body. Raises ``ValueError`` if it is not JSON."""
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        pass
    # orjson refuses what some servers send: bytes that are not UTF-8, or a lone surrogate
    # written as an escape (``"\ud800"``). Read it leniently; the state store's side makes
    # such text storable (see campaign_bridge/storable.py).
    try:
        return json.loads(response.content.decode("utf-8", errors="replace"))
    except ValueError as exc:
        raise ValueError("the body is not JSON") from exc


def _advice(reason: str) -> str:
    if reason.startswith(("too_many_requests", "throttled")):
        return (
            "the provider keeps throttling: try again later, and lower the concurrency if "
            "other tools use the same API key"
        )
    if reason.startswith(("timeout", "reset", "refused", "connection")):
        return (
            "check the network, any proxy or firewall, and the API host (the key's data "
            "centre, or destination.base_url); then try again"
        )
    return "the provider is having problems; try again later"


# Decides whether an HTTP answer is transient; returns a short reason (for logs and counters).
RetriableHook = Callable[[httpx.Response], str | None]


# Seconds the provider asks to wait before retrying a transient answer, if it says.
RetryAfterHook = Callable[[httpx.Response], float | None]


def default_retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


def default_retriable(response: httpx.Response) -> str | None:
    if response.status_code == 429:
        return "too_many_requests"
    if response.status_code >= 500:
        return f"server_error_{response.status_code}"
    return None


class ApiClient:
    """One provider's HTTP client: keep-alive pool, shared budget, retries, counters."""

    @classmethod
    def for_destination(
        cls,
        destination: Any,
        *,
        base_url: str,
        api_key: str,
        headers: Mapping[str, str],
        provider: str,
        retry: RetryPolicy | None,
        retriable: RetriableHook,
        retry_after: RetryAfterHook = default_retry_after,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        pacer: Pacer | None = None,
    ) -> ApiClient:
        """A client with ``destination``'s concurrency, timeout, ``max_retries`` (unless ``retry``
        is given) and CA bundle (``ca_bundle``, when it has one); the rest is the provider's."""
        ca_bundle = getattr(destination, "ca_bundle", None)
        return cls(
            base_url=base_url,
            api_key=api_key,
            headers=headers,
            provider=provider,
            concurrency=destination.concurrency,
            timeout_seconds=destination.timeout_seconds,
            retry=retry or RetryPolicy(max_retries=destination.max_retries),
            retriable=retriable,
            retry_after=retry_after,
            transport=transport,
            sleep=sleep,
            ca_bundle=str(ca_bundle) if ca_bundle else None,
            pacer=pacer,
        )

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        headers: Mapping[str, str],
        provider: str,
        concurrency: int,
        timeout_seconds: float,
        retry: RetryPolicy,
        retriable: RetriableHook = default_retriable,
        retry_after: RetryAfterHook = default_retry_after,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        ca_bundle: str | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.provider = provider
        self.retry = retry
        self.stats = HttpStats()
        self._api_key = api_key
        self._concurrency = concurrency
        self._last_date: str | None = None
        self._answered = False  # an answer came back: a refused connection is now a restart
        self._timeout_seconds = timeout_seconds
        self._budget: ConcurrencyBudget | None = None
        self._retriable = retriable
        self._retry_after = retry_after
        self._sleep = sleep
        self._pacer = pacer
        self._headers = dict(headers)
        # No client-level auth: credentials go only to API requests, never to download URLs.
        self._client = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 15.0)),
            limits=httpx.Limits(
                max_connections=concurrency + 4,
                max_keepalive_connections=concurrency + 4,
                keepalive_expiry=30.0,
            ),
            http1=True,
            http2=False,
            transport=transport,
            follow_redirects=False,
            # default: the system's CAs, or SSL_CERT_FILE / SSL_CERT_DIR when set
            verify=tls_context(ca_bundle),
        )

    @property
    def host(self) -> str:
        return httpx.URL(self.base_url).host

    @property
    def budget(self) -> ConcurrencyBudget:
        if self._budget is None:
            self._budget = budget_for(self.host, self._api_key, self._concurrency)
        return self._budget

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | Sequence[tuple[str, str | int]] | None = None,
        json: object | None = None,
        body: tuple[bytes, str] | None = None,
    ) -> httpx.Response:
        """Send an API request (``path`` relative to the base URL) with retries. ``body`` is a
        payload that is not JSON, as (bytes, content type), e.g. a multipart upload."""
        url = self.base_url + path
        if body is not None:
            json = RawBody(*body)
        query = httpx.QueryParams(list(params)) if isinstance(params, Sequence) else params
        return await self._send(method, url, path, query, json, self._headers, use_budget=True)

    async def download(self, url: str) -> httpx.Response:
        """GET an absolute URL outside the API (e.g. a batch result archive), without credentials.

        Such URLs point at storage, not at the API, so they neither need the key nor use the
        key's connection budget.
        """
        return await self._send("GET", url, "<download>", None, None, {}, use_budget=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    def server_time(self) -> datetime | None:
        """The provider's own clock when it sent its latest answer (the HTTP ``Date`` header,
        to the second), or ``None`` before any answer or without the header."""
        if self._last_date is None:
            return None
        try:
            moment = parsedate_to_datetime(self._last_date)
        except (TypeError, ValueError):
            return None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

    def _observe(self, method: str, outcome: str, started: float) -> None:
        seconds = time.monotonic() - started
        self.stats.observe(outcome, seconds)
        status = outcome if outcome.isdigit() else "error"
        metrics.record_provider_request(self.provider, method, status, seconds)

    async def _send(
        self,
        method: str,
        url: str,
        label: str,
        params: httpx.QueryParams | Mapping[str, str | int] | None,
        json: object | None,
        headers: Mapping[str, str],
        *,
        use_budget: bool,
    ) -> httpx.Response:
        send_headers = dict(headers)
        content: bytes | None = None
        if isinstance(json, RawBody):
            content = json.content
            send_headers["Content-Type"] = json.content_type
        elif json is not None:
            content = orjson.dumps(json, default=json_default)
            send_headers["Content-Type"] = "application/json"
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.retry.max_retries + 1),
            wait=self.retry.wait(),
            retry=tenacity.retry_if_exception_type(_Transient),
            sleep=self._sleep,
            before_sleep=functools.partial(self._before_retry, method, label),
            reraise=True,
        )
        try:
            return await retrying(
                self._attempt, method, url, label, params, content, send_headers, use_budget
            )
        except _Transient as last:
            self.stats.exhausted += 1
            raise self._exhausted(method, url, label, last) from last.error

    async def _attempt(
        self,
        method: str,
        url: str,
        label: str,
        params: httpx.QueryParams | Mapping[str, str | int] | None,
        content: bytes | None,
        headers: Mapping[str, str],
        use_budget: bool,
    ) -> httpx.Response:
        """One attempt: the answer, or :class:`_Transient` for what may pass if tried again."""
        started = time.monotonic()
        try:
            if use_budget:
                pacer = self._pacer
                if pacer is not None and not await pacer.wait(method, label):
                    pacer = None  # no turn: not paced (before the slot: waiting holds none)
                sent = False
                try:
                    async with self.budget.slot():
                        started = time.monotonic()
                        if pacer is not None:  # the moment that counts against the limit
                            pacer.left(label, sent=True)
                            sent = True
                        response = await self._client.request(
                            method, url, params=params, content=content, headers=headers
                        )
                finally:
                    if pacer is not None and not sent:
                        pacer.left(label, sent=False)
            else:
                response = await self._client.request(method, url, headers=headers)
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            raise ProviderError(
                f"cannot send {method} {label} to {self.host or url.split('/')[0]}: "
                f"{type(exc).__name__}; check the provider base URL (destination.base_url)"
            ) from exc
        except httpx.TransportError as exc:  # the one place network faults are translated
            fault = classify(
                exc, url, answered_before=self._answered, timeout=self._timeout_seconds
            )
            self._observe(method, fault.kind, started)
            if fault.fatal:  # TLS, proxy, DNS, nothing listening: retrying cannot help
                raise fault.error(url) from exc
            raise _Transient(fault.kind, fault=fault, error=exc) from exc
        self._answered = True
        self._observe(method, str(response.status_code), started)
        if self._pacer is not None and use_budget:
            self._pacer.observe(label, response)
        self._last_date = response.headers.get("Date") or self._last_date
        transient = self._retriable(response)
        if transient is None:
            return response
        raise _Transient(transient, retry_after=self._retry_after(response))

    def _before_retry(self, method: str, label: str, state: tenacity.RetryCallState) -> None:
        """Count, record and log the retry tenacity is about to wait for."""
        failure = state.outcome.exception() if state.outcome is not None else None
        reason = failure.reason if isinstance(failure, _Transient) else "unknown"
        kind = reason.split(":")[0]
        self.stats.retries[kind] += 1
        metrics.record_provider_retry(self.provider, kind)
        logger.warning(
            "%s %s %s: %s; retry %d/%d in %.2fs",
            self.provider,
            method,
            label,
            reason,
            state.attempt_number,
            self.retry.max_retries,
            state.upcoming_sleep,
            extra={
                "action": "provider_retry",
                "provider": self.provider,
                "reason": reason,
                "attempt": state.attempt_number,
                "delay": round(state.upcoming_sleep, 3),
            },
        )

    def _exhausted(self, method: str, url: str, label: str, last: _Transient) -> RetriableError:
        """The error for a request that kept failing after every retry."""
        attempts = self.retry.max_retries + 1
        if last.fault is not None:
            return NetworkRetriableError(
                f"{self.provider} {method} {label} failed {attempts} times: {last.fault.message}",
                kind=last.fault.kind,
                url=url,
            )
        return RetriableError(
            f"{self.provider} kept failing with {last.reason} on {method} {label} "
            f"after {attempts} attempts; {_advice(last.reason)}",
            retry_after=last.retry_after,
        )


async def gather_all(coros: Sequence[Awaitable[T]]) -> list[T]:
    """Run concurrently; on failure cancel the rest and raise the first error (unwrapped)."""
    if not coros:
        return []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_wrap(c)) for c in coros]
    except BaseExceptionGroup as group_error:
        raise _first(group_error) from None
    return [task.result() for task in tasks]


async def _wrap(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    # A fatal answer says more than a transient one; prefer it.
    for error in leaves:
        if isinstance(error, ProviderError):
            return error
    return leaves[0]


async def gather_both(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    results: list[Any] = await gather_all([first, second])
    return results[0], results[1]


async def gather_three(
    first: Awaitable[T], second: Awaitable[U], third: Awaitable[V]
) -> tuple[T, U, V]:
    results: list[Any] = await gather_all([first, second, third])
    return results[0], results[1], results[2]


async def merge_streams(
    streams: Sequence[AsyncIterator[T]], buffer: int = 1000
) -> AsyncIterator[T]:
    """Items of several async iterators as they arrive, each stream's own order kept.

    Every stream runs in its own task, ahead of the consumer by at most ``buffer`` items in
    all. The first error of any stream is raised here; leaving early cancels the rest.
    """
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(buffer)

    async def pump(stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                await queue.put(("item", item))
        except Exception as exc:  # handed to the consumer, which raises it
            await queue.put(("error", exc))
            return
        await queue.put(("done", None))

    tasks = [asyncio.create_task(pump(stream)) for stream in streams]
    running = len(tasks)
    try:
        while running:
            kind, payload = await queue.get()
            if kind == "done":
                running -= 1
            elif kind == "error":
                raise payload
            else:
                yield payload
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class HttpBacked:
    """What a provider answers from its ``ApiClient``: counters, the shared budget, the clock."""

    _http: ApiClient

    @property
    def stats(self) -> HttpStats:
        """Requests by status, retries by reason, latency (for /metrics)."""
        return self._http.stats

    @property
    def in_flight(self) -> tuple[int, int, int]:
        """(requests in flight, peak, limit) of this key's shared budget."""
        budget = self._http.budget
        return budget.in_flight, budget.peak, budget.limit

    def server_time(self) -> datetime | None:
        return self._http.server_time()
