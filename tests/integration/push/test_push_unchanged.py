"""A re-read where little changed: the unchanged rows are settled by one light look-up per
chunk of what was last pushed; only the changed rows get contact-state objects, member-status
look-ups and consent decisions. The state store is the same engine as the source."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import pytest

from campaign_bridge import migrations
from campaign_bridge._push_state import PushState
from campaign_bridge.push import run_push
from campaign_bridge.store import ContactState, MemberStatusRecord
from tests.integration.push.conftest import Sandbox, make_source, push_settings

pytestmark = pytest.mark.anyio


async def test_unchanged_rows_cost_no_state_objects_nor_status_lookups(
    database_url: str, tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrations.upgrade(database_url)
    source = make_source(database_url, rows=250)
    # No updated_at column: every run reads every row, as a source without one does.
    settings = push_settings(
        tmp_path, database_url, sandbox, state_url=database_url, source={"updated_at_column": None}
    )
    states_asked: list[str] = []
    statuses_asked: list[str] = []
    load_states, load_statuses = PushState.load_contact_states, PushState.member_statuses

    def spy_states(self: PushState, sync: str, keys: Iterable[str]) -> dict[str, ContactState]:
        keys = list(keys)
        states_asked.extend(keys)
        return load_states(self, sync, keys)

    def spy_statuses(
        self: PushState, provider: str, list_id: str, ids: Iterable[str]
    ) -> dict[str, MemberStatusRecord]:
        ids = list(ids)
        statuses_asked.extend(ids)
        return load_statuses(self, provider, list_id, ids)

    monkeypatch.setattr(PushState, "load_contact_states", spy_states)
    monkeypatch.setattr(PushState, "member_statuses", spy_statuses)

    async def push() -> Any:
        summary = await run_push(settings, "crm")
        assert summary.error is None, summary.error
        return summary

    first = await push()
    assert (first.read, first.created) == (250, 250)

    for key in (3, 120, 249):
        source.update(key, first_name=f"Renamed {key}")
    states_asked.clear()
    statuses_asked.clear()
    second = await push()
    # one write per chunk of 100 that holds a change
    assert (second.read, second.unchanged, second.updated, second.writes) == (250, 247, 3, 3)
    assert sorted(states_asked) == ["120", "249", "3"]
    assert len(statuses_asked) == 3
    assert sandbox.members["person120@mail.test"].merge_fields["FNAME"] == "Renamed 120"

    states_asked.clear()
    statuses_asked.clear()
    third = await push()
    assert (third.read, third.unchanged, third.writes) == (250, 250, 0)
    assert states_asked == []
    assert statuses_asked == []


async def test_an_initial_push_leaves_its_tables_vacuumed_and_later_runs_do_not_vacuum(
    postgresql_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    """After a push that filled the state from empty, PostgreSQL's visibility map is set (a
    VACUUM, not only ANALYZE), so every later run's count of the audience's known members and
    state look-ups read indexes alone even where autovacuum is off; runs after it vacuum
    nothing."""
    import sqlalchemy as sa

    from campaign_bridge.db import create_engine
    from campaign_bridge.push import ANALYZE_FIRST

    migrations.upgrade(postgresql_url)
    make_source(postgresql_url, rows=ANALYZE_FIRST)
    settings = push_settings(tmp_path, postgresql_url, sandbox, state_url=postgresql_url)

    def vacuums() -> dict[str, int]:
        engine = create_engine(postgresql_url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
                rows = conn.exec_driver_sql(
                    "SELECT relname, vacuum_count FROM pg_stat_user_tables "
                    "WHERE relname IN ('cb_contact_state', 'cb_member_status')"
                )
                return {str(name): int(count) for name, count in rows}
        finally:
            engine.dispose()

    first = await run_push(settings, "crm")
    assert (first.error, first.created) == (None, ANALYZE_FIRST)
    for _ in range(50):  # a backend reports its statistics up to a second after it is idle
        if vacuums() == {"cb_contact_state": 1, "cb_member_status": 1}:
            break
        await anyio.sleep(0.1)
    assert vacuums() == {"cb_contact_state": 1, "cb_member_status": 1}

    again = await run_push(settings, "crm")
    assert (again.error, again.created, again.updated) == (None, 0, 0)
    assert vacuums() == {"cb_contact_state": 1, "cb_member_status": 1}
