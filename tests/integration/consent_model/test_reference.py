"""The reference model flags what it should (pure: no I/O), so the model test can fail."""

from __future__ import annotations

from tests.integration.consent_model.reference import Event, Ledger, Reference, member_id

ADA = "ada@consent-test.org"
BOB = "bob@consent-test.org"
A, B = member_id(ADA), member_id(BOB)


def created(mid: str, email: str, source: str = "api") -> Event:
    return Event("subscribe", mid, source, email, created=True)


def test_the_bridge_may_not_subscribe_after_a_provider_side_opt_out() -> None:
    for opt_out in ("unsubscribe", "cleaned", "archive"):
        model = Reference(mirror=False)
        model.insert(1, ADA, True)
        assert model.observe([created(A, ADA), Event(opt_out, A, "user", ADA)]) == []
        [problem] = model.observe([Event("subscribe", A, "api", ADA)])
        assert "after a provider-side" in problem


def test_a_form_resignup_lifts_the_barrier_and_the_bridge_cannot() -> None:
    model = Reference(mirror=False)
    model.insert(1, ADA, True)
    model.observe([created(A, ADA), Event("unsubscribe", A, "user", ADA)])
    assert model.observe([Event("pending", A, "api", ADA)]) == []  # re-confirmation asked
    assert model.status_violations({A: "pending"}, {}) == []
    assert model.status_violations({A: "subscribed"}, {}) != []
    model.observe([Event("subscribe", A, "user", ADA)])  # the member confirmed
    assert model.status_violations({A: "subscribed"}, {}) == []


def test_barriers_pin_the_status() -> None:
    model = Reference(mirror=False)
    model.observe(
        [
            created(A, ADA, "user"),
            created(B, BOB, "user"),
            Event("cleaned", A, "user", ADA),
            Event("archive", B, "admin", BOB),
        ]
    )
    assert model.status_violations({A: "cleaned", B: "archived"}, {}) == []
    assert len(model.status_violations({A: "pending", B: "unsubscribed"}, {})) == 2
    assert model.status_violations({}, {}) == []  # gone is fine


def test_the_bridge_subscribes_only_with_consent() -> None:
    model = Reference(mirror=False)
    model.insert(1, ADA, None)
    [problem] = model.observe([created(A, ADA)])
    assert "no source row with that address gives consent" in problem


def test_mirror_archives_only_the_bridges_own_members_that_left_the_source() -> None:
    model = Reference(mirror=True)
    model.insert(1, ADA, True)
    model.observe([created(A, ADA, "user"), created(B, BOB)])
    [not_ours, in_source] = model.observe([Event("archive", A, "api", ADA)])
    assert "not by the bridge" in not_ours
    assert "while it is in the source" in in_source
    assert model.observe([Event("archive", B, "api", BOB)]) == []
    assert Reference(mirror=False).observe([created(B, BOB), Event("archive", B, "api", BOB)])


def test_an_address_change_carries_the_barrier_and_keeps_it_on_the_old_address() -> None:
    model = Reference(mirror=False)
    model.observe([created(A, ADA), Event("unsubscribe", A, "user", ADA)])
    model.observe([Event("upemail", B, "user", BOB, old_id=A)])
    assert model.status_violations({A: "subscribed", B: "subscribed"}, {}) != []
    assert len(model.status_violations({A: "subscribed", B: "subscribed"}, {})) == 2


def test_a_member_moving_onto_an_address_an_opted_out_member_left_keeps_its_own_status() -> None:
    """Found by the 200 x 30 deep run on 93b4422 (a model error, not the bridge's): the member
    archived at ada's address moved away; later a subscribed member moved onto ada's address
    by its own act. The archive was not this member's: it may be subscribed there."""
    model = Reference(mirror=False)
    model.observe([created(A, ADA, "user"), Event("archive", A, "admin", ADA)])
    model.observe([Event("upemail", B, "user", BOB, old_id=A)])  # the archived member left
    assert model.status_violations({B: "subscribed"}, {}) != []  # the barrier went with it
    model.observe([created(A, ADA, "user"), Event("upemail", A, "user", ADA, old_id=B)])
    assert model.status_violations({A: "subscribed"}, {}) != []  # it came back: archived
    carol = member_id("carol@consent-test.org")
    model.observe([created(carol, "carol@consent-test.org", "user")])
    model.observe([Event("upemail", B, "user", BOB, old_id=A)])  # ada's member leaves again
    model.observe([Event("upemail", A, "user", ADA, old_id=carol)])  # carol moves in
    assert model.status_violations({A: "subscribed"}, {}) == []


