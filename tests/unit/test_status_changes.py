"""Status changes: normalisation and planning, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from campaign_bridge.config import WritebackConfig
from campaign_bridge.providers.base import MemberSnapshot, MemberStatus
from campaign_bridge.status_changes import (
    VACATED,
    ContactRow,
    MemberRow,
    StatusChange,
    change_from_snapshot,
    email_hash,
    plan_changes,
)
from campaign_bridge.writeback import WriteRequest, missing_columns, values_for
from tests.webhook_rows import mailchimp_change

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EMAIL = "Ada.Lovelace@Analytical.org"
MID = email_hash(EMAIL)


def change(
    status: MemberStatus | None = MemberStatus.UNSUBSCRIBED,
    *,
    at: datetime = T0,
    origin: str = "pull",
    email: str = EMAIL,
    reason: str | None = None,
) -> StatusChange:
    return StatusChange(
        provider="mailchimp",
        list_id="L1",
        email=email,
        status=status,
        occurred_at=at,
        origin=origin,  # type: ignore[arg-type]
        reason=reason,
    )


def contact(status: str | None = "subscribed", key: str = "42") -> dict[str, list[ContactRow]]:
    return {MID: [ContactRow(source_key=key, email_hash=MID, provider_status=status)]}


def test_email_hash_is_mailchimps_subscriber_hash() -> None:
    assert email_hash("  Urist.McVankab@Freddiesjokes.com ") == "62eeb292278cc15f5817cb78f7790b08"


def test_unsubscribe_of_known_contact_writes_member_ledger_and_writeback() -> None:
    plan = plan_changes([change(reason="spam")], {}, contact(), sync_name="s", run_id="r")
    assert plan.members[MID].status == "unsubscribed"
    assert plan.members[MID].unsubscribe_reason == "spam"
    assert plan.contact_status == {"42": "unsubscribed"}
    assert len(plan.ledger) == 1
    entry = plan.ledger[0]
    assert (entry["old_status"], entry["new_status"], entry["origin"]) == (
        "subscribed",
        "unsubscribed",
        "pull",
    )
    assert entry["source_key"] == "42"
    assert plan.writes == [WriteRequest("42", "unsubscribed", T0, "subscribed")]


def test_applying_the_same_change_again_plans_nothing() -> None:
    first = plan_changes([change()], {}, contact(), sync_name="s", run_id=None)
    stored = first.members
    again = plan_changes([change()], stored, contact("unsubscribed"), sync_name="s", run_id=None)
    assert again.members == {}
    assert again.ledger == []
    assert again.writes == []
    assert again.unchanged == 1


def test_duplicate_in_one_chunk_is_written_once() -> None:
    plan = plan_changes(
        [change(origin="webhook"), change(origin="webhook")],
        {},
        contact(),
        sync_name="s",
        run_id=None,
    )
    assert len(plan.ledger) == 1
    assert len(plan.writes) == 1


def test_stale_webhook_is_skipped_but_pull_snapshot_wins() -> None:
    stored = {MID: MemberRow(MID, EMAIL, "subscribed", T0)}
    old = change(at=T0 - timedelta(minutes=5), origin="webhook")
    plan = plan_changes([old], stored, contact(), sync_name="s", run_id=None)
    assert plan.stale == 1
    assert plan.ledger == []
    pulled = change(at=T0 - timedelta(minutes=5), origin="pull")
    plan = plan_changes([pulled], stored, contact(), sync_name="s", run_id=None)
    assert plan.members[MID].status == "unsubscribed"
    assert len(plan.ledger) == 1


def test_webhook_then_pull_equals_pull_alone() -> None:
    hook = change(at=T0, origin="webhook", reason="manual")
    pulled = change(at=T0 + timedelta(seconds=2), origin="pull")
    after_hook = plan_changes([hook], {}, contact(), sync_name="s", run_id=None)
    both = plan_changes(
        [pulled], after_hook.members, contact("unsubscribed"), sync_name="s", run_id=None
    )
    alone = plan_changes([pulled], {}, contact(), sync_name="s", run_id=None)
    merged = {**after_hook.members, **both.members}
    assert merged == alone.members
    assert both.ledger == []  # the webhook already recorded the transition
    assert len(after_hook.ledger) + len(both.ledger) == len(alone.ledger)


def test_unknown_member_lands_in_member_status_without_ledger() -> None:
    plan = plan_changes([change()], {}, {}, sync_name="s", run_id=None)
    assert MID in plan.members
    assert plan.ledger == []
    assert plan.writes == []
    assert plan.unknown_contacts == 1


def test_first_sight_of_subscribed_contact_is_not_a_transition() -> None:
    plan = plan_changes(
        [change(MemberStatus.SUBSCRIBED)], {}, contact(None), sync_name="s", run_id=None
    )
    assert plan.contact_status == {"42": "subscribed"}
    assert plan.ledger == []
    assert plan.writes == [WriteRequest("42", "subscribed", T0, None, transition=False)]


def test_last_changed_moving_without_status_change_records_nothing() -> None:
    stored = {MID: MemberRow(MID, EMAIL, "unsubscribed", T0)}
    later = change(at=T0 + timedelta(days=1))
    plan = plan_changes([later], stored, contact("unsubscribed"), sync_name="s", run_id=None)
    assert plan.members[MID].last_changed == T0 + timedelta(days=1)
    assert plan.ledger == []
    assert plan.writes == []


def test_email_change_moves_the_member() -> None:
    new = "ada@newhome.org"
    stored = {MID: MemberRow(MID, EMAIL, "subscribed", T0)}
    moved = StatusChange(
        provider="mailchimp",
        list_id="L1",
        email=new,
        status=None,
        occurred_at=T0 + timedelta(hours=1),
        origin="webhook",
        previous_email=EMAIL,
    )
    plan = plan_changes([moved], stored, {}, sync_name="s", run_id=None)
    assert plan.deleted_members == {MID}
    assert plan.members[email_hash(new)].status == "subscribed"
    assert plan.email_changes == 1
    again = plan_changes(
        [moved], {email_hash(new): plan.members[email_hash(new)]}, {}, sync_name="s", run_id=None
    )
    assert again.email_changes == 0
    assert again.members == {}


def test_an_address_a_member_left_gets_one_vacated_row_closing_its_history() -> None:
    new = "ada@newhome.org"
    stored = {MID: MemberRow(MID, EMAIL, "subscribed", T0)}
    moved = StatusChange(
        provider="mailchimp",
        list_id="L1",
        email=new,
        status=None,
        occurred_at=T0 + timedelta(hours=1),
        origin="webhook",
        previous_email=EMAIL,
    )
    said = {MID: "subscribed"}
    plan = plan_changes([moved], stored, contact(), sync_name="s", run_id="r", ledger_last=said)
    vacated = [row for row in plan.ledger if row["email_hash"] == MID]
    assert len(vacated) == 1
    assert (vacated[0]["old_status"], vacated[0]["new_status"]) == ("subscribed", VACATED)
    assert (vacated[0]["source_key"], vacated[0]["origin"]) == ("42", "webhook")
    moves = [row for row in plan.ledger if row["email_hash"] == email_hash(new)]
    assert len(moves) == 1  # the contact follows its member, as before
    # Closed once: an address already vacated, or one without history, gets no row.
    for last in ({MID: VACATED}, {}):
        again = plan_changes([moved], stored, {}, sync_name="s", run_id="r", ledger_last=last)
        assert [row for row in again.ledger if row["new_status"] == VACATED] == []


def test_snapshot_becomes_pull_change() -> None:
    snap = MemberSnapshot(
        member_id=MID,
        email=EMAIL,
        status=MemberStatus.CLEANED,
        last_changed=datetime(2026, 3, 1, 12, 0, 0, 999, tzinfo=UTC),
    )
    got = change_from_snapshot(snap, provider="mailchimp", list_id="L1", fetched_at=T0)
    assert got.status == MemberStatus.CLEANED
    assert got.origin == "pull"
    assert got.occurred_at == T0  # whole seconds, UTC
    assert got.member_id == MID


def test_webhook_forms() -> None:
    base = {"fired_at": "2026-03-01 12:00:00", "data[list_id]": "L1", "data[email]": EMAIL}
    unsub = mailchimp_change(
        {**base, "type": "unsubscribe", "data[reason]": "manual", "data[campaign_id]": "c9"}
    )
    assert unsub is not None
    assert (unsub.status, unsub.reason, unsub.campaign_id) == ("unsubscribed", "manual", "c9")
    assert unsub.occurred_at == T0
    archived = mailchimp_change({**base, "type": "unsubscribe", "data[action]": "delete"})
    assert archived is not None
    assert archived.status == "archived"
    cleaned = mailchimp_change({**base, "type": "cleaned", "data[reason]": "hard"})
    assert cleaned is not None
    assert cleaned.status == "cleaned"
    sub = mailchimp_change({**base, "type": "subscribe"})
    assert sub is not None
    assert sub.status == "subscribed"
    up = mailchimp_change(
        {
            "type": "upemail",
            "fired_at": "2026-03-01 12:00:00",
            "data[list_id]": "L1",
            "data[new_email]": "b@x.org",
            "data[old_email]": EMAIL,
        }
    )
    assert up is not None
    assert up.previous_email == EMAIL
    assert up.email == "b@x.org"
    assert mailchimp_change({**base, "type": "profile"}) is None


def test_writeback_values_per_status() -> None:
    config = WritebackConfig(
        table="contacts",
        key_column="id",
        status_column="mc_status",
        unsubscribed_at_column="unsub_at",
        bounced_at_column="bounced_at",
        consent_column="consent",
    )
    assert values_for(WriteRequest("1", "unsubscribed", T0), config) == {
        "mc_status": "unsubscribed",
        "unsub_at": T0,
        "consent": False,
    }
    assert values_for(WriteRequest("1", "cleaned", T0), config) == {
        "mc_status": "cleaned",
        "bounced_at": T0,
    }
    assert values_for(WriteRequest("1", "subscribed", T0), config) == {"mc_status": "subscribed"}
    back = WriteRequest("1", "subscribed", T0, previous="unsubscribed")
    assert values_for(back, config) == {
        "mc_status": "subscribed",
        "unsub_at": None,
        "consent": True,
    }
    catch_up = WriteRequest("1", "cleaned", T0, previous="cleaned", transition=False)
    assert values_for(catch_up, config) == {"mc_status": "cleaned"}
    minimal = WritebackConfig(table="contacts", consent_column="consent")
    assert values_for(WriteRequest("1", "archived", T0), minimal) == {}


def test_missing_columns_lists_every_one() -> None:
    config = WritebackConfig(
        table="contacts",
        key_column="id",
        status_column="nope1",
        unsubscribed_at_column="Unsub_At",
        consent_column="nope2",
    )
    problems = missing_columns("crm", config, ["id", "unsub_at", "email"])
    assert [p.location for p in problems] == [
        "syncs.crm.writeback.status_column",
        "syncs.crm.writeback.consent_column",
    ]
    assert "nope1" in str(problems[0])


def test_a_new_member_where_the_contacts_member_was_erased_releases_the_contact() -> None:
    """F28: after a permanent delete, a member found at the address is someone else's; the
    contact no longer owns it (mirror mode may not archive it). Any other change keeps it."""
    erased = plan_changes(
        [change(MemberStatus.SUBSCRIBED)], {}, contact("forgotten"), sync_name="s", run_id=None
    )
    assert erased.released == {"42"}
    assert erased.contact_status == {"42": "subscribed"}
    other = plan_changes(
        [change(MemberStatus.SUBSCRIBED)], {}, contact("unsubscribed"), sync_name="s", run_id=None
    )
    assert other.released == set()
