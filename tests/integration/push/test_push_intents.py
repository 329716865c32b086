"""Intents an initial push writes straight in (COPY, no merge) and the merge they fall back to
when one exists after all (a retried slice): on PostgreSQL, where the fast path is."""

from __future__ import annotations

import datetime as dt

from campaign_bridge import migrations
from campaign_bridge._push_state import PushState


def _intent(digest: str, new_status: str) -> tuple[object, ...]:
    now = dt.datetime.now(dt.UTC)
    return ("crm", digest, f"key-{digest}", None, new_status, "test", True, "run-1", now)


def test_new_intents_go_straight_in_and_an_existing_one_is_replaced(postgresql_url: str) -> None:
    migrations.upgrade(postgresql_url)
    store = PushState(postgresql_url)
    try:
        store.write_intents(
            [_intent("a" * 32, "subscribed"), _intent("b" * 32, "pending")], new=True
        )
        assert {(i.email_hash, i.new_status) for i in store.load_intents("crm")} == {
            ("a" * 32, "subscribed"),
            ("b" * 32, "pending"),
        }
        # Said to be new, but "a" is there already: the merge replaces it, nothing is lost.
        store.write_intents(
            [_intent("a" * 32, "unsubscribed"), _intent("c" * 32, "pending")], new=True
        )
        assert {(i.email_hash, i.new_status) for i in store.load_intents("crm")} == {
            ("a" * 32, "unsubscribed"),
            ("b" * 32, "pending"),
            ("c" * 32, "pending"),
        }
    finally:
        store.close()
