"""The consent rules: what status, if any, the bridge may ask the provider to set for one contact.

Pure: plain values in, a :class:`ConsentDecision` out. The push engine gathers the inputs (the
provider's current status, who unsubscribed the member, the consent the source gives now and gave
last time) and applies the decision; every consent-relevant decision carries a ledger entry.

The rules, in short (docs/push.md has the full table):

- A member who unsubscribed themselves, was cleaned, or was permanently deleted (forgotten) is
  never set to ``subscribed``. Cleaned and forgotten members get no status change at all.
- New contacts get ``status_if_new`` from the source consent: ``subscribed`` (``pending`` with
  double opt-in) when the source says yes; otherwise what ``unconsented_new`` says (skip them, or
  create them as ``unsubscribed`` or ``transactional``).
- Source consent going true -> false for a subscribed or pending member unsubscribes them
  (origin ``push``: the bridge did it, through the API).
- Source consent going false -> true for an unsubscribed member asks for ``pending`` (double
  opt-in: the member confirms by email) -- unless the ledger shows the bridge itself unsubscribed
  them and nothing changed at the provider since, in which case ``subscribed`` is allowed.
- Where it is unknown who unsubscribed a member, the rules assume the member did (the safe side).
- Only a *change* in the source's consent triggers a status change for an existing member; a
  source that says "no" about someone who subscribed elsewhere does not unsubscribe them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from campaign_bridge.config import UnconsentedNew
from campaign_bridge.providers.base import MemberStatus

__all__ = [
    "Actor",
    "ConsentDecision",
    "ConsentInput",
    "Effect",
    "decide",
    "parse_consent",
]

_TRUE = frozenset({"true", "t", "yes", "y", "1", "on", "subscribed", "pending", "opt-in", "optin"})
_FALSE = frozenset(
    {"false", "f", "no", "n", "0", "off", "unsubscribed", "opt-out", "optout", "cleaned"}
)


class Actor(StrEnum):
    """Who put a member into its current unsubscribed/archived state."""

    BRIDGE = "bridge"  # the ledger shows this bridge did it and the provider has not changed since
    MEMBER = "member"  # the member (or an admin, or another tool) did it
    UNKNOWN = "unknown"  # nobody recorded it: treated exactly like MEMBER


class Effect(StrEnum):
    """What a decision does, for the run summary and the dry-run report."""

    NONE = "none"
    SUBSCRIBE_NEW = "subscribe_new"
    CONFIRM_NEW = "confirm_new"  # new contact added as pending (double opt-in)
    UNSUBSCRIBED_NEW = "unsubscribed_new"
    TRANSACTIONAL_NEW = "transactional_new"
    SKIP_UNCONSENTED = "skip_unconsented"
    UNSUBSCRIBE = "unsubscribe"  # source consent withdrawn
    RECONFIRM = "reconfirm"  # re-consent for a self-unsubscribed member -> pending
    RESUBSCRIBE = "resubscribe"  # re-consent for a member the bridge itself unsubscribed
    SUBSCRIBE = "subscribe"  # consent given for a transactional member
    KEPT = "kept"  # consent wanted a change that the rules forbid; nothing changed


@dataclass(frozen=True)
class ConsentInput:
    provider_status: MemberStatus | None  # None: the provider does not have the member
    source_consent: bool | None  # None: no consent column, or NULL / unreadable value
    previous_consent: bool | None  # the last non-null consent the bridge acted on; None: never
    actor: Actor = Actor.UNKNOWN  # who unsubscribed / archived (only read for those statuses)
    double_opt_in: bool = False
    unconsented_new: UnconsentedNew = UnconsentedNew.SKIP


@dataclass(frozen=True)
class ConsentDecision:
    """``send`` False: do not send the member at all. ``status`` None: never touch the status.

    ``ledger`` is ``(old_status, new_status, reason)`` for the consent ledger, or None when the
    decision is not consent-relevant (nothing asked for, nothing changed).
    """

    send: bool
    status_if_new: MemberStatus
    status: MemberStatus | None
    effect: Effect
    ledger: tuple[str | None, str, str] | None = None


def parse_consent(value: object) -> bool | None:
    """A source consent value as True/False, or None when absent or not understood."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _new_status(given: ConsentInput) -> tuple[MemberStatus | None, Effect]:
    """The status a brand-new member gets, or None to skip creating it."""
    if given.source_consent is True:
        if given.double_opt_in:
            return MemberStatus.PENDING, Effect.CONFIRM_NEW
        return MemberStatus.SUBSCRIBED, Effect.SUBSCRIBE_NEW
    if given.unconsented_new is UnconsentedNew.UNSUBSCRIBED:
        return MemberStatus.UNSUBSCRIBED, Effect.UNSUBSCRIBED_NEW
    if given.unconsented_new is UnconsentedNew.TRANSACTIONAL:
        return MemberStatus.TRANSACTIONAL, Effect.TRANSACTIONAL_NEW
    return None, Effect.SKIP_UNCONSENTED


