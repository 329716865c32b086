"""`doctor --rehearse` on each engine and for each provider: the real round trip runs against
the sandbox of every provider the configured syncs use, in a throwaway namespace of the target's
own state database, and leaves the real cb_* tables and the real providers untouched."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.doctor import CheckStatus
from campaign_bridge.doctor import _rehearsal_profiles as profiles
from campaign_bridge.doctor import _rehearse as module
from campaign_bridge.doctor._rehearse import CONTACTS, PREFIX, Rehearsal, leftovers, rehearse
from campaign_bridge.state import contact_state, sync_runs

# the "real" accounts: nothing may call them (port 9 refuses every connection)
REAL_DESTINATIONS: dict[str, dict[str, str]] = {
    "mailchimp": {
        "api_key": "f" * 32 + "-us6",
        "list_id": "realaudience",
        "base_url": "http://127.0.0.1:9/3.0",
    },
    "brevo": {
        "provider": "brevo",
        "api_key": "xkeysib-" + "e" * 64 + "-" + "R" * 16,
        "list_id": "7",
        "base_url": "http://127.0.0.1:9/v3",
    },
    "listmonk": {
        "provider": "listmonk",
        "base_url": "http://127.0.0.1:9",
        "api_user": "bridge",
        "api_token": "real-token",
        "list_id": "3",
    },
}
PROVIDERS = list(REAL_DESTINATIONS)
STATE_STORES = ["sqlite_url", pytest.param("postgresql_url", marks=pytest.mark.postgresql)]
LABELS = {"mailchimp": "Mailchimp", "brevo": "Brevo", "listmonk": "listmonk"}


def trip(provider: str) -> list[tuple[str, str]]:
    """The steps of one provider's round trip: listmonk reports no unsubscribe by webhook."""
    back = "webhook" if provider != "listmonk" else "unsubscribe at the provider"
    names = ["sandbox", "source", "push", back, "pull", "push again"]
    return [(provider, name) for name in names]


def _target(tmp_path: Path, state_url: str, *providers: str) -> Settings:
    """The user's configuration: one sync per provider named, on the real accounts."""
    syncs = {
        f"customers{i}": {
            "source": {"url": state_url, "table": "customers"},
            "destination": REAL_DESTINATIONS[provider],
        }
        for i, provider in enumerate(providers or ("mailchimp",))
    }
    return Settings.model_validate(
        {"data_dir": str(tmp_path / "data"), "state_url": state_url, "syncs": syncs}
    )


