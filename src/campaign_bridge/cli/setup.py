"""``campaign-bridge init`` and ``migrate``: create the configuration and the state store."""

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from campaign_bridge.cli._common import EXIT_USAGE, echo, emit_json, get_settings, state_of
from campaign_bridge.cli.config import JSON_OPTION

if TYPE_CHECKING:
    from campaign_bridge.config import Settings

__all__ = ["commands"]

commands = typer.Typer()


# --- init --------------------------------------------------------------------------------------


@commands.command(
    "init",
    epilog="Examples:\n\n  campaign-bridge init\n\n"
    "  campaign-bridge --config /etc/campaign-bridge.toml init --force",
)
def init(
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing configuration file.")
    ] = False,
) -> None:
    """Write a starter campaign-bridge.toml and create the embedded state store.

    The starter file points at the demo SQLite database and the local Mailchimp sandbox, so
    everything works offline; its comments show how to switch to your own database and a real
    Mailchimp account. The file goes to --config (or CAMPAIGN_BRIDGE_CONFIG) if given, else
    ./campaign-bridge.toml.
    """
    from campaign_bridge import _config_view as view
    from campaign_bridge.db import redact_url

    state = state_of()
    from campaign_bridge.config import DEFAULT_CONFIG_FILE

    target = state.config_path or Path(DEFAULT_CONFIG_FILE)
    if target.exists() and not force:
        echo(f"error: {target} already exists; use --force to overwrite it", err=True)
        raise typer.Exit(EXIT_USAGE)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(view.starter_config(*_sandbox_account()), encoding="utf-8")
    echo(f"wrote {target}")
    state.config_path = target
    settings = get_settings()
    url = _migrate_up(settings)
    echo(f"state store ready: {redact_url(url)}")
    echo("next: campaign-bridge config validate, then campaign-bridge doctor")


# --- migrate -----------------------------------------------------------------------------------


class MigrateAction(enum.StrEnum):
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    CURRENT = "current"


@commands.command(
    "migrate",
    epilog="Examples:\n\n"
    "  campaign-bridge migrate                 # upgrade to the newest schema\n\n"
    "  campaign-bridge migrate current --json\n\n"
    "  campaign-bridge migrate downgrade 0001  # back to revision 0001",
)
def migrate(
    action: Annotated[
        MigrateAction,
        typer.Argument(metavar="ACTION", help="upgrade (default), downgrade or current."),
    ] = MigrateAction.UPGRADE,
    revision: Annotated[
        str | None,
        typer.Argument(
            metavar="REVISION",
            help="Target revision: default 'head' for upgrade; required for downgrade "
            "('base' removes every bridge table).",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Create or change the bridge's own tables (cb_*) in the state store (state_url)."""
    from campaign_bridge import migrations
    from campaign_bridge.db import redact_url

    settings = get_settings()
    url = settings.effective_state_url()
    shown = redact_url(url)
    if action is MigrateAction.CURRENT:
        now, head = migrations.current(url), migrations.head()
        if json_output:
            emit_json({"state_url": shown, "current": now, "head": head, "up_to_date": now == head})
        else:
            status = "up to date" if now == head else "behind: run `campaign-bridge migrate`"
            echo(f"state store {shown}: revision {now or 'none'} (head {head}, {status})")
        return
    if action is MigrateAction.DOWNGRADE:
        if not revision:
            echo("error: migrate downgrade needs a REVISION (e.g. 'base')", err=True)
            raise typer.Exit(EXIT_USAGE)
        before = migrations.current(url)
        migrations.downgrade(url, revision)
    else:
        before = migrations.current(url)
        _prepare_sqlite(settings)
        migrations.upgrade(url, revision or "head")
    after = migrations.current(url)
    if json_output:
        emit_json({"state_url": shown, "action": action.value, "from": before, "to": after})
    else:
        echo(f"state store {shown}: {action.value} {before or 'none'} -> {after or 'none'}")


def _sandbox_account() -> tuple[str, str]:
    """The key and audience the bundled sandbox seeds by default, so the starter file works."""
    try:
        from campaign_bridge.sandbox.mailchimp import SandboxConfig, create_app

        sandbox = create_app(SandboxConfig()).state.sandbox
        return str(sandbox.default_api_key), str(sandbox.default_list_id)
    except (ImportError, AttributeError):  # an older sandbox: placeholders to replace
        return "00000000000000000000000000000000-us6", "replace-me"


def _prepare_sqlite(settings: "Settings") -> None:
    from campaign_bridge.db import dialect_of

    if not settings.state_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    elif dialect_of(settings.state_url) == "sqlite":
        database = settings.state_url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)


def _migrate_up(settings: "Settings") -> str:
    from campaign_bridge import migrations

    _prepare_sqlite(settings)
    url = settings.effective_state_url()
    migrations.upgrade(url)
    return url
