"""Every command and code block in docs/sandbox.md's listmonk part runs, as documented."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from .test_control import _free_port, _serve

DOCS = Path(__file__).resolve().parents[3] / "docs" / "sandbox.md"
ROOT = DOCS.parent.parent


def _listmonk_part() -> str:
    text = DOCS.read_text()
    return text[text.index("# The listmonk sandbox") :]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _listmonk_part(), re.S)


def test_python_blocks_run() -> None:
    blocks = _blocks("python")
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), {"__name__": "docs"})


def test_documented_serve_command_runs(tmp_path: Path) -> None:
    line = next(
        line[2:] for block in _blocks("console") for line in block.splitlines() if "serve" in line
    )
    args = shlex.split(line)
    assert args[:5] == ["campaign-bridge", "sandbox", "serve", "--provider", "listmonk"]
    assert args[5:] == ["--port", "9010", "--seed-demo", "--state-file", ".listmonk.json"]
    port = _free_port()
    process, auth = _serve(port, tmp_path / ".listmonk.json", "--seed-demo")
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/api/subscribers", headers=auth)
        assert answer.json()["data"]["total"] == 25
        lists = httpx.get(f"http://127.0.0.1:{port}/api/lists", headers=auth).json()["data"]
        assert [(x["id"], x["type"], x["optin"]) for x in lists["results"]] == [
            (1, "private", "single"),
            (2, "public", "double"),
        ]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert "listmonk sandbox on http://127.0.0.1:" in output
    assert "  API user: bridge" in output


def test_documented_benchmark_runs_small() -> None:
    line = next(
        line[2:] for block in _blocks("console") for line in block.splitlines() if "bench/" in line
    )
    args = shlex.split(line)
    assert args[1] == "bench/sandbox_listmonk.py"
    assert args[2:] == ["--rows", "1000000", "--single", "2000"]
    small = [sys.executable, str(ROOT / args[1]), "--rows", "5000", "--single", "20"]
    done = subprocess.run(small, capture_output=True, text=True, timeout=120, check=True)
    assert "imported 5,000 rows" in done.stdout
    assert "single creates: 20 POST /api/subscribers" in done.stdout
    assert "subscribers held at the end: 5,020; sandbox CPU" in done.stdout
