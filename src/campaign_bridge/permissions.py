"""GDPR marketing permissions, both ways: what each member granted, and every change in the ledger.

Push maps boolean source columns to the audience's permissions (``marketing_permissions`` in a
sync's settings); pull brings each member's permission states back. Both end in
:func:`record_permissions`, which keeps ``cb_marketing_permissions`` (one row per member and
permission: provider, list, member, permission id, its wording, enabled, when) and, in the same
transaction, writes a consent-ledger entry for every change, with who made it (``push`` or
``pull``): ``new_status`` is ``permission_granted`` or ``permission_withdrawn``, ``old_status``
the previous state (empty the first time), ``reason`` names the permission and its wording. A
permission first seen disabled is stored without a ledger entry (nothing was ever granted).

Mailchimp's ``profile`` webhook does not carry marketing permissions, so a change the
subscriber makes reaches the bridge with the next pull.

:func:`check_mapped_permissions` is doctor's check that every mapped permission exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge.config import SyncConfig
from campaign_bridge.db import upsert_rows
from campaign_bridge.mapping import email_hash
from campaign_bridge.privacy import marketing_permissions
from campaign_bridge.providers.base import Audience, MemberSnapshot
from campaign_bridge.state import consent_ledger, contact_state

__all__ = [
    "GRANTED",
    "WITHDRAWN",
    "MemberPermissions",
    "check_mapped_permissions",
    "from_snapshots",
    "record_permissions",
]

GRANTED = "permission_granted"
WITHDRAWN = "permission_withdrawn"


@dataclass(frozen=True)
class MemberPermissions:
    member_id: str  # the bridge's key, md5 of the lowercased address (the ledger's email_hash)
    states: Mapping[str, tuple[str | None, bool]]  # permission id -> (wording, enabled)
    source_key: str | None = None


def from_snapshots(snapshots: Sequence[MemberSnapshot]) -> list[MemberPermissions]:
    """What a pull read: the members whose record lists permissions."""
    return [
        MemberPermissions(
            email_hash(s.email), {pid: (text, on) for pid, text, on in s.marketing_permissions}
        )
        for s in snapshots
        if s.marketing_permissions
    ]


def record_permissions(
    engine: Engine,
    members: Sequence[MemberPermissions],
    *,
    provider: str,
    list_id: str,
    sync_name: str,
    origin: str,
    run_id: str | None = None,
) -> int:
    """Store the members' permission states and ledger every change; return how many changed."""
    if not members:
        return 0
    now = datetime.now(UTC)
    table = marketing_permissions
    ids = sorted({m.member_id for m in members})
    with engine.begin() as conn:
        known: dict[tuple[str, str], tuple[str | None, bool]] = {}
        keys: dict[str, str] = {}
        for start in range(0, len(ids), 1000):
            part = ids[start : start + 1000]
            query = sa.select(
                table.c.member_id, table.c.permission_id, table.c.text, table.c.enabled
            )
            query = query.where(
                table.c.provider == provider,
                table.c.list_id == list_id,
                table.c.member_id.in_(part),
            )
            for member_id, pid, text, enabled in conn.execute(query):
                known[(member_id, pid)] = (text, bool(enabled))
            owners = sa.select(contact_state.c.email_hash, contact_state.c.source_key).where(
                contact_state.c.sync_name == sync_name, contact_state.c.email_hash.in_(part)
            )
            for email_hash, key in conn.execute(owners):
                keys[email_hash] = key
        rows, ledger = [], []
        for member in members:
            for pid, (text, enabled) in sorted(member.states.items()):
                before = known.get((member.member_id, pid))
                wording = text if text else (before[0] if before else None)
                rows.append(
                    {
                        "provider": provider,
                        "list_id": list_id,
                        "member_id": member.member_id,
                        "permission_id": pid,
                        "text": wording,
                        "enabled": enabled,
                        "updated_at": now,
                    }
                )
                if (before is None and not enabled) or (before and before[1] == enabled):
                    continue
                ledger.append(
                    {
                        "sync_name": sync_name,
                        "provider": provider,
                        "email_hash": member.member_id,
                        "source_key": member.source_key or keys.get(member.member_id),
                        "old_status": None if before is None else _status(before[1]),
                        "new_status": _status(enabled),
                        "origin": origin,
                        "reason": f"marketing permission {pid} ({wording or 'wording unknown'}) "
                        f"{'granted' if enabled else 'withdrawn'}, seen by {origin}",
                        "run_id": run_id,
                        "occurred_at": now,
                    }
                )
        upsert_rows(conn, table, rows, ["provider", "list_id", "member_id", "permission_id"])
        if ledger:
            conn.execute(consent_ledger.insert(), ledger)
    return len(ledger)


def _status(enabled: bool) -> str:
    return GRANTED if enabled else WITHDRAWN


def check_mapped_permissions(sync: SyncConfig, audience: Audience) -> tuple[str, str, str]:
    """Doctor's check: ``(status, message, fix)``, status ``ok``, ``warn`` or ``fail``.

    Mailchimp lists an audience's permissions only on its members, so an audience without a
    member cannot be checked (a warning, not a failure)."""
    mapped = sorted(sync.marketing_permissions)
    if not mapped:
        return "ok", "no marketing permissions mapped", ""
    known = audience.marketing_permission_ids
    if not known:
        return (
            "warn",
            f"{len(mapped)} permission(s) mapped but the audience shows none (GDPR fields off, "
            "or no member yet to read them from)",
            "enable GDPR fields on the audience (Settings > Audience name and defaults) and "
            "check again once it has a member",
        )
    missing = [pid for pid in mapped if pid not in known]
    if missing:
        return (
            "fail",
            f"permission id(s) {', '.join(missing)} do not exist on audience {audience.id}",
            f"map only existing ids: {', '.join(sorted(known))}",
        )
    return "ok", f"{len(mapped)} mapped permission(s) exist on the audience", ""
