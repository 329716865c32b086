"""``campaign-bridge config show|validate|docs``: inspect and check the effective configuration.

Thin wrappers over the loader (:mod:`campaign_bridge._config_sources`) and
:mod:`campaign_bridge._config_view`.
"""

from pathlib import Path
from typing import Annotated

import typer

from campaign_bridge.cli._common import EXIT_USAGE, echo, emit_json, emit_table, loaded_settings
from campaign_bridge.errors import ConfigurationError

__all__ = ["JSON_OPTION", "group"]

group = typer.Typer(
    name="config",
    help="Inspect and check the effective configuration.",
    no_args_is_help=True,
)

JSON_OPTION = typer.Option("--json", help="Machine-readable JSON on stdout.")


# --- config show / validate / docs -----------------------------------------------------------


@group.command(
    "show",
    epilog="Examples:\n\n  campaign-bridge config show\n\n"
    "  campaign-bridge config show --json | jq .values",
)
def config_show(json_output: Annotated[bool, JSON_OPTION] = False) -> None:
    """Print the effective configuration, secrets masked, and where each value came from.

    Sources: default, file:<path> (the main file or the included file that defines the sync),
    env:<VAR>, env-file:<VAR>_FILE, or cli.
    """
    from campaign_bridge import _config_view as view
    from campaign_bridge.db import redact_url

    loaded = loaded_settings()
    rows = view.rows(loaded)
    if json_output:
        emit_json(
            {
                "config_file": str(loaded.config_file) if loaded.config_file else None,
                "included_files": [str(path) for path in loaded.included_files],
                "settings": view.masked_tree(loaded.settings),
                "state_url": redact_url(loaded.settings.effective_state_url()),
                "values": [row.as_dict() for row in rows],
                "warnings": loaded.warnings,
            }
        )
        return
    where = str(loaded.config_file) if loaded.config_file else "none (defaults and environment)"
    echo(f"configuration file: {where}")
    if loaded.included_files:
        echo(f"included files: {_files_text(loaded.included_files)}")
    echo(f"state store: {redact_url(loaded.settings.effective_state_url())}")
    emit_table(
        ["setting", "value", "source"],
        [(r.key, _as_text(r.value), r.source) for r in rows],
        title=None,
    )


def _files_text(files: "list[Path]") -> str:
    shown = ", ".join(str(path) for path in files[:5])
    return f"{len(files)} ({shown}{', ...' if len(files) > 5 else ''})"


def _as_text(value: object) -> str:
    """A value as a person reads it in the table: TOML-like booleans, lists joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return "" if not value else str(value)
    return str(value)


@group.command(
    "validate",
    epilog="Examples:\n\n  campaign-bridge config validate\n\n"
    "  campaign-bridge --config prod.toml config validate --json",
)
def config_validate(json_output: Annotated[bool, JSON_OPTION] = False) -> None:
    """Check the configuration (file, environment, flags) and report EVERY problem at once.

    Exit code 0 when it is valid, 2 when it is not.
    """
    from campaign_bridge import _config_view as view

    try:
        loaded = loaded_settings()
    except ConfigurationError as exc:
        if not json_output:
            raise
        emit_json({"ok": False, "problems": view.problems_as_dicts(exc), "source": exc.source})
        raise typer.Exit(EXIT_USAGE) from None
    count = len(loaded.settings.syncs)
    if json_output:
        emit_json(
            {
                "ok": True,
                "config_file": str(loaded.config_file) if loaded.config_file else None,
                "included_files": [str(path) for path in loaded.included_files],
                "syncs": sorted(loaded.settings.syncs),
                "warnings": loaded.warnings,
            }
        )
        return
    noun = "sync" if count == 1 else "syncs"
    where = f" ({loaded.config_file})" if loaded.config_file else ""
    if loaded.included_files:
        where += f"; {len(loaded.included_files)} included file(s)"
    echo(f"configuration OK: {count} {noun}{where}")


@group.command("docs", hidden=True)
def config_docs(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    cli: Annotated[
        bool, typer.Option("--cli", help="The command reference (docs/cli.md) instead.")
    ] = False,
) -> None:
    """Print the settings reference (docs/configuration.md), generated from the model."""
    from campaign_bridge import _config_view as view

    if cli:
        from campaign_bridge.cli._app import app
        from campaign_bridge.cli._reference import reference_markdown

        text = reference_markdown(app)
    else:
        text = view.reference_markdown()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        echo(f"wrote {output}")
