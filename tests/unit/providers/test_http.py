"""Retry policy, Retry-After, the shared concurrency budget and retriable answers (no I/O)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import httpx
import pytest

from campaign_bridge.providers._http import (
    ConcurrencyBudget,
    RetryPolicy,
    budget_for,
    parse_retry_after,
)
from campaign_bridge.providers._mailchimp_session import mailchimp_retriable as _mailchimp_retriable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(max_retries=8, base_delay=0.5, max_delay=10.0)
    rng = random.Random(7)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0)]:
        delays = [policy.delay(attempt, rng=rng) for _ in range(400)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # full jitter: spread over the whole range, not clustered at the cap
        assert min(delays) < ceiling * 0.1
        assert max(delays) > ceiling * 0.9


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(max_delay=10.0, retry_after_cap=60.0)
    assert policy.delay(0, 3.0) == 3.0
    assert policy.delay(5, 25.0) == 25.0  # above max_delay: the provider asked for it
    assert policy.delay(0, 3600.0) == 60.0


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
