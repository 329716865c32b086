"""Members gone from the provider's listings: erased there, or moved to another address.

A member deleted permanently at the provider is in none of its listings, and a member whose
address was changed there is listed only under its new address, so no "changed since" read
shows that the old address is gone. Without webhooks, this is how either reaches the ledger.

When the audience holds fewer members than the bridge knows of (the provider's count against
``cb_member_status``), every member is listed once, and each known member missing from the
listing is:

1. **the same member at another address** when the provider's stable id for it (stored in
   ``cb_member_status.provider_member_id``: Mailchimp's ``contact_id``, Brevo's contact id) is
   listed under another address. It is recorded as an address change, as a webhook
   ``upemail`` is: the member's row and the sync's contacts follow it to the new address, the
   address it left gets its "vacated" row, and a contact's ledger row records a status change
   only when the member's status changed too (otherwise old status = new status);
2. **still at the provider** but off the list (a listmonk subscriber taken off it, say): read
   once more by address, it lands with the status the provider reads for it;
3. **deleted permanently** when the provider answers that it has no such member: recorded as
   ``forgotten``, one ledger row per contact, as for any status change.

Pull runs this at the end of every run, and push after its status refresh, so an erasure or an
address change made at the provider gets its one ledger row whichever runs first; the other
finds the counts equal again. Each change is applied by
:func:`~campaign_bridge.status_changes.apply_status_changes`: the ledger in the transaction
that writes the state it explains.

The counts say nothing when someone else has taken the address meanwhile: a member moves away
and a new member signs up at the address it left (or the member is deleted and someone signs up
again there), and the audience holds as many members as before. The listing then shows the
stored address with **another provider id**: :func:`record_replaced_members`, which pull and
push's status refresh run on every listed page before landing it, records what became of the
stored member first -- the address change to where its id is listed now, or, listed nowhere,
its deletion -- so the member found at the address lands as a new member there, with its own
ledger row (model finding F20). An id that is the address's own key (an adapter without a
stable id gives the bridge's hash) says nothing about who the member is, and is not compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge.providers.base import MemberSnapshot, MemberStatus, Provider, Removal
from campaign_bridge.state import member_status
from campaign_bridge.status_changes import (
    ApplySummary,
    StatusChange,
    apply_status_changes,
    change_from_snapshot,
    email_hash,
)
from campaign_bridge.writeback import WritebackTarget

__all__ = ["READ_CHUNK", "record_replaced_members", "record_vanished_members"]

READ_CHUNK = 2_000  # members re-read per call to the provider

Found = Callable[[Sequence[MemberSnapshot]], Awaitable[object]]


async def record_vanished_members(
    provider: Provider,
    engine: Engine,
    list_id: str,
    *,
    sync_name: str,
    run_id: str | None,
    writeback: WritebackTarget | None,
    found: Found,
) -> ApplySummary:
    """Record the members the provider no longer lists under their stored address (see the
    module docstring). ``found`` lands members the provider still has under that address
    (off the list), as the caller lands any snapshot. Returns what the changes applied."""
    summary = ApplySummary()
    total = await provider.contact_count(list_id)
    if total is None:
        return summary
    known = await anyio.to_thread.run_sync(_count_known, engine, provider, list_id)
    if total >= known:
        return summary
    present: dict[str, str] = {}  # lowercased address -> the provider's id ("" when none)
    async for snapshot in provider.members_changed_since(list_id, None):
        present[_norm(snapshot.email)] = snapshot.member_id or ""
    missing = await anyio.to_thread.run_sync(_known_not_in, engine, provider, list_id, present)
    if not missing:
        return summary
    moved = _moved(missing, present)
    changes = await _address_changes(provider, list_id, moved)
    left = [email for email, _ in missing if _norm(email) not in moved]
    changes += await _forgotten(provider, list_id, left, found)
    if changes:
        summary.add(
            await anyio.to_thread.run_sync(
                lambda: apply_status_changes(
                    engine, changes, sync_name=sync_name, writeback=writeback, run_id=run_id
                )
            )
        )
    return summary


def _norm(email: str) -> str:
    return email.strip().lower()


def _moved(missing: Iterable[tuple[str, str | None]], present: dict[str, str]) -> dict[str, str]:
    """Missing address (lowercased) -> the address the same member (by the provider's id) is
    listed under now."""
    wanted = {pid: _norm(email) for email, pid in missing if pid}
    if not wanted:
        return {}
    return {wanted[pid]: email for email, pid in present.items() if pid in wanted}


async def _address_changes(
    provider: Provider, list_id: str, moved: dict[str, str]
) -> list[StatusChange]:
    """Address changes for the members found under a new address, with the status read there
    now. A member not found there (it moved or went again meanwhile) waits for the next run:
    its old address is neither moved nor forgotten."""
    changes: list[StatusChange] = []
    items = sorted(moved.items())
    now = datetime.now(UTC)
    for start in range(0, len(items), READ_CHUNK):
        part = items[start : start + READ_CHUNK]
        read = await provider.read_members(list_id, [(new, new) for _, new in part])
        for old, new in part:
            snapshot = read.get(new)
            if snapshot is None:
                continue
            seen = change_from_snapshot(
                snapshot, provider=provider.name, list_id=list_id, fetched_at=now
            )
            changes.append(dataclasses.replace(seen, previous_email=old))
    return changes


async def _forgotten(
    provider: Provider, list_id: str, missing: Sequence[str], found: Found
) -> list[StatusChange]:
    """Of the members missing from the listing, those the provider does not have at all, as
    "forgotten" changes; those it still has are handed to ``found``."""
    unique = list({_norm(email): email for email in missing}.values())
    gone: list[str] = []
    still: list[MemberSnapshot] = []
    for start in range(0, len(unique), READ_CHUNK):
        part = unique[start : start + READ_CHUNK]
        read = await provider.read_members(list_id, [(e, e) for e in part])
        gone += [e for e in part if read.get(e) is None]
        still += [s for s in read.values() if s is not None]
    if still:
        await found(still)
    now = datetime.now(UTC)
    return [
        _deleted(provider, list_id, email, now, "no longer in the audience (deleted permanently)")
        for email in gone
    ]


def _deleted(
    provider: Provider, list_id: str, email: str, now: datetime, reason: str
) -> StatusChange:
    """The change recording that the member at ``email`` was deleted at the provider."""
    return StatusChange(
        provider=provider.name,
        list_id=list_id,
        email=email,
        status=MemberStatus.FORGOTTEN,
        occurred_at=now,
        origin="pull",
        reason=reason,
    )


# --- addresses another member took -----------------------------------------------------------


async def record_replaced_members(
    provider: Provider,
    engine: Engine,
    list_id: str,
    listed: Sequence[MemberSnapshot],
    *,
    sync_name: str,
    run_id: str | None,
    writeback: WritebackTarget | None,
) -> ApplySummary:
    """Before ``listed`` (a page of the provider's listing) lands: the stored members whose
    address is listed with another provider id left it (see the module docstring). Each is
    recorded as moved to the address its id is listed under (in ``listed``, else in one
    listing of the whole audience), or as deleted when it is listed nowhere. Returns what the
    changes applied."""
    summary = ApplySummary()
    ids = {_norm(s.email): s.member_id for s in listed if _identifies(s.member_id, s.email)}
    if not ids:
        return summary
    stored = await anyio.to_thread.run_sync(_stored_ids, engine, provider, list_id, list(ids))
    left = {email: pid for email, pid in stored if ids.get(_norm(email), pid) != pid}
    if not left:
        return summary
    where = await _where_listed(provider, list_id, set(left.values()), listed)
    now = datetime.now(UTC)
    changes: list[StatusChange] = []
    for email, pid in sorted(left.items()):
        snapshot = where.get(pid)
        if snapshot is not None:
            seen = change_from_snapshot(
                snapshot, provider=provider.name, list_id=list_id, fetched_at=now
            )
            changes.append(dataclasses.replace(seen, previous_email=email))
            continue
        changes.append(
            _deleted(
                provider,
                list_id,
                email,
                now,
                "no longer in the audience (deleted permanently; another member has the "
                "address now)",
            )
        )
    summary.add(
        await anyio.to_thread.run_sync(
            lambda: apply_status_changes(
                engine, changes, sync_name=sync_name, writeback=writeback, run_id=run_id
            )
        )
    )
    return summary


def _identifies(pid: str | None, email: str) -> bool:
    """Whether a provider id tells members apart at one address: not empty, and not the
    address's own key (what an adapter without a stable id for a member gives)."""
    return bool(pid) and pid != email_hash(email)


async def _where_listed(
    provider: Provider, list_id: str, pids: set[str], listed: Sequence[MemberSnapshot]
) -> dict[str, MemberSnapshot]:
    """Provider id -> the member listed with it, for ``pids``: from ``listed``, and for those
    not in it, from one listing of the whole audience."""
    where = {s.member_id: s for s in listed if s.member_id in pids}
    if len(where) < len(pids):
        async for snapshot in provider.members_changed_since(list_id, None):
            if snapshot.member_id in pids and snapshot.member_id not in where:
                where[snapshot.member_id] = snapshot
    return where


def _stored_ids(
    engine: Engine, provider: Provider, list_id: str, emails: Sequence[str]
) -> list[tuple[str, str]]:
    """(address, provider id) of the stored members at ``emails`` (lowercased) whose id tells
    who they are; members already recorded as deleted are left out (their end is recorded)."""
    table = member_status
    found: list[tuple[str, str]] = []
    hashes = sorted({email_hash(e) for e in emails})
    with engine.connect() as conn:
        for start in range(0, len(hashes), 500):
            rows = conn.execute(
                sa.select(table.c.email, table.c.provider_member_id).where(
                    table.c.provider == provider.name,
                    table.c.list_id == list_id,
                    table.c.member_id.in_(hashes[start : start + 500]),
                    table.c.status != str(MemberStatus.FORGOTTEN),
                )
            )
            found += [
                (row.email, row.provider_member_id)
                for row in rows
                if row.provider_member_id and _identifies(row.provider_member_id, row.email)
            ]
    return found


# --- what the bridge knows -------------------------------------------------------------------


def _known_query(provider: Provider, list_id: str) -> sa.Select[tuple[str, str | None]]:
    """The members ``cb_member_status`` holds as on the audience (the provider counts them)."""
    table = member_status
    left = [str(MemberStatus.FORGOTTEN)]
    if provider.capabilities.removal is Removal.UNLIST:
        # Members taken off the list are not in its count (the provider keeps them).
        left.append(str(MemberStatus.ARCHIVED))
    return sa.select(table.c.email, table.c.provider_member_id).where(
        table.c.provider == provider.name,
        table.c.list_id == list_id,
        table.c.status.not_in(left),
    )


def _count_known(engine: Engine, provider: Provider, list_id: str) -> int:
    query = _known_query(provider, list_id).subquery()
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(query)).scalar_one())


def _known_not_in(
    engine: Engine, provider: Provider, list_id: str, present: dict[str, str]
) -> list[tuple[str, str | None]]:
    """(address, provider's id) of the known members whose address is not listed."""
    with engine.connect() as conn:
        rows = conn.execute(_known_query(provider, list_id))
        return [
            (row.email, row.provider_member_id) for row in rows if _norm(row.email) not in present
        ]
