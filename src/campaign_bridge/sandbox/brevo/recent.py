"""Which contacts changed after a moment, answered from an index rather than by reading every
contact, as Brevo answers ``GET /contacts?modifiedSince=…`` from its own.

The sandbox keeps every contact's id in the order of its latest change
(``BrevoSandbox.changed``): a change moves the id to the end. While the change times along that
order never go down, the contacts changed after a moment are a tail of it, found from the end
back. A change stamped earlier than the one before it (the clock set back through the control
API) breaks that order; the index is then rebuilt, sorted by change time, at the next query.

Every change of a contact's ``modified_at`` goes through ``touch`` (and every new contact
through ``note``); ``tests/unit/sandbox_brevo/test_recent.py`` compares the index's answers with
a scan of every contact.
"""

from __future__ import annotations

import math

from campaign_bridge.sandbox.brevo.model import BrevoSandbox, Contact

__all__ = ["changed_after", "forget", "note", "rebuild", "touch"]


def touch(sandbox: BrevoSandbox, contact: Contact, at: float | None = None) -> None:
    """The contact changed ``at`` (default: now): its ``modifiedAt``, and its place in the
    index."""
    contact.modified_at = sandbox.now() if at is None else at
    note(sandbox, contact)


def note(sandbox: BrevoSandbox, contact: Contact) -> None:
    """Put ``contact`` (new, or just changed) at the end of the index."""
    changed = sandbox.changed
    changed.pop(contact.id, None)
    changed[contact.id] = None
    if contact.modified_at < sandbox.changed_last:
        sandbox.changed_in_order = False
    sandbox.changed_last = max(sandbox.changed_last, contact.modified_at)


def forget(sandbox: BrevoSandbox, contact_id: int) -> None:
    """A deleted contact leaves the index."""
    sandbox.changed.pop(contact_id, None)


def rebuild(sandbox: BrevoSandbox) -> None:
    """The index from the contacts themselves (after a load, or an out-of-order change)."""
    ordered = sorted(sandbox.contacts.values(), key=lambda c: (c.modified_at, c.id))
    sandbox.changed = dict.fromkeys(c.id for c in ordered)
    sandbox.changed_last = ordered[-1].modified_at if ordered else -math.inf
    sandbox.changed_in_order = True


def changed_after(sandbox: BrevoSandbox, since: float) -> list[Contact]:
    """The contacts whose ``modified_at`` is after ``since``, most recently changed first."""
    if not sandbox.changed_in_order or len(sandbox.changed) != len(sandbox.contacts):
        rebuild(sandbox)
    contacts = sandbox.contacts
    found: list[Contact] = []
    for contact_id in reversed(sandbox.changed):
        contact = contacts[contact_id]
        if contact.modified_at <= since:
            break
        found.append(contact)
    return found
