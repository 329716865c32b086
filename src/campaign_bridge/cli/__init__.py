"""The command line: ``campaign-bridge`` and its command groups.

One module per command group, each with its own Typer app (``commands`` for top-level commands,
``group`` for a named group); this module is the one place that adds them to :data:`app`.
Command modules import only :mod:`campaign_bridge.cli._common` (never this package or each
other's commands), so there is no import cycle. Everything that touches the terminal lives in
this package: it is the only place that configures logging or calls :func:`asyncio.run` (through
:func:`~campaign_bridge.cli._common.run_async`).

Adding a command: write a module here with a thin function that parses options, gets validated
settings with ``get_settings()``, runs async work with ``run_async(...)`` and prints with
``echo`` / ``emit_json`` / ``emit_table``; add its app below. Typed errors from
:mod:`campaign_bridge.errors` propagate: :func:`run` maps them to exit codes.
"""

from __future__ import annotations

from campaign_bridge import __version__
from campaign_bridge.cli import (
    config,
    demo,
    doctor,
    history,
    pull,
    push,
    runs,
    sandbox,
    serve,
    setup,
    state,
    webhooks,
    worker,
)
from campaign_bridge.cli._app import app, main, run

__all__ = ["__version__", "app", "main", "run"]

for _commands in (
    setup.commands,
    push.commands,
    pull.commands,
    serve.commands,
    doctor.commands,
    runs.commands,
    history.commands,
):
    app.add_typer(_commands)
for _group in (config.group, state.group, sandbox.group, webhooks.group):
    app.add_typer(_group)
app.add_typer(demo.commands)
app.add_typer(worker.commands)