def _opt_in(double_opt_in: bool) -> MemberStatus:
    return MemberStatus.PENDING if double_opt_in else MemberStatus.SUBSCRIBED


def decide(given: ConsentInput) -> ConsentDecision:
    """Apply the consent rules to one contact."""
    new_status, new_effect = _new_status(given)
    # status_if_new only ever applies when the call creates the member; when the state says the
    # member exists but it does not (stale state), this is still the right status for a newcomer.
    # A skipped newcomer that turns out new is created unsubscribed rather than subscribed.
    if_new = new_status or MemberStatus.UNSUBSCRIBED
    status = given.provider_status
    consent = given.source_consent
    withdrawn = consent is False and given.previous_consent is True
    reconsented = consent is True and given.previous_consent is False
    # A "kept" entry records the decision once, when consent turns to yes (or is first seen):
    # a source that keeps saying yes about an opted-out member adds nothing more to the ledger.
    newly_yes = consent is True and given.previous_consent is not True

    if status is None:
        if new_status is None:
            return ConsentDecision(False, if_new, None, new_effect)
        reason = "new contact; consent in source" if consent else "new contact without consent"
        return ConsentDecision(True, new_status, None, new_effect, (None, str(new_status), reason))

    if status is MemberStatus.FORGOTTEN:
        # Any add or update is refused by the provider; the contact must re-subscribe themselves.
        if newly_yes:
            return _keep(
                status,
                if_new,
                "permanently deleted at the provider; cannot be re-imported",
                send=False,
            )
        return ConsentDecision(False, if_new, None, Effect.NONE)

    if status is MemberStatus.CLEANED:
        if newly_yes:
            return _keep(status, if_new, "cleaned at the provider (bounced); not re-subscribed")
        return ConsentDecision(True, if_new, None, Effect.NONE)

    if status is MemberStatus.ARCHIVED:
        if given.actor is not Actor.BRIDGE:
            if newly_yes:
                return _keep(
                    status,
                    if_new,
                    "archived at the provider by someone else; left archived",
                    send=False,
                )
            return ConsentDecision(False, if_new, None, Effect.NONE)
        if consent is True:
            # The status before the archive is unknown, so re-confirmation is the safe way back.
            return _change(
                status,
                if_new,
                MemberStatus.PENDING,
                Effect.RECONFIRM,
                "back in source with consent",
            )
        return ConsentDecision(False, if_new, None, Effect.NONE)

    if status in (MemberStatus.SUBSCRIBED, MemberStatus.PENDING):
        if withdrawn:
            reason = "consent withdrawn in source"
            return _change(status, if_new, MemberStatus.UNSUBSCRIBED, Effect.UNSUBSCRIBE, reason)
        return ConsentDecision(True, if_new, None, Effect.NONE)

    if status is MemberStatus.UNSUBSCRIBED:
        if reconsented:
            if given.actor is Actor.BRIDGE:
                target = _opt_in(given.double_opt_in)
                return _change(
                    status,
                    if_new,
                    target,
                    Effect.RESUBSCRIBE,
                    "re-consent; the bridge had unsubscribed",
                )
            reason = "re-consent; asks re-confirmation"
            return _change(status, if_new, MemberStatus.PENDING, Effect.RECONFIRM, reason)
        if newly_yes:
            return _keep(
                status,
                if_new,
                "unsubscribed at the provider; not re-subscribed without a consent change",
            )
        return ConsentDecision(True, if_new, None, Effect.NONE)

    # TRANSACTIONAL: known contact that never opted in to marketing.
    if consent is True and given.previous_consent is not True:
        return _change(
            status,
            if_new,
            _opt_in(given.double_opt_in),
            Effect.SUBSCRIBE,
            "consent given in source",
        )
    return ConsentDecision(True, if_new, None, Effect.NONE)


def _keep(
    status: MemberStatus, if_new: MemberStatus, reason: str, *, send: bool = True
) -> ConsentDecision:
    """The rules forbid the change consent asked for: the status stays, the ledger says why."""
    current = str(status)
    return ConsentDecision(send, if_new, None, Effect.KEPT, (current, current, reason))


def _change(
    status: MemberStatus, if_new: MemberStatus, new: MemberStatus, effect: Effect, reason: str
) -> ConsentDecision:
    return ConsentDecision(True, if_new, new, effect, (str(status), str(new), reason))
