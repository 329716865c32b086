"""Follow the README like a new user: a fresh copy of the tree, a fresh venv, `make demo`.

Then check the demo's printed figures against where the data really landed: the sandbox's saved
state (demo/sandbox.json), the source table after write-back (demo/contacts.db) and the state store.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


def _fresh_copy(target: Path) -> Path:
    for name in _tracked_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, destination)
    return target


def _readme_commands() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", quickstart, re.S)
    assert block, "the README's quickstart has no command block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def _figure(output: str, label: str, pattern: str) -> tuple[int, ...]:
    line = next((ln for ln in output.splitlines() if ln.strip().startswith(label)), None)
    assert line is not None, f"the summary has no '{label}' line:\n{output}"
    match = re.search(pattern, line)
    assert match, f"'{line}' does not match {pattern}"
    return tuple(int(group) for group in match.groups())


def test_readme_quickstart_demo_from_a_fresh_copy(tmp_path: Path) -> None:
    assert _readme_commands() == ["make demo", "make test"]
    work = _fresh_copy(tmp_path / "campaign-bridge")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CAMPAIGN_BRIDGE_", "VIRTUAL_ENV", "PYTHON"))
    }
    env["PYTHON"] = sys.executable if sys.version_info >= (3, 11) else "python3"
    done = subprocess.run(
        ["make", "demo", f"PYTHON={env['PYTHON']}"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = done.stdout
    assert done.returncode == 0, f"make demo failed:\n{output[-4000:]}\n{done.stderr[-4000:]}"
    assert (work / ".venv" / "bin" / "campaign-bridge").exists()

    demo = work / "demo"
    sandbox = json.loads((demo / "sandbox.json").read_text(encoding="utf-8"))
    audience = sandbox["lists"][0]
    statuses = Counter(member["status"] for member in audience["members"])

    # Push: every consenting, valid contact was created in the sandbox, the broken ones rejected.
    created, rejected = _figure(output, "first push", r"created (\d+), updated 0, rejected (\d+)")
    assert created == len(audience["members"])
    assert rejected == 7  # the demo dataset's seven deliberately broken rows

    # Campaign and pull: the report's counters and the landed activity agree with the sandbox.
    sent, unsubscribed, hard = _figure(
        output, "campaign ", r"sent to (\d+),.*unsubscribed (\d+), bounces (\d+) hard"
    )
    assert sent == created
    assert unsubscribed == statuses["unsubscribed"]
    assert hard == statuses["cleaned"]
    (landed,) = _figure(output, "pull", r"cb_email_activity holds (\d+)")
    with sqlite3.connect(demo / "state" / "state.db") as state:
        (rows,) = state.execute("SELECT COUNT(*) FROM cb_email_activity").fetchone()
        (sent_rows,) = state.execute(
            "SELECT COUNT(*) FROM cb_email_activity WHERE action = 'sent'"
        ).fetchone()
    assert landed == rows
    assert sent_rows in (0, sent)  # 'sent' events land when the pull reads sent-to

    # Write-back: the contacts table holds exactly the sandbox's unsubscribes and bounces.
    marked_unsub, marked_bounced = _figure(
        output, "contacts table", r"(\d+) marked unsubscribed, (\d+) marked bounced"
    )
    assert marked_unsub == statuses["unsubscribed"]
    assert marked_bounced == statuses["cleaned"]
    with sqlite3.connect(demo / "contacts.db") as source:
        (opted_out,) = source.execute(
            "SELECT COUNT(*) FROM contacts WHERE unsubscribed_at IS NOT NULL "
            "AND marketing_opt_in = 0"
        ).fetchone()
    assert opted_out == statuses["unsubscribed"]

    # The second push re-subscribes nobody.
    assert "re-subscribe 0" in next(
        line for line in output.splitlines() if line.strip().startswith("second push")
    )
    assert statuses["subscribed"] == created - statuses["unsubscribed"] - statuses["cleaned"]
    assert "Next steps:" in output
