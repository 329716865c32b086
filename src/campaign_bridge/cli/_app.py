"""The application object, its global options, and the entry point that maps errors to exit codes.

This is the only place that turns a :class:`BridgeError` into an exit code (0 ok, 1 a run failed,
2 usage or configuration error). Command groups live in sibling modules and are added to
:data:`app` in :mod:`campaign_bridge.cli` (one place), so nothing here imports them.
"""

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from campaign_bridge import __version__
from campaign_bridge.cli._common import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    CliState,
    safe_level,
    start_invocation,
)
from campaign_bridge.errors import BridgeError, ConfigurationError
from campaign_bridge.logs import LogFormat

__all__ = ["app", "main", "run"]

_log = logging.getLogger("campaign_bridge.cli")

_EPILOG = """\
Examples:

  campaign-bridge init                     # starter config, state store

  campaign-bridge config validate          # every problem at once

  campaign-bridge config show --json       # effective settings, masked

  campaign-bridge -c prod.toml migrate     # another configuration file

Settings come from, highest first: command-line flags, CAMPAIGN_BRIDGE_* environment variables,
the TOML file (campaign-bridge.toml or --config), defaults. Reference: docs/configuration.md.

Exit codes: 0 ok, 1 a run failed, 2 usage or configuration error.
"""

app = typer.Typer(
    name="campaign-bridge",
    help="Keep an email provider (Mailchimp first) in step with your own SQL database, both ways.",
    epilog=_EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain click help: rich's help renderer costs ~100 ms of every --help
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"campaign-bridge {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _global_options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="CAMPAIGN_BRIDGE_CONFIG",
            dir_okay=False,
            metavar="PATH",
            help="Configuration file (TOML). Default: ./campaign-bridge.toml if it exists.",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            "--log-format",
            case_sensitive=False,
            help="Log format: auto (text on a terminal, JSON otherwise), text or json. "
            "Env: CAMPAIGN_BRIDGE_LOG_FORMAT.",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            metavar="LEVEL",
            help="DEBUG, INFO, WARNING or ERROR. Env: CAMPAIGN_BRIDGE_LOG_LEVEL.",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    overrides: dict[str, Any] = {}
    if log_format is not None:
        overrides["log_format"] = log_format.value
    if log_level is not None:
        overrides["log_level"] = log_level
    start_invocation(CliState(config_path=config, overrides=overrides))
    from campaign_bridge.logs import configure_logging

    # Until settings are loaded, log with what the flags say (level checked again on load).
    configure_logging(
        safe_level(log_level), log_format or LogFormat.AUTO, log_emails=False, secrets=None
    )


def _report_error(exc: BridgeError) -> None:
    """One message on stderr; a configuration error lists every problem, one per line."""
    typer.echo(f"error: {exc}", err=True)
    if isinstance(exc, ConfigurationError):
        typer.echo("every setting and its environment variable: docs/configuration.md", err=True)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="campaign-bridge")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return EXIT_OK
        if isinstance(code, int):
            return code
        typer.echo(str(code), err=True)
        return EXIT_RUN_FAILED
    except BridgeError as exc:
        _log.debug("command failed", exc_info=exc)
        _report_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    return EXIT_OK


def main() -> None:
    """Console-script entry point (``campaign-bridge``)."""
    sys.exit(run())
