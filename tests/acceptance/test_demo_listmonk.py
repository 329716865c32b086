"""`campaign-bridge demo --provider listmonk`, run as a user would: every figure it prints is
checked against where the data landed (the contacts table, the state store, the sandbox's
saved state), and the second push re-subscribes nobody."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.acceptance._demo_run import (
    assert_make_demo_passes_on,
    assert_second_push_resubscribes_nobody,
    run_demo,
    source_marks,
)


def test_listmonk_demo_lands_everything_and_resubscribes_nobody(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    report = run_demo("listmonk", directory)
    campaign = report["campaign"]
    assert campaign["status"] == "finished"
    assert campaign["sent"] > 0

    statuses = report["sandbox_statuses"]
    assert statuses["unsubscribed"] > 0  # the demo's subscribers who clicked unsubscribe
    # write-back: everyone unsubscribed or blocklisted at listmonk is marked in the source
    unsubscribed, bounced = source_marks(directory, report)
    assert unsubscribed == statuses["unsubscribed"]
    assert bounced == statuses.get("blocklisted", 0)
    assert report["pull"]["written_back"] == unsubscribed + bounced

    with sqlite3.connect(directory / "state" / "state.db") as state:
        landed = state.execute(
            "SELECT status, emails_sent FROM cb_campaigns WHERE provider = 'listmonk'"
        ).fetchall()
        bounces = state.execute(
            "SELECT COUNT(*) FROM cb_email_activity WHERE provider = 'listmonk' "
            "AND action = 'bounce'"
        ).fetchone()[0]
    assert landed == [("sent", campaign["sent"])]
    assert bounces == campaign["bounces"] == report["activity_rows"]

    assert_second_push_resubscribes_nobody(report)


def test_make_demo_passes_the_provider_on() -> None:
    """`make demo DEMO_PROVIDER=listmonk` runs the command tested above (make -n: printed only)."""
    assert_make_demo_passes_on("listmonk")
