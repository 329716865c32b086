"""Run the deploy kit's files as local processes: deploy/compose.yaml's services (no container
engine here) and deploy/campaign-bridge.service's commands (no systemd here).

Nothing in the files is rewritten except what only exists inside a container or on the target
host: `/run/secrets/` becomes a temp directory of secret files, `/var/lib/campaign-bridge` and
`/opt`/`/etc` paths become temp directories, service names (`sandbox:8089`, `bridge:8080`)
become 127.0.0.1 with free ports, and the image's `campaign-bridge` and `python` become this
environment's. The commands, their arguments, the environment files and the healthchecks are
the files' own.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
CLI = str(BIN / "campaign-bridge")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as docker compose and systemd read them (comments and blanks skipped)."""
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]  # compose, systemd and sh all drop the quotes
            env[name.strip()] = value
    return env


def dockerfile() -> dict[str, Any]:
    """The image's ENV, ENTRYPOINT and HEALTHCHECK command (the runtime stage)."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    runtime = text.split("AS runtime", 1)[1]
    env: dict[str, str] = {}
    health: list[str] = []
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                name, _, value = item.partition("=")
                env[name] = value
        if line.startswith("HEALTHCHECK "):
            health = shlex.split(line.split(" CMD ", 1)[1])
    return {"env": env, "healthcheck": health}


@dataclass
class Adapter:
    """What exists only in a container or on the target host, mapped to this test's world."""

    root: Path
    ports: dict[str, int] = field(default_factory=dict)  # "sandbox:8089" -> free port

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    def text(self, value: str, service: str = "") -> str:
        value = value.replace("/run/secrets/", f"{self.secrets}/")
        value = value.replace("/var/lib/campaign-bridge", str(self.root / f"var-{service}"))
        for name_port, port in self.ports.items():
            name, _, inside = name_port.partition(":")
            value = value.replace(f"http://{name}:{inside}", f"http://127.0.0.1:{port}")
            value = value.replace(f"127.0.0.1:{inside}", f"127.0.0.1:{port}")
        return value

    def command(self, args: list[str], service: str = "", own_port: int | None = None) -> list[str]:
        adapted = []
        for arg in args:
            if arg == "python":
                arg = sys.executable
            elif arg == "campaign-bridge":
                arg = CLI
            arg = self.text(arg, service)
            adapted.append(arg)
        if own_port is not None:  # `--port 8089` of the service itself
            for index, arg in enumerate(adapted[:-1]):
                if arg == "--port":
                    adapted[index + 1] = str(own_port)
        return adapted


def run_healthcheck(test: list[str], adapter: Adapter, service: str, env: Mapping[str, str]) -> int:
    kind, *rest = test
    if kind == "CMD-SHELL":
        args = ["sh", "-c", adapter.text(rest[0], service)]
    else:
        assert kind == "CMD", test
        args = adapter.command(rest, service)
    return subprocess.run(args, env=dict(env), capture_output=True, timeout=30).returncode


def wait_healthy(
    test: list[str], adapter: Adapter, service: str, env: Mapping[str, str], process: Any = None
) -> None:
    deadline = time.monotonic() + 60
    while run_healthcheck(test, adapter, service, env) != 0:
        if process is not None and process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"{service} exited {process.returncode}: {output[-3000:]}")
        assert time.monotonic() < deadline, f"{service} never became healthy: {test}"
        time.sleep(0.2)


@dataclass
class Running:
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    completed: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return data


def order(services: Mapping[str, Any]) -> list[str]:
    """Services in an order that honours depends_on (as compose starts them)."""
    done: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        for dependency in services[name].get("depends_on", {}):
            visit(dependency)
        done.append(name)

    for name in services:
        visit(name)
    return done


@contextmanager
def compose_up(adapter: Adapter, external: Mapping[str, dict[str, str]]) -> Iterator[Running]:
    """Start every service of deploy/compose.yaml in dependency order, as local processes.

    ``external``: services whose image is not ours (postgres) mapped to the environment their
    healthcheck needs to reach the test's server standing in for them.
    """
    spec = compose()
    services = spec["services"]
    image = dockerfile()
    running = Running()
    needed = {
        dep: cond["condition"]
        for service in services.values()
        for dep, cond in service.get("depends_on", {}).items()
    }
    try:
        for name in order(services):
            service = services[name]
            if "build" not in service:  # an upstream image: the test's own server stands in
                env = {**clean_environ(), **external[name]}
                wait_healthy(service["healthcheck"]["test"], adapter, name, env)
                continue
            env = clean_environ()
            env.update({k: adapter.text(v, name) for k, v in image["env"].items()})
            if "env_file" in service:
                for key, value in read_env_file(DEPLOY / service["env_file"]).items():
                    env[key] = adapter.text(value, name)
            port = adapter.ports.get(f"{name}:{image['env']['CAMPAIGN_BRIDGE_SERVER__PORT']}")
            if port is not None:
                env["CAMPAIGN_BRIDGE_SERVER__PORT"] = str(port)
            own = next((p for key, p in adapter.ports.items() if key.startswith(f"{name}:")), None)
            (adapter.root / f"var-{name}").mkdir(parents=True, exist_ok=True)
            command = adapter.command(["campaign-bridge", *service["command"]], name, own)
            running.envs[name] = env
            if needed.get(name) == "service_completed_successfully":
                done = subprocess.run(
                    command, env=env, cwd=adapter.root / f"var-{name}",
                    capture_output=True, text=True, timeout=300,
                )  # fmt: skip
                assert done.returncode == 0, f"{name}: {done.stdout}\n{done.stderr}"
                running.completed[name] = done
                continue
            process = subprocess.Popen(
                command, env=env, cwd=adapter.root / f"var-{name}",
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            running.processes[name] = process
            health = service.get("healthcheck", {}).get("test") or ["CMD", *image["healthcheck"]]
            wait_healthy(health, adapter, name, env, process)
        yield running
    finally:
        for process in running.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in running.processes.values():
            try:
                process.wait(timeout=30)
            finally:
                if process.stdout:
                    process.stdout.close()


# --- systemd -----------------------------------------------------------------------------


def unit(path: Path = DEPLOY / "campaign-bridge.service") -> dict[str, list[str]]:
    """The [Service] section's settings; repeated keys (Environment=) keep every value."""
    section = ""
    values: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@dataclass
class HostPaths:
    """The unit's absolute host paths, mapped into a temp directory."""

    root: Path
    prefix: Path  # /opt/campaign-bridge (a venv with campaign-bridge installed)

    def text(self, value: str) -> str:
        value = value.replace("/opt/campaign-bridge", str(self.prefix))
        value = value.replace("/etc/campaign-bridge", str(self.root / "etc"))
        return value.replace("/var/lib/campaign-bridge", str(self.root / "var"))


def unit_environment(settings: Mapping[str, list[str]], paths: HostPaths) -> dict[str, str]:
    """As systemd builds it: EnvironmentFile= first, then each Environment= assignment."""
    env = clean_environ()
    for file in settings.get("EnvironmentFile", []):
        env.update(read_env_file(Path(paths.text(file.lstrip("-")))))
    for assignment in settings.get("Environment", []):
        for item in shlex.split(assignment):
            name, _, value = item.partition("=")
            env[name] = paths.text(value)
    return env


def unit_command(line: str, paths: HostPaths) -> list[str]:
    return [paths.text(arg) for arg in shlex.split(line.lstrip("-@+!"))]
