"""``campaign-bridge webhooks ...``: the provider's webhooks that point at this service."""

from typing import Annotated

import typer

from campaign_bridge.cli._common import emit_json, emit_table, get_settings, run_async

__all__ = ["group"]

group = typer.Typer(
    name="webhooks",
    help="Manage the provider's webhooks that point at this service.",
    no_args_is_help=True,
)


@group.command("register")
def _webhooks_register_command(
    sync: Annotated[
        str | None, typer.Argument(help="Sync whose audience to register (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Register <server.public_url>/webhooks/<provider>/<token> with each sync's audience."""
    from campaign_bridge.webhook_registration import register_webhooks

    results = run_async(register_webhooks(get_settings(), sync))
    if as_json:
        emit_json(results)
        return
    emit_table(
        ["sync", "list_id", "webhook_id", "url"],
        [[r["sync"], r["list_id"], r["webhook_id"], r["url"]] for r in results],
        title="registered webhooks",
    )


@group.command("parked")
def _webhooks_parked_command(
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List webhook events parked after failing to apply too often, with their error."""
    from campaign_bridge.db import create_engine
    from campaign_bridge.webhook_parking import parked_events

    engine = create_engine(get_settings().effective_state_url())
    try:
        events = parked_events(engine, limit)
    finally:
        engine.dispose()
    if as_json:
        emit_json(
            [
                {
                    "id": e.id,
                    "type": e.event_type,
                    "list_id": e.list_id,
                    "received_at": e.received_at.isoformat(),
                    "parked_at": e.parked_at.isoformat(),
                    "attempts": e.attempts,
                    "error": e.error,
                }
                for e in events
            ]
        )
        return
    emit_table(
        ["id", "type", "list_id", "received_at", "attempts", "error"],
        [
            [e.id, e.event_type, e.list_id or "", e.received_at.isoformat(), e.attempts, e.error]
            for e in events
        ],
        title="parked webhook events",
    )


@group.command("retry-parked")
def _webhooks_retry_parked_command(
    event_id: Annotated[
        list[int] | None, typer.Argument(help="Ids to retry (default: every parked event).")
    ] = None,
) -> None:
    """Put parked webhook events back in the queue; a running `serve` applies them next."""
    from campaign_bridge.cli._common import echo
    from campaign_bridge.db import create_engine
    from campaign_bridge.webhook_parking import retry_parked

    engine = create_engine(get_settings().effective_state_url())
    try:
        count = retry_parked(engine, event_id or None)
    finally:
        engine.dispose()
    echo(f"{count} parked webhook event(s) back in the queue")
