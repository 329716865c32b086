"""Sequences the consent model found, replayed as plain tests (F-numbers as in issue 11's
findings). Each drives the same machine as test_consent_model.py, step by step, so every
invariant is checked after every step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.consent_model.harness import environment
from tests.integration.consent_model.reference import member_id
from tests.integration.consent_model.test_consent_model import ConsentModel


@pytest.fixture
def machine(postgresql_url: str, tmp_path: Path) -> Iterator[ConsentModel]:
    with environment(postgresql_url, tmp_path) as env:
        ConsentModel.env = env
        yield ConsentModel()


@pytest.fixture
def on_any_store(database_url: str, tmp_path: Path) -> Iterator[ConsentModel]:
    """The machine with its source table and state store on SQLite, PostgreSQL and MariaDB in
    turn (``database_url``), for the findings whose fix lives in the state store's queries."""
    with environment(database_url, tmp_path) as env:
        ConsentModel.env = env
        yield ConsentModel()


def test_an_admin_unsubscribe_found_at_first_link_is_not_the_bridges_to_undo(
    machine: ConsentModel,
) -> None:
    """F12: a member an admin had unsubscribed before the bridge linked a contact to it was
    recorded as "first seen" with origin push, so a later re-consent in the source counted
    as undoing the bridge's own unsubscribe and re-subscribed them. It must ask
    re-confirmation instead (the model's check fails with "subscribed after a provider-side
    'unsubscribed'")."""
    machine.start(mirror=False, webhooks=True, rows=[(1, False)])
    machine.form_signup(n=0)
    machine.provider_event(n=0, verb="admin-unsubscribe")
    machine.insert(n=0, consent=True)  # row 2 at p0
    machine.push()
    machine.set_consent(i=1, consent=False)
    machine.push()
    machine.set_consent(i=1, consent=True)
    machine.push()  # checks every invariant after the step
    statuses, _ = machine.env.provider()
    assert statuses[member_id(machine.env.address(0))] == "pending"  # re-confirmation asked
    machine.teardown()


def test_a_new_member_at_an_address_an_earlier_member_left_is_recorded_when_linked(
    machine: ConsentModel,
) -> None:
    """F11: the address's ledger rows belonged to the member who moved away from it, so the
    new member found there (a form signup) got no "first seen" row ("the ledger's last change
    for it says nothing")."""
    machine.start(mirror=False, webhooks=True, rows=[(2, True)])
    machine.push()
    machine.provider_event(n=0, verb="self-unsubscribe")
    machine.member_changes_address(n=0, to=0)  # the member moves p2 -> p0
    machine.push()
    machine.form_signup(n=2)  # someone new at p2
    machine.delete_row(i=0)
    machine.push()
    machine.insert(n=2, consent=True)
    machine.push()  # checks every invariant after the step
    statuses, _ = machine.env.provider()
    assert statuses[member_id(machine.env.address(2))] == "subscribed"  # their own signup
    machine.teardown()


def test_an_address_change_onto_an_archived_member_saves_the_old_members_unsubscribe(
    machine: ConsentModel,
) -> None:
    """F10: a row's address changes to one that is another member, which an admin archives as
    the push starts. The push leaves the archived member alone and unsubscribes the member at
    the previous address, with its ledger row, but the contact's state (still at the previous
    address) kept saying "subscribed": the next push's refresh recorded the unsubscribe a
    second time ("does not start where row 2 ... ended")."""
    machine.start(mirror=False, webhooks=True, rows=[(0, True)])
    machine.push()
    machine.form_signup(n=1)  # p1 is another member
    machine.change_address(i=0, n=1)  # the row moves p0 -> p1
    machine.push_racing_a_provider_event(n=0, verb="archive", at=(1, "before-read"))
    statuses, _ = machine.env.provider()
    assert statuses[member_id(machine.env.address(0))] == "unsubscribed"
    assert statuses[member_id(machine.env.address(1))] == "archived"
    machine.push()  # checks every invariant after the step
    machine.pull()
    machine.teardown()


