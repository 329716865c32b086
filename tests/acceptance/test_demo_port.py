"""`make demo` takes a port (`--port` / DEMO_PORT), says which it used, and fails clearly when
an explicitly chosen port is taken instead of silently moving."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("campaign-bridge"))


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DEMO_PORT", "MAKEFLAGS")}
    return {**clean, **extra}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_make_demo_fails_clearly_when_the_chosen_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        # -o: the venv is this checkout's; do not rebuild it for this test.
        done = subprocess.run(
            ["make", "-s", "-o", ".venv/.installed", "demo", f"DEMO_PORT={port}"],
            cwd=REPO,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        from_env = subprocess.run(
            [CLI, "demo", "--dir", str(tmp_path / "demo")],
            env=_env(DEMO_PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=300,
        )
    for run in (done, from_env):
        assert run.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}" in run.stderr
        assert "--port N` or DEMO_PORT=N" in run.stderr
        assert "1/6" not in run.stdout  # it stopped before creating or starting anything


def test_demo_uses_and_reports_the_port_it_was_given(tmp_path: Path) -> None:
    port = _free_port()
    done = subprocess.run(
        [CLI, "demo", "--dir", str(tmp_path / "demo"), "--contacts", "20", "--port", str(port)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"sandbox listening on http://127.0.0.1:{port}/3.0" in done.stdout
    assert f"sandbox serve --port {port}" in done.stdout  # the next steps name it too
    config = tmp_path / "demo" / "campaign-bridge.toml"
    assert config.stat().st_mode & 0o077 == 0  # it holds an API key
    as_json = subprocess.run(
        [CLI, "demo", "--dir", str(tmp_path / "again"), "--contacts", "20", "--json"],
        env=_env(DEMO_PORT="0"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["sandbox_port"] > 0