def test_withdrawn_consent_must_unsubscribe_every_address_the_bridge_subscribed() -> None:
    model = Reference(mirror=False)
    model.insert(1, ADA, True)
    model.observe([created(A, ADA)])
    assert model.completed_push({A: "subscribed"}) == []
    model.change_address(1, BOB)
    model.observe([created(B, BOB)])
    model.completed_push({A: "subscribed", B: "subscribed"})
    model.set_consent(1, None)  # true -> NULL -> false still withdraws
    assert model.completed_push({A: "subscribed", B: "subscribed"}) == []
    model.set_consent(1, False)
    problems = model.completed_push({A: "subscribed", B: "unsubscribed"})
    assert [p for p in problems if ADA in p]
    assert not [p for p in problems if BOB in p]


def test_kept_rows_are_due_only_after_a_change() -> None:
    model = Reference(mirror=False)
    model.insert(1, ADA, True)
    assert model.kept_violations([(A, "archived")]) == []
    model.completed_push({})
    assert model.kept_violations([(A, "archived")]) != []
    model.set_consent(1, True)
    assert model.kept_violations([(A, "archived")]) == []
    model.completed_push({})
    model.crashed()
    assert model.kept_violations([(A, "archived")]) == []


def ledger(id_: int, mid: str, old: str | None, new: str, origin: str = "push") -> Ledger:
    return Ledger(id_, mid, "1", old, new, origin, None)


def test_the_ledger_chains_per_member_and_never_outnumbers_the_provider() -> None:
    model = Reference(mirror=False)
    model.observe([created(A, ADA)])
    assert model.read_ledger([ledger(1, A, None, "subscribed")]) == []
    doubled = model.read_ledger([ledger(2, A, None, "subscribed")])
    assert len(doubled) == 2  # does not chain, and one more than the provider made
    model.observe([Event("unsubscribe", A, "user", ADA)])
    assert model.read_ledger([ledger(3, A, "subscribed", "unsubscribed", "webhook")]) != []


def test_a_member_keeps_its_ledger_through_an_address_change() -> None:
    model = Reference(mirror=False)
    model.observe([created(A, ADA), Event("unsubscribe", A, "user", ADA)])
    model.read_ledger(
        [ledger(1, A, None, "subscribed"), ledger(2, A, "subscribed", "unsubscribed", "pull")]
    )
    model.observe([Event("upemail", B, "api", BOB, old_id=A)])
    assert model.read_ledger([ledger(3, B, "unsubscribed", "unsubscribed")]) == []  # renamed
    explained = model.explained(B)
    assert explained is not None
    assert explained.new_status == "unsubscribed"
    model.observe([created(A, ADA, "user")])  # the address is free: a new member signs up
    assert model.explained(A) is None


def test_a_member_first_seen_at_the_provider_is_explained_by_its_first_row() -> None:
    model = Reference(mirror=False)
    model.observe([created(A, ADA, "user"), Event("unsubscribe", A, "user", ADA)])
    assert model.explained(A) is None
    model.read_ledger([ledger(1, A, "unsubscribed", "unsubscribed")])  # first seen: kept
    explained = model.explained(A)
    assert explained is not None
    assert explained.new_status == "unsubscribed"


def test_the_ledger_may_not_credit_the_bridge_with_a_change_it_did_not_make() -> None:
    model = Reference(mirror=False)
    model.observe([created(A, ADA), Event("unsubscribe", A, "user", ADA)])
    model.read_ledger([ledger(1, A, None, "subscribed")])
    [problem] = model.read_ledger([ledger(2, A, "subscribed", "unsubscribed", "push")])
    assert "says the bridge changed member" in problem
    fair = Reference(mirror=False)
    fair.observe([created(A, ADA), Event("unsubscribe", A, "api", ADA)])
    fair.read_ledger([ledger(1, A, None, "subscribed")])
    assert fair.read_ledger([ledger(2, A, "subscribed", "unsubscribed", "push")]) == []


