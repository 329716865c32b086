"""docs/sandbox.md is executed: every ``console`` command in document order against one
``campaign-bridge sandbox serve`` (its documented options, a free port instead of 8089), with
the output compared where the document shows one; every ``python`` block (the SDK script runs
against the served sandbox, the test file runs under pytest with the plugin); the ``docker``
commands where a container engine answers."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from campaign_bridge.testing import start_process

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "sandbox.md"
DOC_HOST = "127.0.0.1:8089"


def blocks(language: str) -> list[str]:
    # the Mailchimp part; the Brevo part is run by tests/integration/sandbox_brevo/test_docs.py
    text = DOC.read_text(encoding="utf-8").split("\n# The Brevo sandbox\n")[0]
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def console_commands() -> list[tuple[str, list[str]]]:
    """``(command, the output lines shown under it)`` for every ``$`` line, in order."""
    commands: list[tuple[str, list[str]]] = []
    for block in blocks("console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            elif commands:
                commands[-1][1].append(line)
    return commands


def _serve_args(command: str) -> list[str]:
    argv = shlex.split(command)
    assert argv[:3] == ["campaign-bridge", "sandbox", "serve"], argv
    args = argv[3:]
    at = args.index("--port")
    assert args[at + 1] == "8089"
    del args[at : at + 2]  # start_process serves on a free port
    return args


def test_every_console_command_runs_as_documented() -> None:
    commands = console_commands()
    (serve, banner), rest = commands[0], commands[1:]
    assert len(commands) >= 10
    with start_process(*_serve_args(serve)) as served:
        host = served.root_url.removeprefix("http://")
        shown = [line.replace(DOC_HOST, host) for line in banner]
        assert shown == [
            f"Mailchimp sandbox on {served.root_url}/3.0  (control: /_sandbox)",
            f"  API key: {served.api_key}",
            f"  audience: {served.list_id}",
        ]
        ran = 0
        for command, expected in rest:
            if command.startswith("docker "):
                continue  # test_docker_commands
            argv = shlex.split(command.replace(DOC_HOST, host))
            if argv[0] == "pytest":
                argv = [sys.executable, "-m", "pytest", *argv[1:]]
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False
            )
            assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            if expected:
                assert done.stdout.replace(host, DOC_HOST).splitlines() == expected, command
            ran += 1
    assert ran == sum(not c.startswith("docker ") for c, _ in rest)


def test_the_sdk_script_prints_what_the_demo_holds() -> None:
    (script,) = [b for b in blocks("python") if "mailchimp_marketing" in b]
    serve, _ = console_commands()[0]
    with start_process(*_serve_args(serve)) as served:
        host = served.root_url.removeprefix("http://")
        done = subprocess.run(
            [sys.executable, "-c", script.replace(DOC_HOST, host)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["Everything's Chimpy!", "25"]


def test_the_documented_test_file_passes_with_the_plugin(pytester: pytest.Pytester) -> None:
    (test_file,) = [b for b in blocks("python") if b.startswith("# test_")]
    name = test_file.split(":", 1)[0].removeprefix("# ").strip()
    pytester.makepyfile(**{name.removesuffix(".py"): test_file})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=test_file.count("\ndef test_"))


def test_docker_commands() -> None:
    commands = [c for c, _ in console_commands() if c.startswith("docker ")]
    assert commands, "docs/sandbox.md documents the container image"
    engine = shutil.which("docker")
    if engine is None:
        pytest.skip("docker is not installed: the documented docker commands cannot run here")
    probe = subprocess.run([engine, "info"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"docker's engine does not answer: {probe.stderr.strip()[-300:]}")
    for command in commands:
        # a free host port instead of 8089, and the test's own container name
        argv = shlex.split(command.replace("-p 8089:8089", "-p 127.0.0.1::8089"))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd=ROOT)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
