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
from functools import partial
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


def _command_lines(info: str, lines: list[str]) -> list[str]:
    """A shell block's commands: comments dropped; in a console block only the `$ ` lines."""
    if info.split(" ")[0] not in {"", "sh", "console"}:
        return []
    found = []
    for line in lines:
        text = line.strip()
        if info == "console":
            if not text.startswith("$ "):
                continue
            text = text[2:]
        text = re.sub(r"\s+", " ", re.sub(r"\s+#.*$", "", text)).strip()
        if text and not text.startswith("#"):
            found.append(text)
    return found


def commands(doc: Path, contains: str) -> list[str]:
    """The command lines of the first sh/console/plain block of ``doc`` holding ``contains``."""
    for info, lines in fenced_blocks(doc):
        if any(contains in line for line in lines):
            return _command_lines(info, lines)
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


@pytest.fixture
def starter(tmp_path: Path) -> Iterator[Runner]:
    """README's path: `campaign-bridge demo`, `init` (pointed at the demo's sandbox, on a free
    port), the sandbox serving the demo's state, and a first push."""
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
        yield runner
    finally:
        runner.stop()


def test_pull_commands_run_on_the_starter_configuration(starter: Runner) -> None:
    """After the demo and `campaign-bridge init` (README), each line of pull.md's block."""
    block = commands(DOCS / "pull.md", "campaign-bridge pull customers")
    outputs = [starter.run(line) for line in block]
    assert len(outputs) == 4, block
    summaries = json.loads(outputs[-1])  # `--json`: one summary per sync run, for machines
    assert [s["sync_name"] for s in summaries] == ["customers"], outputs[-1]
    assert summaries[0]["status"] == "succeeded"
    state = starter.workdir / ".campaign-bridge" / "state.db"
    pulls = "SELECT count(*) FROM cb_sync_runs WHERE direction = 'pull' AND status = 'succeeded'"
    assert scalar(f"sqlite:///{state}", pulls) == 4


# --- docs/operations.md --------------------------------------------------------------------


def test_operations_serve_commands_start_and_answer(starter: Runner) -> None:
    """Each `serve` line until its health endpoint answers, then Ctrl-C. Off loopback it
    needs server.admin_token, as the doc says; 8080 becomes a free port."""
    block = commands(DOCS / "operations.md", "campaign-bridge serve --schedule")
    assert len(block) == 3, block
    for line in block:
        port = free_port()
        starter.env["CAMPAIGN_BRIDGE_SERVER__PORT"] = str(port)
        if "0.0.0.0" in line:
            starter.env["CAMPAIGN_BRIDGE_SERVER__ADMIN_TOKEN"] = "an-operator-token-0123456789"
        process = starter.start(line.replace("--port 8080", f"--port {port}"))
        _until(partial(_healthy, f"http://127.0.0.1:{port}/-/health"), 60, f"`{line}`")
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        starter.background.remove(next(b for b in starter.background if b[1] is process))


# --- docs/cli.md ---------------------------------------------------------------------------


