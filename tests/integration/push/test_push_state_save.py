"""PushState.save_confirmed on every engine: new rows, merged rows, and "new" rows that exist."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge._push_state import (
    ConfirmedRows,
    ConsentChange,
    MemberStatusRecord,
    PushState,
    consent_ledger_row,
    contact_state_row,
    member_status_row,
)
from campaign_bridge.state import contact_state

NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


def group(keys: range, status: str, *, new: bool, at: dt.datetime = NOW) -> ConfirmedRows:
    rows = ConfirmedRows()
    for i in keys:
        digest = f"{i:032x}"
        state = contact_state_row(
            sync_name="crm",
            source_key=str(i),
            email_hash=digest,
            provider_member_id=digest,
            content_hash=f"{status[:8]:<32}t",
            pushed_at=at,
            provider_status=status,
            managed=True,
            last_consent=True,
            managed_tags=["vip"] if i % 2 else [],
            last_run_id="run-1",
        )
        member = member_status_row(
            provider="mailchimp",
            list_id="L1",
            member_id=digest,
            email=f"user{i}@mail.test",
            status=status,
            last_changed=at,
            updated_at=at,
        )
        (rows.state_inserts if new else rows.state_updates).append(state)
        (rows.status_inserts if new else rows.status_updates).append(member)
        rows.ledger.append(
            consent_ledger_row(
                sync_name="crm",
                provider="mailchimp",
                email_hash=digest,
                source_key=str(i),
                old_status=None,
                new_status=status,
                origin="push",
                reason="test",
                run_id="run-1",
                occurred_at=at,
            )
        )
    return rows


def read(store: PushState) -> tuple[dict[str, tuple[str, object]], dict[str, str], int]:
    with store.engine.connect() as conn:
        states = {
            key: (status, tags)
            for key, status, tags in conn.execute(
                sa.select(
                    contact_state.c.source_key,
                    contact_state.c.provider_status,
                    contact_state.c.managed_tags,
                )
            )
        }
        result = conn.execute(sa.text("SELECT email, status FROM cb_member_status"))
        statuses: dict[str, str] = {}
        for email, status in result:
            statuses[email] = status
        ledger = conn.execute(sa.text("SELECT count(*) FROM cb_consent_ledger")).scalar_one()
    return states, statuses, int(ledger)


def test_new_rows_merged_rows_and_new_rows_that_already_exist(database_url: str) -> None:
    migrations.upgrade(database_url)
    store = PushState(database_url)
    try:
        store.save_confirmed(group(range(300), "subscribed", new=True))
        store.save_confirmed(group(range(100), "pending", new=False))
        # Rows the caller believed new that exist (another writer, a repeated key): merged.
        later = NOW + dt.timedelta(minutes=1)
        store.save_confirmed(group(range(250, 400), "unsubscribed", new=True, at=later))
        states, statuses, ledger = read(store)
    finally:
        store.close()
    assert len(states) == 400
    assert len(statuses) == 400
    assert states["5"] == ("pending", ["vip"])
    assert states["200"] == ("subscribed", [])
    assert states["260"][0] == "unsubscribed"
    assert states["399"][0] == "unsubscribed"
    assert statuses["user42@mail.test"] == "pending"
    assert statuses["user251@mail.test"] == "unsubscribed"
    assert ledger == 300 + 100 + 150  # the ledger only ever appends


def test_refreshed_member_statuses_are_merged(database_url: str) -> None:
    migrations.upgrade(database_url)
    store = PushState(database_url)

    def record(i: int, status: str, reason: str | None = None) -> MemberStatusRecord:
        return MemberStatusRecord(
            "mailchimp", "L1", f"{i:032x}", f"user{i}@mail.test", status, reason, NOW
        )

    try:
        store.upsert_member_statuses([record(i, "subscribed") for i in range(50)])
        store.upsert_member_statuses(
            [record(7, "unsubscribed", "spam"), record(7, "cleaned"), record(60, "pending")]
        )
        _, statuses, _ = read(store)
        with store.engine.connect() as conn:
            reason = conn.execute(
                sa.text("SELECT unsubscribe_reason FROM cb_member_status WHERE email = :e"),
                {"e": "user7@mail.test"},
            ).scalar_one()
    finally:
        store.close()
    assert len(statuses) == 51
    assert statuses["user7@mail.test"] == "cleaned"  # the last of a repeated member wins
    assert reason is None
    assert statuses["user60@mail.test"] == "pending"
    assert statuses["user8@mail.test"] == "subscribed"


def test_a_refresh_leaves_identical_status_rows_unwritten(postgresql_url: str) -> None:
    migrations.upgrade(postgresql_url)
    store = PushState(postgresql_url)

    def record(i: int, status: str) -> MemberStatusRecord:
        return MemberStatusRecord(
            "mailchimp", "L1", f"{i:032x}", f"user{i}@mail.test", status, None, NOW
        )

    def written() -> dict[str, dt.datetime]:
        with store.engine.connect() as conn:
            result = conn.execute(sa.text("SELECT email, updated_at FROM cb_member_status"))
            found: dict[str, dt.datetime] = {}
            for email, when in result:
                found[email] = when
            return found

    try:
        store.upsert_member_statuses([record(i, "subscribed") for i in range(20)])
        first = written()
        store.upsert_member_statuses(
            [record(i, "subscribed") for i in range(19)] + [record(19, "unsubscribed")]
        )
        second = written()
    finally:
        store.close()
    assert all(second[f"user{i}@mail.test"] == first[f"user{i}@mail.test"] for i in range(19))
    assert second["user19@mail.test"] > first["user19@mail.test"]


def test_a_large_batch_of_consent_changes_is_appended_whole(database_url: str) -> None:
    migrations.upgrade(database_url)
    store = PushState(database_url)
    changes = [
        ConsentChange(
            sync_name="crm",
            provider="mailchimp",
            email_hash=f"{i % 3:032x}",
            new_status="unsubscribed",
            origin="push",
            occurred_at=NOW + dt.timedelta(seconds=i),
            old_status="subscribed",
            source_key=str(i),
            reason="consent withdrawn in source",
            run_id="run-1",
        )
        for i in range(150)  # above the size that takes COPY on PostgreSQL
    ]
    try:
        store.append_consent_changes(changes)
        history = store.consent_history("crm", f"{1:032x}")
    finally:
        store.close()
    assert history == [c for c in changes if c.email_hash == f"{1:032x}"]


def test_the_ledgers_status_readers_skip_permission_rows_and_know_vacated(
    database_url: str,
) -> None:
    """Who last changed a member's status, and which status the ledger last says for an
    address, are read from status rows only: a marketing-permission row written later must not
    make the bridge forget it unsubscribed someone. An address whose last status row says
    "vacated" has no member history left (a member found there starts a fresh one)."""
    migrations.upgrade(database_url)
    store = PushState(database_url)
    later = NOW + dt.timedelta(minutes=5)
    moved, kept = "a" * 32, "b" * 32
    try:
        store.append_consent_changes(
            [
                ConsentChange("crm", "mailchimp", kept, "unsubscribed", "push", NOW, "subscribed"),
                ConsentChange("crm", "mailchimp", kept, "permission_granted", "pull", later),
                ConsentChange("crm", "mailchimp", moved, "subscribed", "push", NOW),
                ConsentChange("crm", "mailchimp", moved, "vacated", "webhook", later, "subscribed"),
            ]
        )
        last = store.last_bridge_status_change("crm", [kept, moved])
        assert last[kept][0] == "unsubscribed"
        assert moved not in last  # the webhook's "vacated" is the last change, not the bridge's
        said = store.last_ledger_statuses("crm", [kept, moved, "c" * 32])
        assert said == {kept: "unsubscribed", moved: "vacated"}
        assert store.hashes_without_history("crm", [kept, moved, "c" * 32]) == {moved, "c" * 32}
    finally:
        store.close()


def test_text_from_a_provider_is_made_storable_and_tags_come_back_as_saved(
    database_url: str,
) -> None:
    """The storable check skips the columns push fills itself (digests, statuses, run ids),
    not a provider's member id or reason; the tags document comes back as it went in, whatever
    serialised it (orjson in PostgreSQL's binary COPY, the json module where orjson refuses a
    lone surrogate)."""
    migrations.upgrade(database_url)
    store = PushState(database_url)
    rows = group(range(3), "subscribed", new=True)
    tags = [["naïve", "vip"], ["\ud800x"], []]
    rows.state_inserts = [
        (*row[:3], "id\x00", *row[4:9], tags[i], *row[10:])
        for i, row in enumerate(rows.state_inserts)
    ]
    rows.ledger = [(*row[:7], "spam\x00", *row[8:]) for row in rows.ledger]
    try:
        store.save_confirmed(rows)
        with store.engine.connect() as conn:
            saved = dict(
                conn.execute(
                    sa.select(contact_state.c.source_key, contact_state.c.managed_tags)
                ).all()
            )
            ids = set(conn.execute(sa.text("SELECT provider_member_id FROM cb_contact_state")))
            reasons = set(conn.execute(sa.text("SELECT reason FROM cb_consent_ledger")))
    finally:
        store.close()
    assert saved == {"0": tags[0], "1": tags[1], "2": tags[2]}
    assert ids == {("id",)}
    assert reasons == {("spam",)}
