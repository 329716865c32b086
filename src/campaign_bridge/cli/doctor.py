"""``campaign-bridge doctor``: check an environment before start, after start, and rehearse."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from campaign_bridge.cli._common import (
    echo,
    emit_json,
    emit_table,
    get_settings,
    loaded_settings,
    run_async,
)
from campaign_bridge.errors import ConfigurationError

if TYPE_CHECKING:
    from campaign_bridge.config import LoadedSettings
    from campaign_bridge.doctor import CheckResult
    from campaign_bridge.doctor._rehearse import Rehearsal

__all__ = ["commands"]

commands = typer.Typer()

# doctor._syncs's defaults, written here so `--help` does not import the doctor package
DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT = 60.0


@commands.command("doctor")
def _doctor_command(
    live: Annotated[
        bool,
        typer.Option("--live", help="After start: check the running service, webhooks, runs."),
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="With --live: the service's address (default: server.host and server.port).",
            show_default=False,
        ),
    ] = None,
    rehearse: Annotated[
        bool,
        typer.Option(
            "--rehearse",
            help="Run a push, webhook, pull and push round trip on this state database against "
            "an in-process sandbox of each provider the syncs use (throwaway tables, removed "
            "after).",
        ),
    ] = False,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="Also write a redacted support bundle (JSON) to this file.",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", min=1, max=256, help="Syncs checked at once (many syncs: conf.d)."
        ),
    ] = DEFAULT_CONCURRENCY,
    sync_timeout: Annotated[
        float,
        typer.Option(
            "--sync-timeout",
            min=1,
            help="Seconds one sync's checks may take; a sync that takes longer fails.",
        ),
    ] = DEFAULT_TIMEOUT,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check this environment: one line per check, with the exact fix.

    Before start (default): configuration, machine, state store, sources, provider, a sample of
    source rows through the mapping, security; pending migrations are the next step, not a
    failure. Many syncs are checked --concurrency at a time, each within --sync-timeout
    seconds, and a last `syncs` line names every failing sync. After start (--live): the
    running service, the webhook URL, locks, last runs.

    Exit status: 0 every check ok, a warning or a next step; 1 a check failed; 2 the
    configuration is invalid. Run it on the target machine, as the service user, with the
    production settings.
    """
    from campaign_bridge.doctor import exit_code

    bounds = {"concurrency": concurrency, "sync_timeout": sync_timeout}
    results, rehearsal = run_async(
        _checks(live=live, url=url, rehearse=rehearse, quiet=as_json, bounds=bounds)
    )
    if bundle is not None:
        from campaign_bridge.doctor._bundle import write_bundle

        write_bundle(bundle, _loaded_or_none(), results, rehearsal)
    _show(results, as_json)
    if bundle is not None and not as_json:
        echo(f"support bundle written to {bundle} (secrets and addresses removed)")
    code = exit_code(results)
    if code:
        raise typer.Exit(code)


async def _checks(
    *, live: bool, url: str | None, rehearse: bool, quiet: bool, bounds: dict[str, Any]
) -> "tuple[list[CheckResult], Rehearsal | None]":
    from campaign_bridge.doctor import exit_code, run_checks, run_live_checks

    if live:
        results = await run_live_checks(get_settings, url=url)
    else:
        results = await run_checks(get_settings, config_paths=_config_files(), **bounds)
    if not rehearse or exit_code(results) == 2:
        return results, None
    from campaign_bridge.doctor._rehearse import rehearse as run_rehearsal

    rehearsal = await run_rehearsal(get_settings(), say=None if quiet else echo)
    return [*results, *rehearsal.results()], rehearsal


def _show(results: "list[CheckResult]", as_json: bool) -> None:
    if as_json:
        emit_json([result.as_dict() for result in results])
        return
    emit_table(
        ["status", "check", "result", "fix"],
        [[r.status.value, r.name, r.message, r.fix] for r in results],
        title="campaign-bridge doctor",
    )


def _loaded_or_none() -> "LoadedSettings | None":
    try:
        return loaded_settings()
    except ConfigurationError:
        return None


def _config_files() -> list[Path]:
    """The configuration files (main or included) holding a secret: doctor checks who can
    read them."""
    from campaign_bridge._config_view import MASK, rows

    try:
        loaded = loaded_settings()
    except ConfigurationError:
        return []
    named = {
        row.source.removeprefix("file:").split(" (", 1)[0]
        for row in rows(loaded)
        if row.source.startswith("file:") and row.value is not None and MASK in str(row.value)
    }
    files = [loaded.config_file] if loaded.config_file else []
    return [path for path in [*files, *loaded.included_files] if str(path) in named]
