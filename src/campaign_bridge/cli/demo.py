"""``campaign-bridge demo``: the whole job on embedded defaults (``make demo``)."""

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from campaign_bridge.cli._common import (
    EXIT_RUN_FAILED,
    echo,
    emit_json,
    get_settings,
    run_async,
    safe_level,
    state_of,
)

__all__ = ["commands"]

commands = typer.Typer()


class DemoProvider(StrEnum):
    MAILCHIMP = "mailchimp"
    LISTMONK = "listmonk"
    BREVO = "brevo"


def _demo_of(provider: DemoProvider) -> tuple[Any, Callable[[Any], list[str]]]:
    """The demo runner and summary of ``provider``'s sandbox (imported only when used)."""
    if provider is DemoProvider.LISTMONK:
        from campaign_bridge import demo_listmonk

        return demo_listmonk.run_listmonk_demo, demo_listmonk.summary_lines
    if provider is DemoProvider.BREVO:
        from campaign_bridge import demo_brevo

        return demo_brevo.run_brevo_demo, demo_brevo.summary_lines
    from campaign_bridge import demo

    return demo.run_demo, demo.summary_lines


@commands.command("demo")
def _demo_command(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo's files go (recreated).")
    ] = Path("demo"),
    contacts: Annotated[
        int, typer.Option("--contacts", min=10, max=200_000, help="How many demo contacts.")
    ] = 3000,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            envvar="DEMO_PORT",
            min=0,
            max=65535,
            help="The sandbox's port (must be free; 0: any free port). Default: 8089, or any "
            "free port when 8089 is taken. Env: DEMO_PORT.",
            show_default=False,
        ),
    ] = None,
    seed_source: Annotated[
        bool,
        typer.Option(
            "--seed-source",
            help="Only create the demo contacts as each configured sync's source table, where "
            "it does not exist yet (the compose stack's init step), and exit.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    provider: Annotated[
        DemoProvider,
        typer.Option("--provider", help="Which provider's sandbox the demo runs against."),
    ] = DemoProvider.MAILCHIMP,
) -> None:
    """Run the whole job on embedded defaults: SQLite source + the built-in Mailchimp sandbox.

    Creates demo contacts (some deliberately broken), pushes them to a local sandbox, sends a
    campaign there, pulls the activity back, writes unsubscribes back to the contacts table and
    pushes again. No server to install, no account needed.
    """
    if seed_source:
        _seed_sources(contacts)
        return
    from campaign_bridge.logs import configure_logging

    # The demo prints its own story; engine logs only when asked for (--log-level INFO).
    overrides = state_of().overrides
    configure_logging(
        safe_level(overrides.get("log_level") or "WARNING"), overrides.get("log_format", "auto")
    )
    say = (lambda _line: None) if as_json else echo
    run_demo, summary_lines = _demo_of(provider)
    report = run_async(run_demo(directory, contacts=contacts, say=say, port=port))
    if as_json:
        emit_json(
            {
                "directory": str(report.directory),
                "sandbox_port": report.sandbox_port,
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


def _seed_sources(contacts: int) -> None:
    from campaign_bridge.db import redact_url
    from campaign_bridge.demo_data import seed_demo_table

    for name, sync in get_settings().syncs.items():
        source = sync.source
        if not source.table:
            echo(f"{name}: source.query is set, no table to create")
            continue
        written = seed_demo_table(source.url, source.table, contacts)
        where = f"{source.table} in {redact_url(source.url)}"
        echo(
            f"{name}: created {where} with {written} demo rows"
            if written
            else f"{name}: {where} exists; left as it is"
        )
