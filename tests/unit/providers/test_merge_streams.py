"""merge_streams: several async iterators read at once, each one's order kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from campaign_bridge.providers._http import merge_streams

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def numbers(name: str, count: int, delay: float) -> AsyncIterator[str]:
    for i in range(count):
        await asyncio.sleep(delay)
        yield f"{name}{i}"


async def test_every_item_arrives_in_its_stream_order() -> None:
    got = [x async for x in merge_streams([numbers("a", 5, 0.001), numbers("b", 5, 0.001)])]
    assert sorted(got) == sorted([f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)])
    assert [x for x in got if x[0] == "a"] == [f"a{i}" for i in range(5)]
    assert [x for x in got if x[0] == "b"] == [f"b{i}" for i in range(5)]


async def test_streams_are_read_at_the_same_time() -> None:
    second_started = asyncio.Event()

    async def first() -> AsyncIterator[str]:
        # Read one after the other, this would wait forever for the second stream.
        await asyncio.wait_for(second_started.wait(), timeout=10)
        yield "first"

    async def second() -> AsyncIterator[str]:
        second_started.set()
        yield "second"

    assert sorted([x async for x in merge_streams([first(), second()])]) == ["first", "second"]


async def test_the_first_error_of_any_stream_is_raised() -> None:
    async def failing() -> AsyncIterator[str]:
        yield "x"
        raise ValueError("page 2 failed")

    with pytest.raises(ValueError, match="page 2 failed"):
        async for _ in merge_streams([numbers("a", 50, 0.01), failing()]):
            pass


async def test_leaving_early_cancels_the_other_streams() -> None:
    finished: list[str] = []

    async def slow() -> AsyncIterator[str]:
        try:
            for i in range(100):
                await asyncio.sleep(0.01)
                yield f"s{i}"
        finally:
            finished.append("closed")

    stream = merge_streams([slow()])
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert finished == ["closed"]
