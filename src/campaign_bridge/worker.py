"""Worker mode: pushes and pulls as jobs on procrastinate's queue in the PostgreSQL state store.

Any number of ``campaign-bridge worker`` processes, on any number of machines, take jobs from
one queue; nothing is added besides the PostgreSQL state store the bridge already uses
(migration ``0007_scale_out`` creates procrastinate's tables there).

- **Jobs.** ``campaign_bridge.push`` and ``campaign_bridge.pull`` run one sync in one direction.
  Each job carries procrastinate's ``lock`` and ``queueing_lock`` ``<sync>:<direction>``: one
  such job runs at a time and at most one more waits. The job body also takes the sync's own
  lock (:mod:`campaign_bridge.synclock`), so a queued run never overlaps a manual or scheduled
  one of the same sync, push or pull. Every job is safe to run again from the start: a push
  diffs against the state store and confirms half-done status changes, a pull resumes from its
  cursors.
- **Schedules.** Each sync's ``schedule.push`` / ``schedule.pull`` becomes a procrastinate
  periodic task (cron; intervals that divide an hour or a day become cron too), deferred once
  per tick however many workers run.
- **Dead workers.** Workers write a heartbeat every ``heartbeat`` seconds. A periodic task finds
  jobs whose worker has not beaten for ``stalled_after`` seconds and puts them back on the queue;
  another worker then runs them again from the start.
- **Webhooks.** ``campaign_bridge.apply_webhooks`` (queue ``webhooks``) applies the stored
  webhook events ``serve`` has not applied yet; ``serve`` keeps receiving them on any number of
  replicas.
- **Provider budget.** Every request a worker sends holds a slot of its API key
  (:mod:`campaign_bridge.keyslots`), shared with every other worker and manual run.
- **Connections.** A worker's jobs share one state store pool; the process opens at most
  ``concurrency + 8`` connections (:mod:`campaign_bridge.state_pool`), and warns at start-up when
  the workers would need more than the server allows.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import procrastinate
from procrastinate import JobContext, RetryStrategy

from campaign_bridge.config import Settings
from campaign_bridge.db import dialect_of
from campaign_bridge.errors import (
    ConfigProblem,
    ConfigurationError,
    FatalError,
    RetriableError,
    StateStoreError,
)
from campaign_bridge.keyslots import CURRENT_SYNC, libpq_conninfo, shared_slots
from campaign_bridge.scheduler import Interval, parse_schedule
from campaign_bridge.state_pool import (
    QUEUE_POOL,
    ConnectionBudget,
    check_headroom,
    shared_state_engine,
    worker_application_name,
)
from campaign_bridge.synclock import DEFAULT_TTL, SyncBusy

__all__ = [
    "DIRECTIONS",
    "WorkerOptions",
    "build_app",
    "enqueue",
    "job_lock",
    "require_postgresql",
    "run_worker",
    "to_cron",
]

logger = logging.getLogger(__name__)

DIRECTIONS = ("push", "pull")
WEBHOOKS_LOCK = "webhooks:apply"
# A job waits this long for its sync's lock (a run elsewhere, or a dead holder's to expire).
LOCK_WAIT = DEFAULT_TTL * 1.5
_RETRY = RetryStrategy(
    max_attempts=8, exponential_wait=5, retry_exceptions={SyncBusy, RetriableError}
)


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 4
    queues: tuple[str, ...] = ()  # empty: every queue
    heartbeat: float = 10.0  # seconds between a worker's heartbeats
    stalled_after: float = 30.0  # a worker silent this long is dead; its jobs run again
    shutdown_timeout: float = 60.0  # on SIGTERM, wait this long for running jobs, then abort
    schedule: bool = True  # defer each sync's periodic runs


def job_lock(sync_name: str, direction: str) -> str:
    """procrastinate's lock and queueing lock of a sync's runs in one direction."""
    return f"{sync_name}:{direction}"


def require_postgresql(settings: Settings) -> str:
    """The state store URL; a clear error when it is not PostgreSQL (worker mode needs it)."""
    url = settings.effective_state_url()
    dialect = dialect_of(url)
    if dialect != "postgresql":
        raise ConfigurationError(
            [
                ConfigProblem(
                    "state_url",
                    f"worker mode needs a PostgreSQL state store (its job queue lives there); "
                    f"this one is {dialect}",
                    "state_url = postgresql://... (then `campaign-bridge migrate`), or run "
                    "scheduled syncs in one process with `campaign-bridge serve --schedule`",
                )
            ]
        )
    return url


def to_cron(text: str) -> str:
    """A schedule setting as the cron expression procrastinate understands (UTC; a sixth field
    is seconds). Intervals aligned to the epoch become the cron expression firing at the same
    moments; an interval that does not divide an hour or a day evenly cannot be one."""
    schedule = parse_schedule(text)
    if not isinstance(schedule, Interval):
        return schedule.expression
    seconds = schedule.seconds
    if seconds < 60 and 60 % seconds == 0:
        return f"* * * * * */{seconds}"
    if seconds % 60 == 0 and seconds < 3600 and 3600 % seconds == 0:
        return f"*/{seconds // 60} * * * *"
    if seconds % 3600 == 0 and seconds < 86400 and 86400 % seconds == 0:
        return f"0 */{seconds // 3600} * * *"
    if seconds == 86400:
        return "0 0 * * *"
    raise ConfigurationError(
        [
            ConfigProblem(
                "schedule",
                f"{text!r} cannot run on the job queue (it does not divide an hour or a day)",
                "an interval such as 'every 20m' or 'every 6h', or a cron expression",
            )
        ]
    )


async def _run(settings: Settings, sync_name: str, direction: str) -> dict[str, Any]:
    from campaign_bridge.pull import run_pull
    from campaign_bridge.push import run_push

    token = CURRENT_SYNC.set(sync_name)
    try:
        if direction == "push":
            summary = await run_push(settings, sync_name, wait=LOCK_WAIT)
            if summary.exit_code == SyncBusy.exit_code:
                raise SyncBusy(summary.error or f"sync {sync_name!r} is busy")
            if summary.status == "failed":
                raise FatalError(f"push of {sync_name!r} failed: {summary.error}")
            return {"status": summary.status, "run_id": summary.run_id}
        pulled = await run_pull(settings, sync_name, wait=LOCK_WAIT)
        return {"status": pulled.status}
    finally:
        CURRENT_SYNC.reset(token)


def build_app(
    settings: Settings, options: WorkerOptions | None = None, *, application_name: str = ""
) -> procrastinate.App:
    """The procrastinate app of this configuration: its tasks and its syncs' periodic runs.
    ``application_name``: what its connections say in ``pg_stat_activity`` (a worker's name)."""
    options = options or WorkerOptions()
    url = require_postgresql(settings)
    # The queue's own few connections (its pool, and one LISTEN connection outside it).
    connector = procrastinate.PsycopgConnector(
        conninfo=libpq_conninfo(url),
        min_size=1,
        max_size=QUEUE_POOL,
        kwargs={"application_name": application_name} if application_name else {},
    )
    app = procrastinate.App(connector=connector)

    for direction in DIRECTIONS:
        _register_run(app, settings, direction)

        @app.task(name=f"campaign_bridge.scheduled_{direction}", queue=direction)
        async def scheduled(timestamp: int, sync: str, _d: str = direction) -> dict[str, Any]:
            # periodic: one job per tick; a tick still queued makes the next one skip
            return await _run(settings, sync, _d)

        if options.schedule:
            for name, sync in settings.syncs.items():
                text = getattr(sync.schedule, direction)
                if text:
                    app.periodic(
                        cron=to_cron(text),
                        periodic_id=job_lock(name, direction),
                        queueing_lock=job_lock(name, direction),
                        lock=job_lock(name, direction),
                        task_kwargs={"sync": name},
                    )(scheduled)

    @app.task(
        name="campaign_bridge.apply_webhooks",
        queue="webhooks",
        retry=_RETRY,
        lock=WEBHOOKS_LOCK,
        queueing_lock=WEBHOOKS_LOCK,
    )
    async def apply_webhooks(timestamp: int | None = None) -> dict[str, int]:
        return await _apply_webhooks(settings)

    if options.schedule and settings.syncs:
        # every minute: events no serve process applied (none running, or it crashed)
        app.periodic(cron="* * * * *", periodic_id="apply-webhooks")(apply_webhooks)

    stalled_every = max(1, min(59, int(options.stalled_after / 3)))

    @app.periodic(cron=f"* * * * * */{stalled_every}", periodic_id="retry-stalled")
    @app.task(name="campaign_bridge.retry_stalled", queue="maintenance", pass_context=True)
    async def retry_stalled(context: JobContext, timestamp: int) -> int:
        """Jobs of workers that stopped beating go back on the queue, to run from the start."""
        manager = context.app.job_manager
        stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=options.stalled_after)
        for job in stalled:
            logger.warning(
                "job %s (%s) of a worker that stopped beating goes back on the queue",
                job.id,
                job.lock,
                extra={"action": "worker", "job_id": job.id},
            )
            await manager.retry_job(job)
        # this task runs every few seconds: keep only the last hour of its own finished jobs
        await manager.delete_old_jobs(nb_hours=1, queue="maintenance")
        return len(list(stalled))

    return app