def _real_rows(url: str) -> tuple[int, int, list[str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        runs = conn.execute(sa.select(sa.func.count()).select_from(sync_runs)).scalar_one()
        states = conn.execute(sa.select(sa.func.count()).select_from(contact_state)).scalar_one()
        tables = sorted(sa.inspect(conn).get_table_names())
    engine.dispose()
    return runs, states, tables


def _with_a_real_run(url: str) -> None:
    migrations.upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:  # the user's own real state: must stay as it is
        conn.execute(
            sa.insert(sync_runs).values(
                id="real-run-1",
                sync_name="customers0",
                direction="push",
                started_at=sa.func.now(),
                status="succeeded",
                counts={},
            )
        )
    engine.dispose()


def _assert_left_nothing(report: Rehearsal, url: str, tmp_path: Path) -> None:
    assert report.namespace.startswith(PREFIX)
    assert report.removed
    assert leftovers(url) == []
    assert not list((tmp_path / "data").glob("rehearsal-*"))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rehearsal_round_trip_in_a_throwaway_namespace(
    tmp_path: Path, database_url: str, provider: str
) -> None:
    _with_a_real_run(database_url)
    before = _real_rows(database_url)
    lines: list[str] = []

    report = asyncio.run(rehearse(_target(tmp_path, database_url, provider), say=lines.append))

    assert report.passed, report.as_dict()
    assert report.providers == [provider]
    assert [(s.provider, s.name) for s in report.steps] == [("", "migrations"), *trip(provider)]
    label = LABELS[provider]
    for step in report.steps[1:]:  # every step of the trip says which provider it is
        assert label in step.message, step
    [push] = [s for s in report.steps if s.name == "push"]
    assert f"created {CONTACTS} members in the {label} sandbox" in push.message
    results = report.results()
    assert all(r.status is CheckStatus.OK for r in results), results
    assert f"rehearsal: push again ({label})" in [r.name for r in results]
    assert any(report.namespace in line and label in line for line in lines)
    # The real state is untouched and nothing is left behind.
    assert _real_rows(database_url) == before
    assert not any(name.startswith(PREFIX) for name in before[2])
    _assert_left_nothing(report, database_url, tmp_path)
    # The support bundle carries the rehearsal's report.
    from campaign_bridge.doctor._bundle import bundle

    carried = bundle(None, results, report)["rehearsal"]
    assert carried["passed"] is True
    assert carried["providers"] == [provider]


@pytest.mark.parametrize("state", STATE_STORES)
def test_syncs_on_several_providers_rehearse_each_once(
    tmp_path: Path, state: str, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue(state))
    _with_a_real_run(url)
    settings = _target(tmp_path, url, "listmonk", "brevo", "listmonk")

    report = asyncio.run(rehearse(settings))

    assert report.passed, report.as_dict()
    assert report.providers == ["listmonk", "brevo"]  # in the configuration's order, once each
    assert [(s.provider, s.name) for s in report.steps] == [
        ("", "migrations"),
        *trip("listmonk"),
        *trip("brevo"),
    ]
    _assert_left_nothing(report, url, tmp_path)


def _break_the_writeback_after_push(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the push, the write-back status column is gone (as when it was renamed or the
    bridge may not UPDATE it): the step that first writes an unsubscribe back must fail."""
    original = module._RoundTrip._push

    async def push_then_break(self: Any) -> str:
        message = await original(self)
        engine = create_engine(self.url)
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {self.table} RENAME COLUMN list_status TO gone"))
        engine.dispose()
        return message

    monkeypatch.setattr(module._RoundTrip, "_push", push_then_break)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("state", STATE_STORES)
def test_a_broken_writeback_fails_the_step_that_writes_back(
    tmp_path: Path,
    state: str,
    provider: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = str(request.getfixturevalue(state))
    migrations.upgrade(url)
    _break_the_writeback_after_push(monkeypatch)

    report = asyncio.run(rehearse(_target(tmp_path, url, provider)))

    assert not report.passed
    failed = report.steps[-1]
    assert not failed.passed
    label = LABELS[provider]
    # serve's applier writes a webhook's unsubscribe back; without webhooks the pull does
    assert failed.name == ("pull" if provider == "listmonk" else "webhook")
    assert failed.provider == provider
    assert label in failed.message
    assert "write-back" in failed.fix
    assert label in failed.fix
    statuses = {r.name: r.status for r in report.results()}
    assert statuses[f"rehearsal: {failed.name} ({label})"] is CheckStatus.FAIL
    assert f"rehearsal: push again ({label})" not in statuses
    _assert_left_nothing(report, url, tmp_path)


def test_without_webhooks_the_pull_alone_must_bring_the_unsubscribe_back(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """listmonk's unsubscribe step is the provider's own: when it changes nothing at listmonk,
    the pull finds nothing to write back and says so."""
    migrations.upgrade(sqlite_url)

    async def nothing(_handle: Any, _control: httpx.AsyncClient, _email: str) -> None:
        return None

    lazy = dataclasses.replace(profiles.PROFILES["listmonk"], unsubscribe=nothing)
    monkeypatch.setitem(profiles.PROFILES, "listmonk", lazy)

    report = asyncio.run(rehearse(_target(tmp_path, sqlite_url, "listmonk")))

    failed = report.steps[-1]
    assert (failed.name, failed.passed) == ("pull", False)
    assert "listmonk pull succeeded" in failed.message
    assert "says None" in failed.message


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_failing_step_is_reported_and_the_namespace_still_removed(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    migrations.upgrade(sqlite_url)
    # A contact the provider refuses: the push step must fail with the reason, and clean up.
    original = module._RoundTrip.__init__

    def with_bad_address(self: module._RoundTrip, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.emails[2] = "not-an-address"

    monkeypatch.setattr(module._RoundTrip, "__init__", with_bad_address)
    report = asyncio.run(rehearse(_target(tmp_path, sqlite_url, provider)))
    assert not report.passed
    failed = report.steps[-1]
    assert failed.name == "push"
    assert "invalid_email" in failed.message
    assert LABELS[provider] in failed.message
    assert LABELS[provider] in failed.fix
    _assert_left_nothing(report, sqlite_url, tmp_path)
    statuses = {r.name: r.status for r in report.results()}
    assert statuses[f"rehearsal: push ({LABELS[provider]})"] is CheckStatus.FAIL
    assert not any(name.startswith("rehearsal: webhook") for name in statuses)


def test_a_provider_without_a_rehearsal_sandbox_is_named(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrations.upgrade(sqlite_url)
    monkeypatch.delitem(profiles.PROFILES, "brevo")

    report = asyncio.run(rehearse(_target(tmp_path, sqlite_url, "brevo")))

    assert report.unrehearsed == ["brevo"]
    assert not report.passed
    [(name, status, message)] = [
        (r.name, r.status, r.message) for r in report.results() if "brevo" in r.name
    ]
    assert (name, status) == ("rehearsal (brevo)", CheckStatus.WARN)
    assert "not rehearsed" in message
    _assert_left_nothing(report, sqlite_url, tmp_path)


def test_doctor_names_what_an_interrupted_rehearsal_left(
    tmp_path: Path, postgresql_url: str
) -> None:
    from campaign_bridge.doctor import run_checks

    migrations.upgrade(postgresql_url)
    engine = create_engine(postgresql_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{PREFIX}deadbeef00"'))
    engine.dispose()
    assert leftovers(postgresql_url) == [f"{PREFIX}deadbeef00"]
    results = asyncio.run(run_checks(lambda: _target(tmp_path, postgresql_url), environ={}))
    [left] = [r for r in results if r.name == "rehearsal leftovers"]
    assert left.status is CheckStatus.WARN
    assert f"{PREFIX}deadbeef00" in left.message


def test_without_the_right_to_create_a_database_the_rehearsal_says_which_grant(
    tmp_path: Path, mariadb_url: str
) -> None:
    user = f"cb_norights_{uuid.uuid4().hex[:8]}"
    database = sa.make_url(mariadb_url).database
    admin = create_engine(mariadb_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-{user}'"))
        conn.execute(sa.text(f"GRANT ALL ON `{database}`.* TO '{user}'@'%'"))
    try:
        limited = sa.make_url(mariadb_url).set(username=user, password=f"pw-{user}")
        url = limited.render_as_string(hide_password=False)
        migrations.upgrade(url)
        report = asyncio.run(rehearse(_target(tmp_path, url)))
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP USER '{user}'@'%'"))
        admin.dispose()
    assert not report.passed
    [step] = report.steps
    assert step.name == "namespace"
    assert "cannot create the throwaway database cb_rehearsal_" in step.message
    assert "GRANT ALL ON `cb\\_rehearsal\\_%`.*" in step.fix
    assert report.removed
