"""``serve --schedule``: run each sync's push and pull on its interval or cron expression.

Schedules are written ``every 15m`` (also ``every 1h30m``, ``every 45s``, ``every 2d``) or as a
five-field cron expression in UTC (``*/10 * * * *``, ``0 6 * * mon-fri``, ``@hourly``),
read by croniter (as procrastinate's periodic tasks are in worker mode).
Interval ticks are aligned to the Unix epoch, so two ``serve`` processes agree on when a tick is.

One sync never runs twice at once: before a run the scheduler takes the database lock
``sync:<name>`` (``cb_locks``, with a TTL that a heartbeat refreshes), so two processes on two
machines cannot overlap; in one process the sync's push and pull also wait for each other. A run
that fails is retried at the next tick (sooner with a short back-off), and is recorded so the
status page and ``/-/metrics`` show it. While ``campaign-bridge worker`` processes run on the
state store, the syncs' runs are left to them (``defer``; see :mod:`campaign_bridge.workers_seen`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import os
import re
import socket
import uuid
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from campaign_bridge.synclock import HELD, HeldLock, lock_name

__all__ = [
    "Cron",
    "Interval",
    "Job",
    "Schedule",
    "Scheduler",
    "parse_schedule",
]

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_INTERVAL = re.compile(r"^(?:every\s+)?((?:\d+\s*[smhdw]\s*)+)$", re.IGNORECASE)
_PART = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
SYNC_DIRECTIONS = ("push", "pull")


class ScheduleError(ValueError):
    """A schedule string that is neither an interval nor a cron expression."""


# --------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class Interval:
    seconds: int

    def next_after(self, moment: datetime) -> datetime:
        """The first epoch-aligned tick strictly after ``moment``."""
        elapsed = (moment - EPOCH).total_seconds()
        ticks = math.floor(elapsed / self.seconds) + 1
        return EPOCH + timedelta(seconds=ticks * self.seconds)

    def expected_gap(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        return f"every {self.seconds}s"


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression (minute hour day-of-month month day-of-week) in UTC, or an
    alias such as ``@daily``. Parsed and evaluated by croniter, the parser procrastinate's
    periodic tasks use, so ``serve --schedule`` and ``worker`` read a schedule the same way
    (a restricted day of month and day of week: either matches, as classic cron does)."""

    expression: str

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment``."""
        from croniter import CroniterBadCronError, CroniterBadDateError, croniter

        try:
            following = croniter(self.expression, moment.astimezone(UTC)).get_next(datetime)
        except (CroniterBadDateError, CroniterBadCronError) as exc:
            raise ScheduleError(f"cron expression {self.expression!r} never fires") from exc
        return following.astimezone(UTC)

    def expected_gap(self) -> timedelta:
        """The longest gap between consecutive firings over the next few weeks (a bound)."""
        start = datetime.now(UTC)
        previous = self.next_after(start)
        widest = timedelta(0)
        for _ in range(64):
            following = self.next_after(previous)
            widest = max(widest, following - previous)
            previous = following
            if previous - start > timedelta(days=62):
                break
        return widest

    def __str__(self) -> str:
        return self.expression


Schedule = Interval | Cron


def parse_schedule(text: str) -> Schedule:
    """Parse ``every 15m`` / ``15m`` / a cron expression / ``@daily``."""
    value = " ".join(text.strip().split())
    if not value:
        raise ScheduleError("schedule is empty")
    match = _INTERVAL.match(value)
    if match:
        seconds = sum(int(n) * _UNITS[u.lower()] for n, u in _PART.findall(match.group(1)))
        if seconds <= 0:
            raise ScheduleError(f"interval {text!r} must be longer than zero")
        return Interval(seconds)
    from croniter import croniter  # cron only: settings name intervals ("every 1d") more often

    expression = value.lower() if value.startswith("@") else value
    if not expression.startswith("@") and len(expression.split(" ")) != 5:
        raise ScheduleError(
            f"schedule {text!r} is neither an interval ('every 15m') "
            "nor a five-field cron expression ('*/15 * * * *')"
        )
    if not croniter.is_valid(expression):
        raise ScheduleError(
            f"cron expression {text!r} is not valid: five fields (minute 0-59, hour 0-23, "
            "day of month 1-31, month 1-12 or jan-dec, day of week 0-7 or sun-sat), "
            "each *, a number, a range a-b, a list a,b or a step */n"
        )
    cron = Cron(expression=expression)
    cron.next_after(datetime.now(UTC))  # refuses expressions that never fire (31 feb)
    return cron


# --------------------------------------------------------------------------- the scheduler


class LockStore(Protocol):
    """The part of the state store the scheduler needs (``cb_locks`` with a TTL)."""

    def try_acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool: ...

    def refresh_lock(self, name: str, owner: str, ttl_seconds: float) -> bool: ...

    def release_lock(self, name: str, owner: str) -> None: ...


JobRunner = Callable[[str, str], Coroutine[Any, Any, Any]]
"""``runner(sync_name, direction)`` runs one push or pull; raises if the run failed."""

RunListener = Callable[[str, str, str, Any], None]
"""``listener(sync_name, direction, status, result_or_error)`` after each attempt; status is
``succeeded``, ``failed`` or ``skipped`` (another process held the sync's lock)."""


@dataclass
class Job:
    sync_name: str
    direction: str  # push | pull
    schedule: Schedule
    next_due: datetime = field(default_factory=lambda: datetime.now(UTC))
    failures: int = 0

    @property
    def lock_name(self) -> str:
        return lock_name(self.sync_name)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler:
    """Runs due jobs; each run holds the sync's database lock for its whole duration."""

    def __init__(
        self,
        jobs: Iterable[Job],
        runner: JobRunner,
        locks: LockStore,
        *,
        owner: str | None = None,
        lock_ttl: float = 60.0,
        retry_delay: float = 30.0,
        on_run: RunListener | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        defer: Callable[[], str | None] | None = None,
    ) -> None:
        self.jobs = list(jobs)
        self.runner = runner
        self.locks = locks
        self.owner = owner or default_owner()
        self.lock_ttl = lock_ttl
        self.retry_delay = retry_delay
        self.on_run = on_run
        self.clock = clock
        self.defer = defer  # a reason to leave the syncs' runs to others (workers), or None
        self._local: dict[str, asyncio.Lock] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    @classmethod
    def from_settings(
        cls, syncs: dict[str, Any], runner: JobRunner, locks: LockStore, **kw: Any
    ) -> Scheduler:
        """Jobs for every sync with a push or pull schedule (``SyncConfig.schedule``)."""
        jobs: list[Job] = []
        for name, sync in syncs.items():
            for direction in ("push", "pull"):
                text = getattr(sync.schedule, direction)
                if text:
                    jobs.append(Job(name, direction, parse_schedule(text)))
        return cls(jobs, runner, locks, **kw)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Loop until :meth:`stop`; then wait for runs in flight to finish."""
        log.info(
            "scheduler started with %d job(s)",
            len(self.jobs),
            extra={"action": "schedule", "owner": self.owner},
        )
        try:
            while not self._stop.is_set():
                now = self.clock()
                due = [job for job in self.jobs if job.next_due <= now and not self._busy(job)]
                for job in await self._not_deferred(due, now):
                    task = asyncio.create_task(self._attempt(job))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
                wake = min((j.next_due for j in self.jobs), default=now + timedelta(seconds=60))
                delay = min(max((wake - self.clock()).total_seconds(), 0.05), 1.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
        finally:
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)

    async def _not_deferred(self, due: list[Job], now: datetime) -> list[Job]:
        """``due`` less the syncs' runs while ``defer`` says someone else runs them (workers);
        those wait for their next tick. Other jobs (the retention purge) always run."""
        if not due or self.defer is None or not await asyncio.to_thread(self.defer):
            return due
        for job in due:
            if job.direction in SYNC_DIRECTIONS:
                job.next_due = job.schedule.next_after(now)
        return [job for job in due if job.direction not in SYNC_DIRECTIONS]

    def _busy(self, job: Job) -> bool:
        return any(t.get_name() == f"{job.sync_name}/{job.direction}" for t in self._running)

    async def _attempt(self, job: Job) -> None:
        asyncio.current_task().set_name(f"{job.sync_name}/{job.direction}")  # type: ignore[union-attr]
        local = self._local.setdefault(job.sync_name, asyncio.Lock())
        async with local:
            status, outcome = await self._run_locked(job)
        now = self.clock()
        scheduled = job.schedule.next_after(now)
        if status == "skipped":
            job.next_due = scheduled  # another process runs this tick
        elif status == "failed":
            job.failures += 1
            backoff = timedelta(seconds=min(self.retry_delay * 2 ** (job.failures - 1), 600))
            job.next_due = min(scheduled, now + backoff)
        else:
            job.failures = 0
            job.next_due = scheduled
        if self.on_run is not None:
            self.on_run(job.sync_name, job.direction, status, outcome)

    async def _run_locked(self, job: Job) -> tuple[str, Any]:
        acquired = await asyncio.to_thread(
            self.locks.try_acquire_lock, job.lock_name, self.owner, self.lock_ttl
        )
        extra = {"action": job.direction, "sync": job.sync_name, "owner": self.owner}
        if not acquired:
            log.info("sync %s is running elsewhere; skipping this tick", job.sync_name, extra=extra)
            return "skipped", None
        # The run sees that this scheduler holds its sync's lock (the same lock a manual run
        # takes) and does not take it again; the heartbeat below marks it lost if it is.
        held = HeldLock(job.lock_name, self.owner)
        context = contextvars.copy_context()
        context.run(HELD.set, held)
        run: asyncio.Task[Any] = asyncio.create_task(
            self.runner(job.sync_name, job.direction), context=context
        )
        heartbeat = asyncio.create_task(self._heartbeat(job, run, held))
        try:
            result = await run
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            log.error(
                "%s of %s was stopped: its lock was lost", job.direction, job.sync_name, extra=extra
            )
            return "failed", RuntimeError("lock lost")
        except Exception as exc:
            log.error("%s of %s failed: %s", job.direction, job.sync_name, exc, extra=extra)
            return "failed", exc
        finally:
            heartbeat.cancel()
            await asyncio.to_thread(self.locks.release_lock, job.lock_name, self.owner)
        status = str(getattr(result, "status", "succeeded") or "succeeded")
        return ("failed" if status == "failed" else "succeeded"), result

    async def _heartbeat(self, job: Job, run: asyncio.Task[Any], held: HeldLock) -> None:
        while True:
            await asyncio.sleep(self.lock_ttl / 3)
            kept = await asyncio.to_thread(
                self.locks.refresh_lock, job.lock_name, self.owner, self.lock_ttl
            )
            if not kept:
                held.lost = True  # the run checks this before each provider write
                run.cancel()
                return
