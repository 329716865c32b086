"""Intents as push writes them: one ``cb_push_intents`` row per provider call, entries settled
as their ledger rows are written (the row with its last one), a retry's intents replacing the
earlier call's; on PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge._push_state import ConfirmedRows, PushState
from campaign_bridge.state import push_intents


def _entry(digest: str, new_status: str) -> tuple[object, ...]:
    return (digest, f"key-{digest}", None, new_status, "test", True)


def _rows(store: PushState) -> dict[str, list[str]]:
    with store.engine.connect() as conn:
        query = sa.select(push_intents.c.slice_id, push_intents.c.intents)
        return {
            slice_id: sorted(e[0] for e in entries) for slice_id, entries in conn.execute(query)
        }


A, B, C = "a" * 32, "b" * 32, "c" * 32


def test_intents_are_settled_per_member_and_replaced_by_a_retry(database_url: str) -> None:
    migrations.upgrade(database_url)
    store = PushState(database_url)
    try:
        store.write_intents("crm", "s1", "run-1", [_entry(A, "subscribed"), _entry(B, "pending")])
        store.write_intents("crm", "s2", "run-1", [_entry(C, "subscribed")])
        store.write_intents("other", "s1", "run-9", [_entry(A, "unsubscribed")])
        loaded = store.load_intents("crm")
        assert {(i.slice_id, i.email_hash, i.new_status, i.consent) for i in loaded} == {
            ("s1", A, "subscribed", True),
            ("s1", B, "pending", True),
            ("s2", C, "subscribed", True),
        }
        assert {i.run_id for i in loaded} == {"run-1"}
        # A confirmed, B to be retried: the row keeps B only.
        store.save_confirmed(ConfirmedRows(intents_done=[("crm", "s1", {A})]))
        assert {i.email_hash for i in store.load_intents("crm")} == {B, C}
        # The retry's row replaces B's earlier intent: s1, now empty, goes.
        store.write_intents("crm", "s3", "run-1", [_entry(B, "pending")], {"s1": [B]})
        assert [(i.slice_id, i.email_hash) for i in store.load_intents("crm")] == [
            ("s2", C),
            ("s3", B),
        ]
        # A whole row settled at once; the other sync's intents are its own.
        store.save_confirmed(ConfirmedRows(intents_done=[("crm", "s2", None), ("crm", "s3", None)]))
        assert store.load_intents("crm") == []
        assert [i.email_hash for i in store.load_intents("other")] == [A]
        assert list(_rows(store)) == ["s1"]
    finally:
        store.close()
