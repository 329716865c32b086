"""The hourly budget outside /contacts: the reserve is never spent, polls spread what is left."""

from __future__ import annotations

import asyncio

import httpx

from campaign_bridge.providers._brevo_budget import HourlyBudget


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def answer(remaining: int, reset: int) -> httpx.Response:
    headers = {
        "x-sib-ratelimit-limit": "100",
        "x-sib-ratelimit-remaining": str(remaining),
        "x-sib-ratelimit-reset": str(reset),
    }
    return httpx.Response(200, headers=headers)


def test_an_unknown_window_never_waits() -> None:
    fake = FakeTime()
    budget = HourlyBudget(fake.sleep, clock=fake.clock)
    budget.observe(httpx.Response(200))  # an answer without the headers
    for _ in range(500):
        asyncio.run(budget.take())
    assert fake.slept == []
    assert budget.poll_spacing() == 0.0
    assert budget.used == 500


def test_requests_stop_at_the_reserve_until_the_window_resets() -> None:
    fake = FakeTime()
    budget = HourlyBudget(fake.sleep, reserve=10, clock=fake.clock)
    budget.observe(answer(remaining=13, reset=600))
    for _ in range(3):  # 13 -> 10 without waiting
        asyncio.run(budget.take())
    assert fake.slept == []
    asyncio.run(budget.take())  # the reserve is reached: wait for the reset
    assert fake.slept == [601.0]
    asyncio.run(budget.take())  # a new window: no more waiting until an answer says so
    assert fake.slept == [601.0]


def test_polls_spread_what_is_left_of_the_window_evenly() -> None:
    fake = FakeTime()
    budget = HourlyBudget(fake.sleep, reserve=10, clock=fake.clock)
    budget.observe(answer(remaining=100, reset=3600))
    assert budget.poll_spacing() == 3600 / 90  # a whole general-tier window: 40 s
    fake.now += 3000
    budget.observe(answer(remaining=40, reset=600))
    assert budget.poll_spacing() == 600 / 30
    budget.observe(answer(remaining=5, reset=600))
    assert budget.poll_spacing() == 600.0  # below the reserve: not before the reset