def test_a_new_member_at_an_address_an_earlier_member_left_starts_a_fresh_history(
    machine: ConsentModel,
) -> None:
    """F11b: as F11, but the new member's status (subscribed) is the one the earlier member's
    last ledger row at that address says: the push took that row for the new member's and
    wrote no "first seen" row. The address change now records that the address was vacated,
    so a member found there later starts its own history."""
    machine.start(mirror=False, webhooks=True, rows=[(2, True)])
    machine.push()
    machine.member_changes_address(n=0, to=0)  # the member moves p2 -> p0, still subscribed
    machine.push()
    machine.form_signup(n=2)  # someone new at p2, subscribed too
    machine.delete_row(i=0)
    machine.push()
    machine.insert(n=2, consent=True)
    machine.push()  # checks every invariant after the step
    machine.teardown()


def test_a_status_change_between_the_refresh_and_a_send_without_status_gets_its_row(
    machine: ConsentModel,
) -> None:
    """F14 (found while replaying F10): an admin unsubscribes a member after the push's status
    refresh read its page and before the push sends the member's fields (a send that carries no
    status, so nothing re-reads it). The provider's answer says "unsubscribed"; the push saved
    that as the contact's status with no ledger row, and a contact first linked to the member
    got a "first seen" row with the status the push had decided on ("the ledger's last change
    for it says None -> subscribed"). The 9th read is the last of the run's start (the audience
    and the refresh's per-status pages), whatever order they interleave in."""
    machine.start(mirror=False, webhooks=False, rows=[(0, True)])
    machine.form_signup(n=1)
    machine.insert(n=1, consent=True)  # row 2, at a member that signed up through a form
    machine.push_racing_a_provider_event(n=1, verb="admin-unsubscribe", at=(9, "before-read"))
    statuses, _ = machine.env.provider()
    assert statuses[member_id(machine.env.address(1))] == "unsubscribed"
    machine.push()  # checks every invariant after the step
    machine.pull()
    machine.teardown()


def test_a_permanent_delete_without_webhooks_reaches_the_ledger_at_the_next_pull(
    machine: ConsentModel,
) -> None:
    """F13 (found after the privacy merge): with no webhooks, a member bounced and then deleted
    permanently at the provider vanishes from its member listings; the next pull must still
    record the deletion."""
    machine.start(rows=[(1, True)], mirror=False, webhooks=False)
    machine.push()
    machine.provider_event(n=1, verb="bounce")
    machine.provider_event(n=1, verb="delete-permanent")
    machine.pull()  # checks every invariant after the step
    machine.teardown()


def test_an_address_change_at_the_provider_without_webhooks_is_not_a_delete(
    machine: ConsentModel,
) -> None:
    """F15 (deep run, after F10/F11b were fixed): with no webhooks, a member changes its address
    at the provider; the next pull sees the audience hold fewer members than it knows, lists
    them, misses the old address, reads it (404) and records it as deleted permanently ("ledger
    row 4 (pull: subscribed -> forgotten) is status change number 2 of member ...; the provider
    made 1"). Nobody is re-subscribed: the ledger says "forgotten" where the member moved."""
    machine.start(mirror=False, webhooks=False, rows=[(0, True)])
    machine.push()
    machine.member_changes_address(n=0, to=1)
    machine.pull()  # checks every invariant after the step
    machine.teardown()


def test_a_permanent_delete_without_webhooks_reaches_the_ledger_at_the_next_push(
    machine: ConsentModel,
) -> None:
    """F16 (deep run): with no webhooks, a member is deleted permanently at the provider and
    its row leaves the source, so push never sends to it again; after the next completed push
    the ledger still says the member is subscribed ("row 1's member is forgotten at the
    provider; the ledger's last change for it says None -> subscribed"). A pull records it
    (F13); docs/push.md states the gap."""
    machine.start(mirror=False, webhooks=False, rows=[(0, True)])
    machine.push()
    machine.provider_event(n=0, verb="delete-permanent")
    machine.delete_row(i=0)
    machine.push()  # checks every invariant after the step
    machine.teardown()


