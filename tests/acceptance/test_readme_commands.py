"""Run the README's "Using it" commands the way a new user would, after the demo.

Every shell block under "## Using it" is executed line by line, in order, in one working folder:
the first block against the demo's files and sandbox, the second (`init` and what follows) on a
starter configuration. The only things adapted are ports (a free one instead of 8089 for the
sandbox, and for `serve`'s listener) and the program path (`campaign-bridge` is this
environment's, as it is after `source .venv/bin/activate`). A line ending in `&` starts in the
background; `serve` runs until its health endpoint answers, then is stopped as an operator would
(SIGINT). Every other line must exit 0.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "campaign-bridge")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def using_it_blocks() -> list[list[str]]:
    """The command lines of each ```sh block under "## Using it", comments removed."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using it", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) >= 2, (
        "README's 'Using it' should show the demo block and the own-project one"
    )
    return [
        [
            line.split("#", 1)[0].strip()
            for line in block.splitlines()
            if line.split("#", 1)[0].strip()
        ]
        for block in blocks
    ]


def _wait_until_up(url: str, process: subprocess.Popen[str], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited {process.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status < 500:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _log_file(workdir: Path, name: str) -> int:
    return os.open(workdir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


class Shell:
    """Runs README lines in one folder with this environment's `campaign-bridge`."""

    def __init__(self, workdir: Path, sandbox_port: int) -> None:
        self.workdir = workdir
        self.sandbox_port = sandbox_port
        self.background: list[subprocess.Popen[str]] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
        self.serve_port = _free_port()
        self.env["CAMPAIGN_BRIDGE_SERVER__PORT"] = str(self.serve_port)

    def argv(self, line: str) -> list[str]:
        words = shlex.split(line.replace("8089", str(self.sandbox_port)))
        program = words[0]
        assert program in {"campaign-bridge", ".venv/bin/campaign-bridge"}, line
        return [CLI, *words[1:]]

    def run(self, line: str) -> str:
        if line.endswith("&"):
            return self._start_sandbox(line[:-1].strip())
        argv = self.argv(line)
        if "serve" in argv and "sandbox" not in argv:
            return self._serve_once(argv)
        done = subprocess.run(
            argv,
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, (
            f"`{line}` exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        return done.stdout

    def _start_sandbox(self, line: str) -> str:
        process = subprocess.Popen(
            self.argv(line),
            cwd=self.workdir,
            env=self.env,
            stdout=(log := _log_file(self.workdir, "sandbox")),
            stderr=subprocess.STDOUT,
            text=True,
        )
        os.close(log)
        self.background.append(process)
        _wait_until_up(f"http://127.0.0.1:{self.sandbox_port}/_sandbox/health", process)
        return ""

    def _serve_once(self, argv: list[str]) -> str:
        process = subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=self.env,
            stdout=(log := _log_file(self.workdir, "serve")),
            stderr=subprocess.STDOUT,
            text=True,
        )
        os.close(log)
        try:
            _wait_until_up(f"http://127.0.0.1:{self.serve_port}/-/health", process)
        finally:
            _stop(process)
        return ""

    def close(self) -> None:
        for process in self.background:
            _stop(process)


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    sandbox_port = _free_port()
    demo = subprocess.run(
        [CLI, "demo", "--port", str(sandbox_port), "--contacts", "200"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    runner = Shell(tmp_path, sandbox_port)
    yield runner
    runner.close()


def test_every_using_it_command_runs_after_the_demo(shell: Shell) -> None:
    demo_block, own_block = using_it_blocks()[:2]
    outputs = [shell.run(line) for line in demo_block]
    assert any("sandbox serve" in line for line in demo_block), "the demo block starts a sandbox"

    assert own_block[0] == "campaign-bridge init", own_block[0]
    for line in own_block:
        outputs.append(shell.run(line))
        if line == "campaign-bridge init":
            # The starter file points at the sandbox's usual port; ours is a free one.
            config = shell.workdir / "campaign-bridge.toml"
            text = config.read_text(encoding="utf-8")
            config.write_text(text.replace("8089", str(shell.sandbox_port)), encoding="utf-8")
    assert any("configuration OK" in output for output in outputs)
