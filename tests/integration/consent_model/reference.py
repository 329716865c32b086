"""The reference model for the consent model test: small, pure, and meant to be obviously right.

It knows two things and derives everything else from them:

- the **source table** (key -> address and consent), as the test wrote it;
- the **provider's event stream**, as the sandbox reported it (every member change, in order,
  with who made it: ``api`` is the bridge -- the only API client of the sandbox -- while
  ``user`` and ``admin`` are the member and the audience's admin).

From the stream it keeps, per address, the **barrier** a provider-side event put up: the member
unsubscribed (themselves or by an admin), was cleaned (bounced), was archived by an admin, or
was permanently deleted. Only the member coming back through the provider (a form signup, a
confirmation click: a ``user``/``admin`` subscribe) lifts it; nothing the bridge does lifts
it. It also keeps who created each member (mirror mode may archive only the bridge's own).

The checks (``Violation``s) it can make alone, event by event:

- the bridge never moves an address behind a barrier out of what the barrier allows (never
  ``subscribed``; ``pending`` -- re-confirmation -- only after an unsubscribe), and never
  subscribes one whose source row does not give consent;
- the bridge archives only members it created, only in mirror mode, and never one whose
  address is still in the source;

and against a snapshot of the provider (``status_violations``): an address behind a barrier
stays where the barrier put it (``unsubscribed``: never ``subscribed``; ``cleaned``, admin-
``archived``: unchanged; deleted: absent).

For consent withdrawn in the source it keeps, per row, whether the bridge acted on a "yes" for
it (a completed push saw consent true, or the bridge subscribed the row's address) and at which
addresses; after the next completed push that sees "no", none of those addresses may still be
subscribed (``withdrawal_violations``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Event", "Ledger", "Reference", "Row", "member_id"]

#: sandbox event kinds that change a member's status (``upemail`` moves a member instead)
STATUS_KINDS = {
    "subscribe": "subscribed",
    "unsubscribe": "unsubscribed",
    "cleaned": "cleaned",
    "pending": "pending",
    "transactional": "transactional",
    "archive": "archived",
    "delete": "forgotten",
}
PROVIDER_SIDE = frozenset({"user", "admin"})

#: the ledger's status for an address the member that held it moved away from
VACATED = "vacated"

#: what each barrier lets the provider show for the address (absent, or permanently deleted,
#: is always fine)
ALLOWED = {
    "unsubscribed": frozenset({"unsubscribed", "pending", "archived", "forgotten"}),
    "cleaned": frozenset({"cleaned", "forgotten"}),
    "archived": frozenset({"archived", "forgotten"}),
    "forgotten": frozenset({"forgotten"}),
}


def member_id(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Event:
    """One member change as the sandbox reported it."""

    kind: str
    member_id: str
    source: str
    email: str = ""
    old_id: str = ""  # upemail: the member's previous id
    created: bool = False  # the change created the member

    @property
    def status(self) -> str | None:
        return STATUS_KINDS.get(self.kind)


@dataclass(frozen=True)
class Ledger:
    """One consent-ledger row, as the state store holds it."""

    id: int
    email_hash: str
    source_key: str | None
    old_status: str | None
    new_status: str
    origin: str
    reason: str | None

    @property
    def transition(self) -> bool:
        return self.old_status != self.new_status  # otherwise "kept": nothing changed


@dataclass
class Row:
    email: str
    consent: bool | None
    #: the bridge acted on a "yes" for this row since it last saw a "no"
    acted_yes: bool = False
    #: the addresses it did so at
    yes_addresses: set[str] = field(default_factory=set)
    #: where the row's member went when it changed its address at the provider, since the
    #: row's own address last changed (the person's act: a push may neither undo it nor
    #: unsubscribe them for it)
    moved_to: str | None = None
    #: the member the bridge linked this row to: the one at its address when a push completed
    #: with the row's consent given or withdrawn. Only that member's move at the provider is
    #: the row's to follow; a member that merely arrived at the row's address (another row's,
    #: moving at the provider) is not, and neither is one at a row the bridge never acted on.
    linked: str | None = None

    @property
    def member_address(self) -> str:
        """The address of the member this row speaks for now."""
        return self.moved_to or self.email


@dataclass
class Reference:
    mirror: bool
    rows: dict[int, Row] = field(default_factory=dict)
    barrier: dict[str, str] = field(default_factory=dict)  # member id -> barrier
    creator: dict[str, str] = field(default_factory=dict)  # member id -> source that created it
    #: a member keeps its identity through address changes; member id -> identity (an
    #: address renamed away or deleted is "retired": a member created there later is new)
    identity: dict[str, str] = field(default_factory=dict)
    retired: set[str] = field(default_factory=set)
    #: identities deleted permanently, and per address the identity a member created there
    #: replaced: a deletion recorded only once someone signed up there again belongs to the
    #: member that was deleted, not to the new one
    erased: set[str] = field(default_factory=set)
    replaced: dict[str, str] = field(default_factory=dict)
    left: set[str] = field(default_factory=set)  # addresses a member ever moved away from
    status_changes: dict[str, int] = field(default_factory=dict)  # identity -> count
    #: the ledger as read so far: identity -> its last transition, and how many
    last_transition: dict[str, Ledger] = field(default_factory=dict)
    transitions: dict[str, int] = field(default_factory=dict)
    first_row: dict[str, Ledger] = field(default_factory=dict)  # identity -> its first row
    #: status changes the bridge made (``api`` events), and the ledger's push-origin changes
    #: of an existing member's status, per identity: the ledger may not credit the bridge
    #: with a change it did not make (who unsubscribed decides who may re-subscribe)
    bridge_changes: dict[str, int] = field(default_factory=dict)
    credited: dict[str, int] = field(default_factory=dict)
    ledger_seen: int = 0
    #: member ids whose source row or provider status changed since the last completed push
    #: (None: anything may have, e.g. after a killed push)
    touched: set[str] | None = field(default_factory=set)
    #: rows deleted from the source while the current push runs (it may have read them)
    read_then_deleted: list[Row] = field(default_factory=list)

    # --- the source ----------------------------------------------------------------------

    def insert(self, key: int, email: str, consent: bool | None) -> None:
        self.rows[key] = Row(email, consent)
        self._touch(email)

    def set_consent(self, key: int, consent: bool | None) -> None:
        self.rows[key].consent = consent
        self._touch(self.rows[key].email)

    def change_address(self, key: int, email: str) -> None:
        row = self.rows[key]
        self._touch(row.email)
        if row.moved_to is not None:
            self._touch(row.moved_to)
        row.email, row.moved_to, row.linked = email, None, None
        self._touch(email)

    def delete(self, key: int, *, mid_push: bool = False) -> None:
        """A row leaves the source; ``mid_push``: while a push runs, which may have read it
        already (and so act on its consent: see :meth:`push_ended`)."""
        row = self.rows.pop(key)
        self._touch(row.email)
        if mid_push:
            self.read_then_deleted.append(row)

    def push_ended(self) -> None:
        """The rows deleted while the push ran no longer count as read by a push."""
        self.read_then_deleted.clear()

    def _touch(self, email_or_id: str) -> None:
        if self.touched is not None:
            self.touched.add(member_id(email_or_id) if "@" in email_or_id else email_or_id)

    def crashed(self) -> None:
        """A push was killed: what it saved is unknown, so any record may be sent again."""
        self.touched = None

    def rows_with(self, mid: str) -> list[Row]:
        return [r for r in self.rows.values() if member_id(r.email) == mid]

    def source_ids(self) -> set[str]:
        return {member_id(r.email) for r in self.rows.values()}

    def ident(self, mid: str) -> str:
        return self.identity.get(mid, mid)

    # --- the provider's events -----------------------------------------------------------

    def observe(self, events: Iterable[Event]) -> list[str]:
        """Take the events in order; return what the bridge did wrong in them."""
        problems: list[str] = []
        for event in events:
            problems += self._observe(event)
        return problems

    def _observe(self, event: Event) -> list[str]:
        mid, status = event.member_id, event.status
        problems: list[str] = []
        self._touch(mid)
        if event.old_id:
            self._touch(event.old_id)
        if event.kind == "upemail":
            problems += self._moved(event)
            # The member moved: its barrier and creator go with it; the old address keeps its
            # barrier (whoever opted out there did so). At the new address the mover's own
            # status counts, not one a member who was there before left behind.
            if event.old_id in self.barrier:
                self.barrier[mid] = self.barrier[event.old_id]
            else:
                self.barrier.pop(mid, None)
            if event.old_id in self.creator:
                self.creator[mid] = self.creator.pop(event.old_id)
            self.identity[mid] = self.ident(event.old_id)
            self.retired.add(event.old_id)  # if the address comes back, it is a new member
            self.left.add(event.old_id)
            self.retired.discard(mid)
            return problems
        if status is None:
            return problems
        if event.created and mid in self.retired:
            self.retired.discard(mid)
            self.replaced[mid] = self.ident(mid)
            self.identity[mid] = f"{mid}#{len(self.identity)}"  # a new member at that address
        if status == "forgotten":
            self.retired.add(mid)
            self.erased.add(self.ident(mid))
        who = self.ident(mid)
        self.status_changes[who] = self.status_changes.get(who, 0) + 1
        if event.source == "api" and not event.created:
            self.bridge_changes[who] = self.bridge_changes.get(who, 0) + 1
            if status in ("unsubscribed", "archived", "forgotten"):
                problems += self._not_for_moving(event, status)
            if status == "unsubscribed":
                problems += self._not_against_consent(event)
        if event.source == "api":
            problems += self._bridge_change(event, status)
        elif status == "subscribed":
            self.barrier.pop(mid, None)  # the member came back themselves
        elif status in ("unsubscribed", "cleaned", "archived", "forgotten"):
            self.barrier[mid] = status
        if status == "forgotten":
            self.creator.pop(mid, None)
        elif mid not in self.creator:
            self.creator[mid] = event.source
        return problems

    def _moved(self, event: Event) -> list[str]:
        """A member changed its address. Done at the provider, the rows linked to it follow
        it; done by the bridge (a rename), it must be a source row's own address
        change, never the undoing of the member's move."""
        if event.source in PROVIDER_SIDE:
            for row in self.rows.values():
                if row.linked == event.old_id and member_id(row.member_address) == event.old_id:
                    row.moved_to = None if member_id(row.email) == event.member_id else event.email
                    row.linked = event.member_id
                if any(member_id(a) == event.old_id for a in row.yes_addresses):
                    row.yes_addresses = {
                        event.email if member_id(a) == event.old_id else a
                        for a in row.yes_addresses
                    }
            return []
        return [
            f"the bridge renamed the member at {row.moved_to} back to {row.email}, the address "
            "it left at the provider; the source row's address did not change since"
            for row in self.rows.values()
            if row.moved_to is not None
            and member_id(row.email) == event.member_id
            and member_id(row.moved_to) == event.old_id
        ]

    def _not_for_moving(self, event: Event, status: str) -> list[str]:
        """The bridge opted out a member that moved at the provider: only a row's own
        withdrawal (or its deletion, in mirror mode) may do that."""
        return [
            f"the bridge set {event.email} {status}, the member that moved there from "
            f"{row.email} at the provider; its source row did not withdraw consent"
            for row in self.rows.values()
            if row.moved_to is not None
            and member_id(row.moved_to) == event.member_id
            and row.consent is not False
            and not any(r.consent is False for r in self.rows_with(event.member_id))
        ]

    def _not_against_consent(self, event: Event) -> list[str]:
        """The bridge unsubscribed a member at an address a source row holds and consents
        for: the row holding an address decides for its member (whichever row's member it
        was before), and only a withdrawal may unsubscribe it (F26: it was unsubscribed as
        the previous address of another row's address change)."""
        rows = self.rows_with(event.member_id)
        if not any(r.consent is True for r in rows) or any(r.consent is False for r in rows):
            return []
        return [
            f"the bridge unsubscribed {event.email}, whose source row gives consent "
            "(and none withdrew it)"
        ]

    def _bridge_change(self, event: Event, status: str) -> list[str]:
        mid = event.member_id
        problems: list[str] = []
        rows = self.rows_with(mid)
        barrier = self.barrier.get(mid)
        if barrier is not None and status not in ALLOWED[barrier]:
            problems.append(
                f"the bridge set {event.email} {status} after a provider-side '{barrier}' "
                "(no re-signup since)"
            )
        if status in ("subscribed", "pending"):
            # A row deleted while the push ran may have been read before: its consent counts.
            read = rows + [r for r in self.read_then_deleted if member_id(r.email) == mid]
            if not any(r.consent is True for r in read):
                problems.append(
                    f"the bridge set {event.email} {status} but no source row with that "
                    "address gives consent"
                )
            for row in rows:
                if row.consent is True:
                    row.acted_yes = True
                    row.yes_addresses.add(row.email)
        if status == "archived":
            if not self.mirror:
                problems.append(f"the bridge archived {event.email} outside mirror mode")
            if self.creator.get(mid) != "api":
                problems.append(
                    f"the bridge archived {event.email}, a member created by "
                    f"'{self.creator.get(mid, 'nobody')}', not by the bridge"
                )
            if rows:
                problems.append(f"the bridge archived {event.email} while it is in the source")
        return problems

    # --- the consent ledger ----------------------------------------------------------------

    def read_ledger(self, rows: Iterable[Ledger]) -> list[str]:
        """Take the ledger rows written since the last call: per member (through address
        changes), each transition starts where the previous one ended, and there are never
        more transitions than the provider made status changes."""
        problems = []
        for row in rows:
            if row.id <= self.ledger_seen:
                continue
            self.ledger_seen = row.id
            if row.new_status == VACATED:
                # about the address, not a member: the member that held it moved away
                if row.email_hash not in self.left:
                    problems.append(
                        f"ledger row {row.id} says address {row.email_hash[:8]} was vacated; "
                        "no member ever moved away from it"
                    )
                continue
            who = self._whose(row)
            self.first_row.setdefault(who, row)
            if not row.transition:
                continue
            before = self.last_transition.get(who)
            if before is not None and row.old_status != before.new_status:
                problems.append(
                    f"ledger row {row.id} ({row.origin}: {row.old_status} -> {row.new_status}, "
                    f"key {row.source_key}) does not start where row {before.id} "
                    f"({before.origin}: {before.old_status} -> {before.new_status}) ended"
                )
            self.last_transition[who] = row
            self.transitions[who] = self.transitions.get(who, 0) + 1
            if row.origin == "push" and row.old_status is not None:
                self.credited[who] = self.credited.get(who, 0) + 1
                if self.credited[who] > self.bridge_changes.get(who, 0):
                    problems.append(
                        f"ledger row {row.id} (push: {row.old_status} -> {row.new_status}) says "
                        f"the bridge changed member {row.email_hash[:8]}; the bridge made "
                        f"{self.bridge_changes.get(who, 0)} status change(s) to it, and this is "
                        f"number {self.credited[who]}"
                    )
            if self.transitions[who] > self.status_changes.get(who, 0):
                problems.append(
                    f"ledger row {row.id} ({row.origin}: {row.old_status} -> {row.new_status}) "
                    f"is status change number {self.transitions[who]} of member "
                    f"{row.email_hash[:8]}; the provider made {self.status_changes.get(who, 0)}"
                )
        return problems

    def _whose(self, row: Ledger) -> str:
        """The identity a ledger row is about: the member at its address now, except for the
        deletion of the member a new one replaced there (recorded when the bridge found the
        new one, with no webhooks to tell it sooner)."""
        who = self.ident(row.email_hash)
        earlier = self.replaced.get(row.email_hash)
        if row.new_status == "forgotten" and who not in self.erased and earlier in self.erased:
            return str(earlier)
        return who

    def explained(self, mid: str) -> Ledger | None:
        """What the ledger says about the status of the member that has ``mid`` now: its last
        transition, or -- when it never changed since the bridge met it -- its first row (a
        member first seen at the provider may be recorded as "kept" in its status)."""
        who = self.ident(mid)
        return self.last_transition.get(who) or self.first_row.get(who)

    # --- checks against the provider -----------------------------------------------------

    def status_violations(
        self, provider: Mapping[str, str], emails: Mapping[str, str]
    ) -> list[str]:
        """``provider``: member id -> status (absent: not on the audience)."""
        problems = []
        for mid, barrier in sorted(self.barrier.items()):
            status = provider.get(mid)
            if status is not None and status not in ALLOWED[barrier]:
                problems.append(
                    f"{emails.get(mid, mid)} is {status} at the provider after a provider-side "
                    f"'{barrier}' (allowed: {sorted(ALLOWED[barrier]) or 'absent'})"
                )
        return problems

    def kept_violations(self, kept: Iterable[tuple[str, str]]) -> list[str]:
        """``kept``: (member id, status) of the "kept" ledger rows a completed push wrote. One
        is due when the record or the member changed, not on every run."""
        if self.touched is None:
            return []
        return [
            f"a completed push wrote a 'kept {status}' ledger row for member {mid[:8]} although "
            "neither its source row nor its provider status changed since the last push"
            for mid, status in kept
            if mid not in self.touched
        ]

    def completed_push(self, provider: Mapping[str, str]) -> list[str]:
        """A push completed: check withdrawals, then remember what it saw."""
        self.touched = set()
        problems = []
        for key, row in sorted(self.rows.items()):
            at = member_id(row.member_address)
            if row.consent is not None and provider.get(at) not in (None, "forgotten"):
                row.linked = at
            if row.consent is False and row.acted_yes:
                for email in sorted(row.yes_addresses):
                    mid = member_id(email)
                    if any(r is not row for r in self.rows_with(mid)) or (
                        row.moved_to is not None and email == row.email
                    ):
                        continue  # another row speaks for this address now
                    if provider.get(mid) in ("subscribed", "pending"):
                        problems.append(
                            f"row {key} withdrew consent, yet {email} (which the bridge "
                            f"subscribed for it) is still {provider[mid]}"
                        )
                row.acted_yes = False
                row.yes_addresses.clear()
            elif row.consent is True:
                row.acted_yes = True
                row.yes_addresses.add(row.member_address)
        return problems
