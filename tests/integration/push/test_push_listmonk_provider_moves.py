"""Issue 11 on listmonk: an admin changes a subscriber's address in listmonk (no webhook: a
pull finds the same subscriber id under the new address), someone else subscribes at the
address it left, and the source row is read again. The push sends nothing for the unchanged
row; a later change of its other fields goes to the subscriber at its new address, and the
newcomer is left alone. SQLite, PostgreSQL and MariaDB state stores; the listmonk sandbox's
control API over real HTTP."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from campaign_bridge.pull import run_pull
from campaign_bridge.sandbox.listmonk import ListmonkHandle
from tests.integration.push.conftest import make_source
from tests.integration.push.test_push_confirmation_retry import (  # noqa: F401 (fixture)
    OPT_IN_LIST,
    control,
    listmonk,
    listmonk_settings,
)
from tests.integration.push.test_push_consent import push, rows

pytestmark = pytest.mark.anyio

OLD, MOVED = "person1@mail.test", "moved1@mail.test"


async def test_a_subscriber_that_moved_in_listmonk_is_left_where_it_went(
    database_url: str,
    tmp_path: Path,
    listmonk: ListmonkHandle,  # noqa: F811 (the fixture)
) -> None:
    source = make_source(database_url, rows=2)
    settings = listmonk_settings(tmp_path, database_url, listmonk)
    assert (await push(settings)).created == 2
    theirs = listmonk.sandbox.subscriber_by(OLD)
    assert theirs is not None
    control(listmonk, "POST", f"/subscribers/{OLD}/change-email", {"email": MOVED})
    control(listmonk, "POST", "/seed", {"subscribers": [{"email": OLD, "lists": [1]}]})
    assert (await run_pull(settings, "crm")).status == "succeeded"
    digest = hashlib.md5(MOVED.encode()).hexdigest()
    query = "SELECT email_hash FROM cb_contact_state WHERE source_key = '1'"
    assert rows(settings, query) == [(digest,)]

    source.update(1)  # read again, unchanged
    summary = await push(settings)
    assert (summary.read, summary.unchanged, summary.writes) == (1, 1, 0)
    moved, newcomer = listmonk.sandbox.subscriber_by(MOVED), listmonk.sandbox.subscriber_by(OLD)
    assert moved is not None
    assert moved.id == theirs.id
    assert newcomer is not None
    assert newcomer.id != theirs.id
    assert int(OPT_IN_LIST) not in newcomer.lists  # not taken for the moved subscriber

    source.update(1, first_name="Renamed 1")
    summary = await push(settings)
    assert (summary.updated, summary.writes) == (1, 1)
    moved = listmonk.sandbox.subscriber_by(MOVED)
    assert moved is not None
    assert moved.name == "Renamed 1"
    newcomer = listmonk.sandbox.subscriber_by(OLD)
    assert newcomer is not None
    assert newcomer.name != "Renamed 1"
    assert int(OPT_IN_LIST) not in newcomer.lists
    assert rows(settings, query) == [(digest,)]
