"""Member status changes from the provider, applied once, whichever way they arrive.

A :class:`StatusChange` is what the pull (member snapshots) and the webhook receiver (form posts)
both produce. :func:`apply_status_changes` is the one function that applies them, for both:

1. ``cb_member_status`` (one row per provider member) takes the new status, email and reason.
2. For each contact of the sync with that email (``cb_contact_state``): when its
   ``provider_status`` differs from the new status, it is updated, the consent ledger gets one
   row, and -- when write-back is configured -- the user's own table gets the change.

Idempotent by construction: a change is compared with what is stored before anything is written,
so applying the same change twice (a webhook retried, then the pull seeing the same member)
changes nothing and adds no second ledger row. Pull snapshots are the provider's present state
and always win; a webhook older than what is stored (``occurred_at`` before the stored
``last_changed``) is stale and skipped. Hence the state after webhooks + pull equals the state
after the pull alone.

Pure planning (:func:`plan_changes`) is separate from I/O so it is tested without a database.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from campaign_bridge.db import merge_rows
from campaign_bridge.landing import as_utc
from campaign_bridge.providers.base import MemberSnapshot, MemberStatus
from campaign_bridge.state import consent_ledger, contact_state, member_status
from campaign_bridge.storable import storable_rows
from campaign_bridge.writeback import WritebackTarget, WriteRequest

__all__ = [
    "LEDGER_STATUSES",
    "OPT_OUT",
    "VACATED",
    "ApplySummary",
    "ContactRow",
    "MemberRow",
    "Plan",
    "StatusChange",
    "apply_status_changes",
    "change_from_snapshot",
    "email_hash",
    "last_ledger_statuses",
    "plan_changes",
]

logger = logging.getLogger(__name__)

Origin = Literal["pull", "webhook"]

# Statuses that end marketing consent from the bridge's point of view.
OPT_OUT = frozenset(
    {
        MemberStatus.UNSUBSCRIBED,
        MemberStatus.CLEANED,
        MemberStatus.ARCHIVED,
        MemberStatus.FORGOTTEN,
    }
)


#: The consent ledger's ``new_status`` when the member that held an address moved to another one
#: (an address change, at the provider or by the bridge's rename): the address's history ends
#: there, and a member found at it later is someone else, whose history starts afresh.
VACATED = "vacated"
#: The ledger's ``new_status`` values that tell a member's status at an address (the ledger also
#: holds marketing-permission rows, which do not)
LEDGER_STATUSES = frozenset({*(str(s) for s in MemberStatus), VACATED})


def email_hash(email: str) -> str:
    """The bridge's key for a member: md5 of the trimmed, lowercased address."""
    return hashlib.md5(email.strip().lower().encode("utf-8"), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class StatusChange:
    """A member's status (or address) as the provider reported it at ``occurred_at``.

    ``previous_email`` is set for an address change (Mailchimp ``upemail``): the member that had
    ``previous_email`` now has ``email``; its status is carried over.
    """

    provider: str
    list_id: str
    email: str
    status: MemberStatus | None
    occurred_at: datetime
    origin: Origin
    reason: str | None = None
    campaign_id: str | None = None
    previous_email: str | None = None
    provider_member_id: str | None = None  # the provider's id, stored beside the key only

    @property
    def member_id(self) -> str:
        """The bridge's key for the member (never an id the provider gave)."""
        return email_hash(self.email)


@dataclass(frozen=True)
class MemberRow:
    """What ``cb_member_status`` holds for one member."""

    member_id: str
    email: str
    status: str
    last_changed: datetime | None
    unsubscribe_reason: str | None = None
    provider_member_id: str | None = None


@dataclass(frozen=True)
class ContactRow:
    """One contact of the sync (``cb_contact_state``) with the given email hash."""

    source_key: str
    email_hash: str
    provider_status: str | None


@dataclass
class Plan:
    """What to write for a chunk of changes; produced by :func:`plan_changes`."""

    members: dict[str, MemberRow] = field(default_factory=dict)  # upsert by member_id
    deleted_members: set[str] = field(default_factory=set)  # address changed away
    contact_status: dict[str, str] = field(default_factory=dict)  # source_key -> status
    contact_moves: dict[str, str] = field(default_factory=dict)  # source_key -> new email hash
    #: contacts whose member was deleted permanently and someone else is at the address now:
    #: the bridge did not create that member, so it is no longer theirs to archive
    released: set[str] = field(default_factory=set)
    ledger: list[dict[str, object]] = field(default_factory=list)
    writes: list[WriteRequest] = field(default_factory=list)
    unchanged: int = 0
    stale: int = 0
    unknown_contacts: int = 0
    email_changes: int = 0


@dataclass
class ApplySummary:
    received: int = 0
    members_changed: int = 0  # cb_member_status rows inserted or updated
    transitions: int = 0  # contact status transitions (one ledger row each)
    written_back: int = 0  # rows updated in the user's table
    unknown_contacts: int = 0  # changes for members the sync does not know
    unchanged: int = 0
    stale: int = 0
    email_changes: int = 0

    def add(self, other: ApplySummary) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


# --- normalisation (pure) --------------------------------------------------------------------


def change_from_snapshot(
    snapshot: MemberSnapshot, *, provider: str, list_id: str, fetched_at: datetime
) -> StatusChange:
    """A pull snapshot as a change: the member's present status at the provider."""
    return StatusChange(
        provider=provider,
        list_id=list_id,
        email=snapshot.email,
        status=MemberStatus(snapshot.status),
        occurred_at=_utc(snapshot.last_changed or fetched_at),
        origin="pull",
        reason=snapshot.unsubscribe_reason or None,
        provider_member_id=snapshot.member_id or None,
    )


# --- planning (pure) -------------------------------------------------------------------------


def plan_changes(
    changes: Sequence[StatusChange],
    members: Mapping[str, MemberRow],
    contacts: Mapping[str, Sequence[ContactRow]],
    *,
    sync_name: str,
    run_id: str | None,
    ledger_last: Mapping[str, str] | None = None,
) -> Plan:
    """Decide what a chunk of changes writes, given what is stored.

    ``members`` maps member id -> stored row; ``contacts`` maps email hash -> the sync's contacts
    with that hash; ``ledger_last`` maps the previous addresses of address changes to the status
    the sync's ledger last says for them. Changes are applied in ``occurred_at`` order (stable),
    each against the result of the ones before it, so a chunk holding a change and its replay
    writes it once.
    """
    vacancies = dict(ledger_last or {})
    plan = Plan()
    current: dict[str, MemberRow] = dict(members)
    contact_now: dict[str, str | None] = {
        row.source_key: row.provider_status for rows in contacts.values() for row in rows
    }
    for change in sorted(changes, key=lambda c: c.occurred_at):
        member_id = change.member_id
        stored = current.get(member_id)
        if change.previous_email is not None:
            leaving = current.get(email_hash(change.previous_email))
            _plan_email_change(plan, current, change)
            _plan_contact_moves(plan, contacts, change, sync_name, run_id)
            left_as = leaving.status if leaving is not None else None
            _plan_vacancy(plan, vacancies, contacts, change, sync_name, run_id, left_as)
            continue
        if change.status is None:
            plan.unchanged += 1
            continue
        status = str(change.status)
        if (
            change.origin == "webhook"
            and stored is not None
            and stored.last_changed is not None
            and change.occurred_at < stored.last_changed
        ):
            plan.stale += 1
            continue
        new_row = MemberRow(
            member_id=member_id,
            email=change.email.strip(),
            status=status,
            last_changed=_newest(stored, change),
            unsubscribe_reason=change.reason if status != MemberStatus.SUBSCRIBED else None,
            provider_member_id=_provider_id(change, stored),
        )
        if stored != new_row:
            current[member_id] = new_row
            plan.members[member_id] = new_row
        known = contacts.get(member_id, ())
        if not known:
            if stored == new_row:
                plan.unchanged += 1
            else:
                plan.unknown_contacts += 1
            continue
        status_moved = stored is None or stored.status != status
        transitioned = False
        for contact in known:
            old = contact_now.get(contact.source_key)
            if old == status:
                if status_moved:  # keep the user's status column in step, nothing else
                    plan.writes.append(
                        WriteRequest(contact.source_key, status, change.occurred_at, old, False)
                    )
                continue
            contact_now[contact.source_key] = status
            plan.contact_status[contact.source_key] = status
            if old == MemberStatus.FORGOTTEN:
                plan.released.add(contact.source_key)  # a new member, not the one it had
            first_sight = old is None and status not in OPT_OUT
            # Another contact at this address says this status already: the change is in the
            # ledger with that contact, and this one (say, a row gone from the source whose state
            # mirror mode keeps) only catches up; a second row would count one change of the
            # member twice (model finding F17).
            recorded = any(
                contact_now.get(other.source_key) == status
                for other in known
                if other.source_key != contact.source_key
            )
            if not first_sight and not recorded:
                transitioned = True
                plan.ledger.append(
                    {
                        "sync_name": sync_name,
                        "provider": change.provider,
                        "email_hash": member_id,
                        "source_key": contact.source_key,
                        "old_status": old,
                        "new_status": status,
                        "origin": change.origin,
                        "reason": _ledger_reason(change),
                        "run_id": run_id,
                        "occurred_at": change.occurred_at,
                    }
                )
            plan.writes.append(
                WriteRequest(contact.source_key, status, change.occurred_at, old, not first_sight)
            )
        if not transitioned and stored == new_row:
            plan.unchanged += 1
    return plan


def _plan_email_change(plan: Plan, current: dict[str, MemberRow], change: StatusChange) -> None:
    assert change.previous_email is not None
    old_id = email_hash(change.previous_email)
    new_id = change.member_id
    old = current.get(old_id)
    existing = current.get(new_id)
    if old is None and existing is not None:
        plan.unchanged += 1  # already moved
        return
    plan.email_changes += 1
    status = str(change.status) if change.status else (old.status if old else "subscribed")
    row = MemberRow(
        member_id=new_id,
        email=change.email.strip(),
        status=status,
        last_changed=change.occurred_at,
        unsubscribe_reason=old.unsubscribe_reason if old else None,
        provider_member_id=_provider_id(change, old),
    )
    current[new_id] = row
    plan.members[new_id] = row
    if old is not None:
        current.pop(old_id, None)
        plan.members.pop(old_id, None)
        plan.deleted_members.add(old_id)


def _provider_id(change: StatusChange, stored: MemberRow | None) -> str | None:
    return change.provider_member_id or (stored.provider_member_id if stored else None)


def _plan_contact_moves(
    plan: Plan,
    contacts: Mapping[str, Sequence[ContactRow]],
    change: StatusChange,
    sync_name: str,
    run_id: str | None,
) -> None:
    """The sync's contacts of a member whose address changed at the provider follow it (the
    member and its status are the same person's); one ledger row each explains the move. When
    the member's status changed too (a pull finds the member at its new address with another
    status), the contact takes that status in the same write, so the row is its one
    transition and the next read adds nothing."""
    assert change.previous_email is not None
    old_id, new_id = email_hash(change.previous_email), change.member_id
    if old_id == new_id:
        return
    for contact in contacts.get(old_id, ()):
        if contact.source_key in plan.contact_moves:
            continue
        plan.contact_moves[contact.source_key] = new_id
        status = plan.members[new_id].status if new_id in plan.members else None
        status = status or contact.provider_status or str(MemberStatus.SUBSCRIBED)
        if status != contact.provider_status:
            plan.contact_status[contact.source_key] = status
            plan.writes.append(
                WriteRequest(
                    contact.source_key, status, change.occurred_at, contact.provider_status
                )
            )
        plan.ledger.append(
            {
                "sync_name": sync_name,
                "provider": change.provider,
                "email_hash": new_id,
                "source_key": contact.source_key,
                "old_status": contact.provider_status,
                "new_status": status,
                "origin": change.origin,
                "reason": f"address changed at the provider (from member {old_id})",
                "run_id": run_id,
                "occurred_at": change.occurred_at,
            }
        )


def _plan_vacancy(
    plan: Plan,
    ledger_last: dict[str, str],
    contacts: Mapping[str, Sequence[ContactRow]],
    change: StatusChange,
    sync_name: str,
    run_id: str | None,
    left_as: str | None = None,
) -> None:
    """The address a member moved away from gets one "vacated" ledger row, when the sync's
    ledger has a history there that is not closed yet: a member found at the address later is
    someone else (model finding F11b). So does one where a member no row spoke for had opted
    out (``left_as``, its stored status): push then knows that the person opted out at that
    address, should a row bring it back (F24)."""
    assert change.previous_email is not None
    old_id = email_hash(change.previous_email)
    planned = [r["new_status"] for r in plan.ledger if r["email_hash"] == old_id]
    said = str(planned[-1]) if planned else ledger_last.get(old_id)
    if said is None and left_as in _LEFT_OPTED_OUT:
        said = left_as
    if old_id == change.member_id or said is None or said == VACATED:
        return
    ledger_last[old_id] = VACATED
    keys = [c.source_key for c in contacts.get(old_id, ())]
    plan.ledger.append(
        {
            "sync_name": sync_name,
            "provider": change.provider,
            "email_hash": old_id,
            "source_key": keys[0] if keys else None,
            "old_status": said,
            "new_status": VACATED,
            "origin": change.origin,
            "reason": f"the member moved to another address (member {change.member_id})",
            "run_id": run_id,
            "occurred_at": change.occurred_at,
        }
    )


def _newest(stored: MemberRow | None, change: StatusChange) -> datetime:
    if change.origin == "pull" or stored is None or stored.last_changed is None:
        return change.occurred_at
    return max(stored.last_changed, change.occurred_at)


def _ledger_reason(change: StatusChange) -> str | None:
    parts = []
    if change.reason:
        parts.append(change.reason)
    if change.campaign_id:
        parts.append(f"campaign {change.campaign_id}")
    return "; ".join(parts) or None


def _utc(value: datetime) -> datetime:
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.replace(microsecond=0)


# --- applying (I/O) --------------------------------------------------------------------------


def apply_status_changes(
    state_engine: Engine,
    changes: Sequence[StatusChange],
    *,
    sync_name: str,
    writeback: WritebackTarget | None = None,
    run_id: str | None = None,
) -> ApplySummary:
    """Apply ``changes`` (one chunk) to the state store and, if configured, the user's table.

    Synchronous (database I/O); call it from async code through ``anyio.to_thread``. The user's
    table is written in one transaction before the state store commits, so a crash in between
    repeats the same write next time (same values) rather than losing it.
    """
    summary = ApplySummary(received=len(changes))
    if not changes:
        return summary
    by_list: dict[tuple[str, str], list[StatusChange]] = {}
    for change in changes:
        by_list.setdefault((change.provider, change.list_id), []).append(change)
    for (provider, list_id), group in by_list.items():
        summary.add(
            _apply_group(state_engine, provider, list_id, group, sync_name, writeback, run_id)
        )
    summary.received = len(changes)
    return summary


def _apply_group(
    state_engine: Engine,
    provider: str,
    list_id: str,
    changes: Sequence[StatusChange],
    sync_name: str,
    writeback: WritebackTarget | None,
    run_id: str | None,
) -> ApplySummary:
    member_ids = {c.member_id for c in changes}
    member_ids |= {email_hash(c.previous_email) for c in changes if c.previous_email}
    with state_engine.begin() as conn:
        members = _load_members(conn, provider, list_id, member_ids)
        contacts = _load_contacts(conn, sync_name, member_ids)
        left = {email_hash(c.previous_email) for c in changes if c.previous_email}
        plan = plan_changes(
            changes,
            members,
            contacts,
            sync_name=sync_name,
            run_id=run_id,
            ledger_last=last_ledger_statuses(conn, sync_name, left) if left else None,
        )
        written = 0
        if writeback is not None and plan.writes:
            written = writeback.write(plan.writes, state_connection=conn)
        _write_plan(conn, provider, list_id, plan, sync_name, run_id)
    return ApplySummary(
        members_changed=len(plan.members) + len(plan.deleted_members),
        transitions=len(plan.ledger),
        written_back=written,
        unknown_contacts=plan.unknown_contacts,
        unchanged=plan.unchanged,
        stale=plan.stale,
        email_changes=plan.email_changes,
    )


def _load_members(
    conn: Connection, provider: str, list_id: str, member_ids: Iterable[str]
) -> dict[str, MemberRow]:
    table = member_status
    found: dict[str, MemberRow] = {}
    ids = sorted(member_ids)
    for start in range(0, len(ids), 500):
        query = sa.select(
            table.c.member_id,
            table.c.email,
            table.c.status,
            table.c.last_changed,
            table.c.unsubscribe_reason,
            table.c.provider_member_id,
        ).where(
            table.c.provider == provider,
            table.c.list_id == list_id,
            _one_of(table.c.member_id, ids[start : start + 500], conn),
        )
        if conn.dialect.name != "sqlite":
            query = query.with_for_update()
        for row in conn.execute(query):
            found[row.member_id] = MemberRow(
                member_id=row.member_id,
                email=row.email,
                status=row.status,
                last_changed=as_utc(row.last_changed),
                unsubscribe_reason=row.unsubscribe_reason,
                provider_member_id=row.provider_member_id,
            )
    return found


def _load_contacts(
    conn: Connection, sync_name: str, hashes: Iterable[str]
) -> dict[str, list[ContactRow]]:
    table = contact_state
    found: dict[str, list[ContactRow]] = {}
    ids = sorted(hashes)
    for start in range(0, len(ids), 500):
        query = sa.select(table.c.source_key, table.c.email_hash, table.c.provider_status).where(
            table.c.sync_name == sync_name,
            _one_of(table.c.email_hash, ids[start : start + 500], conn),
        )
        for row in conn.execute(query):
            found.setdefault(row.email_hash, []).append(
                ContactRow(row.source_key, row.email_hash, row.provider_status)
            )
    return found


def last_ledger_statuses(conn: Connection, sync_name: str, hashes: Iterable[str]) -> dict[str, str]:
    """Per email hash among ``hashes``, the status the sync's last consent-ledger row about a
    member's status there says (``VACATED`` included; permission rows left out; hashes
    without such a row are left out too)."""
    return {digest: new for digest, (new, _) in _last_ledger_rows(conn, sync_name, hashes).items()}


_LEFT_OPTED_OUT = frozenset({"unsubscribed", "cleaned", "archived"})


def opted_out_then_vacated(
    conn: Connection, sync_name: str, hashes: Iterable[str]
) -> dict[str, str]:
    """Per email hash among ``hashes`` whose sync's ledger ends with the address vacated by a
    member that had opted out there (its member moved to another address at the provider
    while unsubscribed, cleaned or archived): that opt-out status."""
    return {
        digest: old
        for digest, (new, old) in _last_ledger_rows(conn, sync_name, hashes).items()
        if new == VACATED and old in _LEFT_OPTED_OUT
    }


def _last_ledger_rows(
    conn: Connection, sync_name: str, hashes: Iterable[str]
) -> dict[str, tuple[str, str | None]]:
    """Per email hash, (new status, old status) of the sync's last ledger row about a member's
    status there."""
    table = consent_ledger
    last: dict[str, tuple[int, str, str | None]] = {}
    ids = sorted(set(hashes))
    for start in range(0, len(ids), 500):
        query = sa.select(
            table.c.id, table.c.email_hash, table.c.new_status, table.c.old_status
        ).where(
            table.c.sync_name == sync_name,
            _one_of(table.c.email_hash, ids[start : start + 500], conn),
            table.c.new_status.in_(sorted(LEDGER_STATUSES)),
        )
        for row_id, digest, new, old in conn.execute(query):
            if digest not in last or row_id > last[digest][0]:
                last[digest] = (row_id, new, old)
    return {digest: (new, old) for digest, (_, new, old) in last.items()}


def _write_plan(
    conn: Connection, provider: str, list_id: str, plan: Plan, sync_name: str, run_id: str | None
) -> None:
    now = datetime.now(UTC)
    naive = conn.dialect.name != "postgresql"
    table = member_status
    if plan.deleted_members:
        conn.execute(
            table.delete().where(
                table.c.provider == provider,
                table.c.list_id == list_id,
                _one_of(table.c.member_id, sorted(plan.deleted_members), conn),
            )
        )
    if plan.members:
        ids = sorted(plan.members)
        rows = storable_rows(
            table,
            (
                {
                    "provider": provider,
                    "list_id": list_id,
                    "member_id": row.member_id,
                    "email": row.email,
                    "status": row.status,
                    "unsubscribe_reason": row.unsubscribe_reason,
                    "last_changed": _db_time(row.last_changed, naive),
                    "updated_at": _db_time(now, naive),
                    "provider_member_id": row.provider_member_id,
                }
                for row in (plan.members[i] for i in ids)
            ),
            conn.dialect.name,
            what="member status",
        )
        if rows:  # the one write path of cb_member_status rows given as values
            merge_rows(conn, table, rows, ["provider", "list_id", "member_id"])
    if plan.contact_status:
        stmt = (
            contact_state.update()
            .where(
                contact_state.c.sync_name == sync_name,
                contact_state.c.source_key == sa.bindparam("b_key"),
            )
            .values(provider_status=sa.bindparam("b_status"))
        )
        conn.execute(
            stmt,
            [{"b_key": key, "b_status": status} for key, status in plan.contact_status.items()],
        )
    if plan.released:
        conn.execute(
            contact_state.update()
            .where(
                contact_state.c.sync_name == sync_name,
                contact_state.c.source_key.in_(sorted(plan.released)),
            )
            .values(managed=False)
        )
    if plan.contact_moves:
        stmt = (
            contact_state.update()
            .where(
                contact_state.c.sync_name == sync_name,
                contact_state.c.source_key == sa.bindparam("b_key"),
            )
            # The source row still has the address it was pushed with: kept beside the
            # member's new one (assigned first: MariaDB's SET reads values already assigned).
            .ordered_values(
                (
                    contact_state.c.source_email_hash,
                    sa.func.coalesce(contact_state.c.source_email_hash, contact_state.c.email_hash),
                ),
                (contact_state.c.email_hash, sa.bindparam("b_hash")),
            )
        )
        conn.execute(
            stmt, [{"b_key": key, "b_hash": digest} for key, digest in plan.contact_moves.items()]
        )
    if plan.ledger:
        ledger = storable_rows(
            consent_ledger,
            (
                {**row, "occurred_at": _db_time(row["occurred_at"], naive)}  # type: ignore[arg-type]
                for row in plan.ledger
            ),
            conn.dialect.name,
            what="consent change",
        )
        conn.execute(consent_ledger.insert(), ledger)


def _one_of(
    column: sa.Column[str], values: Sequence[str], conn: Connection
) -> sa.ColumnElement[bool]:
    """``column IN (...)``; on PostgreSQL ``column = ANY(array)``: one parameter, and a plan
    that stays on the index even once psycopg prepares the statement (a prepared 500-value IN
    list gets a generic plan that scans the table)."""
    if conn.dialect.name == "postgresql":
        return column == sa.any_(sa.literal(list(values), postgresql.ARRAY(sa.Text())))
    return column.in_(values)


def _db_time(value: datetime | None, naive: bool) -> datetime | None:
    if value is None:
        return None
    del naive  # the UTC column type converts per dialect
    return value.astimezone(UTC)


def with_origin(change: StatusChange, origin: Origin) -> StatusChange:
    """The same change, attributed to another origin (tests and reconciliation)."""
    return replace(change, origin=origin)
