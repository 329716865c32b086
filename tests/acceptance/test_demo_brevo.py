"""`campaign-bridge demo --provider brevo`, run as a user would: every figure it prints is checked
against where the data landed (the contacts table, the state store, the sandbox's saved state),
and the second push re-subscribes nobody. `make demo DEMO_PROVIDER=brevo` passes the provider on
(make takes variables, not options: `make demo --provider brevo` would be read by make itself)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).with_name("campaign-bridge"))


def test_brevo_demo_lands_everything_and_resubscribes_nobody(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_BRIDGE_", "DEMO_"))}
    directory = tmp_path / "demo"
    done = subprocess.run(
        [
            CLI,
            "demo",
            "--provider",
            "brevo",
            "--dir",
            str(directory),
            "--contacts",
            "300",
            "--port",
            "0",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    config = (directory / "campaign-bridge.toml").read_text()
    assert 'provider = "brevo"' in config
    assert (directory / "campaign-bridge.toml").stat().st_mode & 0o077 == 0  # holds a key

    first, second, pull = report["first_push"], report["second_push"], report["pull"]
    assert pull["written_back"] > 0
    assert first["status"] == "succeeded"
    assert first["created"] > 0
    assert sum(first["rejected"].values()) > 0  # the demo's deliberately broken rows
    stats = report["campaign"]
    assert stats["sent"] > 0
    assert stats["unsubscriptions"] + stats["hardBounces"] > 0

    statuses = report["sandbox_statuses"]
    with sqlite3.connect(directory / "contacts.db") as source:
        unsubscribed, bounced = source.execute(
            "SELECT SUM(unsubscribed_at IS NOT NULL), SUM(bounced_at IS NOT NULL) FROM contacts"
        ).fetchone()
    assert (unsubscribed, bounced) == (report["source_unsubscribed"], report["source_cleaned"])
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

    assert second["status"] == "succeeded"
    assert second["provider_writes"] == 0  # nobody re-subscribed, nothing else to send


def test_make_demo_passes_the_provider_on() -> None:
    """`make demo DEMO_PROVIDER=brevo` runs the command tested above (make -n: printed only)."""
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("DEMO_PORT", "DEMO_PROVIDER")}
    shown = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "demo", "DEMO_PROVIDER=brevo"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert shown.stdout.strip().endswith("campaign-bridge demo  --provider brevo")
