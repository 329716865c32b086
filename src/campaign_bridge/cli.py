"""The command-line edge: parse arguments, load settings, configure logging, run, map errors.

Everything that touches the terminal lives here: this is the only place that configures logging,
calls :func:`asyncio.run` (through :func:`run_async`) and turns a :class:`BridgeError` into an
exit code (0 ok, 1 a run failed, 2 usage or configuration error).

Adding a command (other modules): write a thin function at the bottom of this file, in the
section marked for it. Get validated settings with :func:`get_settings`, run async work with
:func:`run_async`, print with :func:`emit_json` / :func:`emit_table` / :func:`echo`, and let
typed errors from :mod:`campaign_bridge.errors` propagate: :func:`main` maps them to exit codes.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from campaign_bridge import __version__
from campaign_bridge.config import LoadedSettings, LogFormat, Settings
from campaign_bridge.errors import BridgeError, ConfigurationError

__all__ = [
    "EXIT_OK",
    "EXIT_RUN_FAILED",
    "EXIT_USAGE",
    "CliState",
    "app",
    "echo",
    "emit_json",
    "emit_table",
    "get_settings",
    "loaded_settings",
    "main",
    "run",
    "run_async",
    "sandbox_app",
    "state_of",
    "stdout_is_tty",
    "webhooks_app",
]

T = TypeVar("T")

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2

_log = logging.getLogger(__name__)

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
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)

sandbox_app = typer.Typer(
    name="sandbox",
    help="The bundled provider emulator: a faithful local Mailchimp API for development and tests.",
    no_args_is_help=True,
)
webhooks_app = typer.Typer(
    name="webhooks",
    help="Manage the provider's webhooks that point at this service.",
    no_args_is_help=True,
)
config_app = typer.Typer(
    name="config",
    help="Inspect and check the effective configuration.",
    no_args_is_help=True,
)
app.add_typer(config_app)
app.add_typer(sandbox_app)
app.add_typer(webhooks_app)


@dataclass
class CliState:
    """What the global options decided; stored as the click context's ``obj``."""

    config_path: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    loaded: LoadedSettings | None = None


# Replaced by the global-options callback at the start of every invocation.
_STATE: list[CliState] = [CliState()]


# ---------------------------------------------------------------------------------------------
# Helpers for commands
# ---------------------------------------------------------------------------------------------


def stdout_is_tty() -> bool:
    """True when standard output is a terminal (rich output), False for pipes and files."""
    return sys.stdout.isatty()


def echo(message: str = "", *, err: bool = False) -> None:
    """Print one line of plain text to stdout (or stderr)."""
    typer.echo(message, err=err)


def emit_json(payload: Any) -> None:
    """Print ``payload`` as JSON on stdout, for machines (``--json``)."""
    typer.echo(json.dumps(payload, indent=2, sort_keys=False, default=str))


def emit_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
) -> None:
    """A rich table on a terminal; tab-separated text with a header line otherwise."""
    if stdout_is_tty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*("" if cell is None else str(cell) for cell in row))
        Console().print(table)
        return
    if title:
        typer.echo(f"# {title}")
    typer.echo("\t".join(columns))
    for row in rows:
        typer.echo("\t".join("" if cell is None else str(cell) for cell in row))


def state_of() -> CliState:
    """The :class:`CliState` of this invocation (what the global options decided)."""
    return _STATE[0]


def loaded_settings() -> LoadedSettings:
    """Validated settings with the source of every value (loaded once per invocation).

    Applies the global options (``--config``, ``--log-level``, ``--log-format``) and reconfigures
    logging with the loaded values, registering every secret for masking. Raises
    :class:`ConfigurationError` (every problem) on invalid configuration; :func:`main` prints it
    and exits 2.
    """
    state = state_of()
    if state.loaded is None:
        from campaign_bridge.config import load_settings_with_provenance
        from campaign_bridge.logs import configure_logging

        loaded = load_settings_with_provenance(state.config_path, overrides=state.overrides)
        settings = loaded.settings
        configure_logging(
            settings.log_level, settings.log_format, settings.log_emails, secrets=settings
        )
        for warning in loaded.warnings:
            _log.warning(warning)
        state.loaded = loaded
    return state.loaded


