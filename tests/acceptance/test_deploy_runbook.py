"""docs/deploy.md, executed step by step the way a stranger would run it.

Every fenced `sh` block of the page runs, in order, in one shell session (variables, PATH and the
working directory carry from block to block) in a fresh copy of the repository. What the page
itself asks the reader to change is changed the same way here: `/opt`, `/etc` and `/var/lib`
become temp directories, the database URL and API key placeholders become the test's PostgreSQL
and the Mailchimp sandbox (standing in for Mailchimp), the port 8080 becomes a free port, and the
"edit bridge.env" step sets the audience, the base URL (the sandbox) and the public URL.

Blocks marked `sh docker` need a container engine: they run where `docker info` answers (else
this test says it left them out, and test_deploy_kit.py runs the compose services' commands as
processes). Blocks marked `sh systemd` need systemd and root: here the unit's own ExecStartPre and
ExecStart run instead, with its EnvironmentFile and Environment, exactly as systemd would start
it (tests/acceptance/_kit.py). `sql` blocks are grants for the reader's own database.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.acceptance import _kit

pytestmark = pytest.mark.slow

DOC = _kit.REPO / "docs" / "deploy.md"
BLOCK = re.compile(r"^```(\w+)(?: (\w+))?\n(.*?)^```", re.M | re.S)
DB_PLACEHOLDER = "postgresql://bridge:PASSWORD@db.internal:5432/bridge"
KEY_PLACEHOLDER = "YOUR-MAILCHIMP-KEY-us6"


@dataclass
class Block:
    language: str
    needs: str
    text: str


def blocks() -> list[Block]:
    text = DOC.read_text(encoding="utf-8")
    return [Block(m[1], m[2] or "", m[3]) for m in BLOCK.finditer(text)]


def _fresh_copy(target: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=_kit.REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = _kit.REPO / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    return target


class Shell:
    """One shell session across blocks: exported variables and the directory carry over."""

    def __init__(self, root: Path, start: Path, environ: dict[str, str]) -> None:
        self.profile = root / "profile.sh"
        self.cwd = root / "cwd"
        self.cwd.write_text(str(start), encoding="utf-8")
        self.profile.write_text(
            "".join(f"export {k}={_quote(v)}\n" for k, v in environ.items()), encoding="utf-8"
        )

    def run(self, text: str) -> subprocess.CompletedProcess[str]:
        script = (
            f'cd "$(cat {self.cwd})"\n. {self.profile}\nset -euo pipefail\n{text}\n'
            f"export -p > {self.profile}\npwd > {self.cwd}\n"
        )
        return subprocess.run(
            ["bash", "-c", script], env={"PATH": "/usr/bin:/bin"}, capture_output=True,
            text=True, timeout=900,
        )  # fmt: skip


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    return (
        docker is not None and subprocess.run([docker, "info"], capture_output=True).returncode == 0
    )


def test_every_shell_block_of_the_runbook_runs_in_order(
    tmp_path: Path, postgresql_url: str
) -> None:
    from campaign_bridge.demo_data import seed_demo_table
    from campaign_bridge.sandbox.mailchimp.control import seed_demo
    from campaign_bridge.sandbox.mailchimp.server import run_in_thread

    found = blocks()
    assert [b.needs for b in found if b.language == "sh"].count("") >= 6
    host = tmp_path / "host"
    paths = _kit.HostPaths(host, prefix=host / "opt" / "campaign-bridge")
    for folder in ("opt", "etc", "var"):
        (host / folder).mkdir(parents=True)
    repo = _fresh_copy(tmp_path / "repo")
    port = _kit.free_port()
    seed_demo_table(postgresql_url, "customers", 100)  # the reader's own contact table
    environ = {k: v for k, v in _kit.clean_environ().items() if k in ("PATH", "HOME", "LANG")}
    # The Makefile's tools: this checkout's development venv (`make dist` would create one).
    # The copy's pyproject.toml must not look newer than that venv's install stamp, or make
    # would re-install the shared venv from the copy, which is deleted after the test.
    environ["VENV"] = str(_kit.REPO / ".venv")
    os.utime(repo / "pyproject.toml", (0, 0))
    environ["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    shell = Shell(tmp_path, repo, environ)
    ran: list[str] = []
    left_out: list[str] = []
    unit_process: subprocess.Popen[str] | None = None

    with run_in_thread() as sandbox:
        seed_demo(sandbox.sandbox)
        try:
            for block in found:
                if block.language != "sh":
                    continue
                if block.needs == "docker" and not _docker_answers():
                    left_out.append(block.text.splitlines()[0])
                    continue
                if block.needs == "systemd":
                    assert "systemctl enable --now campaign-bridge" in block.text
                    unit_process = _start_unit(paths, port)
                    ran.append("systemd: the unit's ExecStartPre and ExecStart")
                    continue
                text = _adapt(block.text, paths, postgresql_url, sandbox.api_key, port)
                done = shell.run(text)
                assert done.returncode == 0, (
                    f"this block of docs/deploy.md failed ({done.returncode}):\n{block.text}\n"
                    f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
                )
                ran.append(block.text.splitlines()[0])
                if "bridge.env" in block.text and "install -m 0600" in block.text:
                    _edit_env_file(paths, sandbox, port)  # "Then edit .../bridge.env"
                _check_outcome(block.text, done.stdout)
        finally:
            if unit_process is not None:
                unit_process.send_signal(signal.SIGTERM)
                unit_process.wait(timeout=30)
                if unit_process.stdout:
                    unit_process.stdout.close()
    assert any("make dist" in line for line in ran)
    assert any("systemd" in line for line in ran)
    assert any("webhooks register" in line for line in ran)
    if left_out:
        print(f"left out here (no container engine answers `docker info`): {left_out}")
    bundle = paths.root / "support.json"  # the page's /tmp/campaign-bridge-support.json
    assert bundle.stat().st_mode & 0o077 == 0
    assert '"doctor"' in bundle.read_text(encoding="utf-8")


def _adapt(text: str, paths: _kit.HostPaths, database_url: str, api_key: str, port: int) -> str:
    text = paths.text(text)
    text = text.replace(DB_PLACEHOLDER, database_url).replace(KEY_PLACEHOLDER, api_key)
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    return text.replace("/tmp/campaign-bridge-support.json", str(paths.root / "support.json"))


def _edit_env_file(paths: _kit.HostPaths, sandbox: object, port: int) -> None:
    env_file = paths.root / "etc" / "bridge.env"
    lines = []
    for line in env_file.read_text(encoding="utf-8").splitlines():
        name = line.partition("=")[0]
        if name.endswith("DESTINATION__LIST_ID"):
            line = f"{name}={sandbox.list_id}"  # type: ignore[attr-defined]
        elif name.endswith("DESTINATION__BASE_URL"):
            line = f"{name}={sandbox.base_url}"  # type: ignore[attr-defined]  # stands in
        elif name == "CAMPAIGN_BRIDGE_SERVER__PUBLIC_URL":
            line = f"{name}=http://127.0.0.1:{port}"
        lines.append(line)
    lines.append(f"CAMPAIGN_BRIDGE_SERVER__PORT={port}")
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _check_outcome(text: str, stdout: str) -> None:
    """What the page says the reader should see."""
    if "campaign-bridge --version" in text:
        assert re.search(r"campaign-bridge \d", stdout), stdout
    if "doctor --rehearse" in text:
        assert "rehearsal: push again" in stdout, stdout
    if "migrate upgrade" in text:
        assert "next" not in _status_column(stdout)
    if "doctor --live" in text:
        assert "webhook registered [customers]" in stdout


def _status_column(stdout: str) -> list[str]:
    return [line.split("\t", 1)[0] for line in stdout.splitlines() if "\t" in line]


def _start_unit(paths: _kit.HostPaths, port: int) -> subprocess.Popen[str]:
    """`systemctl enable --now campaign-bridge`: the unit's commands, as systemd runs them."""
    settings = _kit.unit()
    env = _kit.unit_environment(settings, paths)
    cwd = Path(paths.text(settings["WorkingDirectory"][0]))
    cwd.mkdir(parents=True, exist_ok=True)  # StateDirectory=
    for line in settings["ExecStartPre"]:
        pre = subprocess.run(
            _kit.unit_command(line, paths), env=env, cwd=cwd, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert pre.returncode == 0, f"ExecStartPre failed:\n{pre.stdout}\n{pre.stderr}"
    process = subprocess.Popen(
        _kit.unit_command(settings["ExecStart"][0], paths), env=env, cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/-/health").status_code == 200:
                return process
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the unit's ExecStart did not start"
        time.sleep(0.2)


def test_the_grants_of_step_4_run_on_postgresql_and_mariadb(
    postgresql_url: str, mariadb_url: str
) -> None:
    """The page's `sql` block, on a contact table shaped like the reader's (the demo's)."""
    import uuid

    import sqlalchemy as sa

    from campaign_bridge.db import create_engine
    from campaign_bridge.demo_data import seed_demo_table

    [grants] = [b.text for b in blocks() if b.language == "sql"]
    postgres_part, _, mariadb_part = grants.partition("-- MariaDB / MySQL")
    role = f"bridge_{uuid.uuid4().hex[:8]}"  # the page's user `bridge`, unique on a shared server
    database = sa.make_url(mariadb_url).database
    for url, part, create, drop in (
        (
            postgresql_url,
            postgres_part.replace("TO bridge", f"TO {role}"),
            f"CREATE ROLE {role}",
            f"DROP OWNED BY {role}; DROP ROLE {role}",
        ),
        (
            mariadb_url,
            mariadb_part.replace("shop.", f"{database}.").replace("'bridge'@", f"'{role}'@"),
            f"CREATE USER '{role}'@'%'",
            f"DROP USER '{role}'@'%'",
        ),
    ):
        seed_demo_table(url, "customers", 10)
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(create))
            statements = [
                line for line in part.splitlines() if line.strip() and not line.startswith("--")
            ]
            assert len(statements) == 2
            with engine.begin() as conn:
                for statement in statements:
                    conn.execute(sa.text(statement.rstrip(";")))
            with engine.connect() as conn:
                if engine.dialect.name == "postgresql":
                    check = (
                        f"SELECT has_table_privilege('{role}', 'customers', 'SELECT') AND "
                        f"has_column_privilege('{role}', 'customers', 'mc_status', 'UPDATE') AND "
                        f"NOT has_column_privilege('{role}', 'customers', 'email', 'UPDATE')"
                    )
                    assert conn.execute(sa.text(check)).scalar() is True
                else:
                    shown = " ".join(
                        str(row[0])
                        for row in conn.execute(sa.text(f"SHOW GRANTS FOR '{role}'@'%'"))
                    )
                    assert "GRANT SELECT, UPDATE (" in shown
        finally:
            with engine.begin() as conn:
                for statement in drop.split("; "):
                    conn.execute(sa.text(statement))
            engine.dispose()
