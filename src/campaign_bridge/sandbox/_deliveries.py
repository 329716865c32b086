"""Delivering a sandbox's outgoing webhooks: the pending queue and the asyncio worker that
attempts it, shared by the Mailchimp and Brevo emulators. A provider's bus says when a delivery
is due and how one attempt goes (its body, headers, retry rule and log).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Collection, Mapping
from typing import Any, Generic, Protocol, TypeVar

import httpx

__all__ = ["DeliveryWorker", "changed_settings", "settings_view"]

#: deliveries kept in the log (the oldest are forgotten first)
MAX_LOG = 10_000


class _Delivery(Protocol):
    @property
    def state(self) -> str: ...


D = TypeVar("D", bound=_Delivery)

#: how often a waiting worker looks again, so that advancing the sandbox clock (not only real
#: time passing) makes retries due
_POLL_SECONDS = 0.05


class DeliveryWorker(abc.ABC, Generic[D]):
    """Pending deliveries (guarded by ``lock``, the sandbox's) and the task that attempts
    them: started on the running loop by the first ``queue`` (or ``flush``), woken from any
    thread, idle while nothing is pending."""

    def __init__(self, lock: threading.RLock, *, task_name: str) -> None:
        self.lock = lock
        self._task_name = task_name
        #: every delivery, newest last (at most ``MAX_LOG``)
        self.log: list[D] = []
        self._pending: list[D] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None

    # -- what a provider's bus says -----------------------------------------------------

    @abc.abstractmethod
    def _due(self, now_real: float) -> list[D]:
        """The pending deliveries to attempt now (``now_real``: ``loop.time()``)."""

    @abc.abstractmethod
    def _due_real(self, delivery: D) -> float:
        """When ``delivery`` is next due, in ``loop.time()``."""

    @abc.abstractmethod
    async def _attempt(self, client: httpx.AsyncClient, delivery: D, now_real: float) -> None:
        """Try ``delivery`` once; take it out of ``_pending`` when done or given up, else set
        when it is due again."""

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient()

    # -- the queue (called with the sandbox lock held) -----------------------------------

    def queue(self, delivery: D) -> None:
        """Log ``delivery`` and have the worker attempt it."""
        self.log.append(delivery)
        if len(self.log) > MAX_LOG:
            del self.log[: len(self.log) - MAX_LOG]
        self._pending.append(delivery)
        self._kick()

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- the worker ------------------------------------------------------------------------

    def _alive(self) -> bool:
        """A worker is running on a loop that is still open."""
        return (
            self._task is not None
            and not self._task.done()
            and self._loop is not None
            and not self._loop.is_closed()
        )

    def _kick(self) -> None:
        """Wake the worker (from any thread), or start one on the running loop."""
        if self._alive():
            assert self._loop is not None
            wake = self._wake
            if wake is not None:
                self._loop.call_soon_threadsafe(wake.set)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop here: the next flush (or queue inside a loop) starts it
        self._loop = loop
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task = loop.create_task(self._run(), name=self._task_name)
        self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        assert self._idle is not None
        loop = asyncio.get_running_loop()
        async with self._client() as client:
            while True:
                self._wake.clear()
                for delivery in self._due(loop.time()):
                    await self._attempt(client, delivery, loop.time())
                with self.lock:
                    waits = [self._due_real(d) for d in self._pending]
                if not waits:
                    self._idle.set()
                    await self._wake.wait()
                    self._idle.clear()
                    continue
                delay = max(0.0, min(waits) - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=min(delay, _POLL_SECONDS))

    async def flush(self, within: float = 30.0) -> bool:
        """Wait until nothing is pending (delivered or given up). False on timeout."""
        loop = asyncio.get_running_loop()
        with self.lock:
            if not self._pending:
                return True
            self._kick()
        deadline = loop.time() + within
        while loop.time() < deadline:
            with self.lock:
                if not self._pending:
                    return True
            await asyncio.sleep(0.005)
        return False

    async def flush_report(
        self, within: float, *, failed: Collection[str] = ("failed",)
    ) -> dict[str, Any]:
        """``flush``, then what the control API's ``POST /webhooks/flush`` answers (deliveries
        in a state of ``failed`` count as failed)."""
        started = time.monotonic()
        done = await self.flush(within)
        with self.lock:
            return {
                "flushed": done,
                "pending": self.pending,
                "waited_seconds": round(time.monotonic() - started, 3),
                "delivered": sum(d.state == "delivered" for d in self.log),
                "failed": sum(d.state in failed for d in self.log),
            }


class _Settings(Protocol):
    timeout: float
    retry_compression: float
    retry_delays: tuple[float, ...]


S = TypeVar("S", bound=_Settings)


def changed_settings(current: S, body: Mapping[str, Any], *, flags: Collection[str] = ()) -> S:
    """``current`` delivery settings with what ``body`` sets (``timeout``,
    ``retry_compression``, ``retry_delays`` and the booleans named in ``flags``); ``TypeError``
    or ``ValueError`` when a value is not what it must be."""
    changes: dict[str, Any] = {
        "timeout": float(body.get("timeout", current.timeout)),
        "retry_compression": float(body.get("retry_compression", current.retry_compression)),
        "retry_delays": tuple(float(x) for x in body.get("retry_delays", current.retry_delays)),
    }
    changes.update({name: bool(body[name]) for name in flags if name in body})
    return dataclasses.replace(current, **changes)  # type: ignore[type-var]


def settings_view(settings: _Settings) -> dict[str, Any]:
    """The settings as ``PUT /webhooks/settings`` answers them."""
    out: dict[str, Any] = dataclasses.asdict(settings)  # type: ignore[call-overload]
    out["retry_delays"] = list(settings.retry_delays)
    return out
