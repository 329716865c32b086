"""Issue 11: listmonk creates a subscriber without consent off every list (``POST
/api/subscribers``), then adds it to the list as unsubscribed (``PUT /api/subscribers/lists``).
When that second call fails, the run goes on: the subscriber is recorded as listmonk has it (on
no list, which the adapter reads as ``archived``: no ledger row claims an unsubscribe that did
not happen), the other contacts are pushed, a kept rejection names the record and why, and the
next run adds it to the list as unsubscribed (never subscribed), with that change's one ledger
row. On SQLite, PostgreSQL and MariaDB state stores, the listmonk sandbox over real HTTP (its
control API makes the call fail)."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign_bridge.sandbox.listmonk import ListmonkHandle
from tests.integration.push.conftest import make_source
from tests.integration.push.test_push_confirmation_retry import (  # noqa: F401 (fixture)
    OPT_IN_LIST,
    control,
    listmonk,
    listmonk_settings,
    optins_of,
)
from tests.integration.push.test_push_consent import ledger, push, rows
from tests.integration.push.test_push_tag_refusal import open_rejections

pytestmark = pytest.mark.anyio


def state_of(settings: object, key: str) -> list[tuple[str, bool]]:
    found = rows(
        settings,  # type: ignore[arg-type]
        f"SELECT provider_status, managed FROM cb_contact_state WHERE source_key = '{key}'",
    )
    return [(str(status), bool(managed)) for status, managed in found]


async def test_a_subscriber_created_off_the_list_is_kept_and_added_unsubscribed_next_run(
    database_url: str,
    tmp_path: Path,
    listmonk: ListmonkHandle,  # noqa: F811 (the fixture)
) -> None:
    source = make_source(database_url, rows=3)
    source.update(1, consent=False)  # created unsubscribed: off every list, then added
    settings = listmonk_settings(tmp_path, database_url, listmonk, unconsented_new="unsubscribed")
    fault = {"kind": "500", "method": "PUT", "path": "^/subscribers/lists$", "count": None}
    control(listmonk, "POST", "/faults", fault)

    first = await push(settings)  # the run completes

    control(listmonk, "DELETE", "/faults")
    made = listmonk.sandbox.subscriber_by("person1@mail.test")
    assert made is not None
    assert made.lists == {}  # created, on no list
    for other in ("person2@mail.test", "person3@mail.test"):  # the others were pushed
        sub = listmonk.sandbox.subscriber_by(other)
        assert sub is not None
        assert sub.lists[int(OPT_IN_LIST)].status == "unconfirmed"
    assert (first.created, first.retry_later) == (3, 1)
    # Recorded as listmonk has it: created by the bridge, on no list; no unsubscribe claimed.
    assert ledger(settings, "1") == [(None, "archived", "push")]
    assert state_of(settings, "1") == [("archived", True)]
    assert ledger(settings, "2") == ledger(settings, "3") == [(None, "pending", "push")]
    assert open_rejections(settings) == [("1", "not_added_to_list")]
    ((message,),) = rows(settings, "SELECT message FROM cb_rejected_records")
    assert "not added to the list as unsubscribed" in str(message)
    assert "500" in str(message)
    assert rows(settings, "SELECT count(*) FROM cb_push_intents") == [(0,)]

    second = await push(settings)

    sub = listmonk.sandbox.subscriber_by("person1@mail.test")
    assert sub is not None
    assert sub.lists[int(OPT_IN_LIST)].status == "unsubscribed"  # never subscribed
    assert optins_of(listmonk, "person1@mail.test") == 0  # nor asked to confirm
    assert ledger(settings, "1") == [
        (None, "archived", "push"),
        ("archived", "unsubscribed", "push"),
    ]
    assert state_of(settings, "1") == [("unsubscribed", True)]
    assert ledger(settings, "2") == ledger(settings, "3") == [(None, "pending", "push")]
    assert open_rejections(settings) == []
    assert (second.resolved, second.retry_later, second.updated) == (1, 0, 1)
    third = await push(settings)
    assert third.writes == 0  # settled: the next run sends nothing
    assert ledger(settings, "1")[-1] == ("archived", "unsubscribed", "push")
