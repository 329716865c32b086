"""A re-read where little changed: the unchanged rows are settled by one light look-up per
chunk of what was last pushed; only the changed rows get contact-state objects, member-status
look-ups and consent decisions. The state store is the same engine as the source."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