def _register_run(app: procrastinate.App, settings: Settings, direction: str) -> None:
    @app.task(name=f"campaign_bridge.{direction}", queue=direction, retry=_RETRY)
    async def run(sync: str) -> dict[str, Any]:
        return await _run(settings, sync, direction)


async def _apply_webhooks(settings: Settings) -> dict[str, int]:
    """Apply every stored webhook event not applied yet (what ``serve`` does as they arrive;
    this job catches up on events stored while no ``serve`` applied them). Safe to run again:
    applying is idempotent, and one machine at a time applies (lock ``webhooks:apply``).
    In a worker, ``create_engine`` hands out the process's shared state store engine."""
    from campaign_bridge.db import create_engine
    from campaign_bridge.store import StateStore
    from campaign_bridge.webhook_applier import WebhookApplier

    url = settings.effective_state_url()
    engine = create_engine(url)
    store = StateStore(engine)
    applier = WebhookApplier(
        engine, settings.syncs, state_url=url, locks=store, log_emails=settings.log_emails
    )
    seen = applied = 0
    try:
        while True:
            chunk = await asyncio.to_thread(applier.apply_pending_once)
            seen += chunk.seen
            applied += sum(chunk.applied.values())
            if chunk.failed:
                raise RetriableError(f"{chunk.failed} webhook event(s) failed to apply")
            if chunk.seen < applier.chunk:
                return {"seen": seen, "applied": applied}
    finally:
        await asyncio.to_thread(applier.release_lock)
        applier.close()
        engine.dispose()


