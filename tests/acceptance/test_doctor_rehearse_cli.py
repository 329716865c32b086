"""`campaign-bridge doctor --rehearse`, run as a user runs it, on a configuration whose syncs use
Brevo and listmonk: the rehearsal rehearses those two providers (not Mailchimp), each check
names its provider, and the real (here unreachable) accounts are never needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CONFIG = """\
data_dir = "{root}/data"
state_url = "sqlite:///{root}/state.db"

[syncs.shop.source]
url = "sqlite:///{root}/state.db"
table = "customers"

[syncs.shop.destination]
provider = "brevo"
api_key = "xkeysib-real"
list_id = 7
base_url = "http://127.0.0.1:9/v3"

[syncs.news.source]
url = "sqlite:///{root}/state.db"
table = "customers"

[syncs.news.destination]
provider = "listmonk"
base_url = "http://127.0.0.1:9"
api_user = "bridge"
api_token = "real-token"
list_id = 3
"""


def test_doctor_rehearse_rehearses_the_providers_the_syncs_use(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(CONFIG.format(root=tmp_path.as_posix()), encoding="utf-8")
    config.chmod(0o600)
    argv = ["campaign-bridge", "-c", str(config), "doctor", "--rehearse", "--json"]
    code = f"import sys; sys.argv = {argv!r}; from campaign_bridge._entry import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    results = json.loads(done.stdout)
    rehearsal = {r["name"]: r for r in results if r["name"].startswith("rehearsal")}
    # the real accounts are unreachable (their own checks fail, exit 1); the rehearsal is not
    assert done.returncode == 1, done.stderr[-2000:]
    assert [r for r in rehearsal.values() if r["status"] != "ok"] == []
    assert "rehearsal: webhook (Brevo)" in rehearsal
    assert "rehearsal: unsubscribe at the provider (listmonk)" in rehearsal
    for provider in ("Brevo", "listmonk"):
        assert f"rehearsal: push again ({provider})" in rehearsal
        assert provider in rehearsal[f"rehearsal: pull ({provider})"]["message"]
    assert not any("Mailchimp" in name for name in rehearsal)
    assert not list(tmp_path.glob("cb_rehearsal_*"))  # the throwaway file is removed
