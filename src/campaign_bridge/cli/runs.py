"""``campaign-bridge runs`` and ``campaign-bridge rejected``: what ran, and what was refused."""

from typing import Annotated

import typer

from campaign_bridge.cli._common import (
    check_sync,
    echo,
    emit_json,
    emit_table,
    get_settings,
    state_engine,
)

__all__ = ["commands"]

commands = typer.Typer()

_ERROR_WIDTH = 120


def _when(moment: object) -> str:
    text = getattr(moment, "isoformat", lambda **_: str(moment))(timespec="seconds")
    return str(text).replace("+00:00", "Z")


@commands.command("runs")
def _runs_command(
    sync: Annotated[
        str | None, typer.Argument(help="Only this sync's runs.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, metavar="N", help="Show N runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recent push and pull runs, newest first: status, duration, counts, errors; dry runs
    are marked."""
    from campaign_bridge.runs import counts_text, recent_runs

    settings = get_settings()
    with state_engine(settings) as engine:
        runs = recent_runs(engine, check_sync(settings, sync), limit)
    if as_json:
        emit_json([run.to_dict() for run in runs])
        return
    if not runs:
        echo("no runs recorded yet")
        return
    rows = []
    for run in runs:
        error = (run.error or "").replace("\n", " ")
        if len(error) > _ERROR_WIDTH:
            error = error[: _ERROR_WIDTH - 1] + "…"
        rows.append(
            [
                _when(run.started_at),
                run.sync,
                run.direction,
                "DRY RUN" if run.dry_run else "",
                run.status,
                "" if run.seconds is None else f"{run.seconds:.1f}",
                counts_text(run.counts),
                error,
            ]
        )
    emit_table(
        ["started (UTC)", "sync", "direction", "mode", "status", "seconds", "counts", "error"],
        rows,
        title="recent runs",
    )


@commands.command("rejected")
def _rejected_command(
    first: Annotated[
        str | None,
        typer.Argument(
            metavar="retry",
            help="`retry`: have the next push send the listed records again, even unchanged.",
            show_default=False,
        ),
    ] = None,
    second: Annotated[
        str | None,
        typer.Argument(metavar="SYNC", help="Only this sync.", show_default=False),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", metavar="R", help="Only rejections for reason R."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Records the provider or the mapping refused: why, since when, with their source key.

    They are not sent again until they change; `rejected retry` sends them with the next push.
    """
    from campaign_bridge import rejections

    retry = first == "retry"
    if not retry and second is not None:
        raise typer.BadParameter(f"expected `retry SYNC` or `SYNC`, not {first} {second}")
    settings = get_settings()
    sync = check_sync(settings, second if retry else first)
    if retry:
        names = [sync] if sync is not None else sorted(settings.syncs)
        with state_engine(settings) as engine:
            counts = {name: rejections.retry(engine, name, reason) for name in names}
        if as_json:
            emit_json({"retry": counts})
            return
        for name, count in counts.items():
            echo(f"{name}: {count} rejected record(s) will be sent again by the next push")
        if sum(counts.values()):
            echo("run it now with: campaign-bridge push" + (f" {sync}" if sync else " SYNC"))
        return
    with state_engine(settings) as engine:
        found = rejections.open_rejections(engine, sync, reason)
    if as_json:
        emit_json([item.to_dict() for item in found])
        return
    if not found:
        echo("no open rejections")
        return
    emit_table(
        ["sync", "source key", "reason", "since (UTC)", "last seen", "attempts", "message"],
        [
            [
                item.sync,
                item.source_key,
                item.reason,
                _when(item.first_seen),
                _when(item.last_seen),
                item.attempts,
                item.message,
            ]
            for item in found
        ],
        title=f"{len(found)} open rejection(s)",
    )
