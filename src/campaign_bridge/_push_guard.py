"""What keeps push's consent promise across crashes, address changes and provider-side changes.

- :class:`ProviderChanges`: a status the push's refresh (or a re-read) finds at the provider
  that differs from a contact's saved status gets exactly one ledger row, through the same
  function pull and webhooks use (:func:`~campaign_bridge.status_changes.apply_status_changes`),
  so whoever sees a change first records it and the others find nothing left to record.
- Intents (``cb_push_intents``): a status change is written down before it is sent and removed
  in the transaction that writes its ledger row. :func:`recover_intents` settles those a crash
  left behind: a change the provider shows happened gets its ledger row (and the contact its
  state), one that did not happen is dropped.
- :class:`AddressMove`: a source row whose address changed is the same person; the member is
  renamed in place, or the opt-out follows the person to the new address.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from campaign_bridge._push_state import (
    ConfirmedRows,
    ContactState,
    IntentRow,
    MemberStatusRecord,
    PushState,
    consent_ledger_row,
    contact_state_row,
)
from campaign_bridge.consent import ConsentDecision, Effect
from campaign_bridge.providers.base import MemberStatus
from campaign_bridge.status_changes import StatusChange, apply_status_changes
from campaign_bridge.writeback import WritebackTarget

if TYPE_CHECKING:
    from campaign_bridge.mapping import MappedContact

__all__ = [
    "OPTED_OUT",
    "AddressMove",
    "OldMember",
    "ProviderChanges",
    "has_intent",
    "intents_for",
    "recover_intents",
]

# A member in one of these has opted out (or been put out): the bridge never subscribes them
# without a fresh consent change, and never creates a member for them subscribed.
OPTED_OUT = frozenset(
    {
        MemberStatus.UNSUBSCRIBED,
        MemberStatus.CLEANED,
        MemberStatus.ARCHIVED,
        MemberStatus.FORGOTTEN,
    }
)
SKEW = dt.timedelta(seconds=2)
RECOVERED = "; recorded by the next run (the run that sent it stopped before recording it)"


class ProviderChanges:
    """Ledger the provider-side status changes of the sync's contacts, once each."""

    def __init__(
        self,
        store: PushState,
        sync_name: str,
        provider: str,
        list_id: str,
        writeback: WritebackTarget | None = None,
    ) -> None:
        self.store = store
        self.writeback = writeback  # the user's status column follows, as with pull
        self.sync_name = sync_name
        self.provider = provider
        self.list_id = list_id
        self.skip: set[str] = set()  # members with an open intent: recover_intents settles them

    def record(self, rows: Sequence[MemberStatusRecord], run_id: str | None) -> int:
        wanted = {r.member_id: r for r in rows if r.member_id not in self.skip}
        if not wanted:
            return 0
        moved = self.store.contacts_with_other_status(
            self.sync_name, {h: r.status for h, r in wanted.items()}
        )
        if not moved:
            return 0
        now = dt.datetime.now(dt.UTC)
        changes = [
            StatusChange(
                provider=self.provider,
                list_id=self.list_id,
                email=wanted[h].email,
                status=MemberStatus(wanted[h].status),
                occurred_at=wanted[h].last_changed or now,
                origin="pull",
                reason=wanted[h].unsubscribe_reason,
            )
            for h in sorted(moved)
        ]
        return apply_status_changes(
            self.store.engine,
            changes,
            sync_name=self.sync_name,
            run_id=run_id,
            writeback=self.writeback,
        ).transitions


def intents_for(
    items: Sequence[tuple[MappedContact, tuple[str | None, str, str] | None, bool | None]],
) -> list[IntentRow]:
    """Intents (entries of a ``cb_push_intents`` row, in ``INTENT_FIELDS`` order) for the real
    status changes among ``(contact, ledger, consent)``. Tuples: an initial push writes one
    per contact."""
    return [
        (contact.email_hash, contact.key, *ledger, consent)
        for contact, ledger, consent in items
        if ledger is not None and has_intent(ledger)
    ]


def has_intent(ledger: tuple[str | None, str, str] | None) -> bool:
    """Whether a decision's ledger entry is a status change, which is written down (an
    intent) before it is sent; a "kept" entry changes nothing."""
    return ledger is not None and ledger[0] != ledger[1]


