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
    """Register <server.public_url>/webhooks/mailchimp/<token> with each sync's audience."""
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
