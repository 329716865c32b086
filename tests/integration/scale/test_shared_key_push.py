"""Two processes pushing two syncs that share one API key never exceed the key's 10 connections
at the provider (the sandbox enforces Mailchimp's limit and records the peak it saw)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaign_bridge import migrations
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle, run_in_thread
from tests.integration.scale.helpers import CLI, cli_env, make_contacts, scalar, write_config

ROWS = 1500


@pytest.fixture
def slow_sandbox() -> Iterator[SandboxHandle]:
    with run_in_thread() as handle:
        handle.sandbox.limits.latency = 0.2  # a real API's round trip: requests overlap
        yield handle


def _push_both(tmp_path: Path, state_url: str, sandbox: SandboxHandle) -> None:
    sources = {name: make_contacts(tmp_path / f"{name}.db", name, ROWS) for name in ("a", "b")}
    config = write_config(
        tmp_path / "bridge.toml",
        state_url,
        sources,
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        list_id=sandbox.list_id,
    )
    procs = [
        subprocess.Popen(
            [str(CLI), "push", name, "--json"],
            env=cli_env(config),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in sources
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]


def test_two_processes_sharing_a_key_stay_under_its_limit(
    tmp_path: Path, postgresql_url: str, slow_sandbox: SandboxHandle
) -> None:
    migrations.upgrade(postgresql_url)
    _push_both(tmp_path, postgresql_url, slow_sandbox)

    limits = slow_sandbox.sandbox.limits
    assert limits.rejected == 0  # not one 429 for too many connections
    assert max(limits.peak_in_flight.values()) <= 10
    # the two together came close to the key's limit: the slots were used, not starved
    assert max(limits.peak_in_flight.values()) >= 6
    members = slow_sandbox.sandbox.lists[slow_sandbox.list_id].members
    assert len(members) == 2 * ROWS
    assert scalar(postgresql_url, "SELECT count(*) FROM cb_contact_state") == 2 * ROWS
    assert scalar(postgresql_url, "SELECT count(*) FROM cb_key_slots WHERE holder IS NOT NULL") == 0


def test_without_a_shared_state_store_two_processes_overrun_the_key(
    tmp_path: Path, slow_sandbox: SandboxHandle
) -> None:
    """The control: on SQLite each process only knows its own budget (the reason for the above)."""
    _push_both(tmp_path, f"sqlite:///{(tmp_path / 'state.db').as_posix()}", slow_sandbox)
    limits = slow_sandbox.sandbox.limits
    assert limits.rejected > 0 or max(limits.peak_in_flight.values()) > 10