def test_a_re_consent_at_an_address_two_rows_share_is_recorded_once(
    machine: ConsentModel,
) -> None:
    """F17 (deep run, after F10/F11b/F14 were fixed). Two of three rows start at one address.
    A row leaves the source during a push, and mirror mode archives that address's member
    (ledger: "push: subscribed -> archived"); another contact's address changes onto it, with
    consent; the next push sends "pending" ("push: archived -> pending") and unsubscribes the
    contact's previous address; the pull after it writes "pull: archived -> pending" again ("is
    status change number 4 of member ...; the provider made 3"). Nobody is re-subscribed: one
    change was in the ledger twice. The stale state of the row that left the source still
    pointed at the member; it now catches up without a second row."""
    machine.start(mirror=True, webhooks=False, rows=[(1, True), (3, True), (1, True)])
    machine.set_consent(i=0, consent=True)
    machine.push()
    machine.pull()
    machine.push_racing_a_source_delete(i=2, call=6)
    machine.pull()
    machine.change_address(i=0, n=1)
    machine.pull()
    machine.two_pushes_at_once()
    machine.pull()  # checks every invariant after the step
    machine.teardown()


def test_a_bounce_before_the_unsubscribe_of_a_previous_address_is_not_overwritten(
    machine: ConsentModel,
) -> None:
    """F18 (deep run, after F15/F16 were fixed; shrunk by hand from 24 steps). A row's address
    changes to an address that is another member (a form signup), so push unsubscribes the
    member at its previous address -- an explicit status change, sent after the run's other
    sends without being re-read first. The previous address bounces after the push's first
    write: the unsubscribe overwrote "cleaned" ("the bridge set p0 unsubscribed after a
    provider-side 'cleaned'"). The previous addresses are now re-read before that unsubscribe,
    as every other explicit status change is."""
    machine.start(mirror=False, webhooks=False, rows=[(0, True)])
    machine.push()
    machine.form_signup(n=1)  # p1 is another member
    machine.change_address(i=0, n=1)  # the row moves p0 -> p1
    machine.insert(n=0, consent=True)  # a row at p0, so the race can pick its member
    machine.push_racing_a_provider_event(n=1, verb="bounce", at=(1, "after-write"))
    statuses, _ = machine.env.provider()
    assert statuses[member_id(machine.env.address(0))] == "cleaned"
    machine.push()  # checks every invariant after the step
    machine.pull()
    machine.teardown()


def test_a_member_mirror_mode_cannot_archive_keeps_its_status_in_the_state(
    on_any_store: ConsentModel,
) -> None:
    """F19 (deep run, after F18 was fixed; shrunk by Hypothesis). A member the bridge created
    bounces; its row leaves the source. Mirror mode asks to archive it, Mailchimp will not
    archive a cleaned member (nothing changes), yet the contact's state was saved "archived"
    without a ledger row, so the next pull recorded "archived -> cleaned", a change nobody
    made ("does not start where row 2 (pull: subscribed -> cleaned) ended")."""
    on_any_store.start(mirror=True, rows=[(0, True)], webhooks=False)
    on_any_store.push_racing_a_provider_event(at=(1, "after-write"), n=0, verb="bounce")
    on_any_store.push_racing_a_source_delete(call=1, i=0)
    statuses, _ = on_any_store.env.provider()
    assert statuses[member_id(on_any_store.env.address(0))] == "cleaned"
    on_any_store.pull()  # checks every invariant after the step
    on_any_store.push()
    on_any_store.teardown()


