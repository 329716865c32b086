"""The /contacts pacer: every attempt spaced at the per-second limit from the first call, and no
more calls leaving within ``MARGIN`` seconds than the limit (counted when they leave), the limit
learned from the answers' headers, reads before writes."""

from __future__ import annotations

import asyncio
import itertools

import httpx

from campaign_bridge.providers._brevo_pace import MARGIN, MAX_MARGIN, ContactsPacer, paced


class FakeTime:
    """A clock that only sleeping moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def answer(status: int = 200, **headers: str) -> httpx.Response:
    named = {f"x-sib-ratelimit-{name}": value for name, value in headers.items()}
    return httpx.Response(status, headers=named)


def turns(pacer: ContactsPacer, fake: FakeTime, calls: list[tuple[str, str]]) -> list[tuple]:
    """(method, path, moment) of each call, in the order the pacer let them go."""
    went: list[tuple] = []

    async def one(method: str, path: str) -> None:
        if await pacer.wait(method, path):
            pacer.left(path, sent=True)  # sent at once
        went.append((method, path, fake.now))

    async def run() -> None:
        await asyncio.gather(*(one(m, p) for m, p in calls))

    asyncio.run(run())
    return went


def window_counts(moments: list[float]) -> int:
    """The most calls any window of one second holds (windows starting at a call)."""
    return max(sum(1 for m in moments if start <= m < start + 1.0) for start in moments)


def test_calls_at_one_instant_keep_to_the_general_tier_limit_in_every_window() -> None:
    fake = FakeTime()
    pacer = ContactsPacer(fake.sleep, clock=fake.clock)
    went = turns(pacer, fake, [("GET", "/contacts")] * 35)
    moments = [m for _, _, m in went]
    assert moments[0] == 100.0  # the first goes at once
    gaps = [b - a for a, b in itertools.pairwise(moments)]
    assert all(abs(g - MARGIN / 10) < 1e-9 for g in gaps)
    assert window_counts(moments) == 10  # no window sees an eleventh
    spans = [b - a for a, b in zip(moments, moments[10:], strict=False)]
    assert min(spans) >= MARGIN - 1e-9
    assert moments[30] - moments[0] <= 3 * MARGIN + 1e-9  # 10 every MARGIN seconds, no slower


def test_reads_go_before_writes_and_other_paths_are_not_paced() -> None:
    fake = FakeTime()
    pacer = ContactsPacer(fake.sleep, clock=fake.clock)
    calls = [("POST", "/contacts/import")] * 3 + [("GET", "/contacts")] * 2
    calls.append(("GET", "/processes"))  # another bucket: never waits
    went = turns(pacer, fake, calls)
    assert went[0][1] == "/processes"
    assert went[0][2] == 100.0
    # all waiting at once: the reads take the first turns, then the imports in their order
    order = [(m, p) for m, p, _ in went[1:]]
    assert order == [("GET", "/contacts")] * 2 + [("POST", "/contacts/import")] * 3
    moments = [m for _, _, m in went[1:]]
    assert moments == sorted(moments)
    assert moments[0] == 100.0


def test_spaced_calls_do_not_wait() -> None:
    fake = FakeTime()
    pacer = ContactsPacer(fake.sleep, clock=fake.clock)

    async def slow() -> None:
        for _ in range(5):
            before = fake.now
            assert await pacer.wait("GET", "/contacts")
            pacer.left("/contacts", sent=True)
            assert fake.now == before
            fake.now += 0.5

    asyncio.run(slow())


def test_the_per_second_limit_is_learned_and_an_hourly_one_ignored() -> None:
    pacer = ContactsPacer(FakeTime().sleep)
    pacer.observe("/contacts", answer(limit="20", reset="1"))  # the advanced tier
    assert (pacer.rps, pacer.active) == (20, True)
    pacer.observe("/contacts", answer(limit="36000", reset="1800"))  # the hourly window
    assert (pacer.rps, pacer.active) == (20, True)
    pacer.observe("/contacts", answer(limit="nonsense", reset="1"))
    assert (pacer.rps, pacer.active) == (20, True)
    pacer.observe("/processes", answer(limit="100", reset="1"))  # another bucket's
    assert pacer.rps == 20


def test_an_answer_without_limit_headers_stops_pacing_until_a_429() -> None:
    fake = FakeTime()
    pacer = ContactsPacer(fake.sleep, clock=fake.clock)
    pacer.observe("/contacts/import", answer(500))  # an error says nothing about limits
    assert pacer.active
    pacer.observe("/processes", answer(200))  # nor does another bucket
    assert pacer.active
    pacer.observe("/contacts", answer(200))  # an endpoint that is not rate limited
    assert not pacer.active
    went = turns(pacer, fake, [("GET", "/contacts")] * 20)
    assert {m for _, _, m in went} == {100.0}
    pacer.observe("/contacts", answer(429, limit="10", remaining="0", reset="1"))
    assert pacer.active
    assert pacer.refused == 1


def test_refusals_while_pacing_widen_the_spacing_and_answers_narrow_it_back() -> None:
    pacer = ContactsPacer(FakeTime().sleep)
    refused = answer(429, limit="10", remaining="0", reset="1")
    assert pacer.margin == MARGIN
    for _ in range(3):
        pacer.observe("/contacts", refused)  # refused all the same: calls arrive bunched
    widened = pacer.margin
    assert MARGIN < widened <= MAX_MARGIN
    for _ in range(100):
        pacer.observe("/contacts", refused)
    assert pacer.margin == MAX_MARGIN
    for _ in range(1000):
        pacer.observe("/contacts", answer(limit="10", remaining="5", reset="1"))
    assert pacer.margin == MARGIN


def test_which_paths_are_paced() -> None:
    assert paced("/contacts")
    assert paced("/contacts/import")
    assert paced("/contacts/a%40b.org")
    assert not paced("/contactsx")
    assert not paced("/processes")
    assert not paced("<download>")


def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    fake = FakeTime()
    pacer = ContactsPacer(fake.sleep, clock=fake.clock)

    async def run() -> list[float]:
        await pacer.wait("GET", "/contacts")
        pacer.left("/contacts", sent=True)
        gone = asyncio.ensure_future(pacer.wait("GET", "/contacts"))
        await asyncio.sleep(0)
        gone.cancel()
        await pacer.wait("GET", "/contacts")
        return [fake.now]

    assert asyncio.run(run()) == [100.0 + MARGIN / 10]


def test_the_window_counts_calls_when_they_leave_and_turns_not_used_yet() -> None:
    """A caller may wait for a connection after its turn: its call counts from the moment it
    leaves, and until then as leaving now, so calls that leave late do not crowd a window."""
    fake = FakeTime()
    pacer = ContactsPacer(fake.sleep, clock=fake.clock)
    sent: list[float] = []

    async def run() -> None:
        held = []
        for _ in range(10):  # ten turns, their calls held back (no connection free)
            assert await pacer.wait("GET", "/contacts")
            held.append(fake.now)
        eleventh = asyncio.ensure_future(pacer.wait("GET", "/contacts"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not eleventh.done()  # ten turns out: the window is full until one leaves
        fake.now += 2.0
        for _ in held:  # they all leave now, late
            pacer.left("/contacts", sent=True)
            sent.append(fake.now)
        await eleventh
        pacer.left("/contacts", sent=True)
        sent.append(fake.now)
        cancelled = asyncio.ensure_future(pacer.wait("GET", "/contacts"))
        await asyncio.sleep(0)
        cancelled.cancel()
        assert await pacer.wait("GET", "/contacts")
        pacer.left("/contacts", sent=False)  # its call never went: nothing counted

    asyncio.run(run())
    assert window_counts(sent) == 10
    assert sent[-1] - sent[0] >= MARGIN - 1e-9
