"""The tuple rows push saves must line up with the state tables' columns."""

from __future__ import annotations

import datetime as dt

from campaign_bridge._push_state import (
    LEDGER_COLUMNS,
    STATE_COLUMNS,
    STATUS_COLUMNS,
    ConsentChange,
    ContactState,
    consent_ledger_row,
    contact_state_row,
    ledger_row,
    member_status_row,
)

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_contact_state_row_follows_the_table_column_order() -> None:
    state = ContactState(
        sync_name="crm",
        source_key="42",
        email_hash="h" * 32,
        provider_member_id="m" * 32,
        content_hash="c" * 33,
        pushed_at=NOW,
        provider_status="subscribed",
        managed=False,
        managed_tags=("a", "b"),
        last_run_id="run-1",
    )
    assert contact_state_row(**vars(state)) == tuple(getattr(state, n) for n in STATE_COLUMNS)


def test_member_status_row_follows_the_table_column_order() -> None:
    row = member_status_row(
        provider="mailchimp",
        list_id="L1",
        member_id="m" * 32,
        email="a@b.test",
        status="pending",
        last_changed=NOW,
        updated_at=NOW + dt.timedelta(seconds=1),
    )
    named = dict(zip(STATUS_COLUMNS, row, strict=True))
    assert named["member_id"] == "m" * 32
    assert named["status"] == "pending"
    assert named["unsubscribe_reason"] is None
    assert named["updated_at"] == NOW + dt.timedelta(seconds=1)


def test_ledger_row_names_every_column_but_the_id() -> None:
    change = ConsentChange(
        sync_name="crm",
        provider="mailchimp",
        email_hash="h" * 32,
        new_status="subscribed",
        origin="push",
        occurred_at=NOW,
        old_status=None,
        source_key="42",
        reason="new contact",
        run_id="run-1",
    )
    named = dict(zip(LEDGER_COLUMNS, ledger_row(change), strict=True))
    assert "id" not in named
    assert named == vars(change)
    assert consent_ledger_row(**vars(change)) == ledger_row(change)


def test_intent_entries_follow_the_intent_fields() -> None:
    from campaign_bridge._push_guard import intents_for
    from campaign_bridge._push_state import INTENT_FIELDS, Intent
    from campaign_bridge.mapping import MappedContact

    contact = MappedContact(
        key="7", email="a@mail.test", email_hash="h" * 32, consent=True, content_hash="c"
    )
    changes = [
        (contact, (None, "subscribed", "new"), True),
        (contact, ("x", "x", "kept"), None),  # a "kept" decision changes nothing
        (contact, None, None),  # nor does a send without a ledger entry
    ]
    [entry] = intents_for(changes)
    named = dict(zip(INTENT_FIELDS, entry, strict=True))
    assert set(INTENT_FIELDS) <= set(Intent.__dataclass_fields__)
    assert (named["source_key"], named["old_status"], named["new_status"]) == (
        "7",
        None,
        "subscribed",
    )
    assert (named["email_hash"], named["reason"], named["consent"]) == ("h" * 32, "new", True)
