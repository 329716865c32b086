"""`campaign-bridge demo --provider brevo`, run as a user would: every figure it prints is checked
against where the data landed (the contacts table, the state store, the sandbox's saved state),
and the second push re-subscribes nobody. `make demo DEMO_PROVIDER=brevo` passes the provider on
(make takes variables, not options: `make demo --provider brevo` would be read by make itself)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.acceptance._demo_run import (
    assert_make_demo_passes_on,
    assert_second_push_resubscribes_nobody,
    run_demo,
    source_marks,
)


def test_brevo_demo_lands_everything_and_resubscribes_nobody(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    report = run_demo("brevo", directory)
    assert report["pull"]["written_back"] > 0
    stats = report["campaign"]
    assert stats["sent"] > 0
    assert stats["unsubscriptions"] + stats["hardBounces"] > 0

    statuses = report["sandbox_statuses"]
    unsubscribed, bounced = source_marks(directory, report)
    # write-back: whoever unsubscribed or bounced at Brevo through the campaign is marked
    assert bounced >= stats["hardBounces"]
    assert unsubscribed >= stats["unsubscriptions"]
    assert statuses.get("cleaned", 0) >= stats["hardBounces"]

    with sqlite3.connect(directory / "state" / "state.db") as state:
        landed = state.execute(
            "SELECT status, emails_sent FROM cb_campaigns WHERE provider = 'brevo'"
        ).fetchall()
        opens = state.execute(
            "SELECT COUNT(*) FROM cb_email_activity WHERE provider = 'brevo' AND action = 'open'"
        ).fetchone()[0]
    assert landed == [("sent", stats["sent"])]
    assert opens == stats["uniqueViews"]  # one row per recipient who opened

    assert_second_push_resubscribes_nobody(report)


def test_make_demo_passes_the_provider_on() -> None:
    """`make demo DEMO_PROVIDER=brevo` runs the command tested above (make -n: printed only)."""
    assert_make_demo_passes_on("brevo")
