"""``campaign-bridge push``: the thin command-line edge of :mod:`campaign_bridge.push`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from campaign_bridge.cli._common import (
    EXIT_OK,
    echo,
    emit_json,
    emit_table,
    enqueue_run,
    get_settings,
    run_async,
    stdout_is_tty,
)
from campaign_bridge.config import Settings
from campaign_bridge.errors import ConfigProblem, ConfigurationError

if TYPE_CHECKING:  # the engine is imported when the command runs, not when the CLI starts
    from campaign_bridge.push import PushSummary

__all__ = ["commands", "pick_sync", "push_command"]

commands = typer.Typer()


def pick_sync(settings: Settings, name: str | None) -> str:
    """The sync to run: ``name``, or the only one configured."""
    if name is not None:
        if name not in settings.syncs:
            known = ", ".join(sorted(settings.syncs)) or "none"
            raise ConfigurationError(
                [ConfigProblem("SYNC", f"no sync named {name!r}", f"one of: {known}")]
            )
        return name
    if len(settings.syncs) == 1:
        return next(iter(settings.syncs))
    if not settings.syncs:
        raise ConfigurationError(
            [ConfigProblem("syncs", "no sync is configured", "a [syncs.<name>] table")]
        )
    raise ConfigurationError(
        [
            ConfigProblem(
                "SYNC",
                "several syncs are configured; name the one to push",
                ", ".join(sorted(settings.syncs)),
            )
        ]
    )


@contextlib.contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]push"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} contacts/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("push", total=None, rate="-")

        def update(done: int, total: int | None) -> None:
            speed = bar.tasks[0].speed
            rate = f"{speed:,.0f}" if speed else "-"
            bar.update(task, completed=done, total=total, rate=rate)

        yield update


def _print_summary(summary: PushSummary) -> None:
    title = f"push {summary.sync_name}" + (" (dry run)" if summary.dry_run else "")
    would = "would be " if summary.dry_run else ""
    rows: list[tuple[str, object]] = [
        ("status", summary.status),
        ("run id", summary.run_id),
        ("read from source", summary.read),
        (f"{would}created", summary.created),
        (f"{would}updated", summary.updated),
        ("unchanged", summary.unchanged),
        (f"{would}archived", summary.archived),
        ("rejected", summary.rejected_total),
    ]
    rows += [(f"  rejected: {reason}", n) for reason, n in sorted(summary.rejected.items())]
    rows += [(f"  skipped: {reason}", n) for reason, n in sorted(summary.skipped.items())]
    rows += [(f"  consent: {effect}", n) for effect, n in sorted(summary.consent.items())]
    if summary.retry_later:
        rows.append(("left for the next run (transient errors)", summary.retry_later))
    if summary.resolved:
        rows.append(("earlier rejections resolved", summary.resolved))
    rows.append(("seconds", f"{summary.seconds:.1f}"))
    emit_table(["", "count"], rows, title=title)
    echo(f"consent: {summary.consent_sentence()}")
    if summary.rejected_total and not summary.dry_run:
        echo(
            "rejected records are in cb_rejected_records with their reason; they are not sent "
            "again until they change, or with --retry-rejected"
        )
    if summary.error:
        echo(f"error: {summary.error}", err=True)


@commands.command("push")
def push_command(
    sync: Annotated[
        str | None,
        typer.Argument(help="The sync to push; optional when exactly one is configured."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Read and diff, send nothing; report what would change."),
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, metavar="N", help="Read at most N source rows."),
    ] = None,
    retry_rejected: Annotated[
        bool,
        typer.Option(
            "--retry-rejected", help="Send again records rejected earlier, even if unchanged."
        ),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            min=0,
            metavar="SECONDS",
            help="When another run of the sync holds its lock, wait up to SECONDS for it "
            "instead of exiting at once (exit code 75).",
        ),
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    enqueue: Annotated[
        bool,
        typer.Option("--enqueue", help="Put the push on the job queue for a worker instead."),
    ] = False,
) -> None:
    """Push contacts from the source database to the provider (consent-safe, incremental)."""
    if enqueue:
        enqueue_run(pick_sync(get_settings(), sync), "push")
        return
    from campaign_bridge.keyslots import run_sharing
    from campaign_bridge.push import run_push

    settings = get_settings()
    name = pick_sync(settings, sync)
    with _progress_bar(stdout_is_tty() and not as_json) as progress:
        run = run_push(
            settings,
            name,
            dry_run=dry_run,
            limit=limit,
            retry_rejected=retry_rejected,
            progress=progress,
            wait=wait,
        )
        summary = run_async(run_sharing(settings.effective_state_url(), name, run))
    if as_json:
        emit_json(summary.to_dict())
    else:
        _print_summary(summary)
    if summary.exit_code != EXIT_OK:
        raise typer.Exit(summary.exit_code)