def test_a_form_signup_at_the_address_a_member_left_without_webhooks_gets_its_row(
    on_any_store: ConsentModel,
) -> None:
    """F20 (deep run 3, after F18 and F19 were fixed; 100 x 30, found in 8 minutes; shrunk by
    hand). With no webhooks, a member the bridge created (p3) changes its address at the
    provider (to p0), signs up again there through the provider's form and confirms, and
    someone else signs up at the address it left (p3). The audience then holds as many members
    as the bridge knows, so the count check of campaign_bridge.vanished lists nothing; pull saw
    a subscribed member at p3 and recorded nothing, though it is a new member (another provider
    id) whose subscribe the ledger never explains ("row 1's member is subscribed at the
    provider; the ledger's last change for it says nothing"). Nobody was subscribed by the
    bridge. Now a stored address listed with another provider id is a new member there,
    whatever the counts say: the stored member's address change (to where its id is listed) is
    recorded first -- the contact follows it, p3's history ends ("vacated") -- and the member
    at p3 lands as a new one."""
    on_any_store.start(mirror=False, rows=[(3, True)], webhooks=False)
    on_any_store.push()
    on_any_store.member_changes_address(n=0, to=0)
    on_any_store.form_signup(n=0)
    on_any_store.confirm(n=0)
    on_any_store.form_signup(n=3)
    on_any_store.pull()  # checks every invariant after the step
    env = on_any_store.env
    [state] = env.contact_states()
    assert state.email_hash == member_id(env.address(0))  # the contact followed its member
    left = [e.new_status for e in env.ledger() if e.email_hash == member_id(env.address(3))]
    assert left[-1] == "vacated"
    on_any_store.teardown()


def test_a_form_signup_at_the_address_a_member_left_gets_its_row_at_the_next_push(
    on_any_store: ConsentModel,
) -> None:
    """F20 on push's read-back path: the same sequence, with a push (its status refresh lists
    the members changed since the last run) instead of the pull; a pull after it adds
    nothing the model would count twice."""
    on_any_store.start(mirror=False, rows=[(3, True)], webhooks=False)
    on_any_store.push()
    on_any_store.member_changes_address(n=0, to=0)
    on_any_store.form_signup(n=0)
    on_any_store.confirm(n=0)
    on_any_store.form_signup(n=3)
    on_any_store.push()  # checks every invariant after the step
    on_any_store.pull()
    on_any_store.teardown()


def test_a_form_signup_at_an_address_deleted_permanently_without_webhooks_gets_its_rows(
    on_any_store: ConsentModel,
) -> None:
    """F20's other case: with no webhooks, a member the bridge created is deleted permanently
    at the provider and someone signs up at its address through the form before the next pull,
    so the counts agree again. The stored member's id is listed nowhere: its deletion is
    recorded ("forgotten"), then the new member's subscribe."""
    on_any_store.start(mirror=False, rows=[(3, True)], webhooks=False)
    on_any_store.push()
    on_any_store.provider_event(n=0, verb="delete-permanent")
    on_any_store.form_signup(n=3)
    on_any_store.pull()  # checks every invariant after the step
    on_any_store.push()
    on_any_store.teardown()


def _member_moves_onto_row_1s_address_then_row_2_leaves(machine: ConsentModel) -> None:
    """F21's sequence (see the test below), up to the push after row 2 left the source."""
    machine.start(mirror=True, webhooks=False, rows=[(1, False), (2, True), (0, False)])
    machine.push()
    machine.member_changes_address(n=0, to=3)  # row 2's member: p2 -> p3
    machine.member_changes_address(n=0, to=1)  # p3 -> p1, row 1's address
    machine.push()  # row 2's contact follows its member to p1
    machine.delete_row(i=1)  # row 2 leaves the source
    machine.push()  # checks every invariant after the step