async def enqueue(settings: Settings, sync_name: str, direction: str) -> int | None:
    """Put one run on the queue; its job id, or None when one is already waiting.
    ``direction`` ``webhooks`` applies the stored webhook events (``sync_name`` unused)."""
    app = build_app(settings, WorkerOptions(schedule=False))
    lock = job_lock(sync_name, direction)
    async with app.open_async():
        try:
            if direction == "webhooks":
                return await app.tasks["campaign_bridge.apply_webhooks"].defer_async()
            task = app.tasks[f"campaign_bridge.{direction}"]
            return await task.configure(lock=lock, queueing_lock=lock).defer_async(sync=sync_name)
        except procrastinate.exceptions.AlreadyEnqueued:
            return None
        except procrastinate.exceptions.ConnectorException as exc:
            raise StateStoreError(_queue_problem(exc)) from exc


def _queue_problem(exc: BaseException) -> str:
    return (
        f"cannot use the job queue in the state store: {exc}. Check that PostgreSQL is "
        "reachable and run `campaign-bridge migrate` (it creates the queue's tables)"
    )


async def run_worker(settings: Settings, options: WorkerOptions) -> None:
    """Run a worker until SIGINT / SIGTERM (then finish or abort the jobs in flight)."""
    from campaign_bridge import migrations

    if options.stalled_after < 2 * options.heartbeat:
        raise ConfigurationError(
            [
                ConfigProblem(
                    "--stalled-after",
                    f"{options.stalled_after:g}s is shorter than two heartbeats "
                    f"({options.heartbeat:g}s each): live workers would look dead",
                    "at least twice --heartbeat (the defaults are 30 and 10)",
                )
            ]
        )
    url = require_postgresql(settings)
    if not migrations.is_current(url):
        raise StateStoreError(
            "the state store is not at the newest schema (the job queue's tables come with "
            "it): run `campaign-bridge migrate` first"
        )
    name = worker_application_name()
    app = build_app(settings, options, application_name=name)
    budget = ConnectionBudget(options.concurrency)
    logger.info(
        "worker starting: concurrency %d, queues %s, %d periodic task(s); %s, as %r",
        options.concurrency,
        ",".join(options.queues) or "all",
        len(app.periodic_registry.periodic_tasks),
        budget.describe(),
        name,
        extra={"action": "worker"},
    )
    # Every job, lock and slot of this process shares these pools (campaign_bridge.state_pool).
    with shared_state_engine(url, size=budget.state_store, application_name=name) as engine:
        warning = await asyncio.to_thread(check_headroom, engine, budget, options.stalled_after)
        if warning is not None:
            logger.warning(warning, extra={"action": "worker"})
        async with shared_slots(url, application_name=name), app.open_async():
            if options.queues:
                await app.run_worker_async(queues=list(options.queues), **_worker_kwargs(options))
            else:
                await app.run_worker_async(**_worker_kwargs(options))


def _worker_kwargs(options: WorkerOptions) -> dict[str, Any]:
    return {
        "concurrency": options.concurrency,
        "update_heartbeat_interval": options.heartbeat,
        "stalled_worker_timeout": options.stalled_after,
        "shutdown_graceful_timeout": options.shutdown_timeout,
        "install_signal_handlers": True,
    }