def recover_intents(store: PushState, sync_name: str, provider: str, list_id: str) -> list[str]:
    """Settle the intents an interrupted run left; return the email hashes they were about.

    Runs after the status refresh, which brought every change the interrupted run made into
    ``cb_member_status`` (its writes came after the cursor it started from)."""
    loaded = store.load_intents(sync_name)
    if not loaded:
        return []
    # One intent per member: the newest (the rows come oldest first).
    intents = list({i.email_hash: i for i in loaded}.values())
    hashes = [i.email_hash for i in intents]
    statuses = store.member_statuses(provider, list_id, hashes)
    states = store.load_contact_states(sync_name, [i.source_key for i in intents])
    slices = sorted({i.slice_id for i in loaded})
    rows = ConfirmedRows(intents_done=[(sync_name, slice_id, None) for slice_id in slices])
    for intent in intents:
        row = statuses.get(intent.email_hash)
        happened = (
            row is not None
            and row.status == intent.new_status
            and (row.last_changed is None or row.last_changed >= intent.created_at - SKEW)
        )
        if not happened:
            continue
        assert row is not None
        when = row.last_changed or intent.created_at
        rows.ledger.append(
            consent_ledger_row(
                sync_name=sync_name,
                provider=provider,
                email_hash=intent.email_hash,
                source_key=intent.source_key,
                old_status=intent.old_status,
                new_status=intent.new_status,
                origin="push",
                reason=(intent.reason or "") + RECOVERED,
                run_id=intent.run_id,
                occurred_at=when,
            )
        )
        state = states.get(intent.source_key)
        created = intent.old_status is None
        if state is None:
            state = ContactState(
                sync_name=sync_name,
                source_key=intent.source_key,
                email_hash=intent.email_hash,
                provider_member_id=None,  # the provider's id is learnt when it answers
                pushed_at=when,
                managed=created,
            )
        last_consent = intent.consent if intent.consent is not None else state.last_consent
        # Sent to another address than the member's: the source row's own (an address change).
        source_email_hash = (
            state.source_email_hash if intent.email_hash == state.email_hash else None
        )
        state = replace(
            state,
            email_hash=intent.email_hash,
            source_email_hash=source_email_hash,
            provider_status=intent.new_status,
            managed=state.managed or created,
            last_consent=last_consent,
            content_hash=None,  # sent again next time: the interrupted run's fields are unknown
            last_run_id=intent.run_id,
        )
        rows.state_updates.append(contact_state_row(**vars(state)))
    store.save_confirmed(rows)
    return hashes


@dataclass(frozen=True)
class OldMember:
    """The member at a contact's previous address, to unsubscribe (its new address is another
    member already, so the old one cannot be renamed)."""

    key: str
    email: str
    email_hash: str
    status: str


@dataclass(frozen=True)
class AddressMove:
    """A contact whose address differs from the one last pushed for its key."""

    old_hash: str
    old_email: str | None
    status: MemberStatus | None  # the status the consent rules apply to
    rename: bool  # rename the old member in place (the new address is free)
    known: bool  # the new address is a member already
    carried: MemberStatus | None = None  # an opt-out that follows the person (old one gone)
    unsubscribe_old: OldMember | None = None
    #: the carried opt-out was made at this same address, by a member that moved away from it
    #: at the provider (not at the row's previous address)
    left_behind_here: bool = False

    @classmethod
    def of(
        cls,
        contact: MappedContact,
        state: ContactState | None,
        known: MemberStatusRecord | None,
        statuses: dict[str, MemberStatusRecord],
    ) -> AddressMove | None:
        if state is None or state.email_hash == contact.email_hash:
            return None
        old = statuses.get(state.email_hash)
        if old is not None:
            old_status: MemberStatus | None = MemberStatus(old.status)
        else:
            old_status = MemberStatus(state.provider_status) if state.provider_status else None
        if known is not None:
            unsubscribe = None
            if old is not None and old_status in (MemberStatus.SUBSCRIBED, MemberStatus.PENDING):
                unsubscribe = OldMember(contact.key, old.email, state.email_hash, old.status)
            return cls(
                state.email_hash,
                old.email if old else None,
                MemberStatus(known.status),
                rename=False,
                known=True,
                unsubscribe_old=unsubscribe,
            )
        if old is not None and old_status is not None and old_status is not MemberStatus.FORGOTTEN:
            return cls(state.email_hash, old.email, old_status, rename=True, known=False)
        carried = old_status if old_status in OPTED_OUT else None
        return cls(state.email_hash, None, carried, rename=False, known=False, carried=carried)

    @classmethod
    def left_behind(cls, contact: MappedContact, opted_out: str) -> AddressMove:
        """A new row at an address nobody uses now, where a member had opted out before it
        moved to another address at the provider: the address may still be that person's
        (a source row can hold an old address), so the opt-out made there counts, as one
        carried by an address change does."""
        status = MemberStatus(opted_out)
        return cls(
            contact.email_hash,
            None,
            status,
            rename=False,
            known=False,
            carried=status,
            left_behind_here=True,
        )

    def adjust(self, decision: ConsentDecision) -> ConsentDecision:
        """The decision with a ledger entry that explains the address change."""
        if self.rename:
            note = "address changed in source; the member was renamed in place"
            if decision.ledger is None:
                if not decision.send or self.status is None:
                    return decision
                current = str(self.status)
                return replace(decision, ledger=(current, current, note + ", status kept"))
            old, new, reason = decision.ledger
            return replace(decision, ledger=(old, new, f"{reason}; {note}"))
        if self.carried is MemberStatus.CLEANED and self.left_behind_here:
            # The address itself bounced: nothing is created there, in any status.
            return replace(decision, send=False, effect=Effect.NONE, ledger=None)
        if self.carried is not None and decision.send:
            if self.left_behind_here:
                where = "this address before its member moved away at the provider"
                note = f"the person had opted out ({self.carried}) at {where}"
            else:
                note = (
                    f"address changed in source; the person had opted out ({self.carried}) at "
                    "the previous address"
                )
            if decision.status is not None:
                ledger = (None, str(decision.status), f"{note}; re-consent asks re-confirmation")
                return replace(decision, ledger=ledger)
            ledger = (None, str(MemberStatus.UNSUBSCRIBED), f"{note}; added unsubscribed")
            return replace(decision, ledger=ledger, effect=Effect.UNSUBSCRIBED_NEW)
        return decision
