"""The consent rules, exhaustively: every provider status x actor x source consent x previous."""

from __future__ import annotations

import itertools

import pytest

from campaign_bridge.config import UnconsentedNew
from campaign_bridge.consent import Actor, ConsentInput, Effect, decide, parse_consent
from campaign_bridge.providers.base import MemberStatus as S

STATUSES: list[S | None] = [None, *S]
CONSENTS: list[bool | None] = [True, False, None]
ALL = [
    ConsentInput(status, consent, previous, actor, double, unconsented)
    for status, consent, previous, actor, double, unconsented in itertools.product(
        STATUSES, CONSENTS, CONSENTS, list(Actor), [False, True], list(UnconsentedNew)
    )
]
MAILABLE = {S.SUBSCRIBED, S.PENDING}


def test_the_matrix_is_complete() -> None:
    assert len(ALL) == 8 * 3 * 3 * 3 * 2 * 3


@pytest.mark.parametrize("given", ALL, ids=str)
def test_invariants_hold_for_every_combination(given: ConsentInput) -> None:
    decision = decide(given)
    status = given.provider_status
    # Never subscribed for a member who unsubscribed themselves, was cleaned, or was forgotten.
    if status in (S.CLEANED, S.FORGOTTEN):
        assert decision.status is None
    if status is S.UNSUBSCRIBED and given.actor is not Actor.BRIDGE:
        assert decision.status is not S.SUBSCRIBED
    if status is S.ARCHIVED:
        assert decision.status in (None, S.PENDING)
    if status is S.FORGOTTEN:
        assert not decision.send  # the provider refuses any add or update
    # A status is only asked for with consent; an unsubscribe only when consent was withdrawn.
    if decision.status in MAILABLE:
        assert given.source_consent is True
        # ...and after a change of consent, except a contact the bridge archived coming back.
        assert given.previous_consent is not True or status is S.ARCHIVED
    if decision.status is S.UNSUBSCRIBED:
        assert given.source_consent is False
        assert given.previous_consent is True
        assert status in MAILABLE
    # status_if_new never opts anyone in without consent in the source.
    if given.source_consent is not True:
        assert decision.status_if_new not in MAILABLE
    if given.double_opt_in:
        assert decision.status_if_new is not S.SUBSCRIBED
        assert decision.status is not S.SUBSCRIBED
    # Every status change is in the ledger, with the old status as the provider has it.
    if decision.status is not None:
        assert decision.ledger is not None
        assert decision.ledger[0] == str(status)
        assert decision.ledger[1] == str(decision.status)
    if decision.effect is Effect.KEPT:
        assert decision.ledger is not None
        assert decision.status is None
    # An existing member's status is never touched without a change in the source's consent.
    if status is not None and status is not S.ARCHIVED and decision.status is not None:
        assert given.previous_consent != given.source_consent


@pytest.mark.parametrize(
    ("consent", "double", "unconsented", "send", "if_new", "effect"),
    [
        (True, False, UnconsentedNew.SKIP, True, S.SUBSCRIBED, Effect.SUBSCRIBE_NEW),
        (True, True, UnconsentedNew.SKIP, True, S.PENDING, Effect.CONFIRM_NEW),
        (False, False, UnconsentedNew.SKIP, False, S.UNSUBSCRIBED, Effect.SKIP_UNCONSENTED),
        (None, False, UnconsentedNew.SKIP, False, S.UNSUBSCRIBED, Effect.SKIP_UNCONSENTED),
        (False, False, UnconsentedNew.UNSUBSCRIBED, True, S.UNSUBSCRIBED, Effect.UNSUBSCRIBED_NEW),
        (None, True, UnconsentedNew.TRANSACTIONAL, True, S.TRANSACTIONAL, Effect.TRANSACTIONAL_NEW),
    ],
)
def test_new_contacts_get_status_if_new_from_consent(
    consent: bool | None,
    double: bool,
    unconsented: UnconsentedNew,
    send: bool,
    if_new: S,
    effect: Effect,
) -> None:
    decision = decide(ConsentInput(None, consent, None, Actor.UNKNOWN, double, unconsented))
    assert (decision.send, decision.status_if_new, decision.status) == (send, if_new, None)
    assert decision.effect is effect
    assert (decision.ledger is not None) == send


def test_withdrawn_consent_unsubscribes_a_subscribed_member() -> None:
    decision = decide(ConsentInput(S.SUBSCRIBED, False, True))
    assert decision.status is S.UNSUBSCRIBED
    assert decision.effect is Effect.UNSUBSCRIBE
    assert decision.ledger == ("subscribed", "unsubscribed", "consent withdrawn in source")


