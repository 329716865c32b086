"""Issue 11: a listmonk subscriber the bridge finds on another list only, whose source row has
no consent (``unconsented_new = "unsubscribed"``), is added to the sync's list as unsubscribed.
listmonk's "unsubscribe" list action changes only subscriptions that exist, so the adapter used
it, reported the member unsubscribed while listmonk had no subscription at all, and the next
run recorded a change nobody made (unsubscribed -> archived). On SQLite, PostgreSQL and MariaDB
state stores, the listmonk sandbox over real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from campaign_bridge.sandbox.listmonk import ListmonkHandle
from tests.integration.push.conftest import make_source
from tests.integration.push.test_push_confirmation_retry import (  # noqa: F401 (fixture)
    OPT_IN_LIST,
    listmonk,
    listmonk_settings,
)
from tests.integration.push.test_push_consent import ledger, push

pytestmark = pytest.mark.anyio


async def test_a_subscriber_of_another_list_without_consent_joins_this_one_unsubscribed(
    database_url: str,
    tmp_path: Path,
    listmonk: ListmonkHandle,  # noqa: F811 (the fixture)
) -> None:
    source = make_source(database_url, rows=1)
    source.update(1, consent=False)
    async with httpx.AsyncClient(base_url=listmonk.base_url, timeout=30) as client:
        created = await client.post(  # on list 1 only
            "/api/subscribers",
            headers=listmonk.auth_header,
            json={"email": "person1@mail.test", "name": "P", "lists": [1], "status": "enabled"},
        )
        created.raise_for_status()
    settings = listmonk_settings(tmp_path, database_url, listmonk, unconsented_new="unsubscribed")

    await push(settings)

    sub = listmonk.sandbox.subscriber_by("person1@mail.test")
    assert sub is not None
    assert sub.lists[int(OPT_IN_LIST)].status == "unsubscribed"
    assert sub.lists[1].status == "unconfirmed"  # the other list is left as it was
    recorded = ledger(settings, "1")
    assert [row[1] for row in recorded] == ["unsubscribed"]

    await push(settings)

    assert ledger(settings, "1") == recorded  # no change happened, none is recorded
