"""`make test` never goes green while skipping: a missing service fails the run, names the
service and says how to start it (or how to leave its tests out on purpose)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    return {**clean, **extra}


def test_a_missing_database_server_fails_the_test_and_says_how_to_start_it() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/postgres"
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:randomly", "-q", "--no-header",
            "tests/integration/test_doctor_stages.py::test_database_tls_is_asked_of_the_server",
        ],
        cwd=REPO,
        env=_env(CB_TEST_POSTGRES_URL=url),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "skipped" not in output
    assert "PostgreSQL" in output
    assert "is not reachable" in output
    assert ".ci/run" in output  # how to start it
    assert "-m 'not postgresql'" in output  # how to leave it out on purpose


def test_the_test_script_checks_services_before_running_anything() -> None:
    url = f"mysql+pymysql://root@127.0.0.1:{_closed_port()}/"
    done = subprocess.run(
        [str(REPO / "scripts" / "check-services")],
        cwd=REPO,
        env=_env(CB_TEST_MARIADB_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"MariaDB at 127.0.0.1:{url.rsplit(':', 1)[1].rstrip('/')}" in output
    assert "is not reachable" in output
    assert ".ci/run" in output
    assert "PostgreSQL at 127.0.0.1:5432: ok" in output  # the others are checked too
    ok = subprocess.run(
        [str(REPO / "scripts" / "check-services")],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
