"""The group-commit inbox: batching, duplicates, failures and shutdown (no I/O: the batch store
here is a plain function, the real one is exercised by tests/integration/serve)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from campaign_bridge.errors import StateStoreError
from campaign_bridge.webhook_inbox import InboxRow, WebhookInbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def row(key: str) -> InboxRow:
    return InboxRow("mailchimp", key, "subscribe", "l1", None, datetime.now(UTC), "{}")


class Table:
    """Keeps keys like the unique index would; records each batch it was given."""

    def __init__(self, fail: bool = False) -> None:
        self.keys: set[str] = set()
        self.batches: list[list[str]] = []  # as each commit started
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()

    async def store(self, rows: Sequence[InboxRow]) -> list[bool]:
        self.batches.append([r.dedupe_key for r in rows])
        await asyncio.wait_for(self.release.wait(), timeout=5)
        if self.fail:
            raise StateStoreError("database unreachable")
        new = [r.dedupe_key not in self.keys for r in rows]
        self.keys.update(r.dedupe_key for r in rows)
        return new


async def test_concurrent_deliveries_are_committed_together() -> None:
    table = Table()
    inbox = WebhookInbox(table.store)
    writer = asyncio.create_task(inbox.run())
    table.release.clear()  # hold the first commit so the rest gather behind it
    first = asyncio.create_task(inbox.put(row("k0")))
    await asyncio.sleep(0.05)
    rest = [asyncio.create_task(inbox.put(row(f"k{i}"))) for i in range(1, 50)]
    dup = asyncio.create_task(inbox.put(row("k7")))  # a second copy in the same batch
    await asyncio.sleep(0.05)
    table.release.set()
    results = await asyncio.gather(first, *rest, dup)
    inbox.close()
    await writer
    assert results[:50] == [True] * 50
    assert results[50] is False
    assert len(table.batches) == 2  # k0 alone, then everything that gathered meanwhile
    assert len(table.batches[1]) == 49  # the duplicate is not sent twice


async def test_a_trickle_waits_for_the_commit_in_flight() -> None:
    table = Table()
    inbox = WebhookInbox(table.store, writers=3, min_parallel=16)
    writer = asyncio.create_task(inbox.run())
    table.release.clear()
    first = asyncio.create_task(inbox.put(row("k0")))
    await asyncio.sleep(0.05)
    rest = []
    for i in range(1, 6):  # fewer than min_parallel: no second commit beside the first
        rest.append(asyncio.create_task(inbox.put(row(f"k{i}"))))
        await asyncio.sleep(0.01)
    assert table.batches == [["k0"]]
    table.release.set()
    assert await asyncio.gather(first, *rest) == [True] * 6
    inbox.close()
    await writer
    assert table.batches == [["k0"], ["k1", "k2", "k3", "k4", "k5"]]


async def test_a_flood_starts_a_second_commit_beside_the_first() -> None:
    table = Table()
    inbox = WebhookInbox(table.store, writers=2, min_parallel=4)
    writer = asyncio.create_task(inbox.run())
    table.release.clear()
    first = asyncio.create_task(inbox.put(row("k0")))
    await asyncio.sleep(0.05)
    rest = [asyncio.create_task(inbox.put(row(f"k{i}"))) for i in range(1, 11)]
    await asyncio.sleep(0.05)
    assert table.batches == [["k0"], [f"k{i}" for i in range(1, 11)]]  # both in flight
    table.release.set()
    assert await asyncio.gather(first, *rest) == [True] * 11
    inbox.close()
    await writer


async def test_a_stored_key_comes_back_as_duplicate() -> None:
    table = Table()
    inbox = WebhookInbox(table.store, writers=3)
    writer = asyncio.create_task(inbox.run())
    assert await inbox.put(row("a")) is True
    assert await inbox.put(row("a")) is False
    inbox.close()
    await writer


async def test_a_failed_commit_fails_every_waiting_delivery() -> None:
    inbox = WebhookInbox(Table(fail=True).store)
    writer = asyncio.create_task(inbox.run())
    puts = [asyncio.create_task(inbox.put(row(f"k{i}"))) for i in range(5)]
    results = await asyncio.gather(*puts, return_exceptions=True)
    inbox.close()
    await writer
    assert all(isinstance(r, StateStoreError) for r in results)


async def test_close_stores_what_was_accepted_then_refuses() -> None:
    table = Table()
    inbox = WebhookInbox(table.store, writers=2)
    table.release.clear()
    writer = asyncio.create_task(inbox.run())
    accepted = [asyncio.create_task(inbox.put(row(f"k{i}"))) for i in range(20)]
    await asyncio.sleep(0.05)
    inbox.close()
    with pytest.raises(StateStoreError, match="shutting down"):
        await inbox.put(row("late"))
    table.release.set()
    assert await asyncio.gather(*accepted) == [True] * 20
    await asyncio.wait_for(writer, timeout=5)
    assert table.keys == {f"k{i}" for i in range(20)}
