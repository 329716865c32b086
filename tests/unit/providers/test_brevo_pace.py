"""The /contacts pacer: first attempts spaced at the per-second limit, learned from headers."""

from __future__ import annotations

import asyncio

import httpx

from campaign_bridge.providers._brevo_pace import MARGIN, MAX_MARGIN, ContactsPacer


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def answer(limit: str, reset: str) -> httpx.Response:
    headers = {"x-sib-ratelimit-limit": limit, "x-sib-ratelimit-reset": reset}
    return httpx.Response(200, headers=headers)


def test_calls_at_one_instant_are_spaced_by_the_general_tier_limit() -> None:
    fake = FakeTime()
    pacer = ContactsPacer(fake.sleep, clock=fake.clock)
    refused = httpx.Response(429, request=httpx.Request("GET", "https://api.brevo.com/v3/contacts"))
    pacer.observe(refused)

    async def burst() -> None:
        for _ in range(11):
            await pacer.wait()

    asyncio.run(burst())
    # the first goes at once; the other ten wait their turn, 1/10 s apart (and a margin)
    assert len(fake.slept) == 10
    assert abs(fake.slept[-1] - 10 * MARGIN / 10) < 1e-9
    assert sum(1 for s in [0.0, *fake.slept] if s < 1.0) <= 10  # no window sees an eleventh


def test_spaced_calls_do_not_wait() -> None:
    fake = FakeTime()
    pacer = ContactsPacer(fake.sleep, clock=fake.clock)
    pacer.active = True

    async def slow() -> None:
        for _ in range(5):
            await pacer.wait()
            fake.now += 0.5

    asyncio.run(slow())
    assert fake.slept == []


def test_the_per_second_limit_is_learned_and_an_hourly_one_ignored() -> None:
    pacer = ContactsPacer(FakeTime().sleep)
    pacer.learn(answer("20", "1"))  # the advanced tier's per-second window
    assert pacer.rps == 20
    pacer.learn(answer("36000", "1800"))  # the hourly window, when it is the tightest
    assert pacer.rps == 20
    pacer.learn(answer("nonsense", "1"))
    assert pacer.rps == 20


def test_no_pacing_until_a_contacts_call_is_refused() -> None:
    fake = FakeTime()
    pacer = ContactsPacer(fake.sleep, clock=fake.clock)
    other = httpx.Request("GET", "https://api.brevo.com/v3/processes")
    pacer.observe(httpx.Response(429, request=other))  # another bucket
    pacer.observe(httpx.Response(500, request=httpx.Request("GET", "https://x/v3/contacts")))

    async def burst() -> None:
        for _ in range(20):
            await pacer.wait()

    asyncio.run(burst())
    assert fake.slept == []
    assert not pacer.active


def test_refusals_while_pacing_widen_the_spacing_and_answers_narrow_it_back() -> None:
    pacer = ContactsPacer(FakeTime().sleep)
    request = httpx.Request("GET", "https://api.brevo.com/v3/contacts")
    refused = httpx.Response(429, request=request)
    pacer.observe(refused)  # starts pacing, at the usual spacing
    assert pacer.margin == MARGIN
    for _ in range(3):
        pacer.observe(refused)  # refused all the same: calls arrive bunched
    widened = pacer.margin
    assert MARGIN < widened <= MAX_MARGIN
    for _ in range(100):
        pacer.observe(refused)
    assert pacer.margin == MAX_MARGIN
    for _ in range(1000):
        pacer.learn(httpx.Response(200, request=request))
    assert pacer.margin == MARGIN