def test_mirror_mode_does_not_archive_a_member_that_moved_onto_an_address_in_the_source(
    on_any_store: ConsentModel,
) -> None:
    """F21 (deep run 4, after F20 was fixed; 100 x 30, found in 19 minutes; shrunk by
    Hypothesis, two no-op steps taken out by hand). Mirror mode, no webhooks. The member the
    bridge created for row 2 (p2) changes its address at the provider to p3 and then to p1,
    which is row 1's address in the source (row 1 has no consent, so p1 was never a member).
    The next push moves row 2's contact with its member to p1 (F15's count check). Row 2 then
    leaves the source, and the push after that archived row 2's member -- now at p1, an address
    still in the source ("the bridge archived p1@... while it is in the source"). Nobody was
    subscribed by the bridge. Fixed: mirror mode archives a contact that left the source only
    when no row still in the source has the member's present address. The harness reads the
    source incrementally (``updated_at``), so that push does not read row 1 again: the source
    is asked by address, on every engine."""
    _member_moves_onto_row_1s_address_then_row_2_leaves(on_any_store)
    statuses, _ = on_any_store.env.provider()
    assert statuses[member_id(on_any_store.env.address(1))] == "subscribed"
    on_any_store.pull()
    on_any_store.push()  # asked again, kept again
    on_any_store.teardown()


def test_the_member_that_moved_onto_a_source_address_is_that_rows_until_it_leaves(
    on_any_store: ConsentModel,
) -> None:
    """After F21, row 1 (no consent) holds the address row 2's member moved onto. Row 1's own
    consent changes go to that member under the consent rules (a withdrawal unsubscribes it,
    recorded with row 1's key); the member stays the bridge's own (row 2's contact, kept in
    the state store), so once row 1 leaves too, mirror mode archives it."""
    _member_moves_onto_row_1s_address_then_row_2_leaves(on_any_store)
    p1 = member_id(on_any_store.env.address(1))
    on_any_store.set_consent(i=0, consent=True)  # row 1 (key 1)
    on_any_store.push()
    on_any_store.set_consent(i=0, consent=False)
    on_any_store.push()
    statuses, _ = on_any_store.env.provider()
    assert statuses[p1] == "unsubscribed"
    withdrawal = on_any_store.env.ledger()[-1]
    assert (withdrawal.email_hash, withdrawal.source_key, withdrawal.new_status) == (
        p1,
        "1",
        "unsubscribed",
    )
    on_any_store.delete_row(i=0)  # row 1 leaves: no row holds p1 any more
    on_any_store.push()
    statuses, _ = on_any_store.env.provider()
    assert statuses[p1] == "archived"
    on_any_store.teardown()


def test_a_push_after_a_member_moved_at_the_provider_leaves_the_move_alone(
    machine: ConsentModel,
) -> None:
    """Issue 11, found by a colleague, not by the model (it checked neither renames nor who
    may opt out a member that moved): a member changes its address at the provider, someone
    else signs up at the address it left, and the source row is read again unchanged (a
    rewrite of the same consent). The push renamed the member back, or -- with the newcomer
    there -- unsubscribed it and linked the row to the newcomer. The model now flags both."""
    machine.start(mirror=False, webhooks=True, rows=[(1, True), (3, True)])
    machine.push()
    machine.member_changes_address(n=0, to=2)  # p1 -> p2
    machine.set_consent(i=0, consent=True)  # the same value: the row is read again
    machine.push()  # checks every invariant after the step
    machine.form_signup(n=1)  # someone new at p1
    machine.set_consent(i=0, consent=True)
    machine.push()
    statuses, _ = machine.env.provider()
    env = machine.env
    assert statuses[member_id(env.address(2))] == "subscribed"  # the member, where it went
    assert statuses[member_id(env.address(1))] == "subscribed"  # the newcomer
    machine.set_consent(i=0, consent=False)  # the row's own withdrawal reaches the member
    machine.push()
    statuses, _ = machine.env.provider()
    assert statuses[member_id(env.address(2))] == "unsubscribed"
    assert statuses[member_id(env.address(1))] == "subscribed"
    machine.teardown()


