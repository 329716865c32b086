"""``campaign-bridge pull``: the thin command-line edge of :mod:`campaign_bridge.pull`."""

from typing import Annotated

import typer

from campaign_bridge.cli._common import (
    WaitOption,
    emit_json,
    emit_table,
    enqueue_run,
    get_settings,
    run_async,
    stdout_is_tty,
)

__all__ = ["commands"]

commands = typer.Typer()


@commands.command("pull")
def _pull_command(
    sync: Annotated[
        str | None, typer.Argument(help="Sync to pull (default: every sync).", show_default=False)
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DATE",
            help="Read everything since DATE (YYYY-MM-DD or ISO time, UTC), overriding the "
            "history window and the saved cursors; nothing is duplicated.",
            show_default=False,
        ),
    ] = None,
    wait: WaitOption = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    enqueue: Annotated[
        bool,
        typer.Option("--enqueue", help="Put the pull on the job queue for a worker instead."),
    ] = False,
) -> None:
    """Pull campaigns, reports, email activity and member statuses into the database (and write
    status changes back to your table when configured)."""
    from campaign_bridge.keyslots import run_sharing
    from campaign_bridge.pull import parse_since, pull_with_progress

    settings = get_settings()
    names = [sync] if sync else sorted(settings.syncs)
    if enqueue:
        for name in names:
            enqueue_run(name, "pull")
        return
    run = pull_with_progress(
        settings, names, since=parse_since(since), tty=stdout_is_tty(), wait=wait
    )
    summaries = run_async(run_sharing(settings.effective_state_url(), sync, run))
    if as_json:
        emit_json([s.as_dict() for s in summaries])
        return
    for summary in summaries:
        counts = summary.counts()
        emit_table(
            ["what", "count"],
            [[name.replace("_", " "), value] for name, value in counts.items()],
            title=f"pull {summary.sync_name}: {summary.status} in {summary.seconds:.1f}s",
        )