def test_a_deletion_recorded_after_a_new_member_took_the_address_is_the_old_members() -> None:
    model = Reference(mirror=False)
    model.observe([created(A, ADA)])
    model.read_ledger([ledger(1, A, None, "subscribed")])
    model.observe([Event("delete", A, "admin", ADA), created(A, ADA, "user")])  # signs up anew
    late = [
        ledger(2, A, "subscribed", "forgotten", "pull"),  # the deleted member's end
        ledger(3, A, "forgotten", "subscribed", "pull"),  # the new member, first seen
    ]
    assert model.read_ledger(late) == []
    explained = model.explained(A)
    assert explained is not None
    assert explained.id == 3
    # A second deletion row for the old member is still one too many.
    assert model.read_ledger([ledger(4, A, "subscribed", "forgotten", "pull")]) != []


def test_a_member_that_moved_at_the_provider_is_neither_renamed_back_nor_opted_out() -> None:
    model = Reference(mirror=False)
    model.insert(1, ADA, True)
    assert model.observe([created(A, ADA)]) == []
    assert model.completed_push({A: "subscribed"}) == []  # the bridge linked row 1 to A
    assert model.observe([Event("upemail", B, "user", BOB, old_id=A)]) == []
    [renamed_back] = model.observe([Event("upemail", A, "api", ADA, old_id=B)])
    assert "renamed the member" in renamed_back
    [opted_out] = model.observe([Event("unsubscribe", B, "api", BOB)])
    assert "did not withdraw consent" in opted_out
    model.set_consent(1, False)  # the row's own withdrawal may
    assert model.observe([Event("unsubscribe", B, "api", BOB)]) == []


def test_a_withdrawal_must_reach_the_member_where_it_moved() -> None:
    model = Reference(mirror=False)
    model.insert(1, ADA, True)
    model.observe([created(A, ADA)])
    assert model.completed_push({A: "subscribed"}) == []
    model.observe([Event("upemail", B, "user", BOB, old_id=A)])
    model.observe([Event("subscribe", A, "user", ADA, created=True)])  # someone new at ADA
    model.set_consent(1, False)
    [problem] = model.completed_push({A: "subscribed", B: "subscribed"})
    assert BOB in problem
    model.set_consent(1, True)
    model.completed_push({A: "subscribed", B: "subscribed"})
    model.set_consent(1, False)
    assert model.completed_push({A: "subscribed", B: "unsubscribed"}) == []  # ADA is not theirs


def test_only_the_member_a_row_was_linked_to_is_followed_when_it_moves() -> None:
    """F25: a member that moved at the provider onto the address of a row the bridge never
    acted on (no consent given) is not that row's; when it moves on, the row stays, and the
    bridge may unsubscribe it for the row it belongs to."""
    model = Reference(mirror=False)
    model.insert(1, ADA, True)
    model.insert(2, BOB, None)
    model.observe([created(A, ADA)])
    model.completed_push({A: "subscribed"})
    model.observe([Event("upemail", B, "user", BOB, old_id=A)])  # ADA's member moves to BOB
    model.completed_push({B: "subscribed"})  # row 2 gives no consent: not linked
    model.observe([Event("upemail", A, "user", ADA, old_id=B)])  # and back to ADA
    assert model.rows[1].moved_to is None
    assert model.rows[2].moved_to is None
    model.change_address(1, "carol@example.org")  # row 1 leaves ADA in the source
    assert model.observe([Event("unsubscribe", A, "api", ADA)]) == []


def test_the_bridge_may_not_unsubscribe_a_member_whose_source_row_consents() -> None:
    """F26: the previous member of another row's address change, at an address a row with
    consent holds, is that row's; a withdrawal there may unsubscribe it."""
    model = Reference(mirror=False)
    model.insert(1, ADA, True)
    model.observe([created(A, ADA)])
    [problem] = model.observe([Event("unsubscribe", A, "api", ADA)])
    assert "whose source row gives consent" in problem
    model.set_consent(1, False)
    assert model.observe([Event("unsubscribe", A, "api", ADA)]) == []


def test_a_row_deleted_while_a_push_runs_counts_as_read_by_that_push() -> None:
    """F27: the push may have read the row before it was deleted, and act on its consent."""
    model = Reference(mirror=True)
    model.insert(1, ADA, True)
    model.delete(1, mid_push=True)
    assert model.observe([created(A, ADA)]) == []
    model.push_ended()
    model.insert(2, BOB, True)
    model.delete(2)  # between runs: no push read it
    [problem] = model.observe([created(B, BOB)])
    assert "no source row with that address gives consent" in problem