def test_f22_a_new_row_at_the_address_another_row_just_left_does_not_take_its_member(
    on_any_store: ConsentModel,
) -> None:
    """F22 (deep run of 200 x 30 on a5771fa; shrunk by Hypothesis to 13 steps, by hand to
    these 7: its two races became a plain push and a plain delete, and mirror mode, a
    self-unsubscribe, a form signup and the steps that changed nothing came out). Upsert
    mode, no webhooks. Row 1 (p1) and row 2 (p0) both consent; a push creates both members.
    Row 1's address changes to p2 and row 2 leaves the source (its contact state stays, at
    p0); the next push renames row 1's member in place, p1 -> p2. Then row 1 goes back to p1,
    and a new row with no consent is inserted at p2 -- the address row 1 just left -- under
    the freed key 2, whose state still says p0. The last push handles both rows against the
    one member now at p2: it renames row 1's member back to p1 (status kept), and, for row 2
    ("address changed to an address that is another member"), takes that same member as row
    2's, records "push: subscribed -> unsubscribed" under p2 and row 2's key ("consent
    withdrawn in source") and unsubscribes it -- row 1's member, which row 1 still consents
    to, and which is now at p1. The push's read-back then finds row 1's member unsubscribed
    and records the same change again ("pull: subscribed -> unsubscribed, key 1": "does not
    start where row ... (push: subscribed -> unsubscribed) ended", "status change number 3
    ... the provider made 2"), and the state store says row 2 is at p2, unsubscribed, where
    the provider has nobody ("the provider says None"). Nobody is re-subscribed; one member
    was claimed by two rows in one push, and one row's missing consent unsubscribed the
    other row's member. Cause: push plans each row's address move on its own
    (``AddressMove.of`` in ``_plan_chunk``) against the statuses read at the run's start, so
    the member is row 1's rename source and row 2's "known" member at once."""
    on_any_store.start(mirror=False, webhooks=False, rows=[(1, True), (0, True)])
    on_any_store.push()
    on_any_store.change_address(i=0, n=2)  # row 1: p1 -> p2
    on_any_store.delete_row(i=1)  # row 2 (p0) leaves the source
    on_any_store.push()  # row 1's member is renamed in place, p1 -> p2
    on_any_store.change_address(i=0, n=1)  # row 1: p2 -> p1
    on_any_store.insert(n=2, consent=False)  # a new row 2 at p2, no consent
    on_any_store.push()  # checks every invariant after the step
    on_any_store.teardown()


def test_f22_variant_a_new_row_at_the_left_address_never_re_subscribes_the_moved_member(
    on_any_store: ConsentModel,
) -> None:
    """F22 with a self-unsubscribe: the person at p1 unsubscribes after the first push. Row 1
    then moves to p2 (its member is renamed, still unsubscribed), row 2 leaves, row 1 moves
    back to p1 and a new row 2 with no consent arrives at p2. Before the fix the last push
    took row 1's unsubscribed member as row 2's as well, and the model reported "p1
    subscribed after a provider-side unsubscribe". Now row 2 waits one run: the member at
    p2 is row 1's, renamed away in that same push; the next push finds p2 free."""
    on_any_store.start(mirror=False, webhooks=False, rows=[(1, True), (0, True)])
    on_any_store.push()
    on_any_store.provider_event(n=1, verb="self-unsubscribe")
    on_any_store.change_address(i=0, n=2)  # row 1: p1 -> p2
    on_any_store.delete_row(i=1)  # row 2 (p0) leaves the source
    on_any_store.push()
    on_any_store.change_address(i=0, n=1)  # row 1: p2 -> p1
    on_any_store.insert(n=2, consent=False)  # a new row 2 at p2, no consent
    on_any_store.push()  # row 2 waits for the next run
    on_any_store.push()  # p2 is free now: row 2 is decided as a row of its own
    on_any_store.pull()
    on_any_store.teardown()


