"""One lock per sync in the state store, taken by every run of it: manual, scheduled or worker.

The lock is the row ``sync:<name>`` of ``cb_locks`` with an expiry time (a TTL). Its holder
refreshes it every third of the TTL; a holder that cannot refresh it in time has lost it, and a
run that lost its lock stops before its next provider call (:meth:`SyncLock.ensure`), because
another run may have taken it over. A second run either gives up at once with
:class:`SyncBusy` (naming the sync and the holder), or waits up to ``wait`` seconds for it.

The scheduler takes the lock before it starts a run and hands it to the run through
:data:`HELD` (a context variable), so the run does not try to take it a second time.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from campaign_bridge.errors import BridgeError, FatalError

__all__ = [
    "DEFAULT_TTL",
    "HELD",
    "HeldLock",
    "LockLost",
    "LockStore",
    "SyncBusy",
    "SyncLock",
    "default_owner",
    "lock_name",
]

logger = logging.getLogger(__name__)

DEFAULT_TTL = 60.0  # seconds; refreshed every third of it
EXIT_BUSY = 75  # EX_TEMPFAIL: another run holds the sync; try again later
T = TypeVar("T")


class SyncBusy(BridgeError):
    """Another run holds the sync's lock."""

    exit_code = EXIT_BUSY


class LockLost(FatalError):
    """The run lost its sync lock (not refreshed in time); it stopped before sending more."""


class LockStore(Protocol):
    def try_acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool: ...

    def refresh_lock(self, name: str, owner: str, ttl_seconds: float) -> bool: ...

    def release_lock(self, name: str, owner: str) -> bool | None: ...


class _HolderStore(LockStore, Protocol):
    def lock_holder(self, name: str) -> tuple[str, datetime] | None: ...


def lock_name(sync_name: str) -> str:
    return f"sync:{sync_name}"


def default_owner() -> str:
    """Who holds a lock: host, process and a random part (two runs in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class HeldLock:
    """A lock the caller (the scheduler) holds for the run it starts; ``lost`` once it lost it."""

    name: str
    owner: str
    lost: bool = False


HELD: contextvars.ContextVar[HeldLock | None] = contextvars.ContextVar("held_lock", default=None)


class SyncLock:
    """The lock of one sync for one run. Use ``await acquire()``, ``ensure()``, ``release()``.

    Blocking store calls run in ``run`` (an executor of the caller's choosing), so a run that
    talks to its state store from one thread keeps doing so.
    """

    def __init__(
        self,
        store: LockStore,
        sync_name: str,
        *,
        owner: str | None = None,
        ttl: float = DEFAULT_TTL,
        run: Callable[..., asyncio.Future[object]] | None = None,
    ) -> None:
        self.store = store
        self.sync_name = sync_name
        self.name = lock_name(sync_name)
        self.owner = owner or default_owner()
        self.ttl = ttl
        self._run = run
        self._held: HeldLock | None = None
        self._valid_until = 0.0  # monotonic time until which the lock is surely ours
        self._heartbeat: asyncio.Task[None] | None = None
        self._lost = False

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        if self._run is not None:
            return await self._run(fn, *args)  # type: ignore[return-value]
        return await asyncio.to_thread(fn, *args)

    async def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait`` seconds; raise :class:`SyncBusy` if held."""
        held = HELD.get()
        if held is not None and held.name == self.name:
            self._held = held  # the scheduler took it for this run and refreshes it
            return
        deadline = time.monotonic() + max(wait, 0.0)
        pause = 0.2
        while True:
            started = time.monotonic()
            if await self._call(self.store.try_acquire_lock, self.name, self.owner, self.ttl):
                self._valid_until = started + self.ttl
                self._heartbeat = asyncio.create_task(self._beat())
                return
            if await self._take_over_from_dead():
                self._valid_until = started + self.ttl
                self._heartbeat = asyncio.create_task(self._beat())
                return
            if time.monotonic() >= deadline:
                raise SyncBusy(await self._busy_message(wait))
            await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0.01)))
            pause = min(pause * 2, 2.0)

    async def _take_over_from_dead(self) -> bool:
        """A holder on this machine whose process is gone (killed, crashed) left its lock
        behind: take it over at once instead of waiting for it to expire."""
        lookup = getattr(self.store, "lock_holder", None)
        take = getattr(self.store, "take_over_lock", None)
        if lookup is None or take is None:
            return False
        holder = await self._call(lookup, self.name)
        if holder is None or not _dead_here(holder[0]):
            return False
        taken = bool(await self._call(take, self.name, holder[0], self.owner, self.ttl))
        if taken:
            logger.warning(
                "took over the lock %s from %s: that process is gone", self.name, holder[0]
            )
        return taken

    async def _busy_message(self, wait: float) -> str:
        holder = None
        lookup = getattr(self.store, "lock_holder", None)
        if lookup is not None:
            holder = await self._call(lookup, self.name)
        who = f"{holder[0]} (lock expires {holder[1].isoformat()})" if holder else "another run"
        waited = f" after waiting {wait:g}s" if wait > 0 else ""
        return (
            f"sync {self.sync_name!r} is already running: its lock {self.name} is held by "
            f"{who}{waited}. Try again when it has finished, or pass --wait SECONDS to wait"
        )

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            started = time.monotonic()
            try:
                kept = await self._call(self.store.refresh_lock, self.name, self.owner, self.ttl)
            except BridgeError as exc:  # the state store is unreachable: try again soon
                logger.warning("could not refresh the lock %s: %s", self.name, exc)
                continue
            if not kept:
                self._lost = True
                logger.error("lost the lock %s (another run took it over); stopping", self.name)
                return
            self._valid_until = started + self.ttl

    @property
    def lost(self) -> bool:
        if self._held is not None:
            return self._held.lost
        return self._lost or time.monotonic() >= self._valid_until

    def ensure(self) -> None:
        """Raise :class:`LockLost` if the lock is no longer surely this run's."""
        if self.lost:
            raise LockLost(
                f"the run of sync {self.sync_name!r} lost its lock {self.name} (it was not "
                f"refreshed within {self.ttl:g}s); it stopped before sending more. Run it again"
            )

    async def release(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
            try:
                await self._call(self.store.release_lock, self.name, self.owner)
            except BridgeError as exc:  # it expires by itself
                logger.warning("could not release the lock %s: %s", self.name, exc)


def _dead_here(owner: str) -> bool:
    """True when ``owner`` (``host:pid:random``) is a process of this host that is gone."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
