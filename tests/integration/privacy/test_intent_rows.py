"""A person's push intents inside the rows that hold one provider call's intents each: an
access request shows only theirs, and an erasure takes only theirs out (a row left empty goes);
on PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

from campaign_bridge import access, erasure, migrations
from campaign_bridge._push_state import PushState

A, B, C = "a" * 32, "b" * 32, "c" * 32


def _entry(digest: str, key: str) -> tuple[object, ...]:
    return (digest, key, None, "subscribed", "new contact", True)


def test_access_and_erasure_see_only_the_persons_intents(database_url: str) -> None:
    migrations.upgrade(database_url)
    store = PushState(database_url)
    try:
        store.write_intents("crm", "s1", "run-1", [_entry(A, "1"), _entry(B, "2")])
        store.write_intents("crm", "s2", "run-1", [_entry(C, "3")])
        store.write_intents("other", "s1", "run-2", [_entry(A, "1")])
        # Found by address (hash) in the syncs asked about, or by source key.
        by_hash = erasure.Subject(A)
        by_key = erasure.Subject("f" * 32, keys={"crm": {"3"}})
        with store.engine.connect() as conn:
            shown = access._push_intents(conn, by_hash, ["crm"])
            assert [(i["sync_name"], i["email_hash"], i["source_key"]) for i in shown] == [
                ("crm", A, "1")
            ]
            assert shown[0]["run_id"] == "run-1"
            assert shown[0]["new_status"] == "subscribed"
            assert [i["email_hash"] for i in access._push_intents(conn, by_key, ["crm"])] == [C]
        rule = erasure.ERASE_RULES["cb_push_intents"]
        with store.engine.begin() as conn:
            batch = erasure.Batch([by_hash, by_key], ["crm"], {})
            assert rule(conn, batch) == 2
        assert [(i.slice_id, i.email_hash) for i in store.load_intents("crm")] == [("s1", B)]
        assert [i.email_hash for i in store.load_intents("other")] == [A]  # out of scope
    finally:
        store.close()
