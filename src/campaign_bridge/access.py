"""Access requests: everything the bridge and the provider hold about one person, in one document.

:func:`subject_export` answers a data subject's access request (GDPR art. 15). It collects the
person's rows from every bridge table that can hold them (the tables erasure clears, see
:data:`campaign_bridge.erasure.ERASE_RULES`) and, for each audience in scope, what the provider
holds (the member record, tags, activity feed and notes). Each section carries a one-line
explanation, so the document can be handed to the person as it is.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaign_bridge import erasure, landing, privacy, state
from campaign_bridge._push_state import INTENT_FIELDS
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine

__all__ = ["EXPLANATIONS", "subject_export"]

EXPLANATIONS: dict[str, str] = {
    "contact_state": "What the bridge last sent to the email provider for you, per sync: a "
    "fingerprint of the data (not the data itself), when, and your status there.",
    "member_status": "Your subscription status in each audience as the provider last reported "
    "it, with your address and the reason you gave when unsubscribing.",
    "marketing_permissions": "Your GDPR marketing permissions (e.g. email, direct mail) in each "
    "audience, as last confirmed by the provider.",
    "email_activity": "Campaign emails sent to you and what you did with them (opens, clicks, "
    "bounces, unsubscribes), as reported by the provider.",
    "consent_ledger": "Every change to your consent the bridge saw or made, with who made it "
    "(source, push, pull, webhook) and why.",
    "push_intents": "A change to your subscription status the bridge was about to send when "
    "it last stopped, if any (it confirms such changes with the provider on its next run).",
    "rejected_records": "Times the bridge could not send your record to the provider, and why.",
    "webhook_events": "Notifications the provider sent the bridge about you (subscribe, "
    "unsubscribe, profile changes), as received.",
    "erasure": "Whether you were erased before; only the date and origin are kept, no address.",
    "provider": "What the email provider holds about you in each audience: your member record "
    "(fields, status, permissions, location, statistics), tags, activity and notes.",
}


async def subject_export(
    settings: Settings, who: str, sync_name: str | None = None
) -> dict[str, Any]:
    """The access-request document for ``who`` (an address or a source key)."""
    syncs = erasure.syncs_in_scope(settings, sync_name)
    engine = create_engine(settings.effective_state_url())
    try:
        subject = await anyio.to_thread.run_sync(
            erasure.resolve_subject, engine, settings, who, syncs
        )
        held = await anyio.to_thread.run_sync(_bridge_sections, engine, subject, syncs)
    finally:
        engine.dispose()
    provider: dict[str, Any] = {}
    for name in syncs:
        sync = settings.syncs[name]
        from campaign_bridge.providers import create_provider

        adapter = create_provider(sync.destination)
        try:
            found = await adapter.member_export(sync.destination.list_id, subject.ref(name))
        finally:
            await adapter.aclose()
        provider[f"{name} ({sync.destination.list_id})"] = found
    document = {
        "generated_at": datetime.now(UTC).isoformat(),
        "subject": {"email": subject.email, "subscriber_hash": subject.email_hash},
        "about": "Everything campaign-bridge and the email provider hold about this person. "
        "Each section is explained under 'explanations'.",
        "explanations": EXPLANATIONS,
        "bridge": held,
        "provider": provider,
    }
    plain: dict[str, Any] = _plain(document)
    return plain


def _bridge_sections(
    engine: Engine, subject: erasure.Subject, syncs: Sequence[str]
) -> dict[str, Any]:
    h = subject.email_hash
    with engine.connect() as conn:
        return {
            "contact_state": _rows(conn, _by_hash_or_key(state.contact_state, subject, syncs)),
            "member_status": _rows(
                conn, sa.select(state.member_status).where(state.member_status.c.member_id == h)
            ),
            "marketing_permissions": _rows(
                conn,
                sa.select(privacy.marketing_permissions).where(
                    privacy.marketing_permissions.c.member_id == h
                ),
            ),
            "email_activity": _rows(
                conn,
                sa.select(landing.email_activity)
                .where(landing.email_activity.c.member_id == h)
                .order_by(landing.email_activity.c.occurred_at),
            ),
            "consent_ledger": _rows(
                conn,
                _by_hash_or_key(state.consent_ledger, subject, syncs).order_by(
                    state.consent_ledger.c.occurred_at, state.consent_ledger.c.id
                ),
            ),
            "push_intents": _push_intents(conn, subject, syncs),
            "rejected_records": _rows(
                conn, _by_hash_or_key(state.rejected_records, subject, syncs)
            ),
            "webhook_events": _webhooks(conn, subject),
            "erasure": _erasure(conn, h),
        }


def _by_hash_or_key(
    table: sa.Table, subject: erasure.Subject, syncs: Sequence[str]
) -> sa.Select[Any]:
    return sa.select(table).where(erasure.mentions(table, subject, syncs))


def _push_intents(
    conn: Connection, subject: erasure.Subject, syncs: Sequence[str]
) -> list[dict[str, Any]]:
    """The status changes about the person that a push was about to send (one entry each)."""
    batch = erasure.Batch([subject], syncs, {})
    return [
        {
            "sync_name": row.sync_name,
            **dict(zip(INTENT_FIELDS, entry, strict=True)),
            "run_id": row.run_id,
            "created_at": row.created_at,
        }
        for row, about in erasure.intents_mentioning(conn, batch, lock=False)
        for entry in about
    ]


def _webhooks(conn: Connection, subject: erasure.Subject) -> list[dict[str, Any]]:
    events = state.webhook_events
    needles = erasure.needles(subject)
    mentions = [sa.func.lower(events.c.payload).contains(n, autoescape=True) for n in needles]
    query = (
        sa.select(events)
        .where(sa.or_(events.c.email_hash == subject.email_hash, *mentions))
        .order_by(events.c.id)
    )
    found = []
    for row in _rows(conn, query):
        with contextlib.suppress(TypeError, ValueError):
            row["payload"] = json.loads(row["payload"])
        found.append(row)
    return found


def _erasure(conn: Connection, email_hash: str) -> dict[str, Any] | None:
    erased = privacy.tombstones_of(conn, [email_hash])
    if email_hash not in erased:
        return None
    return {"erased_at": erased[email_hash]}


def _rows(conn: Connection, query: sa.Select[Any]) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(query).mappings()]


def _plain(value: Any) -> Any:
    """JSON-ready values: timestamps as ISO 8601 (UTC), decimals as numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
