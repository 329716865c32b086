"""``campaign-bridge doctor``: check an environment before anything runs."""

from typing import Annotated

import typer

from campaign_bridge.cli._common import emit_json, emit_table, get_settings, run_async

__all__ = ["commands"]

commands = typer.Typer()


@commands.command("doctor")
def _doctor_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check this environment before anything runs: one line per check, with the exact fix.

    Exits 1 if any check fails. Run it on the target machine, as the service user, with the
    production settings, before the first start and before every release.
    """
    from campaign_bridge.doctor import exit_code, run_checks

    results = run_async(run_checks(get_settings))
    if as_json:
        emit_json([result.as_dict() for result in results])
    else:
        emit_table(
            ["status", "check", "result", "fix"],
            [[r.status.value, r.name, r.message, r.fix] for r in results],
            title="campaign-bridge doctor",
        )
    code = exit_code(results)
    if code:
        raise typer.Exit(code)