def get_settings() -> Settings:
    """The validated :class:`Settings` for this invocation; see :func:`loaded_settings`."""
    return loaded_settings().settings


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion: the single ``asyncio.run`` of the program."""
    tune_garbage_collector()
    return asyncio.run(coro)


def tune_garbage_collector() -> None:
    """Set the cyclic garbage collector up for a long batch job.

    A push or pull allocates millions of short-lived objects. With the default thresholds the
    collector runs every 700 allocations and regularly walks every long-lived object (the
    imported modules alone are several hundred thousand), which cost about a tenth of a push's
    CPU. What start-up created is moved out of the collector's sight, and young objects are
    collected less often; reference counting still frees almost everything at once. Only the
    first call freezes: what a later command leaves behind stays collectable. (No collection
    first: it costs ~40 ms of every run's start, and what it would free is a few kilobytes.)
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()
    gc.set_threshold(50_000, 20, 100)


# ---------------------------------------------------------------------------------------------
# Global options
# ---------------------------------------------------------------------------------------------


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
    _STATE[0] = CliState(config_path=config, overrides=overrides)
    from campaign_bridge.logs import configure_logging

    # Until settings are loaded, log with what the flags say (level checked again on load).
    configure_logging(
        _safe_level(log_level), log_format or LogFormat.AUTO, log_emails=False, secrets=None
    )


def _safe_level(level: str | None) -> str:
    if level and level.upper() in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        return level.upper()
    return "INFO"


# ---------------------------------------------------------------------------------------------
# Entry point and error mapping
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Commands owned by the configuration/foundation helper: init, migrate, config show|validate.
# ---------------------------------------------------------------------------------------------

from campaign_bridge import _cli_config as _cli_config  # noqa: E402  (registers commands)

# ---------------------------------------------------------------------------------------------
# Commands added by other modules. Keep each one thin: parse options, get_settings(),
# run_async(...), print. One small block per command, in this order:
#
#   sandbox serve            -> @sandbox_app.command("serve")       (sandbox helper)
#   push                     -> @app.command("push")                (push helper)
#   pull                     -> @app.command("pull")                (pull helper)
#   serve                    -> @app.command("serve")               (serve helper)
#   webhooks register        -> @webhooks_app.command("register")   (serve helper)
#   doctor                   -> @app.command("doctor")              (later)
#   demo                     -> @app.command("demo")                (later)
# ---------------------------------------------------------------------------------------------

# --- sandbox serve (sandbox helper) ---


@sandbox_app.command("serve")
def _sandbox_serve_command(
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
    """Serve the Mailchimp emulator (API under /3.0, control API under /_sandbox)."""
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


# --- push (push helper) ---

from campaign_bridge import _cli_push as _cli_push  # noqa: E402  (registers `push`)

# --- pull (pull helper) ---


@app.command("pull")
def _pull_command(
    sync: Annotated[
        str | None, typer.Argument(help="Sync to pull (default: every sync).", show_default=False)
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DATE",
            help="Read everything since DATE (YYYY-MM-DD or ISO time, UTC), overriding the "
            "history window and the saved cursors; nothing is duplicated.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Pull campaigns, reports, email activity and member statuses into the database (and write
    status changes back to your table when configured)."""
    from campaign_bridge.pull import parse_since, pull_with_progress

    settings = get_settings()
    names = [sync] if sync else sorted(settings.syncs)
    summaries = run_async(
        pull_with_progress(settings, names, since=parse_since(since), tty=stdout_is_tty())
    )
    if as_json:
        emit_json([s.as_dict() for s in summaries])
        return
    for summary in summaries:
        counts = summary.counts()
        emit_table(
            ["what", "count"],
            [[name.replace("_", " "), value] for name, value in counts.items()],
            title=f"pull {summary.sync_name}: {summary.status} in {summary.seconds:.1f}s",
        )


# --- serve, webhooks register (serve helper) ---


@app.command("serve")
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


@webhooks_app.command("register")
def _webhooks_register_command(
    sync: Annotated[
        str | None, typer.Argument(help="Sync whose audience to register (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Register <server.public_url>/webhooks/mailchimp/<token> with each sync's audience."""
    from campaign_bridge.server import register_webhooks

    results = run_async(register_webhooks(get_settings(), sync))
    if as_json:
        emit_json(results)
        return
    emit_table(
        ["sync", "list_id", "webhook_id", "url"],
        [[r["sync"], r["list_id"], r["webhook_id"], r["url"]] for r in results],
        title="registered webhooks",
    )


# --- doctor ---


@app.command("doctor")
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


# --- demo ---


@app.command("demo")
def _demo_command(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo's files go (recreated).")
    ] = Path("demo"),
    contacts: Annotated[
        int, typer.Option("--contacts", min=10, max=200_000, help="How many demo contacts.")
    ] = 3000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Run the whole job on embedded defaults: SQLite source + the built-in Mailchimp sandbox.

    Creates demo contacts (some deliberately broken), pushes them to a local sandbox, sends a
    campaign there, pulls the activity back, writes unsubscribes back to the contacts table and
    pushes again. No server to install, no account needed.
    """
    from campaign_bridge.demo import run_demo, summary_lines
    from campaign_bridge.logs import configure_logging

    # The demo prints its own story; engine logs only when asked for (--log-level INFO).
    overrides = state_of().overrides
    configure_logging(
        _safe_level(overrides.get("log_level") or "WARNING"), overrides.get("log_format", "auto")
    )
    say = (lambda _line: None) if as_json else echo
    report = run_async(run_demo(directory, contacts=contacts, say=say))
    if as_json:
        emit_json(
            {
                "directory": str(report.directory),
                "source_rows": report.dataset.contacts,
                "first_push": report.first_push.to_dict(),
                "pull": report.pull.counts(),
                "second_push": report.second_push.to_dict(),
                "campaign": report.report,
                "activity_rows": report.activity_rows,
                "sandbox_statuses": dict(report.sandbox_statuses),
                "source_unsubscribed": report.source_unsubscribed,
                "source_cleaned": report.source_cleaned,
            }
        )
    else:
        for line in summary_lines(report):
            echo(line)
    failed = [s for s in (report.first_push, report.second_push) if s.status != "succeeded"]
    if failed or report.pull.status != "succeeded":
        raise typer.Exit(EXIT_RUN_FAILED)
