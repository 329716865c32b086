"""What every command module shares: the invocation's state, settings, output and the event loop.

Imports nothing from the command modules (they import this), so the CLI has no import cycle.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import sys
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:  # pydantic and SQLAlchemy load when a command needs them, not at start
    from sqlalchemy.engine import Engine

    from campaign_bridge.config import LoadedSettings, Settings

__all__ = [
    "EXIT_OK",
    "EXIT_RUN_FAILED",
    "EXIT_USAGE",
    "CliState",
    "WaitOption",
    "check_sync",
    "echo",
    "emit_json",
    "emit_table",
    "enqueue_run",
    "get_settings",
    "loaded_settings",
    "run_async",
    "safe_level",
    "start_invocation",
    "state_engine",
    "state_of",
    "stdout_is_tty",
]

T = TypeVar("T")

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2

#: ``--wait SECONDS`` of the commands that run a sync under its lock (push, pull)
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0,
        metavar="SECONDS",
        help="When another run of the sync holds its lock, wait up to SECONDS for it "
        "instead of exiting at once (exit code 75).",
    ),
]

_log = logging.getLogger("campaign_bridge.cli")


@dataclass
class CliState:
    """What the global options decided for this invocation."""

    config_path: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    loaded: LoadedSettings | None = None


# Replaced by the global-options callback at the start of every invocation.
_STATE: list[CliState] = [CliState()]


def start_invocation(state: CliState) -> None:
    """Make ``state`` the current invocation's (called by the global-options callback)."""
    _STATE[0] = state


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
    import asyncio

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
    from campaign_bridge._entry import GC_THRESHOLDS

    if gc.get_freeze_count() == 0:
        gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def safe_level(level: str | None) -> str:
    """``level`` upper-cased when it is a logging level name, else INFO."""
    if level and level.upper() in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        return level.upper()
    return "INFO"


def enqueue_run(sync_name: str, direction: str) -> None:
    """``push --enqueue`` / ``pull --enqueue``: put one run on the job queue and say so."""
    from campaign_bridge.worker import enqueue

    job_id = run_async(enqueue(get_settings(), sync_name, direction))
    if job_id is None:
        echo(f"a {direction} of {sync_name} is already waiting in the queue; nothing added")
    else:
        echo(f"queued {direction} of {sync_name}: job {job_id}")


def check_sync(settings: Settings, name: str | None) -> str | None:
    """``name`` if it is a configured sync (or None); a configuration error otherwise."""
    if name is None or name in settings.syncs:
        return name
    from campaign_bridge.errors import ConfigProblem, ConfigurationError

    known = ", ".join(sorted(settings.syncs)) or "none"
    raise ConfigurationError([ConfigProblem("SYNC", f"no sync named {name!r}", f"one of: {known}")])


@contextlib.contextmanager
def state_engine(settings: Settings) -> Iterator[Engine]:
    """The state store's engine, checked reachable and migrated (SQLite is migrated on use)."""
    from campaign_bridge.store import StateStore, prepare_state_store

    url = settings.effective_state_url()
    prepare_state_store(url)
    with StateStore(url) as store:
        store.check()
        yield store.engine
