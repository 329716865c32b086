"""Every command and code block in docs/sandbox.md's Brevo part runs, as documented."""

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


def _brevo_part() -> str:
    text = DOCS.read_text()
    part = text[text.index("# The Brevo sandbox") :]
    return part.split("\n# The listmonk sandbox", 1)[0]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _brevo_part(), re.S)


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
    assert args[:5] == ["campaign-bridge", "sandbox", "serve", "--provider", "brevo"]
    assert args[5:] == ["--port", "8090", "--seed-demo", "--state-file", ".brevo.json"]
    port = _free_port()
    process, key = _serve(port, tmp_path / ".brevo.json", "--seed-demo")
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/v3/contacts", headers={"api-key": key})
        assert answer.json()["count"] == 25
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert "Brevo sandbox on http://127.0.0.1:" in output


def test_documented_benchmark_runs_small() -> None:
    line = next(
        line[2:] for block in _blocks("console") for line in block.splitlines() if "bench/" in line
    )
    args = shlex.split(line)
    assert args[1] == "bench/sandbox_brevo.py"
    small = [sys.executable, str(ROOT / args[1]), "--contacts", "20000", "--batch", "10000"]
    done = subprocess.run(small, capture_output=True, text=True, timeout=120, check=True)
    assert "imported 20,000 contacts in 2 calls of 10,000 (jsonBody)" in done.stdout
    assert "contacts held at the end: 20,000; sandbox peak RSS" in done.stdout