def test_cli_reference_examples_run(tmp_path: Path) -> None:
    """docs/cli.md's examples (each command's --help examples) in order, in a shell as typed
    (`| jq` included), in a folder holding the operator's prod.toml; /etc becomes a temp dir."""
    lines = [
        line
        for info, block in fenced_blocks(DOCS / "cli.md")
        for line in _command_lines(info, block)
        if line.startswith("campaign-bridge ") and "[OPTIONS]" not in line
    ]
    assert len(lines) >= 9, lines
    env = {**clean_environ(), "PATH": f"{Path(CLI).parent}{os.pathsep}{os.environ['PATH']}"}
    (tmp_path / "etc").mkdir()
    Runner(tmp_path, env).run("campaign-bridge --config prod.toml init")
    for line in lines:
        done = subprocess.run(
            ["sh", "-c", line.replace("/etc/", f"{tmp_path}/etc/")], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"`{line}` exited {done.returncode}:\n{done.stderr[-3000:]}"
        if line.endswith("--json") or "| jq" in line:
            json.loads(done.stdout)
    assert (tmp_path / "etc" / "campaign-bridge.toml").is_file()
    state = f"sqlite:///{tmp_path / '.campaign-bridge' / 'state.db'}"
    assert migrations.current(state) == "0001"  # the last example: migrate downgrade 0001


# --- docs/state-store.md -------------------------------------------------------------------


@pytest.mark.parametrize(
    "engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
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

# Each documented run of a benchmark, with these flags set (replaced, or added) so it takes
# seconds. pull.py seeds campaigns sized to --events (rounded up to whole recipients).
SIZES = {
    "bench/scale.py": {"--syncs": "2", "--contacts": "40", "--keys": "1", "--workers": "1",
                       "--latency": "0.01"},
    "bench/pull.py": {"--events": "1000", "--baseline-events": "100"},
    "bench/push.py": {"--contacts": "2000", "--latency-contacts": "500", "--naive-contacts": "100"},
    "bench/webhooks.py": {"--requests": "300", "--connections": "8", "--rate": "100",
                          "--paced-seconds": "1", "--time-limit": "10"},
}  # fmt: skip
EXTRA = {"bench/scale.py": ["--no-recovery"]}
PRINTS = {  # what each prints when it ran to the end
    "bench/scale.py": r"'failed_jobs': 0",
    "bench/pull.py": r"^pull : [\d,]+ events in",
    "bench/push.py": r"^\(d\) nothing changed .* provider writes: 0",
    "bench/webhooks.py": r"^rows committed: (\d+) of \1 distinct deliveries acknowledged",
}
BENCH_DOCS = {
    "bench/scale.py": "scaling.md",
    "bench/pull.py": "pull.md",
    "bench/push.py": "push.md",
    "bench/webhooks.py": "operations.md",
}


def documented_runs(script: str) -> list[str]:
    """Every documented command line running ``script`` (all blocks of its doc)."""
    runs = []
    for info, lines in fenced_blocks(DOCS / BENCH_DOCS[script]):
        for line in _command_lines(info, lines):
            if line.startswith(f".venv/bin/python {script}"):
                runs.append(line)
    assert runs, f"docs/{BENCH_DOCS[script]} no longer runs {script}: update BENCH_DOCS"
    return runs


def tiny(script: str, line: str) -> list[str]:
    """The doc's line with the sizes in SIZES swapped in (or added)."""
    words = shlex.split(line)
    sizes = dict(SIZES[script])
    for index, word in enumerate(words[:-1]):
        if word in sizes:
            words[index + 1] = sizes.pop(word)
    extra = [item for flag, value in sizes.items() for item in (flag, value)]
    return [sys.executable, *words[1:], *extra, *EXTRA.get(script, [])]


def bench_runs() -> list[tuple[str, list[str]]]:
    """(script, argv) once for each distinct tiny run."""
    seen, runs = set(), []
    for script in SIZES:
        for line in documented_runs(script):
            argv = tiny(script, line)
            if frozenset(argv) not in seen:
                seen.add(frozenset(argv))
                runs.append((script, argv))
    return runs


def _checkout(tmp_path: Path) -> Path:
    """The repository as a stranger has it after `make demo`: with its .venv beside bench/."""
    if (REPO / ".venv").exists():
        return REPO
    shutil.copytree(REPO / "bench", tmp_path / "bench")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    return tmp_path


@pytest.mark.postgresql
@pytest.mark.parametrize(("script", "argv"), bench_runs(), ids=lambda v: " ".join(v[2:])
                         if isinstance(v, list) else v)  # fmt: skip
def test_documented_benchmarks_run_at_a_tiny_size(
    tmp_path: Path, script: str, argv: list[str]
) -> None:
    if script == "bench/pull.py":
        argv = [*argv, "--port", str(free_port())]
    done = subprocess.run(
        argv, cwd=_checkout(tmp_path), env=clean_environ(),
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(PRINTS[script], done.stdout, re.M), done.stdout[-3000:]
