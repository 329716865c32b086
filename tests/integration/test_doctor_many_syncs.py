"""doctor with hundreds of syncs in conf.d: all checked, concurrently, in bounded time.

The installed CLI runs as a subprocess against a Mailchimp sandbox on a real socket; every sync
has its own file under conf.d and shares one SQLite source.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge.config import load_settings
from campaign_bridge.db import create_engine
from campaign_bridge.doctor import CheckStatus, run_checks
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle

CLI = [str(Path(sys.executable).parent / "campaign-bridge")]
SYNCS = 200
BROKEN = "client-137"


def _source(path: Path) -> str:
    url = f"sqlite:///{path.as_posix()}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT)"))
        conn.execute(sa.text("INSERT INTO contacts VALUES (1, 'ada@example.org')"))
    engine.dispose()
    return url


def _write_sync(directory: Path, name: str, source_url: str, base_url: str, list_id: str) -> None:
    (directory / f"{name}.toml").write_text(
        f"[syncs.{name}.source]\n"
        f'url = "{source_url}"\n'
        'table = "contacts"\n'
        f"[syncs.{name}.destination]\n"
        f'base_url = "{base_url}"\n'
        f'list_id = "{list_id}"\n',
        encoding="utf-8",
    )


def _doctor(root: Path, api_key: str, *flags: str) -> tuple[list[dict[str, str]], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    env["CAMPAIGN_BRIDGE_CONFIG_DIR"] = str(root / "conf.d")
    env["CAMPAIGN_BRIDGE_DATA_DIR"] = str(root / "data")
    env["CAMPAIGN_BRIDGE_SERVER__PORT"] = str(_free_port())
    # every sync's key from the environment, by the sync's name
    for path in (root / "conf.d").glob("*.toml"):
        variable = path.stem.upper().replace("-", "_")
        env[f"CAMPAIGN_BRIDGE_SYNCS__{variable}__DESTINATION__API_KEY"] = api_key
    started = time.monotonic()
    done = subprocess.run(
        [*CLI, "doctor", "--json", *flags], cwd=root, env=env, capture_output=True, text=True
    )
    elapsed = time.monotonic() - started
    assert done.returncode in (0, 1), done.stderr
    results: list[dict[str, str]] = json.loads(done.stdout)
    return results, elapsed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _by_sync(results: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for result in results:
        name = result["name"]
        if name.endswith("]") and "[" in name:
            found.setdefault(name[name.index("[") + 1 : -1], []).append(result)
    return found


def test_two_hundred_syncs_in_conf_d_are_all_checked_and_the_broken_one_named(
    tmp_path: Path, mailchimp_sandbox: SandboxHandle
) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    source = _source(tmp_path / "contacts.db")
    names = [f"client-{index:03}" for index in range(SYNCS)]
    for name in names:
        list_id = "no-such-audience" if name == BROKEN else mailchimp_sandbox.list_id
        _write_sync(conf_d, name, source, mailchimp_sandbox.base_url, list_id)

    results, elapsed = _doctor(tmp_path, mailchimp_sandbox.api_key, "--concurrency", "16")
    print(f"doctor, {SYNCS} syncs in conf.d, --concurrency 16: {elapsed:.1f} s wall")

    per_sync = _by_sync(results)
    assert sorted(per_sync) == names  # every sync was checked
    for name in names:
        checks = {result["name"]: result["status"] for result in per_sync[name]}
        assert checks[f"source [{name}]"] == "ok"
        assert checks[f"provider [{name}]"] == "ok"
        expected = "fail" if name == BROKEN else "ok"
        assert checks[f"audience [{name}]"] == expected, (name, per_sync[name])
    (summary,) = [r for r in results if r["name"] == "syncs"]
    assert summary["status"] == "fail"
    assert summary["message"] == f"{SYNCS} sync(s) checked; 1 failed: {BROKEN}"
    limits = httpx.get(f"{mailchimp_sandbox.control_url}/limits").json()
    assert max(limits["peak_in_flight"].values()) <= 10  # one key: never past its limit
    assert limits["rejected"] == 0


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers: a provider that hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/3.0"


def test_a_sync_that_hangs_fails_after_its_timeout_and_the_others_still_pass(
    tmp_path: Path, mailchimp_sandbox: SandboxHandle, silent_server: str
) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    source = _source(tmp_path / "contacts.db")
    sandbox = (mailchimp_sandbox.base_url, mailchimp_sandbox.list_id)
    syncs: dict[str, Any] = {"fine-1": sandbox, "hangs": (silent_server, "x"), "fine-2": sandbox}
    for name, (base_url, list_id) in syncs.items():
        _write_sync(conf_d, name, source, base_url, list_id)

    env = {
        f"CAMPAIGN_BRIDGE_SYNCS__{name.upper().replace('-', '_')}__DESTINATION__API_KEY": (
            mailchimp_sandbox.api_key
        )
        for name in syncs
    }
    env["CAMPAIGN_BRIDGE_CONFIG_DIR"] = str(conf_d)
    env["CAMPAIGN_BRIDGE_DATA_DIR"] = str(tmp_path / "data")
    settings = load_settings(environ=env)

    # in this process: the bound is doctor's, not a loaded machine's start-up of a new one
    started = time.monotonic()
    results = asyncio.run(run_checks(lambda: settings, environ={}, sync_timeout=5))
    elapsed = time.monotonic() - started

    assert elapsed < 9.5  # the probe's own 10 s timeout was not waited for
    by_name = {result.name: result for result in results}
    assert by_name["sync [hangs]"].status is CheckStatus.FAIL
    assert "did not finish within 5 s" in by_name["sync [hangs]"].message
    assert by_name["audience [fine-1]"].status is CheckStatus.OK
    assert by_name["audience [fine-2]"].status is CheckStatus.OK
    assert by_name["syncs"].message == "3 sync(s) checked; 1 failed: hangs"
