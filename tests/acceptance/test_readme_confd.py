"""The README's "Many syncs: a directory of files": its files written as shown, its commands run.

Each ```toml block starts with a comment naming its file; each line of the ```sh block runs in
that folder. Adapted as in test_readme_commands: the sandbox's port (a free one for 8089), its
audience id for the example's, the secret's directory (/run/secrets -> a temporary one, holding
the sandbox's key), `campaign-bridge` is this environment's, and doctor also gets --json so its
lines can be checked.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from campaign_bridge.db import create_engine
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "campaign-bridge")
SECTION = "### Many syncs: a directory of files"


def _section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return readme.split(SECTION, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]


def _adapt(text: str, sandbox: SandboxHandle, secrets: Path) -> str:
    text = text.replace("127.0.0.1:8089", f"127.0.0.1:{sandbox.port}")
    text = text.replace("a1b2c3d4e5", sandbox.list_id)
    return text.replace("/run/secrets", str(secrets))


def test_the_readme_conf_d_example_runs_as_written(
    tmp_path: Path, mailchimp_sandbox: SandboxHandle
) -> None:
    section = _section()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "acme-eu.key").write_text(mailchimp_sandbox.api_key + "\n")
    files = re.findall(r"```toml\n# (\S+)\n(.*?)```", section, re.S)
    assert [name for name, _ in files] == ["campaign-bridge.toml", "conf.d/acme-eu.toml"]
    for name, body in files:
        target = tmp_path / name
        target.parent.mkdir(exist_ok=True)
        target.write_text(_adapt(body, mailchimp_sandbox, secrets))
    engine = create_engine(f"sqlite:///{(tmp_path / 'acme.db').as_posix()}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT)"))
        conn.execute(sa.text("INSERT INTO contacts VALUES (1, 'ada@example.org')"))
    engine.dispose()

    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    outputs: dict[str, str] = {}
    for raw in block.splitlines():
        line = _adapt(raw.split("#", 1)[0].strip(), mailchimp_sandbox, secrets)
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value
            continue
        argv = shlex.split(line)
        assert argv[0] == "campaign-bridge"
        done = subprocess.run(
            [CLI, *argv[1:], *(["--json"] if argv[1] == "doctor" else [])],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        outputs[" ".join(argv[1:3])] = done.stdout

    assert (
        "configuration OK: 1 sync (campaign-bridge.toml); 1 included file(s)"
        in (outputs["config validate"])
    )
    assert "file:conf.d/acme-eu.toml" in outputs["config show"]
    assert (
        "env-file:CAMPAIGN_BRIDGE_SYNCS__ACME_EU__DESTINATION__API_KEY_FILE"
        in (outputs["config show"])
    )
    results = {r["name"]: r for r in json.loads(outputs["doctor --concurrency"])}
    assert results["audience [acme-eu]"]["status"] == "ok"
    assert results["syncs"]["message"] == "all 1 sync(s) checked; none failed"
