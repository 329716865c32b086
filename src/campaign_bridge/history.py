"""A contact's whole story, read from the state store: what the bridge did and why.

Pushes, rejections, provider status changes with their origin, webhooks, consent-ledger entries
and write-backs, in time order, plus plain answers to the two questions operators ask: "why is
this person unsubscribed?" and "why was this person not sent?".

Every query is a lookup by an indexed key (``(sync_name, source_key)``,
``(sync_name, email_hash)``, ``(provider, list_id, member_id)``, ``email_hash``), so a lookup
costs a few milliseconds however many contacts the store holds (bench/history.py). Addresses
are never stored in clear outside ``cb_member_status``: the contact is found by the hash every
table keys it by (md5 of the trimmed, lowercased address).

``campaign-bridge history`` and the status page's contact lookup both render
:func:`contact_history`'s result, so they always agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from campaign_bridge.state import (
    consent_ledger,
    contact_state,
    member_status,
    rejected_records,
    sync_runs,
    webhook_events,
)
from campaign_bridge.status_changes import email_hash

__all__ = [
    "ContactHistory",
    "HistoryEvent",
    "SyncScope",
    "contact_history",
    "explain_absence",
    "scopes_of",
]

OPT_OUT = frozenset({"unsubscribed", "cleaned", "archived", "forgotten", "deleted"})
WEBHOOK_LIMIT = 200  # most recent deliveries shown for one contact

_HASH = re.compile(r"^[0-9a-f]{32}$")

ORIGINS = {
    "webhook": "the provider told us by webhook (the person or the provider acted)",
    "pull": "seen at the provider by a pull",
    "push": "set by this bridge's push",
    "source": "from your source database",
}


@dataclass(frozen=True)
class SyncScope:
    """What a lookup needs to know of one configured sync."""

    name: str
    provider: str
    list_id: str
    writeback_table: str | None = None


@dataclass(frozen=True)
class HistoryEvent:
    """One thing that happened to the contact."""

    at: datetime | None
    kind: str  # push | rejected | resolved | status | ledger | webhook | writeback
    sync: str | None
    text: str
    run_id: str | None = None
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat() if self.at else None,
            "kind": self.kind,
            "sync": self.sync,
            "text": self.text,
            "run_id": self.run_id,
            "dry_run": self.dry_run,
        }


@dataclass
class ContactHistory:
    """The result of a lookup: who, where they stand now, what happened, and why."""

    query: str
    email_hash: str | None
    source_keys: list[tuple[str, str]] = field(default_factory=list)  # (sync, key)
    current: list[dict[str, Any]] = field(default_factory=list)  # one per sync the contact is in
    events: list[HistoryEvent] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.events or self.current)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "email_hash": self.email_hash,
            "found": self.found,
            "source_keys": [{"sync": s, "source_key": k} for s, k in self.source_keys],
            "current": [{k: _jsonable(v) for k, v in row.items()} for row in self.current],
            "answers": self.answers,
            "events": [event.to_dict() for event in self.events],
        }


def scopes_of(settings: Any) -> list[SyncScope]:
    """One :class:`SyncScope` per configured sync of ``settings``."""
    return [
        SyncScope(
            name=name,
            provider=sync.destination.provider,
            list_id=sync.destination.list_id,
            writeback_table=sync.writeback.table if sync.writeback is not None else None,
        )
        for name, sync in settings.syncs.items()
    ]


def contact_history(engine: Engine, scopes: Sequence[SyncScope], query: str) -> ContactHistory:
    """Everything the store knows of the contact ``query`` names, oldest event first.

    ``query`` is an email address, a source key, or the md5 hash of an address (as logs show
    it). A source key may belong to different people in different syncs; each is shown.
    """
    text = query.strip()
    names = [scope.name for scope in scopes]
    guess = {email_hash(text)} if "@" in text else {text} if _HASH.match(text) else set()
    with engine.connect() as conn:
        states = _contact_rows_by_key(conn, names, text)
        if guess:
            seen = {(row["sync_name"], row["source_key"]) for row in states}
            states += [
                row
                for row in _contact_rows_by_hash(conn, names, guess)
                if (row["sync_name"], row["source_key"]) not in seen
            ]
        hashes = {row["email_hash"] for row in states} | guess
        rejections = _rejection_rows(conn, names, text, hashes)
        hashes |= {row["email_hash"] for row in rejections if row["email_hash"]}
        ledger = _ledger_rows(conn, names, hashes)
        members = _member_rows(conn, scopes, hashes)
        webhooks = _webhook_rows(conn, scopes, hashes)
        run_ids = {row["last_run_id"] for row in [*states, *rejections]}
        run_ids |= {row["run_id"] for row in ledger}
        runs = _runs(conn, {r for r in run_ids if r})
    history = ContactHistory(query=text, email_hash=min(hashes) if len(hashes) == 1 else None)
    history.source_keys = sorted({(row["sync_name"], row["source_key"]) for row in states})
    writeback = {scope.name: scope.writeback_table for scope in scopes}
    history.current = _current(states, members, scopes)
    events: list[HistoryEvent] = []
    events += _push_events(states, runs)
    events += _rejection_events(rejections, runs)
    events += _ledger_events(ledger, runs, writeback)
    events += _member_events(members)
    events += _webhook_events(webhooks)
    events.sort(key=lambda e: (e.at is None, e.at or datetime.min, _KIND_ORDER.get(e.kind, 9)))
    history.events = events
    history.answers = _answers(states, rejections, ledger, members)
    return history


_KIND_ORDER = {"webhook": 0, "status": 1, "ledger": 2, "writeback": 3, "push": 4}


# --------------------------------------------------------------------------- queries


def _contact_rows_by_key(conn: Connection, names: Sequence[str], key: str) -> list[RowMapping]:
    if not names:
        return []
    t = contact_state
    query = sa.select(t).where(t.c.sync_name.in_(names), t.c.source_key == key)
    return list(conn.execute(query).mappings())


def _contact_rows_by_hash(
    conn: Connection, names: Sequence[str], hashes: Iterable[str]
) -> list[RowMapping]:
    t = contact_state
    wanted = sorted(hashes)
    if not names or not wanted:
        return []
    # Also a contact whose source row still has the address, its member having moved away
    # from it at the provider since.
    found = sa.or_(t.c.email_hash.in_(wanted), t.c.source_email_hash.in_(wanted))
    query = sa.select(t).where(t.c.sync_name.in_(names), found)
    return list(conn.execute(query).mappings())


def _rejection_rows(
    conn: Connection, names: Sequence[str], key: str | None, hashes: Iterable[str]
) -> list[RowMapping]:
    t = rejected_records
    wanted = sorted(hashes)
    if not names:
        return []
    conditions = []
    if key is not None:
        conditions.append(t.c.source_key == key)
    if wanted:
        conditions.append(t.c.email_hash.in_(wanted))
    if not conditions:
        return []
    query = sa.select(t).where(t.c.sync_name.in_(names), sa.or_(*conditions))
    return list(conn.execute(query).mappings())


def _ledger_rows(conn: Connection, names: Sequence[str], hashes: Iterable[str]) -> list[RowMapping]:
    t = consent_ledger
    wanted = sorted(hashes)
    if not names or not wanted:
        return []
    query = (
        sa.select(t)
        .where(t.c.sync_name.in_(names), t.c.email_hash.in_(wanted))
        .order_by(t.c.occurred_at, t.c.id)
    )
    return list(conn.execute(query).mappings())


def _member_rows(
    conn: Connection, scopes: Sequence[SyncScope], hashes: Iterable[str]
) -> list[RowMapping]:
    t = member_status
    wanted = sorted(hashes)
    lists = sorted({(scope.provider, scope.list_id) for scope in scopes})
    found: list[RowMapping] = []
    for provider, list_id in lists if wanted else ():
        query = sa.select(t).where(
            t.c.provider == provider, t.c.list_id == list_id, t.c.member_id.in_(wanted)
        )
        found += conn.execute(query).mappings()
    return found


def _webhook_rows(
    conn: Connection, scopes: Sequence[SyncScope], hashes: Iterable[str]
) -> list[RowMapping]:
    t = webhook_events
    wanted = sorted(hashes)
    if not wanted:
        return []
    lists = {scope.list_id for scope in scopes}
    query = (
        sa.select(
            t.c.event_type,
            t.c.list_id,
            t.c.fired_at,
            t.c.received_at,
            t.c.applied_at,
            t.c.error,
        )
        .where(t.c.email_hash.in_(wanted))
        .order_by(t.c.received_at.desc(), t.c.id.desc())
        .limit(WEBHOOK_LIMIT)
    )
    return [row for row in conn.execute(query).mappings() if row["list_id"] in lists]


def _runs(conn: Connection, run_ids: set[str]) -> dict[str, RowMapping]:
    if not run_ids:
        return {}
    t = sync_runs
    query = sa.select(t.c.id, t.c.direction, t.c.status, t.c.started_at, t.c.counts).where(
        t.c.id.in_(sorted(run_ids))
    )
    return {row["id"]: row for row in conn.execute(query).mappings()}


# --------------------------------------------------------------------------- events


def _is_dry(run: Mapping[Any, Any] | None) -> bool:
    counts = (run or {}).get("counts") or {}
    return bool(isinstance(counts, Mapping) and counts.get("dry_run"))


def _run_text(run_id: str | None, runs: Mapping[str, RowMapping]) -> str:
    run = runs.get(run_id or "")
    if run is None:
        return f" (run {run_id})" if run_id else ""
    dry = ", dry run" if _is_dry(run) else ""
    return f" ({run['direction']} run {run_id}, {run['status']}{dry})"


def _push_events(
    states: Sequence[RowMapping], runs: Mapping[str, RowMapping]
) -> list[HistoryEvent]:
    events = []
    for row in states:
        if row["pushed_at"] is None:
            continue
        status = row["provider_status"] or "unknown"
        events.append(
            HistoryEvent(
                at=row["pushed_at"],
                kind="push",
                sync=row["sync_name"],
                text=f"pushed source record {row['source_key']!r} to the provider "
                f"(provider status now {status})" + _run_text(row["last_run_id"], runs),
                run_id=row["last_run_id"],
            )
        )
    return events


def _rejection_events(
    rows: Sequence[RowMapping], runs: Mapping[str, RowMapping]
) -> list[HistoryEvent]:
    events = []
    for row in rows:
        attempts = row["attempts"]
        events.append(
            HistoryEvent(
                at=row["first_seen"],
                kind="rejected",
                sync=row["sync_name"],
                text=f"rejected source record {row['source_key']!r}: {row['reason_code']}: "
                f"{row['message']} ({attempts} attempt{'s' if attempts != 1 else ''}, "
                f"last {row['last_seen'].isoformat()})" + _run_text(row["last_run_id"], runs),
                run_id=row["last_run_id"],
            )
        )
        if row["resolved_at"] is not None:
            events.append(
                HistoryEvent(
                    at=row["resolved_at"],
                    kind="resolved",
                    sync=row["sync_name"],
                    text=f"rejection of {row['source_key']!r} resolved (sent successfully "
                    "or retried)",
                )
            )
    return events


def _ledger_events(
    rows: Sequence[RowMapping],
    runs: Mapping[str, RowMapping],
    writeback: Mapping[str, str | None],
) -> list[HistoryEvent]:
    events = []
    for row in rows:
        origin = row["origin"]
        how = ORIGINS.get(origin, origin)
        reason = f"; reason: {row['reason']}" if row["reason"] else ""
        old = row["old_status"] or "none"
        run = runs.get(row["run_id"] or "")
        events.append(
            HistoryEvent(
                at=row["occurred_at"],
                kind="ledger",
                sync=row["sync_name"],
                text=f"consent ledger: {old} -> {row['new_status']} by {origin} ({how}){reason}"
                + _run_text(row["run_id"], runs),
                run_id=row["run_id"],
                dry_run=_is_dry(run),
            )
        )
        table = writeback.get(row["sync_name"])
        if table and origin in ("webhook", "pull") and row["source_key"]:
            events.append(
                HistoryEvent(
                    at=row["occurred_at"],
                    kind="writeback",
                    sync=row["sync_name"],
                    text=f"written back to {table} for source record {row['source_key']!r}: "
                    f"status {row['new_status']}",
                    run_id=row["run_id"],
                )
            )
    return events


def _member_events(rows: Sequence[RowMapping]) -> list[HistoryEvent]:
    events = []
    for row in rows:
        reason = f" ({row['unsubscribe_reason']})" if row["unsubscribe_reason"] else ""
        events.append(
            HistoryEvent(
                at=row["last_changed"] or row["updated_at"],
                kind="status",
                sync=None,
                text=f"provider status of {row['email']} in list {row['list_id']}: "
                f"{row['status']}{reason}",
            )
        )
    return events


def _webhook_events(rows: Sequence[RowMapping]) -> list[HistoryEvent]:
    events = []
    for row in rows:
        if row["applied_at"] is not None:
            state = f"applied {row['applied_at'].isoformat()}"
        elif row["error"]:
            state = f"not applied: {row['error']}"
        else:
            state = "waiting to be applied"
        events.append(
            HistoryEvent(
                at=row["fired_at"] or row["received_at"],
                kind="webhook",
                sync=None,
                text=f"webhook {row['event_type']} from list {row['list_id']} received "
                f"{row['received_at'].isoformat()}, {state}",
            )
        )
    return events


# --------------------------------------------------------------------------- answers


def _current(
    states: Sequence[RowMapping],
    members: Sequence[RowMapping],
    scopes: Sequence[SyncScope],
) -> list[dict[str, Any]]:
    by_list = {(m["provider"], m["list_id"]): m for m in members}
    by_id = {(m["provider"], m["list_id"], m["member_id"]): m for m in members}
    rows = []
    for scope in scopes:
        member = by_list.get((scope.provider, scope.list_id))
        for state in (s for s in states if s["sync_name"] == scope.name):
            # The contact's own member (another may hold the address its source row has).
            own = by_id.get((scope.provider, scope.list_id, state["email_hash"]), member)
            rows.append(
                {
                    "sync": scope.name,
                    "source_key": state["source_key"],
                    "provider_status": own["status"] if own else state["provider_status"],
                    "last_pushed_at": state["pushed_at"],
                    "last_run_id": state["last_run_id"],
                }
            )
        if member is not None and not any(s["sync_name"] == scope.name for s in states):
            rows.append(
                {
                    "sync": scope.name,
                    "source_key": None,
                    "provider_status": member["status"],
                    "last_pushed_at": None,
                    "last_run_id": None,
                }
            )
    return rows


def _moved_answers(states: Sequence[RowMapping], members: Sequence[RowMapping]) -> list[str]:
    """Contacts whose member changed its address at the provider since their source row was
    last pushed: where the member is now, so the user can update the row."""
    emails = {m["member_id"]: m["email"] for m in members}
    return [
        f"address changed at the provider ({state['sync_name']}): source record "
        f"{state['source_key']!r} still has the address it was last pushed with; the member "
        f"now uses {emails.get(state['email_hash'], 'another address')}. The bridge follows "
        "the member and never changes it back; update the source row to the new address"
        for state in states
        if state["source_email_hash"] and state["source_email_hash"] != state["email_hash"]
    ]


def _answers(
    states: Sequence[RowMapping],
    rejections: Sequence[RowMapping],
    ledger: Sequence[RowMapping],
    members: Sequence[RowMapping],
) -> list[str]:
    answers: list[str] = _moved_answers(states, members)
    for row in rejections:
        if row["resolved_at"] is None:
            answers.append(
                f"not sent ({row['sync_name']}): source record {row['source_key']!r} is "
                f"rejected since {row['first_seen'].isoformat()}: {row['reason_code']}: "
                f"{row['message']}; it is sent again when the record changes, or with "
                f"`campaign-bridge rejected retry {row['sync_name']}`"
            )
    opted_out = [row for row in ledger if row["new_status"] in OPT_OUT]
    if opted_out:
        last = opted_out[-1]
        reason = f" (reason: {last['reason']})" if last["reason"] else ""
        answers.append(
            f"{last['new_status']} since {last['occurred_at'].isoformat()} "
            f"by {last['origin']}: {ORIGINS.get(last['origin'], last['origin'])}{reason}; "
            "this bridge never re-subscribes them"
        )
    else:
        for member in members:
            if member["status"] in OPT_OUT:
                reason = (
                    f" ({member['unsubscribe_reason']})" if member["unsubscribe_reason"] else ""
                )
                answers.append(
                    f"{member['status']} at the provider{reason}, as last seen "
                    f"{(member['last_changed'] or member['updated_at']).isoformat()}; "
                    "this bridge never re-subscribes them"
                )
    if not states and not rejections and not members:
        answers.append(
            "never sent: no push has recorded this contact (not in the source, not consented "
            "as a new contact, or the sync is update-only); run `campaign-bridge push --dry-run`"
        )
    return answers


def explain_absence(settings: Any, history: ContactHistory) -> None:
    """When no push recorded a source key, say whether each sync's source has it.

    Reads the source databases (one indexed lookup each); replaces the generic "never sent"
    answer with one per sync. Does nothing for an address or a contact the store knows.
    """
    key = history.query
    if history.source_keys or "@" in key or _HASH.match(key):
        return
    from campaign_bridge.source import Source

    answers = []
    for name, sync in settings.syncs.items():
        source = Source(sync.source)
        try:
            source.check_columns([sync.source.key_column])
            present = key in source.existing_keys([key])
        except Exception as exc:  # the source is down or misconfigured: say so, go on
            from campaign_bridge.errors import BridgeError

            problem = str(exc) if isinstance(exc, BridgeError) else type(exc).__name__
            answers.append(f"{name}: could not read the source to check: {problem}")
            continue
        finally:
            source.close()
        if not present:
            answers.append(
                f"never sent ({name}): no row with {sync.source.key_column} = {key!r} in the source"
            )
            continue
        why = [
            "a new contact is added only when its consent column says yes"
            if sync.source.consent_column
            else None,
            "this sync only updates members the provider already has"
            if str(sync.mode) == "update-only"
            else None,
        ]
        reasons = "; ".join(w for w in why if w) or "no push has run since it was added"
        answers.append(
            f"never sent ({name}): the row is in the source but no push recorded it: {reasons}; "
            f"`campaign-bridge push {name} --dry-run` shows what a push would do"
        )
    if answers:
        history.answers = [a for a in history.answers if not a.startswith("never sent:")]
        history.answers += answers


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
