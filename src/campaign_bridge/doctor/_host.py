"""The machine: Python, installed packages, the data directory, the serve port."""

from __future__ import annotations

import importlib.metadata
import socket
import sys
import uuid
from pathlib import Path

from campaign_bridge.doctor._result import CheckResult, fail, ok, warn

MIN_PYTHON = (3, 11)


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> CheckResult:
    shown = ".".join(str(part) for part in version)
    if version[:2] >= MIN_PYTHON:
        return ok("python", f"Python {shown}")
    return fail(
        "python",
        f"Python {shown} is too old; campaign-bridge needs 3.11 or newer",
        "install Python 3.11+ and recreate the virtual environment with it",
    )


def check_dependencies(distribution: str = "campaign-bridge") -> list[CheckResult]:
    """Every runtime requirement of the installed distribution is installed."""
    try:
        requirements = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return [
            fail(
                "dependencies",
                f"the {distribution} distribution is not installed",
                "build the wheel with `make dist` in a checkout and pip install dist/*.whl "
                "(docs/deploy.md, step 1)",
            )
        ]
    missing: list[str] = []
    for requirement in requirements:
        if "extra ==" in requirement:
            continue
        name = _requirement_name(requirement)
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
    if missing:
        return [
            fail(
                "dependencies",
                "missing packages: " + ", ".join(missing),
                f"pip install {' '.join(repr(item) for item in missing)}",
            )
        ]
    return [ok("dependencies", f"{len(requirements)} requirements installed")]


def _requirement_name(requirement: str) -> str:
    name = requirement
    for separator in "[<>=!~; ":
        name = name.split(separator, 1)[0]
    return name.strip()


# --------------------------------------------------------------------------------------------
# Files and ports


def check_data_dir(data_dir: Path) -> CheckResult:
    name = "data directory"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".doctor-{uuid.uuid4().hex}"
        probe.write_text("probe", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        return fail(
            name,
            f"{data_dir} is not writable ({exc.strerror or exc})",
            f"give the service user write access (chown/chmod {data_dir}) "
            "or point CAMPAIGN_BRIDGE_DATA_DIR at a writable directory",
        )
    return ok(name, f"{data_dir} is writable")


def check_port_free(host: str, port: int) -> CheckResult:
    name = "serve port"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: connections of a stopped server still in TIME_WAIT do not stop
        # `serve` from starting, so they must not fail this check either; a listener still does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            running = _running_bridge(host, port)
            if running is not None:
                return warn(
                    name,
                    f"{host}:{port} is served by a running campaign-bridge {running} (expected "
                    "while an older version runs during an upgrade)",
                    "stop it before starting this version (docs/deploy.md, Upgrades)",
                )
            return fail(
                name,
                f"{host}:{port} is not free ({exc.strerror or exc})",
                "stop whatever listens there (`ss -ltnp 'sport = :"
                f"{port}'`) or set CAMPAIGN_BRIDGE_SERVER__PORT to a free port",
            )
    return ok(name, f"{host}:{port} is free")


def _running_bridge(host: str, port: int) -> str | None:
    """The version of the campaign-bridge answering at host:port, if that is what listens."""
    import httpx

    where = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104
    if ":" in where:
        where = f"[{where}]"
    try:
        answer = httpx.get(f"http://{where}:{port}/-/version", timeout=3.0).json()
    except (httpx.HTTPError, ValueError):
        return None
    if isinstance(answer, dict) and answer.get("name") == "campaign-bridge":
        return str(answer.get("version", "?"))
    return None
