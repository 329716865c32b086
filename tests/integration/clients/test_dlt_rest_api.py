"""A dlt ``rest_api`` pipeline (dlt from PyPI, in its own environment) pointed at
``campaign-bridge sandbox serve`` through its ``base_url``: the DuckDB tables it loads hold
exactly the sandbox's audiences, members, sent campaigns and email activity."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest

from campaign_bridge.testing import ServedSandbox
from tests.integration.clients.conftest import everything

PIPELINE = Path(__file__).with_name("dlt_pipeline.py")


@pytest.mark.timeout(900)
def test_dlt_rest_api_pipeline_loads_exactly_the_sandbox(
    populated: ServedSandbox, dlt_bin: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # no network but the sandbox
    env["DLT_DATA_DIR"] = str(tmp_path / "dlt-data")
    command = [str(dlt_bin / "python"), str(PIPELINE), populated.base_url, populated.api_key]
    run = subprocess.run(
        [*command, str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])

    with httpx.Client(base_url=populated.base_url, auth=("x", populated.api_key)) as api:
        lists = everything(api, "/lists", "lists")
        members = [
            (m["id"], lst["id"])
            for lst in lists
            for m in everything(api, f"/lists/{lst['id']}/members", "members")
        ]
        campaigns = everything(api, "/campaigns", "campaigns", status="sent")
        emails = [
            (c["id"], e["email_id"], [a["action"] for a in e["activity"]])
            for c in campaigns
            for e in everything(api, f"/reports/{c['id']}/email-activity", "emails")
        ]
    assert Counter(row[0] for row in loaded["lists"]) == Counter(lst["id"] for lst in lists)
    assert Counter(map(tuple, loaded["members"])) == Counter(members)
    assert len(members) == 23 + 2 + 3  # four pages of 7 for the first audience
    assert Counter(row[0] for row in loaded["campaigns"]) == Counter(c["id"] for c in campaigns)
    assert Counter(map(tuple, loaded["email_activity"])) == Counter((c, e) for c, e, _ in emails)
    actions = Counter((c, e, a) for c, e, acts in emails for a in acts)
    assert Counter(map(tuple, loaded["activity"])) == actions
    assert len(emails) > 7  # more than one page of email activity
