"""``make consent-model`` (documented in docs/push.md) runs the consent model test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]


def test_make_consent_model_runs_the_deep_budget_it_is_given() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    # One example of one step: the target's plumbing, not a search (which CI runs itself).
    env |= {"CONSENT_MODEL_EXAMPLES": "1", "CONSENT_MODEL_STEPS": "1"}
    done = subprocess.run(
        ["make", "--no-print-directory", "consent-model"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "CONSENT_MODEL_DEEP=1" in output  # make echoes the command it runs
    assert "1 passed" in output
