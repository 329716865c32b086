"""``campaign-bridge serve``: webhooks, health, metrics, status page and the scheduler."""

from typing import Annotated

import typer

from campaign_bridge.cli._common import get_settings, run_async

__all__ = ["commands"]

commands = typer.Typer()


@commands.command("serve")
def _serve_command(
    schedule: Annotated[
        bool,
        typer.Option("--schedule", help="Also run each sync's push and pull on its schedule."),
    ] = False,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (server.host).", show_default=False),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="Port to listen on (server.port).", show_default=False),
    ] = None,
    public_status: Annotated[
        bool,
        typer.Option(
            "--public-status",
            help="Allow a non-loopback address without server.admin_token: the status page "
            "is then open to anyone who reaches the port.",
        ),
    ] = False,
) -> None:
    """Run the service: webhook receiver, health, metrics and status page (and the scheduler).

    On an address other machines reach (e.g. 0.0.0.0) it needs server.admin_token, or
    --public-status to publish the status page knowingly.
    """
    from campaign_bridge.server import serve, use_fast_event_loop

    settings = get_settings()
    use_fast_event_loop()
    run_async(serve(settings, schedule=schedule, host=host, port=port, public_status=public_status))
