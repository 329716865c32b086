"""The command blocks of docs/scaling.md, docs/pull.md and docs/state-store.md, run the way a
stranger would run them: each block is read from the doc and executed line by line, in order.

Adapted only: ports (free ones instead of 8089 and serve's 8080), the program path
(`campaign-bridge` is this environment's) and, for the benchmarks, the sizes (the doc's flags are
kept, their values made tiny so each runs in seconds). A doc line that no longer parses, names a
sync that does not exist or exits non-zero fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from campaign_bridge import migrations
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle, run_in_thread
from tests.acceptance._kit import CLI, REPO, clean_environ, free_port
from tests.integration.scale.helpers import make_contacts, scalar, write_config

pytestmark = pytest.mark.slow
DOCS = REPO / "docs"


def fenced_blocks(doc: Path) -> list[tuple[str, list[str]]]:
    """(info string, lines) of each fenced block; backslash continuations joined."""
    blocks: list[tuple[str, list[str]]] = []
    info: str | None = None
    lines: list[str] = []
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if info is None:
                info, lines = line[3:].strip(), []
            else:
                joined = "\n".join(lines).replace("\\\n", " ")
                blocks.append((info, joined.splitlines()))
                info = None
        elif info is not None:
            lines.append(line)
    return blocks


def commands(doc: Path, contains: str) -> list[str]:
    """The command lines of the first sh/console/plain block of ``doc`` holding ``contains``."""
    for info, lines in fenced_blocks(doc):
        if info.split(" ")[0] in {"", "sh", "console"} and any(contains in ln for ln in lines):
            found = []
            for line in lines:
                text = line.strip()
                if info == "console":
                    if not text.startswith("$ "):
                        continue
                    text = text[2:]
                text = re.sub(r"\s+#.*$", "", text).strip()
                if text and not text.startswith("#"):
                    found.append(text)
            return found
    raise AssertionError(f"{doc.name} has no command block with {contains!r}")


def _argv(line: str) -> list[str]:
    words = shlex.split(line)
    assert words[0] == "campaign-bridge", line
    return [CLI, *words[1:]]


def _until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}"
        time.sleep(0.2)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


class Runner:
    """Runs doc lines in one folder; long-running commands (worker, serve) in the background."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.background: list[tuple[str, subprocess.Popen[str]]] = []

    def run(self, line: str) -> str:
        done = subprocess.run(
            _argv(line), cwd=self.workdir, env=self.env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"`{line}` exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done.stdout

    def start(self, line: str) -> subprocess.Popen[str]:
        log = (self.workdir / f"{len(self.background)}.log").open("w")
        process = subprocess.Popen(
            _argv(line), cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        log.close()
        self.background.append((line, process))
        return process

    def logs(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(self.workdir.glob("*.log")))

    def stop(self) -> None:
        """Ctrl-C each one, as in a terminal; each must have run until then."""
        crashed = [line for line, process in self.background if process.poll() is not None]
        for _, process in self.background:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for _, process in self.background:
            process.wait(timeout=60)
        assert not crashed, f"{crashed} ended before they were stopped:\n{self.logs()}"


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    with run_in_thread() as handle:
        yield handle


# --- docs/scaling.md ---------------------------------------------------------------------


def test_scaling_worker_model_runs_as_documented(
    tmp_path: Path, postgresql_url: str, sandbox: SandboxHandle
) -> None:
    """migrate, a worker, serve, then push and pull on the queue: both jobs succeed."""
    block = commands(DOCS / "scaling.md", "campaign-bridge worker")
    assert len(block) == 5, block
    config = write_config(
        tmp_path / "campaign-bridge.toml", postgresql_url,
        {"crm": make_contacts(tmp_path / "crm.db", "crm", 120)},
        base_url=sandbox.base_url, api_key=sandbox.api_key, list_id=sandbox.list_id,
    )  # fmt: skip
    assert config.name == "campaign-bridge.toml"  # found in the working folder, as `init` makes it
    port = free_port()
    runner = Runner(tmp_path, {**clean_environ(), "CAMPAIGN_BRIDGE_SERVER__PORT": str(port)})
    outputs = []
    try:
        for line in block:
            if line.split()[1] in {"worker", "serve"}:
                runner.start(line)
                continue
            outputs.append(runner.run(line))
        _until(lambda: _healthy(f"http://127.0.0.1:{port}/-/health"), 60, "serve's health")
        jobs = "SELECT count(*) FROM procrastinate_jobs WHERE queue_name IN ('push', 'pull')"
        done = f"{jobs} AND status = 'succeeded'"
        _until(lambda: scalar(postgresql_url, done) == 2, 90, "the push and pull jobs")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{runner.logs()}") from None
    finally:
        runner.stop()
    assert migrations.is_current(postgresql_url)
    assert any("queued push of crm" in out for out in outputs), outputs
    assert len(sandbox.sandbox.lists[sandbox.list_id].members) == 120
    runs = "SELECT count(*) FROM cb_sync_runs WHERE status = 'succeeded' AND direction = '{}'"
    assert scalar(postgresql_url, runs.format("push")) == 1
    assert scalar(postgresql_url, runs.format("pull")) == 1


# --- docs/pull.md --------------------------------------------------------------------------


def test_pull_commands_run_on_the_starter_configuration(tmp_path: Path) -> None:
    """After the demo and `campaign-bridge init` (README), each line of pull.md's block."""
    block = commands(DOCS / "pull.md", "campaign-bridge pull customers")
    port = free_port()
    env = {**clean_environ(), "CAMPAIGN_BRIDGE_SERVER__PORT": str(free_port())}
    demo = subprocess.run(
        [CLI, "demo", "--port", str(port), "--contacts", "50"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    runner = Runner(tmp_path, env)
    runner.run("campaign-bridge init")
    config = tmp_path / "campaign-bridge.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("8089", str(port)))
    runner.start(f"campaign-bridge sandbox serve --port {port} --state-file demo/sandbox.json")
    try:
        _until(lambda: _healthy(f"http://127.0.0.1:{port}/_sandbox/health"), 30, "the sandbox")
        runner.run("campaign-bridge push")
        outputs = [runner.run(line) for line in block]
    finally:
        runner.stop()
    assert len(outputs) == 4, block
    summaries = json.loads(outputs[-1])  # `--json`: one summary per sync run, for machines
    assert [s["sync_name"] for s in summaries] == ["customers"], outputs[-1]
    assert summaries[0]["status"] == "succeeded"
    state = tmp_path / ".campaign-bridge" / "state.db"
    pulls = "SELECT count(*) FROM cb_sync_runs WHERE direction = 'pull' AND status = 'succeeded'"
    assert scalar(f"sqlite:///{state}", pulls) == 4


# --- docs/state-store.md -------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_state_store_migrate_commands(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    """upgrade creates the store (the SQLite file and its folder), current names the head,
    downgrade base leaves no cb_ table."""
    block = commands(DOCS / "state-store.md", "campaign-bridge migrate upgrade")
    assert [line.split()[2] for line in block] == ["upgrade", "current", "downgrade"], block
    env = clean_environ()
    runner = Runner(tmp_path, env)
    runner.run("campaign-bridge init")
    if engine == "sqlite":
        url = f"sqlite:///{tmp_path / '.campaign-bridge' / 'state.db'}"
        shutil.rmtree(tmp_path / ".campaign-bridge", ignore_errors=True)
    else:
        url = str(request.getfixturevalue("postgresql_url"))
        env["CAMPAIGN_BRIDGE_STATE_URL"] = url
    upgrade, current, downgrade = block
    runner.run(upgrade)
    assert migrations.current(url) == migrations.head()
    assert migrations.head() in runner.run(current)
    runner.run(downgrade)
    assert migrations.current(url) is None
    tables = (
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'cb\\_%' ESCAPE '\\'"
        if engine == "sqlite"
        else "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'cb\\_%'"
    )
    assert scalar(url, tables) == 1  # cb_alembic_version, empty, as the doc says
    assert scalar(url, "SELECT count(*) FROM cb_alembic_version") == 0


# --- benchmarks, at a tiny size ------------------------------------------------------------

TINY = {
    "bench/scale.py": {"--syncs": "2", "--contacts": "40", "--keys": "1", "--workers": "1"},
    "bench/pull.py": {"--events": "1000", "--baseline-events": "100"},
}
EXTRA = {
    "bench/scale.py": ["--latency", "0.01", "--no-recovery"],
    "bench/pull.py": [],  # its smallest run is one seeded campaign (about 300,000 events)
}


def bench_command(doc: str, script: str) -> list[str]:
    """The doc's command with its flags kept and the sizes in TINY swapped in."""
    line = commands(DOCS / doc, script)[0]
    words = shlex.split(line)
    assert words[:2] == [".venv/bin/python", script], line
    for index, word in enumerate(words[:-1]):
        if word in TINY[script]:
            words[index + 1] = TINY[script][word]
    missing = set(TINY[script]) - set(words)
    assert not missing, f"{doc} no longer passes {missing} to {script}: update TINY"
    return [sys.executable, *words[1:], *EXTRA[script]]


def _checkout(tmp_path: Path) -> Path:
    """The repository as a stranger has it after `make demo`: with its .venv beside bench/."""
    if (REPO / ".venv").exists():
        return REPO
    shutil.copytree(REPO / "bench", tmp_path / "bench")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    return tmp_path


@pytest.mark.postgresql
@pytest.mark.parametrize(("doc", "script"), [("scaling.md", "bench/scale.py")])
def test_scaling_benchmark_runs_at_a_tiny_size(tmp_path: Path, doc: str, script: str) -> None:
    argv = bench_command(doc, script)
    done = subprocess.run(
        argv, cwd=_checkout(tmp_path), env=clean_environ(),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "'failed_jobs': 0" in done.stdout, done.stdout[-3000:]


@pytest.mark.postgresql
def test_pull_benchmark_runs_at_its_smallest_size(tmp_path: Path) -> None:
    argv = [*bench_command("pull.md", "bench/pull.py"), "--port", str(free_port())]
    done = subprocess.run(
        argv, cwd=_checkout(tmp_path), env={**os.environ},
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^pull : [\d,]+ events in", done.stdout, re.M), done.stdout[-3000:]
