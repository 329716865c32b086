"""deploy/sandbox.Dockerfile: its ENTRYPOINT + CMD and HEALTHCHECK run as processes here (the
port swapped for a free one, the state file for a temporary one); the image itself is built
only where a container engine answers, and the build is skipped with the reason otherwise."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from campaign_bridge.testing import start_process

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "deploy" / "sandbox.Dockerfile"


def instruction(name: str) -> list[str]:
    """The JSON (exec) form of a Dockerfile instruction, continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith(name + " "):
            rest = line[len(name) :].strip()
            if name == "HEALTHCHECK":
                rest = rest.split(" CMD ", 1)[1]
            found: list[str] = json.loads(rest)
            return found
    raise AssertionError(f"{DOCKERFILE.name} has no {name}")


def test_the_image_command_serves_the_sandbox_and_passes_its_healthcheck(tmp_path: Path) -> None:
    command = instruction("ENTRYPOINT") + instruction("CMD")
    assert command[:3] == ["campaign-bridge", "sandbox", "serve"]
    args = command[3:]
    port_at = args.index("--port")
    assert args[port_at + 1] == "8089"
    del args[port_at : port_at + 2]  # start_process serves on a free port instead
    state_file = tmp_path / "state.json"
    args[args.index("/var/lib/sandbox/state.json")] = str(state_file)

    with start_process(*args) as served:
        port = served.root_url.rsplit(":", 1)[1]
        api = httpx.get(f"http://127.0.0.1:{port}/3.0/lists", auth=("x", served.api_key))
        assert api.status_code == 200
        assert api.json()["lists"][0]["stats"]["member_count"] > 0  # --seed-demo
        health = instruction("HEALTHCHECK")
        assert health[:2] == ["python", "-c"]
        script = health[2].replace(":8089/", f":{port}/")
        assert subprocess.run([sys.executable, "-c", script], timeout=30).returncode == 0
        served.control.add_fault("503", path=".*")  # the healthcheck reads the control API
        assert subprocess.run([sys.executable, "-c", script], timeout=30).returncode == 0
    assert json.loads(state_file.read_text())["lists"]  # saved at exit (SIGTERM)


def _engine() -> str:
    for name in ("docker", "podman"):
        found = shutil.which(name)
        if found is None:
            continue
        probe = subprocess.run(
            [found, "info"], capture_output=True, text=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return found
        pytest.skip(f"{name} is installed but its engine does not answer: {probe.stderr[-300:]}")
    pytest.skip("no container engine (docker or podman) on this machine")


@pytest.mark.timeout(1800)
def test_the_image_builds() -> None:
    engine = _engine()
    build = subprocess.run(
        [engine, "build", "-f", str(DOCKERFILE), "-t", "campaign-bridge-sandbox:test", str(ROOT)],
        capture_output=True, text=True, timeout=1700, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
