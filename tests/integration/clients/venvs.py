"""Virtual environments for third-party clients, built from the package index and cached.

Each client gets its own environment (its dependencies must not meet ours: tap-mailchimp pins
jsonschema 2.6), made with ``python -m venv`` and ``pip install -r requirements/<name>.txt``.
It lives outside the repository, in ``$CB_TEST_CLIENTS_CACHE`` or
``~/.cache/campaign-bridge/clients/<name>-<hash>``, where the hash covers the requirements file
and the Python version: a changed pin builds a new environment, an unchanged one is reused
(CI re-runs are fast), and a fresh machine builds it on first use. A lock file serialises
builds between parallel test processes; an environment counts as built only once its
``.complete`` marker is written, so an interrupted build is redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["REQUIREMENTS", "cache_root", "client_venv", "venv_path"]

REQUIREMENTS = Path(__file__).with_name("requirements")
BUILD_TIMEOUT = 900


def cache_root() -> Path:
    override = os.environ.get("CB_TEST_CLIENTS_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "campaign-bridge" / "clients"


def venv_path(name: str) -> Path:
    requirements = (REQUIREMENTS / f"{name}.txt").read_bytes()
    digest = hashlib.sha256(requirements + sys.version.encode()).hexdigest()[:12]
    return cache_root() / f"{name}-{digest}"


def client_venv(name: str) -> Path:
    """The environment for ``requirements/<name>.txt``, built on first use; its ``bin``."""
    target = venv_path(name)
    marker = target / ".complete"
    if marker.exists():
        return target / "bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            _build(target, REQUIREMENTS / f"{name}.txt")
            marker.write_text("ok\n")
    return target / "bin"


def _build(target: Path, requirements: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_REQUIRE_VIRTUALENV")}
    steps = [
        [sys.executable, "-m", "venv", str(target)],
        [str(target / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(requirements)],
    ]
    for step in steps:
        done = subprocess.run(
            step, capture_output=True, text=True, timeout=BUILD_TIMEOUT, env=env, check=False
        )
        if done.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            raise RuntimeError(
                f"building the client environment {target.name} failed at "
                f"{' '.join(step[-3:])} (exit {done.returncode}):\n{done.stderr[-3000:]}"
            )