def test_no_consent_seen_for_the_first_time_does_not_unsubscribe() -> None:
    # Someone who subscribed through a web form while the source says "no": not our call.
    decision = decide(ConsentInput(S.SUBSCRIBED, False, None))
    assert decision.status is None
    assert decision.send


@pytest.mark.parametrize("actor", [Actor.MEMBER, Actor.UNKNOWN])
@pytest.mark.parametrize("double", [False, True])
def test_reconsent_after_self_unsubscribe_asks_for_confirmation(actor: Actor, double: bool) -> None:
    decision = decide(ConsentInput(S.UNSUBSCRIBED, True, False, actor, double))
    assert decision.status is S.PENDING
    assert decision.effect is Effect.RECONFIRM


@pytest.mark.parametrize(("double", "expected"), [(False, S.SUBSCRIBED), (True, S.PENDING)])
def test_reconsent_after_the_bridge_unsubscribed_may_resubscribe(double: bool, expected: S) -> None:
    decision = decide(ConsentInput(S.UNSUBSCRIBED, True, False, Actor.BRIDGE, double))
    assert decision.status is expected
    assert decision.effect is Effect.RESUBSCRIBE


def test_unsubscribed_member_with_unchanged_consent_is_kept_and_recorded() -> None:
    decision = decide(ConsentInput(S.UNSUBSCRIBED, True, None, Actor.MEMBER))
    assert decision.status is None
    assert decision.effect is Effect.KEPT
    assert decision.ledger is not None
    assert decision.ledger[0] == "unsubscribed"
    assert decision.ledger[1] == "unsubscribed"


@pytest.mark.parametrize("status", [S.CLEANED, S.FORGOTTEN])
def test_cleaned_and_forgotten_are_recorded_not_changed(status: S) -> None:
    decision = decide(ConsentInput(status, True, None, Actor.BRIDGE))
    assert decision.status is None
    assert decision.effect is Effect.KEPT
    assert decision.ledger is not None
    assert decision.ledger[0] == str(status)
    assert decision.send is (status is S.CLEANED)


def test_transactional_member_who_consents_is_subscribed() -> None:
    assert decide(ConsentInput(S.TRANSACTIONAL, True, False)).status is S.SUBSCRIBED
    assert decide(ConsentInput(S.TRANSACTIONAL, True, None, double_opt_in=True)).status is S.PENDING


def test_archived_by_someone_else_is_left_alone() -> None:
    decision = decide(ConsentInput(S.ARCHIVED, True, True, Actor.MEMBER))
    assert not decision.send
    assert decision.status is None
    returning = decide(ConsentInput(S.ARCHIVED, True, True, Actor.BRIDGE))
    assert returning.send
    assert returning.status is S.PENDING


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (0, False),
        (1, True),
        ("Yes", True),
        (" subscribed ", True),
        ("unsubscribed", False),
        ("n", False),
        (b"1", True),
        (b"\xff", None),
        ("maybe", None),
        (None, None),
        ("", None),
    ],
)
def test_parse_consent(value: object, expected: bool | None) -> None:
    assert parse_consent(value) is expected


@pytest.mark.parametrize("status", [S.UNSUBSCRIBED, S.CLEANED, S.FORGOTTEN, S.ARCHIVED])
@pytest.mark.parametrize("previous", [False, None])
def test_consent_wanted_but_refused_is_recorded_when_it_turns_to_yes(
    status: S, previous: bool | None
) -> None:
    decision = decide(ConsentInput(status, True, previous, Actor.MEMBER))
    if status is S.UNSUBSCRIBED and previous is False:
        assert decision.effect is Effect.RECONFIRM  # a real re-consent: pending, not kept
        return
    assert decision.status is None
    assert decision.effect is Effect.KEPT
    assert decision.ledger is not None
    assert decision.ledger[0] == decision.ledger[1] == str(status)


@pytest.mark.parametrize("status", [S.UNSUBSCRIBED, S.CLEANED, S.FORGOTTEN, S.ARCHIVED])
def test_a_standing_yes_adds_no_second_kept_entry(status: S) -> None:
    """Issue 11, defect 6: the "kept" entry is written once per change, not on every run."""
    decision = decide(ConsentInput(status, True, True, Actor.MEMBER))
    assert decision.status is None
    assert decision.effect is Effect.NONE
    assert decision.ledger is None
