"""`campaign-bridge demo --provider P` and `make demo DEMO_PROVIDER=P` run as a user would, for
the per-provider demo tests (each checks what its provider's demo must land)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

CLI = str(Path(sys.executable).with_name("campaign-bridge"))


def run_demo(provider: str, directory: Path) -> dict[str, Any]:
    """Run the demo into ``directory``; its --json report. The configuration it wrote names
    ``provider`` and is readable by its owner only (it holds a key or token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_BRIDGE_", "DEMO_"))}
    args = ["--provider", provider, "--dir", str(directory), "--contacts", "300", "--port", "0"]
    done = subprocess.run(
        [CLI, "demo", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    config = (directory / "campaign-bridge.toml").read_text()
    assert f'provider = "{provider}"' in config
    assert (directory / "campaign-bridge.toml").stat().st_mode & 0o077 == 0
    first = report["first_push"]
    assert first["status"] == "succeeded"
    assert first["created"] > 0
    assert sum(first["rejected"].values()) > 0  # the demo's deliberately broken rows
    return report


def source_marks(directory: Path, report: dict[str, Any]) -> tuple[int, int]:
    """(unsubscribed, bounced) rows of the demo's contacts table, as the report says."""
    with sqlite3.connect(directory / "contacts.db") as source:
        unsubscribed, bounced = source.execute(
            "SELECT SUM(unsubscribed_at IS NOT NULL), SUM(bounced_at IS NOT NULL) FROM contacts"
        ).fetchone()
    assert (unsubscribed, bounced) == (report["source_unsubscribed"], report["source_cleaned"])
    return int(unsubscribed), int(bounced)


def assert_second_push_resubscribes_nobody(report: dict[str, Any]) -> None:
    second = report["second_push"]
    assert second["status"] == "succeeded"
    assert second["provider_writes"] == 0  # nobody re-subscribed, nothing else to send


def assert_make_demo_passes_on(provider: str) -> None:
    """`make demo DEMO_PROVIDER=<provider>` runs `campaign-bridge demo --provider <provider>`
    (make -n: printed only)."""
    repo = Path(__file__).resolve().parents[2]
    # As a user types it: not as a sub-make of `make test` (MAKELEVEL makes make print
    # "Entering/Leaving directory" lines, MAKEFLAGS would pass the outer make's options on).
    outer = ("DEMO_PORT", "DEMO_PROVIDER", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {k: v for k, v in os.environ.items() if k not in outer}
    shown = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "demo", f"DEMO_PROVIDER={provider}"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert shown.stdout.strip().endswith(f"campaign-bridge demo  --provider {provider}")
