"""``campaign-bridge state show|reset SYNC``: where a sync's next runs start reading."""

import sys
from typing import Annotated

import typer

from campaign_bridge.cli._common import (
    EXIT_USAGE,
    check_sync,
    echo,
    emit_json,
    emit_table,
    get_settings,
    state_engine,
)

__all__ = ["group"]

group = typer.Typer(
    name="state",
    help="Show or reset a sync's cursors (where its next push and pull start reading).",
    no_args_is_help=True,
)

_SyncArgument = Annotated[str, typer.Argument(help="The sync.", show_default=False)]


@group.command("show")
def _state_show_command(
    sync: _SyncArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every cursor of SYNC: stream, value, when it last moved."""
    from campaign_bridge.runs import cursors

    settings = get_settings()
    with state_engine(settings) as engine:
        found = cursors(engine, str(check_sync(settings, sync)))
    if as_json:
        emit_json([cursor.to_dict() for cursor in found])
        return
    if not found:
        echo(f"{sync}: no cursors (the next push and pull read everything)")
        return
    emit_table(
        ["stream", "cursor", "updated (UTC)"],
        [[c.stream, c.value, c.updated_at.isoformat(timespec="seconds")] for c in found],
        title=f"cursors of {sync}",
    )


@group.command("reset")
def _state_reset_command(
    sync: _SyncArgument,
    stream: Annotated[
        str | None,
        typer.Option("--stream", metavar="NAME", help="Only this stream (see `state show`)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Forget SYNC's cursors: its next push re-reads the whole source (sending only what
    differs from what was last pushed) and its next pull re-reads its history window."""
    from campaign_bridge.runs import cursors, reset_cursors

    settings = get_settings()
    name = str(check_sync(settings, sync))
    with state_engine(settings) as engine:
        known = [c for c in cursors(engine, name) if stream is None or c.stream == stream]
        if not known:
            echo(f"{name}: nothing to reset" + (f" (no stream {stream!r})" if stream else ""))
            return
        what = ", ".join(c.stream for c in known)
        if not yes and not sys.stdin.isatty():
            echo(f"would reset {len(known)} cursor(s) of {name} ({what}); not a terminal, so")
            echo("nothing changed: pass --yes to confirm", err=True)
            raise typer.Exit(EXIT_USAGE)
        if not yes and not typer.confirm(f"reset {len(known)} cursor(s) of {name} ({what})?"):
            echo("nothing changed")
            raise typer.Exit(EXIT_USAGE)
        removed = reset_cursors(engine, name, stream)
    echo(f"{name}: reset {removed} cursor(s) ({what}); the next runs read from the start")