def test_f24_a_new_row_at_an_address_left_by_an_opted_out_member_is_not_subscribed(
    on_any_store: ConsentModel,
) -> None:
    """F24 (deep run of 200 x 30 on f3a8e42, its linked form; see the xfail below for the
    form it was found in). Row 1 (p1) is pushed; the person unsubscribes, then changes their
    address at the provider to p0 (the contact follows; p1 gets its "vacated" ledger row). A
    row 1 moves on to p2 in the source and a new row with consent arrives at p1, an address
    nobody uses now but where the person opted
    out: it may still be theirs. Before the fix push created p1 subscribed; now the opt-out
    counts, as one carried by a source address change does (added unsubscribed, or pending
    where re-consent asks re-confirmation)."""
    on_any_store.start(mirror=False, webhooks=True, rows=[(1, True)])
    on_any_store.push()
    on_any_store.provider_event(n=0, verb="self-unsubscribe")
    on_any_store.member_changes_address(n=0, to=0)  # p1 -> p0 at the provider
    on_any_store.change_address(i=0, n=2)  # row 1 moves on in the source: p2
    on_any_store.insert(n=1, consent=True)  # a new row 2 at p1
    on_any_store.push()  # checks every invariant after the step
    on_any_store.teardown()


def test_f24_cleaned_nothing_is_created_at_an_address_that_bounced_before_its_member_moved(
    on_any_store: ConsentModel,
) -> None:
    """F24 with a bounce (deep run of 200 x 30 on bba32e7): the member at p1 was cleaned, then
    moved to p0 at the provider; a new row with consent at p1 was added ``unsubscribed``
    there, a status change of an address that bounced. Now nothing is created at it."""
    on_any_store.start(mirror=True, webhooks=True, rows=[])
    on_any_store.form_signup(n=1)
    on_any_store.provider_event(n=0, verb="bounce")
    on_any_store.pull()
    on_any_store.member_changes_address(n=0, to=0)  # p1 -> p0 at the provider
    on_any_store.insert(n=1, consent=True)  # a new row at p1
    on_any_store.push()  # checks every invariant after the step
    on_any_store.pull()
    on_any_store.teardown()


def test_f24_unlinked_the_opt_out_of_a_member_no_row_spoke_for_is_remembered(
    machine: ConsentModel,
) -> None:
    """F24 as the deep run found it (25 steps on f3a8e42, shrunk by hand to these). A member
    the bridge never linked to a row (it signed up through the form) unsubscribes at p1, then
    moves to p0 at the provider. A new row with consent arrives at p1; push created p1
    subscribed, and the model said p1 is subscribed after a provider-side unsubscribe. The
    bridge could not tell: its ledger held rows only for addresses a row of the sync spoke
    for, and cb_member_status follows the member to p0. Now the move of an opted-out member
    writes the address's "vacated" row (old status: the opt-out) even without a history
    there, and push reads it as it does for the linked form above."""
    machine.start(mirror=False, webhooks=True, rows=[])
    machine.form_signup(n=1)
    machine.provider_event(n=0, verb="self-unsubscribe")
    machine.pull()
    machine.member_changes_address(n=0, to=0)  # p1 -> p0 at the provider
    machine.insert(n=1, consent=True)  # a new row at p1
    machine.push()  # checks every invariant after the step
    machine.teardown()


def test_f25_a_member_that_only_passed_through_a_rows_address_is_not_that_rows(
    machine: ConsentModel,
) -> None:
    """F25 (deep run of 200 x 30 on 3583804; shrunk from 24 steps to these 6). It was the
    model's error: the model let every row at an address follow the member that moved away
    from it at the provider. Row 1 (p2) and row 2 (p0) consent and are pushed; row 3 (p1)
    gives no consent, so the bridge never acts on it. Row 2's member moves to p3, row 1's to
    p1 and back to p2, all at the provider; row 1 then moves to p3 in the source, an address
    that is a member already, so the push unsubscribes row 1's previous member at p2 (the
    documented rule). The model had counted that member as row 3's as well, as it had passed
    through p1, and reported "the bridge set p2 unsubscribed, the member that moved there
    from p1 at the provider". A row follows only the member the bridge linked it to now."""
    machine.start(mirror=False, webhooks=False, rows=[(2, True), (0, True), (1, None)])
    machine.push()
    machine.member_changes_address(n=0, to=3)  # row 2's member: p0 -> p3
    machine.member_changes_address(n=2, to=1)  # row 1's member: p2 -> p1
    machine.member_changes_address(n=0, to=2)  # row 1's member: p1 -> p2
    machine.change_address(i=0, n=3)  # row 1: p2 -> p3 in the source
    machine.push()  # checks every invariant after the step
    statuses, _ = machine.env.provider()
    assert statuses[member_id(machine.env.address(2))] == "unsubscribed"
    machine.teardown()


