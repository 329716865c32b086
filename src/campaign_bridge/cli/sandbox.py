"""``campaign-bridge sandbox ...``: the bundled provider emulator."""

import sys
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
    if provider in ("brevo", "listmonk"):
        if provider == "brevo":
            from campaign_bridge.sandbox.brevo.server import serve_from_cli
        else:
            from campaign_bridge.sandbox.listmonk.server import serve_from_cli

        serve_from_cli(
            host=host,
            port=port,
            state_file=str(state_file) if state_file else None,
            autosave=autosave,
            seed_demo=seed_demo,
            seed=seed,
            control_token=control_token,
            echo=echo,
        )
        return
    if provider != "mailchimp":
        raise typer.BadParameter("use mailchimp, brevo or listmonk", param_hint="--provider")
    from campaign_bridge.sandbox.mailchimp import SandboxConfig, create_app
    from campaign_bridge.sandbox.mailchimp.control import seed_demo as _seed_demo
    from campaign_bridge.sandbox.mailchimp.server import bind, serve_app

    config = SandboxConfig(
        dc=dc,
        seed=seed,
        state_file=str(state_file) if state_file else None,
        autosave_seconds=autosave,
        control_token=control_token,
    )
    sandbox_app_ = create_app(config)
    sandbox = sandbox_app_.state.sandbox
    if seed_demo and not any(lst.members for lst in sandbox.lists.values()):
        _seed_demo(sandbox)
    sock = bind(host, port)  # port 0: a free port, printed below
    port = sock.getsockname()[1]
    echo(f"Mailchimp sandbox on http://{host}:{port}/3.0  (control: /_sandbox)")
    echo(f"  API key: {sandbox.default_api_key or '(none; POST /_sandbox/keys)'}")
    echo(f"  audience: {sandbox.default_list_id or '(none)'}")
    sys.stdout.flush()
    serve_app(sandbox_app_, sock=sock)
