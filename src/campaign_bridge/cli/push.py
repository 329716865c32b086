"""``campaign-bridge push``: the thin command-line edge of :mod:`campaign_bridge.push`."""

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from campaign_bridge.cli._common import (
    EXIT_OK,
    WaitOption,
    echo,
    emit_json,
    emit_table,
    enqueue_run,
    get_settings,
    run_async,
)
from campaign_bridge.errors import ConfigProblem, ConfigurationError

if TYPE_CHECKING:  # the engine is imported when the command runs, not when the CLI starts
    from rich.console import Console
    from rich.progress import ProgressColumn

    from campaign_bridge.config import Settings
    from campaign_bridge.push import PushSummary

__all__ = ["commands", "eta_column", "pick_sync", "progress_bar", "push_command"]

commands = typer.Typer()


def pick_sync(settings: "Settings", name: str | None) -> str:
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


SETTLE_SECONDS = 3.0  # no ETA before this much progress time: the first batches mislead


def eta_column() -> "ProgressColumn":
    """Time remaining at rich's recent speed, shown only after :data:`SETTLE_SECONDS` of
    progress (counted from the first contact done, not from the start of the run)."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class HonestEta(ProgressColumn):
        def render(self, task: Task) -> Text:
            first = task.fields.get("first")
            elapsed = task.get_time() - first if isinstance(first, float) else 0.0
            remaining = task.time_remaining
            if task.total is None or remaining is None or elapsed < SETTLE_SECONDS:
                return Text("ETA -:--:--", style="progress.remaining")
            minutes, seconds = divmod(int(remaining + 0.5), 60)
            hours, minutes = divmod(minutes, 60)
            return Text(f"ETA {hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")

    return HonestEta()


@contextlib.contextmanager
def progress_bar(
    enabled: bool, console: "Console | None" = None, clock: Callable[[], float] | None = None
) -> Iterator[Callable[[int, int | None], None] | None]:
    """A live bar on standard error, with logging routed above it while it is shown.

    The rate and the ETA come from rich's speed estimate over the last 30 s of updates; the
    ETA shows only once progress has run :data:`SETTLE_SECONDS` (the first updates come after
    the run's preparation and arrive in bursts, which would promise an early finish).
    """
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from campaign_bridge.logs import log_through

    columns = (
        TextColumn("[bold]push"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} contacts/s"),
        TimeElapsedColumn(),
        eta_column(),
    )
    console = console or Console(stderr=True)
    options = {"get_time": clock} if clock is not None else {}
    with Progress(*columns, console=console, transient=True, **options) as bar:  # type: ignore[arg-type]
        task = bar.add_task("push", total=None, rate="-", first=None)

        def update(done: int, total: int | None) -> None:
            current = bar.tasks[0]
            first = current.fields.get("first")
            if first is None and done:
                first = current.get_time()
            speed = current.speed
            rate = f"{speed:,.0f}" if speed else "-"
            bar.update(task, completed=done, total=total, rate=rate, first=first)

        update.bar = bar  # type: ignore[attr-defined]  # for tests: the live Progress

        def write(text: str) -> None:
            bar.console.print(text.rstrip("\n"), markup=False, highlight=False, emoji=False)

        with log_through(write):
            yield update


def _print_summary(summary: "PushSummary") -> None:
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
    for warning in summary.warnings:
        echo(f"warning: {warning}", err=True)
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
    wait: WaitOption = 0.0,
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
    with progress_bar(sys.stderr.isatty() and not as_json) as progress:
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