def test_f26_the_previous_member_of_an_address_change_is_not_unsubscribed_for_another_row(
    on_any_store: ConsentModel,
) -> None:
    """F26 (deep run of 200 x 30 on c566e40, found in 8 minutes). Upsert mode, no webhooks.
    Row 1 (p0) consents and is pushed. A row 2 with consent arrives at p2, and row 1's member
    moves to p2 at the provider (a pull follows it there). Row 1 then moves to p1 in the
    source, where someone signed up through the form. The push took the form's member as row
    1's and unsubscribed row 1's previous member, at p2 -- the address row 2 holds and
    consents for, and which the same push had taken as row 2's: the state store said row 2
    is subscribed where the provider said unsubscribed. The previous address of an address
    change is now unsubscribed only when no source row holds it."""
    on_any_store.start(mirror=False, webhooks=False, rows=[(0, True)])
    on_any_store.push()
    on_any_store.insert(n=2, consent=True)  # row 2 at p2
    on_any_store.member_changes_address(n=0, to=2)  # row 1's member: p0 -> p2
    on_any_store.pull()
    on_any_store.change_address(i=0, n=1)  # row 1: p0 -> p1 in the source
    on_any_store.form_signup(n=1)  # someone signs up at p1
    on_any_store.pull()
    on_any_store.push()  # checks every invariant after the step
    statuses, _ = on_any_store.env.provider()
    assert statuses[member_id(on_any_store.env.address(2))] == "subscribed"
    on_any_store.teardown()


def test_f27_a_row_deleted_after_the_push_read_it_may_still_be_created(
    machine: ConsentModel,
) -> None:
    """F27 (deep run of 200 x 30 on 5ae4554; shrunk from 15 steps to 2). The model's error: a
    row with consent is deleted from the source just before the push's create call (the push
    had read it), and the push creates the member subscribed, as read. The model checked the
    create against the source after the delete and reported "no source row with that address
    gives consent". A row deleted while a push runs now counts as read by that push; in
    mirror mode the same push's mirror step, after the stream, archives the member it
    created, as its key is gone."""
    machine.start(mirror=True, webhooks=True, rows=[(2, True)])
    machine.push_racing_a_source_delete(call=11, i=0)  # row 1 goes just before the create
    statuses, _ = machine.env.provider()
    assert statuses[member_id(machine.env.address(2))] == "archived"
    machine.teardown()


def test_f28_a_form_signup_where_the_bridges_member_was_erased_is_not_the_bridges(
    on_any_store: ConsentModel,
) -> None:
    """F28 (deep run of 200 x 30 on 1201941, found in 9 minutes; shrunk from 24 steps). Mirror
    mode, no webhooks. The bridge creates p2 for row 1; an admin deletes it permanently; row 1
    leaves the source (its contact state stays, "forgotten", the bridge's own). Someone then
    signs up at p2 through the form, and the next push took the new member for the one the
    contact had: the refresh gave the contact its status, ownership and all, and mirror mode
    archived a member the bridge never created. A contact whose member was deleted
    permanently is no longer the bridge's own once someone else is at the address."""
    on_any_store.start(mirror=True, webhooks=False, rows=[(2, True)])
    on_any_store.push()
    on_any_store.provider_event(n=0, verb="delete-permanent")
    on_any_store.delete_row(i=0)
    on_any_store.push()  # the contact's member is gone; nothing to archive
    on_any_store.form_signup(n=2)  # someone else at p2
    on_any_store.push()  # checks every invariant after the step
    statuses, _ = on_any_store.env.provider()
    assert statuses[member_id(on_any_store.env.address(2))] == "subscribed"
    on_any_store.teardown()
