"""``campaign-bridge history``: one contact's whole story, from the state store."""

from typing import Annotated

import typer

from campaign_bridge.cli._common import (
    EXIT_RUN_FAILED,
    echo,
    emit_json,
    emit_table,
    get_settings,
    state_engine,
)

__all__ = ["commands"]

commands = typer.Typer()


@commands.command("history")
def _history_command(
    contact: Annotated[
        str,
        typer.Argument(
            metavar="EMAIL_OR_KEY",
            help="The contact's email address, its source key, or its address hash as logs "
            "show it.",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A contact's whole story in time order: pushes, rejections, provider status changes and
    who made them, webhooks, consent-ledger entries, write-backs; and why they are
    unsubscribed or were not sent."""
    from campaign_bridge.history import contact_history, explain_absence, scopes_of

    settings = get_settings()
    with state_engine(settings) as engine:
        history = contact_history(engine, scopes_of(settings), contact)
    explain_absence(settings, history)
    if as_json:
        emit_json(history.to_dict())
        return
    if not history.found:
        echo(f"nothing recorded about {contact!r} in any configured sync")
        for answer in history.answers:
            echo(f"  {answer}")
        raise typer.Exit(EXIT_RUN_FAILED)
    for answer in history.answers:
        echo(f"why: {answer}")
    if history.current:
        emit_table(
            ["sync", "source key", "provider status", "last pushed (UTC)"],
            [
                [row["sync"], row["source_key"], row["provider_status"], row["last_pushed_at"]]
                for row in history.current
            ],
            title="now",
        )
    emit_table(
        ["when (UTC)", "sync", "what", "detail"],
        [
            [
                event.at.isoformat(timespec="seconds").replace("+00:00", "Z") if event.at else "",
                event.sync or "",
                event.kind + (" (dry run)" if event.dry_run else ""),
                event.text,
            ]
            for event in history.events
        ],
        title="history",
    )
