"""``campaign-bridge demo``: the whole job on embedded defaults (``make demo``)."""

from pathlib import Path
from typing import Annotated

import typer

from campaign_bridge.cli._common import (
    EXIT_RUN_FAILED,
    echo,
    emit_json,
    run_async,
    safe_level,
    state_of,
)

__all__ = ["commands"]

commands = typer.Typer()


@commands.command("demo")
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
        safe_level(overrides.get("log_level") or "WARNING"), overrides.get("log_format", "auto")
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
