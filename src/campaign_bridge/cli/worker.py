"""``campaign-bridge worker``: run queued and scheduled syncs (PostgreSQL state store only)."""

from __future__ import annotations

from typing import Annotated

import typer

from campaign_bridge.cli._common import get_settings, run_async

__all__ = ["commands"]

commands = typer.Typer()


@commands.command("worker")
def _worker_command(
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, metavar="N", help="Jobs run at once.")
    ] = 4,
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues",
            metavar="Q1,Q2",
            help="Only these queues (push, pull, maintenance); default every queue.",
            show_default=False,
        ),
    ] = None,
    heartbeat: Annotated[
        float, typer.Option("--heartbeat", min=0.1, metavar="SECONDS", help="Heartbeat period.")
    ] = 10.0,
    stalled_after: Annotated[
        float,
        typer.Option(
            "--stalled-after",
            min=1,
            metavar="SECONDS",
            help="A worker whose heartbeat is this old is dead: its jobs run again elsewhere.",
        ),
    ] = 30.0,
    shutdown_timeout: Annotated[
        float,
        typer.Option(
            "--shutdown-timeout",
            min=0,
            metavar="SECONDS",
            help="On SIGTERM, let running jobs finish this long, then abort them.",
        ),
    ] = 60.0,
    no_schedule: Annotated[
        bool, typer.Option("--no-schedule", help="Do not defer the syncs' scheduled runs.")
    ] = False,
) -> None:
    """Run syncs from the job queue in the PostgreSQL state store, with any number of workers
    on any number of machines (see docs/scaling.md)."""
    from campaign_bridge.worker import WorkerOptions, run_worker

    settings = get_settings()
    names = tuple(q.strip() for q in (queues or "").split(",") if q.strip())
    options = WorkerOptions(
        concurrency=concurrency,
        queues=names,
        heartbeat=heartbeat,
        stalled_after=stalled_after,
        shutdown_timeout=shutdown_timeout,
        schedule=not no_schedule,
    )
    run_async(run_worker(settings, options))
