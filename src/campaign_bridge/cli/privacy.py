"""``forget``, ``subject-export`` and ``purge``: erasure, access requests and retention.

The engines are :mod:`campaign_bridge.erasure`, :mod:`campaign_bridge.access` and
:mod:`campaign_bridge.retention`; docs/privacy.md explains what each does to which table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from campaign_bridge.cli._common import (
    EXIT_USAGE,
    echo,
    emit_json,
    emit_table,
    get_settings,
    run_async,
)

__all__ = ["commands"]

commands = typer.Typer()


@commands.command("forget")
def _forget_command(
    who: Annotated[
        str | None,
        typer.Argument(
            help="The person: an email address, or a source key the bridge or the source knows.",
            show_default=False,
        ),
    ] = None,
    sync: Annotated[
        str | None,
        typer.Argument(help="Only this sync's audience; default: every sync.", show_default=False),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    pending: Annotated[
        bool,
        typer.Option(
            "--pending", help="Carry out the erasure requests the sources hold ([erasure])."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be erased; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Erase a person: permanently delete them at the provider and from every bridge table.

    Only a salted hash is kept, so a later push does not add them again unless their source
    row comes back with fresh consent (docs/privacy.md). The provider cannot undo this, and
    Mailchimp will not let the address be re-added through the API: it asks first unless --yes.
    """
    from campaign_bridge.erasure import forget
    from campaign_bridge.erasure_requests import process_requests

    settings = get_settings()
    if pending:
        names = [sync] if sync else sorted(settings.syncs)
        if who is not None and who in settings.syncs and sync is None:
            names = [who]
        reports = []
        for name in names:
            reports += run_async(process_requests(settings, name, dry_run=dry_run))
        payload = [r.as_dict() for r in reports]
        if as_json:
            emit_json(payload)
        else:
            echo(f"{'would erase' if dry_run else 'erased'} {len(reports)} person(s) on request")
        return
    if who is None:
        echo(
            "error: give the person to erase (an email address or source key), or --pending",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)
    if not yes and not dry_run:
        where = f"sync {sync}" if sync else "every sync"
        typer.confirm(
            f"Permanently delete this person at the provider ({where}) and from the bridge? "
            "This cannot be undone",
            abort=True,
        )
    report = run_async(forget(settings, who, sync, dry_run=dry_run))
    if as_json:
        emit_json(report.as_dict())
        return
    rows: list[tuple[str, object]] = [
        (f"provider: {where}", result) for where, result in sorted(report.provider.items())
    ]
    rows += [(f"removed from {table}", count) for table, count in sorted(report.removed.items())]
    title = f"forget {report.subject}" + (" (dry run)" if dry_run else "")
    emit_table(["", "result"], rows, title=title)


@commands.command("subject-export")
def _subject_export_command(
    who: Annotated[
        str,
        typer.Argument(help="The person: an email address, or a source key.", show_default=False),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Write the JSON document here.", show_default=False),
    ],
    sync: Annotated[
        str | None,
        typer.Option("--sync", help="Only this sync; default: every sync.", show_default=False),
    ] = None,
) -> None:
    """Answer an access request: everything the bridge and the provider hold about a person.

    Writes one readable JSON document with a short explanation of each section. The file
    holds personal data: hand it to the person and delete it.
    """
    from campaign_bridge.access import subject_export

    document = run_async(subject_export(get_settings(), who, sync))
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    sections = sum(1 for rows in document["bridge"].values() if rows)
    echo(
        f"wrote {out} ({sections} bridge section(s) with data, "
        f"{len(document['provider'])} audience(s))"
    )


@commands.command("purge")
def _purge_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count the rows past retention; delete nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Delete what is past retention ([retention]), a bounded batch per transaction.

    `serve --schedule` runs this on retention.schedule. Safe while the service runs: each
    transaction deletes at most retention.batch_rows rows of one key range.
    """
    from campaign_bridge.db import create_engine
    from campaign_bridge.retention import past_retention, purge
    from campaign_bridge.store import prepare_state_store

    settings = get_settings()
    url = settings.effective_state_url()
    prepare_state_store(url)
    engine = create_engine(url)
    try:
        if dry_run:
            past = past_retention(engine, settings.retention)
            if as_json:
                emit_json(past)
            else:
                emit_table(
                    ["table", "rows past retention"],
                    sorted(past.items()),
                    title="purge (dry run)",
                )
            return
        results = purge(engine, settings.retention)
    finally:
        engine.dispose()
    if as_json:
        emit_json([r.as_dict() for r in results])
        return
    emit_table(
        ["table", "kept (days)", "deleted", "transactions", "longest transaction (s)"],
        [
            (r.table, r.days, r.deleted, r.transactions, f"{r.longest_transaction:.3f}")
            for r in results
        ],
        title="purge",
    )
