"""`doctor --rehearse` on each engine: the real round trip runs in a throwaway namespace of the
target's own state database, and leaves the real cb_* tables and the real provider untouched."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.doctor import CheckStatus
from campaign_bridge.doctor._rehearse import CONTACTS, PREFIX, leftovers, rehearse
from campaign_bridge.state import contact_state, sync_runs

REAL_KEY = "f" * 32 + "-us6"  # the "real" account: nothing may call it


def _target(tmp_path: Path, state_url: str) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "state_url": state_url,
            "syncs": {
                "customers": {
                    "source": {"url": state_url, "table": "customers"},
                    "destination": {
                        "api_key": REAL_KEY,
                        "list_id": "realaudience",
                        "base_url": "http://127.0.0.1:9/3.0",  # would fail if ever called
                    },
                }
            },
        }
    )


def _real_rows(url: str) -> tuple[int, int, list[str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        runs = conn.execute(sa.select(sa.func.count()).select_from(sync_runs)).scalar_one()
        states = conn.execute(sa.select(sa.func.count()).select_from(contact_state)).scalar_one()
        tables = sorted(sa.inspect(conn).get_table_names())
    engine.dispose()
    return runs, states, tables


def test_rehearsal_round_trip_in_a_throwaway_namespace(tmp_path: Path, database_url: str) -> None:
    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    with engine.begin() as conn:  # the user's own real state: must stay as it is
        conn.execute(
            sa.insert(sync_runs).values(
                id="real-run-1",
                sync_name="customers",
                direction="push",
                started_at=sa.func.now(),
                status="succeeded",
                counts={},
            )
        )
    engine.dispose()
    before = _real_rows(database_url)
    lines: list[str] = []

    report = asyncio.run(rehearse(_target(tmp_path, database_url), say=lines.append))

    assert report.passed, report.as_dict()
    assert [step.name for step in report.steps] == [
        "migrations",
        "source",
        "push",
        "webhook",
        "pull",
        "push again",
    ]
    assert f"created {CONTACTS} members" in report.steps[2].message
    assert report.namespace.startswith(PREFIX)
    results = report.results()
    assert all(r.status is CheckStatus.OK for r in results), results
    assert any(report.namespace in line for line in lines)
    # The real state is untouched and nothing is left behind.
    assert _real_rows(database_url) == before
    assert not any(name.startswith(PREFIX) for name in before[2])
    assert leftovers(database_url) == []
    assert not list((tmp_path / "data").glob("rehearsal-*"))
    # The support bundle carries the rehearsal's report.
    from campaign_bridge.doctor._bundle import bundle

    assert bundle(None, results, report)["rehearsal"]["passed"] is True


def test_a_failing_step_is_reported_and_the_namespace_still_removed(
    tmp_path: Path, sqlite_url: str, monkeypatch: object
) -> None:
    import campaign_bridge.doctor._rehearse as module

    migrations.upgrade(sqlite_url)
    # A contact the provider refuses: the push step must fail with the reason, and clean up.
    original = module._RoundTrip.__init__

    def with_bad_address(self: module._RoundTrip, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        self.emails[2] = "not-an-address"

    monkeypatch.setattr(module._RoundTrip, "__init__", with_bad_address)  # type: ignore[attr-defined]
    report = asyncio.run(rehearse(_target(tmp_path, sqlite_url)))
    assert not report.passed
    failed = report.steps[-1]
    assert failed.name == "push"
    assert "invalid_email" in failed.message
    assert report.removed
    assert leftovers(sqlite_url) == []
    statuses = {r.name: r.status for r in report.results()}
    assert statuses["rehearsal: push"] is CheckStatus.FAIL
    assert "rehearsal: webhook" not in statuses


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
