"""Retry policy, Retry-After, the shared concurrency budget and retriable answers (no I/O)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from campaign_bridge.errors import RetriableError
from campaign_bridge.providers._http import (
    ApiClient,
    ConcurrencyBudget,
    RetryPolicy,
    budget_for,
    latest,
    parse_retry_after,
)
from campaign_bridge.providers._mailchimp_session import mailchimp_retriable as _mailchimp_retriable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _client(answers: list[httpx.Response], policy: RetryPolicy, slept: list[float]) -> ApiClient:
    """An ApiClient whose server answers ``answers`` in turn (the last one from then on)."""
    queue = list(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return ApiClient(
        base_url="http://provider.invalid/3.0",
        api_key="k" * 32,
        headers={},
        provider="test",
        concurrency=2,
        timeout_seconds=5.0,
        retry=policy,
        transport=httpx.MockTransport(answer),
        sleep=sleep,
    )


@pytest.mark.anyio
async def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(max_retries=6, base_delay=0.5, max_delay=10.0)
    slept: list[float] = []
    api = _client([httpx.Response(503)], policy, slept)
    for _ in range(150):
        with pytest.raises(RetriableError, match="after 7 attempts"):
            await api.request("GET", "/ping")
    await api.aclose()
    assert api.stats.retries == {"server_error_503": 150 * 6}
    assert api.stats.exhausted == 150
    # retry n (from 1) waits uniform(0, min(10, 0.5 * 2 ** (n - 1)))
    for retry, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 8.0, 10.0]):
        delays = slept[retry::6]
        assert all(0.0 <= d <= ceiling for d in delays)
        # full jitter: spread over the whole range, not clustered at the cap
        assert min(delays) < ceiling * 0.1
        assert max(delays) > ceiling * 0.9


@pytest.mark.anyio
async def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(max_retries=3, max_delay=10.0, retry_after_cap=60.0)
    slept: list[float] = []
    answers = [
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.Response(429, headers={"Retry-After": "25"}),  # above max_delay: it asked for it
        httpx.Response(503, headers={"Retry-After": "3600"}),
        httpx.Response(200, json={"ok": True}),
    ]
    api = _client(answers, policy, slept)
    response = await api.request("GET", "/ping")
    await api.aclose()
    assert response.status_code == 200
    assert slept == [3.0, 25.0, 60.0]
    assert api.stats.retries == {"too_many_requests": 2, "server_error_503": 1}


@pytest.mark.anyio
async def test_the_last_retry_after_travels_with_the_error() -> None:
    slept: list[float] = []
    api = _client([httpx.Response(429, headers={"Retry-After": "7"})], RetryPolicy(1), slept)
    with pytest.raises(RetriableError, match="too_many_requests") as raised:
        await api.request("GET", "/lists")
    await api.aclose()
    assert raised.value.retry_after == 7.0
    assert slept == [7.0]
    assert api.stats.requests == {"429": 2}


def test_parse_retry_after_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = datetime(2026, 11, 26, 20, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 26 Nov 2026 20:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 26 Nov 2026 19:59:00 GMT", now=now) == 0.0


@pytest.mark.anyio
async def test_budget_never_exceeds_its_limit_and_is_shared_per_key() -> None:
    budget = budget_for("us6.api.mailchimp.com", "k" * 32 + "-us6", 10)
    assert budget is budget_for("US6.api.mailchimp.com", "k" * 32 + "-us6", 10)
    assert budget is not budget_for("us6.api.mailchimp.com", "j" * 32 + "-us6", 10)
    assert budget is not budget_for("127.0.0.1", "k" * 32 + "-us6", 10)
    running = 0
    highest = 0

    async def job() -> None:
        nonlocal running, highest
        async with budget.slot():
            running += 1
            highest = max(highest, running)
            await asyncio.sleep(0.001)
            running -= 1

    await asyncio.gather(*(job() for _ in range(200)))
    assert highest == 10
    assert budget.peak == 10
    assert budget.in_flight == 0


@pytest.mark.anyio
async def test_a_smaller_limit_lowers_the_shared_budget() -> None:
    budget = budget_for("example.invalid", "a" * 32 + "-us1", 10)
    budget_for("example.invalid", "a" * 32 + "-us1", 4)
    assert budget.limit == 4
    budget_for("example.invalid", "a" * 32 + "-us1", 8)
    assert budget.limit == 4


@pytest.mark.anyio
async def test_cancelled_waiters_do_not_leak_slots() -> None:
    budget = ConcurrencyBudget(1)
    release = asyncio.Event()

    async def holder() -> None:
        async with budget.slot():
            await release.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter.cancel()
    release.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.in_flight == 0
    async with budget.slot():
        assert budget.in_flight == 1


def _response(status: int, body: bytes = b"", content_type: str = "") -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    return httpx.Response(status, content=body, headers=headers)


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (
            _response(
                429, b'{"title":"Too Many Requests","status":429}', "application/problem+json"
            ),
            "too_many_requests",
        ),
        (_response(500, b"<html>oops</html>", "text/html"), "server_error_500"),
        (_response(503), "server_error_503"),
        (_response(403), "throttled_403"),
        (
            _response(403, b"<html><title>403 Forbidden</title></html>", "text/html"),
            "throttled_403",
        ),
        (
            _response(
                403, b'{"title":"Forbidden","status":403,"detail":"no"}', "application/problem+json"
            ),
            None,
        ),
        (
            _response(
                400, b'{"title":"Invalid Resource","status":400}', "application/problem+json"
            ),
            None,
        ),
        (_response(404, b'{"title":"Resource Not Found","status":404}'), None),
        (_response(200, b"{}", "application/json"), None),
    ],
)
def test_what_mailchimp_answers_is_retried(response: httpx.Response, reason: str | None) -> None:
    assert _mailchimp_retriable(response) == reason


def test_database_values_are_encoded_as_json_scalars() -> None:
    from datetime import date
    from decimal import Decimal

    import orjson

    from campaign_bridge.providers._http import json_default

    body = {"n": Decimal("42"), "x": Decimal("1.5"), "d": date(2026, 1, 2)}
    assert orjson.loads(orjson.dumps(body, default=json_default)) == {
        "n": 42,
        "x": 1.5,
        "d": "2026-01-02",
    }


def test_latest_is_the_latest_known_moment() -> None:
    early = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
    late = datetime(2026, 12, 7, 12, 0, 0, 400_000, tzinfo=UTC)
    assert latest(early, None, late) == late
    assert latest(late, early) == late
    assert latest(None, None) is None
    assert latest() is None
