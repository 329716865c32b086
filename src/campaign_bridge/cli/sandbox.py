"""``campaign-bridge sandbox ...``: the bundled provider emulator."""

import importlib
from pathlib import Path
from typing import Annotated

import typer

from campaign_bridge.cli._common import echo

__all__ = ["group"]

group = typer.Typer(
    name="sandbox",
    help="The bundled provider emulators: faithful local Mailchimp, Brevo and listmonk APIs for "
    "development and tests.",
    no_args_is_help=True,
)


@group.command("serve")
def _sandbox_serve_command(
    provider: Annotated[
        str,
        typer.Option(
            "--provider",
            help="Which provider to emulate: mailchimp (API under /3.0), brevo (under /v3) or "
            "listmonk (under /api).",
        ),
    ] = "mailchimp",
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: a free one).")] = 8089,
    state_file: Annotated[
        Path | None,
        typer.Option("--state-file", help="JSON snapshot: loaded at start, saved at exit."),
    ] = None,
    autosave: Annotated[
        float, typer.Option("--autosave", help="Also save the snapshot every N seconds (0: off).")
    ] = 0.0,
    seed_demo: Annotated[
        bool, typer.Option("--seed-demo", help="Add demo members, merge fields and interests.")
    ] = False,
    dc: Annotated[str, typer.Option("--dc", help="Data centre of the emulated account.")] = "us6",
    seed: Annotated[int, typer.Option("--seed", help="Seed for ids and keys.")] = 1,
    control_token: Annotated[
        str | None,
        typer.Option("--control-token", help="Require X-Sandbox-Token on /_sandbox calls."),
    ] = None,
) -> None:
    """Serve a provider emulator (Mailchimp under /3.0, Brevo under /v3 or listmonk under /api;
    control API under /_sandbox)."""
    if provider not in ("mailchimp", "brevo", "listmonk"):
        raise typer.BadParameter("use mailchimp, brevo or listmonk", param_hint="--provider")
    from campaign_bridge.sandbox._server import ServeRequest

    server = importlib.import_module(f"campaign_bridge.sandbox.{provider}.server")
    request = ServeRequest(
        host=host,
        port=port,
        state_file=str(state_file) if state_file else None,
        autosave=autosave,
        seed_demo=seed_demo,
        seed=seed,
        control_token=control_token,
        echo=echo,
    )
    server.serve_from_cli(request, **({"dc": dc} if provider == "mailchimp" else {}))
