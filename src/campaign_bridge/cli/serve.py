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
) -> None:
    """Run the service: webhook receiver, health, metrics and status page (and the scheduler)."""
    from campaign_bridge.server import serve, use_fast_event_loop

    settings = get_settings()
    use_fast_event_loop()
    run_async(serve(settings, schedule=schedule, host=host, port=port))
