"""Erasure ("right to be forgotten"): delete a person at the provider and from every bridge table.

:func:`forget` resolves a person (an address, or a source key the bridge or the source knows),
permanently deletes them in every audience in scope (Mailchimp: ``delete-permanent``), then in
one state-store transaction:

- deletes their rows from every table that holds them (:data:`ERASE_RULES`: one rule per
  ``cb_*`` table; a test fails when a new table has none);
- rewrites their consent-ledger history to the tombstone hash (the facts stay, unlinkable to
  the address without the salt) and appends the erasure itself (``new_status = forgotten``);
- removes the address from webhook bodies and run details that mention it;
- records the tombstone: ``HMAC-SHA256(salt, md5(lower(email)))`` (:mod:`campaign_bridge.privacy`).

The provider comes first: if it fails, nothing in the store changes and the erasure can simply
be run again. A later push never re-adds a tombstoned person unless their source row comes back
with *fresh consent* (:func:`admits`): consent true and the row's ``updated_at`` later than the
erasure. Source signals (a column, a table of requests) are read by :func:`pending_requests`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaign_bridge import landing, privacy, state
from campaign_bridge.config import Settings, SyncConfig
from campaign_bridge.db import create_engine
from campaign_bridge.errors import BridgeError, ConfigProblem, ConfigurationError
from campaign_bridge.providers.base import MemberRef, Provider

__all__ = [
    "ERASE_RULES",
    "NO_PERSONAL_DATA",
    "Batch",
    "ErasureReport",
    "ProviderFactory",
    "Subject",
    "SubjectNotFoundError",
    "admits",
    "as_utc",
    "default_provider",
    "erase_in_store",
    "forget",
    "mentions",
    "needles",
    "parts",
    "resolve_subject",
    "source_from",
    "syncs_in_scope",
    "tombstoned",
]

logger = logging.getLogger(__name__)

ProviderFactory = Callable[[SyncConfig], Provider]
T = TypeVar("T")


class SubjectNotFoundError(BridgeError):
    """Neither the bridge nor the source knows the given key; nothing was changed."""

    exit_code = 2


@dataclass
class Subject:
    """One person, as the bridge can find them."""

    email_hash: str  # the bridge's key: md5 of the trimmed, lowercased address
    email: str | None = None  # lowercased, when known
    keys: dict[str, set[str]] = field(default_factory=dict)  # sync name -> source keys
    member_ids: dict[str, str] = field(default_factory=dict)  # sync name -> provider's member id

    def ref(self, sync_name: str) -> MemberRef:
        """How to name this person to the provider of ``sync_name``."""
        return MemberRef(self.email_hash, self.email, self.member_ids.get(sync_name))

    @property
    def label(self) -> str:
        """How logs and reports name the person: never the address."""
        return f"email:{self.email_hash[:8]}…"


@dataclass
class ErasureReport:
    subject: str  # Subject.label
    provider: dict[str, str] = field(default_factory=dict)  # "<sync> (<list>)" -> result
    removed: dict[str, int] = field(default_factory=dict)  # table -> rows deleted or cleaned
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "provider": self.provider,
            "removed": self.removed,
            "dry_run": self.dry_run,
        }


# --- resolving a person -----------------------------------------------------------------------


def resolve_subject(
    engine: Engine, settings: Settings, who: str, sync_names: Sequence[str]
) -> Subject:
    """An address, or a source key looked up in the bridge's tables and then in the sources."""
    who = who.strip()
    if "@" in who:
        subject = Subject(privacy.subscriber_hash(who), who.lower())
    else:
        subject = _subject_by_key(engine, settings, who, sync_names)
    with engine.connect() as conn:
        _complete(conn, subject, sync_names)
        _provider_ids(conn, settings, subject, sync_names)
    return subject


def _subject_by_key(engine: Engine, settings: Settings, key: str, syncs: Sequence[str]) -> Subject:
    cs, rr = state.contact_state, state.rejected_records
    with engine.connect() as conn:
        for table in (cs, rr):
            query = sa.select(table.c.email_hash).where(
                table.c.sync_name.in_(syncs), table.c.source_key == key
            )
            found = conn.execute(query.limit(1)).scalar()
            if found:
                return Subject(str(found))
    for name in syncs:
        email = _source_email(settings.syncs[name], key)
        if email:
            return Subject(privacy.subscriber_hash(email), email.strip().lower())
    raise SubjectNotFoundError(
        f"no contact with source key {key!r} in {', '.join(syncs)} (neither in the bridge's "
        "tables nor in the source); give the email address instead"
    )


def _source_email(sync: SyncConfig, key: str) -> str | None:
    source = sync.source
    engine = create_engine(source.url)
    try:
        src = source_from(sync, [source.key_column, source.email_column])
        query = sa.select(src.c[source.email_column]).where(
            sa.cast(src.c[source.key_column], sa.String) == key
        )
        with engine.connect() as conn:
            value = conn.execute(query.limit(1)).scalar()
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    return value if isinstance(value, str) and "@" in value else None


def source_from(sync: SyncConfig, columns: Sequence[str]) -> sa.FromClause:
    source = sync.source
    if source.table:
        schema, _, name = source.table.rpartition(".")
        return sa.table(name, *(sa.column(c) for c in columns), schema=schema or None)
    assert source.query is not None
    text = source.query.strip().rstrip(";")
    return sa.text(text).columns(*(sa.column(c) for c in columns)).subquery("cb_src")


def _complete(conn: Connection, subject: Subject, syncs: Sequence[str]) -> None:
    """Fill in the address (from the pulled member rows) and the source keys of every sync."""
    h = subject.email_hash
    if subject.email is None:
        for table, column in ((state.member_status, "member_id"),):
            query = sa.select(table.c.email).where(table.c[column] == h).limit(1)
            value = conn.execute(query).scalar()
            if value:
                subject.email = str(value).strip().lower()
    if subject.email is None:
        activity = landing.email_activity
        query = sa.select(activity.c.email).where(activity.c.member_id == h).limit(1)
        value = conn.execute(query).scalar()
        if value:
            subject.email = str(value).strip().lower()
    for table in (state.contact_state, state.rejected_records, state.consent_ledger):
        query = sa.select(table.c.sync_name, table.c.source_key).where(
            table.c.email_hash == h, table.c.sync_name.in_(syncs)
        )
        for sync_name, key in conn.execute(query):
            if key is not None:
                subject.keys.setdefault(sync_name, set()).add(str(key))


def _provider_ids(
    conn: Connection, settings: Settings, subject: Subject, syncs: Sequence[str]
) -> None:
    """The provider's own id for the person in each sync, as push or pull stored it beside the
    bridge's key: what an adapter whose ids are not derived from the address needs."""
    h = subject.email_hash
    cs, ms = state.contact_state, state.member_status
    query = sa.select(cs.c.sync_name, cs.c.provider_member_id).where(
        cs.c.email_hash == h, cs.c.sync_name.in_(syncs), cs.c.provider_member_id.is_not(None)
    )
    for sync_name, member_id in conn.execute(query):
        subject.member_ids.setdefault(sync_name, str(member_id))
    for name in syncs:
        if name in subject.member_ids:
            continue
        destination = settings.syncs[name].destination
        query = sa.select(ms.c.provider_member_id).where(
            ms.c.provider == destination.provider,
            ms.c.list_id == destination.list_id,
            ms.c.member_id == h,
            ms.c.provider_member_id.is_not(None),
        )
        found = conn.execute(query.limit(1)).scalar()
        if found:
            subject.member_ids[name] = str(found)


# --- the erasure ------------------------------------------------------------------------------


async def forget(
    settings: Settings,
    who: str,
    sync_name: str | None = None,
    *,
    origin: str = "cli",
    requested_at: datetime | None = None,
    dry_run: bool = False,
    provider_factory: ProviderFactory | None = None,
) -> ErasureReport:
    """Erase one person in ``sync_name`` (every sync when ``None``). Raises a BridgeError if the
    provider refuses; the store is then unchanged, and running it again is safe."""
    import anyio

    syncs = syncs_in_scope(settings, sync_name)
    engine = create_engine(settings.effective_state_url())
    try:
        subject = await anyio.to_thread.run_sync(resolve_subject, engine, settings, who, syncs)
        report = ErasureReport(subject.label, dry_run=dry_run)
        await _erase_at_providers(settings, syncs, subject, report, dry_run, provider_factory)
        if not dry_run:
            results = "; ".join(f"{k}: {v}" for k, v in sorted(report.provider.items()))
            providers = {n: settings.syncs[n].destination.provider for n in syncs}
            removed = await anyio.to_thread.run_sync(
                lambda: erase_in_store(
                    engine,
                    [subject],
                    providers,
                    origin=origin,
                    requested_at=requested_at,
                    provider_result=results,
                    list_ids=[settings.syncs[n].destination.list_id for n in syncs],
                )
            )
            report.removed = removed
    finally:
        engine.dispose()
    if not dry_run:
        logger.info(
            "erased %s",
            report.subject,
            extra={"action": "erase", "origin": origin, **report.removed},
        )
    return report


def syncs_in_scope(settings: Settings, sync_name: str | None) -> list[str]:
    if sync_name is None:
        if not settings.syncs:
            raise ConfigurationError([ConfigProblem("syncs", "no sync is configured")])
        return sorted(settings.syncs)
    if sync_name not in settings.syncs:
        known = ", ".join(sorted(settings.syncs)) or "none"
        raise ConfigurationError([ConfigProblem("SYNC", f"no sync named {sync_name!r}", known)])
    return [sync_name]


async def _erase_at_providers(
    settings: Settings,
    syncs: Sequence[str],
    subject: Subject,
    report: ErasureReport,
    dry_run: bool,
    factory: ProviderFactory | None,
) -> None:
    done: set[tuple[str, str, str, str]] = set()
    for name in syncs:
        destination = settings.syncs[name].destination
        where = destination.audience_key()
        label = f"{name} ({destination.list_id})"
        if where in done:
            report.provider[label] = "same audience as above"
            continue
        done.add(where)
        if dry_run:
            report.provider[label] = "would delete permanently"
            continue
        # A provider from ``factory`` belongs to the caller (e.g. a push's own adapter).
        provider = (factory or default_provider)(settings.syncs[name])
        try:
            result = await provider.delete_member_permanently(
                destination.list_id, subject.ref(name)
            )
        finally:
            if factory is None:
                await provider.aclose()
        report.provider[label] = result


def default_provider(sync: SyncConfig) -> Provider:
    from campaign_bridge.providers import create_provider

    return create_provider(sync.destination)


# One rule per cb_* table that can hold a person: given the connection and a batch of people,
# remove them and return how many rows changed. Tables in NO_PERSONAL_DATA hold none.


@dataclass
class Batch:
    """People erased together (one transaction), with their tombstones."""

    subjects: list[Subject]
    syncs: Sequence[str]
    marks: dict[str, str]  # email hash -> tombstone
    # Rows of free-text tables that mention these people, found beforehand by one scan for a
    # large erasure (erasure_bulk.scan_mentions); ``None``: look them up here (SQL LIKE).
    text_hits: dict[str, dict[object, Subject]] | None = None
    providers: tuple[str, ...] = ()  # the providers of the syncs in scope
    list_ids: tuple[str, ...] | None = None  # their audiences (None: every audience)

    @property
    def hashes(self) -> list[str]:
        return sorted({s.email_hash for s in self.subjects})

    def keys_by_sync(self) -> dict[str, list[str]]:
        found: dict[str, set[str]] = {}
        for subject in self.subjects:
            for sync_name, keys in subject.keys.items():
                found.setdefault(sync_name, set()).update(keys)
        return {name: sorted(keys) for name, keys in found.items()}


EraseRule = Callable[[Connection, Batch], int]


def _by_hash_or_key(table: sa.Table) -> EraseRule:
    def rule(conn: Connection, batch: Batch) -> int:
        return sum(
            _rowcount(conn.execute(table.delete().where(condition)))
            for condition in _hash_or_key(table, batch)
        )

    return rule


def _hash_or_key(table: sa.Table, batch: Batch) -> list[sa.ColumnElement[bool]]:
    """Conditions (each with an IN list of at most 1,000) covering the batch's rows."""
    found = [
        sa.and_(table.c.sync_name.in_(batch.syncs), table.c.email_hash.in_(part))
        for part in parts(batch.hashes)
    ]
    for sync_name, keys in batch.keys_by_sync().items():
        found += [
            sa.and_(table.c.sync_name == sync_name, table.c.source_key.in_(part))
            for part in parts(keys)
        ]
    return found


def mentions(table: sa.Table, subject: Subject, syncs: Sequence[str]) -> sa.ColumnElement[bool]:
    """The rows of ``table`` (with sync_name, email_hash, source_key) about one person."""
    return sa.or_(*_hash_or_key(table, Batch([subject], syncs, {})))


def _member_rows(table: sa.Table, *, email_column: str | None) -> EraseRule:
    """Rows keyed by member id (md5 of the lowercased address); with ``email_column`` also rows
    holding the address under another id (a table small enough to compare addresses). Tables
    with a ``list_id`` lose only the rows of the audiences in scope."""

    def rule(conn: Connection, batch: Batch) -> int:
        deleted = 0
        scope: sa.ColumnElement[bool] = table.c.provider.in_(batch.providers)
        if batch.list_ids is not None and "list_id" in table.c:
            scope = sa.and_(scope, table.c.list_id.in_(batch.list_ids))
        for part in parts(batch.hashes):
            # provider first: it leads the table's key, so the key's index finds the rows
            where = sa.and_(scope, table.c.member_id.in_(part))
            deleted += _rowcount(conn.execute(table.delete().where(where)))
        emails = sorted({s.email for s in batch.subjects if s.email})
        if email_column is not None:
            for part in parts(emails):
                where = sa.and_(scope, sa.func.lower(table.c[email_column]).in_(part))
                deleted += _rowcount(conn.execute(table.delete().where(where)))
        return deleted

    return rule


def intents_mentioning(
    conn: Connection, batch: Batch, *, lock: bool = True
) -> list[tuple[Any, list[Any]]]:
    """The ``cb_push_intents`` rows of the batch's syncs (in key order; with ``lock``, locked
    for an update) with the entries about the batch's people (a row holds one provider call's
    status changes)."""
    intents = state.push_intents
    hashes = set(batch.hashes)
    keys = {(name, key) for name, found in batch.keys_by_sync().items() for key in found}
    syncs = sorted({*batch.syncs, *(name for name, _ in keys)})
    query = (
        sa.select(intents)
        .where(intents.c.sync_name.in_(syncs))
        .order_by(intents.c.sync_name, intents.c.slice_id)
    )
    if lock:
        query = query.with_for_update()
    found = []
    for row in conn.execute(query):
        sync_name = row.sync_name
        about = [
            entry
            for entry in row.intents
            if (entry[0] in hashes and sync_name in batch.syncs) or (sync_name, entry[1]) in keys
        ]
        if about:
            found.append((row, about))
    return found


def _push_intents(conn: Connection, batch: Batch) -> int:
    """The batch's people leave the intents rows; a row left with no entry goes."""
    intents = state.push_intents
    removed = 0
    for row, about in intents_mentioning(conn, batch):
        key = (intents.c.sync_name == row.sync_name, intents.c.slice_id == row.slice_id)
        left = [entry for entry in row.intents if entry not in about]
        if left:
            conn.execute(intents.update().where(*key).values(intents=left))
        else:
            conn.execute(intents.delete().where(*key))
        removed += len(about)
    return removed


def _ledger(conn: Connection, batch: Batch) -> int:
    """History stays, keyed by the tombstone; the source key and any address in it go."""
    ledger = state.consent_ledger
    by_hash = {s.email_hash: s for s in batch.subjects}
    by_key = {(n, k): s for s in batch.subjects for n, keys in s.keys.items() for k in keys}
    columns = (ledger.c.id, ledger.c.sync_name, ledger.c.email_hash, ledger.c.source_key)
    updates = []
    seen: set[int] = set()
    for condition in _hash_or_key(ledger, batch):
        query = sa.select(*columns, ledger.c.reason).where(condition)
        for row_id, sync_name, email_hash, key, reason in conn.execute(query):
            subject = by_hash.get(email_hash) or by_key.get((sync_name, key))
            if subject is None or row_id in seen:
                continue
            seen.add(row_id)
            updates.append(
                {
                    "b_id": row_id,
                    "b_mark": batch.marks[subject.email_hash],
                    "b_reason": _without(reason, subject),
                }
            )
    if updates:
        conn.execute(
            ledger.update()
            .where(ledger.c.id == sa.bindparam("b_id"))
            .values(
                email_hash=sa.bindparam("b_mark"),
                source_key=None,
                reason=sa.bindparam("b_reason"),
            ),
            updates,
        )
    return len(updates)


def _text_hits(
    conn: Connection, batch: Batch, table: sa.Table, key: str, columns: Sequence[str]
) -> dict[object, Subject]:
    if batch.text_hits is not None:
        found = batch.text_hits.get(table.name, {})
        return {k: s for k, s in found.items() if s.email_hash in batch.marks}
    hits: dict[object, Subject] = {}
    for subject in batch.subjects:
        condition = sa.or_(
            *(
                sa.func.lower(table.c[column]).contains(needle, autoescape=True)
                for column in columns
                for needle in needles(subject)
            )
        )
        for (row_id,) in conn.execute(sa.select(table.c[key]).where(condition)):
            hits[row_id] = subject
    return hits


def _webhook_bodies(conn: Connection, batch: Batch) -> int:
    """Deliveries that mention the person keep their row (so a redelivery stays a duplicate)
    but lose their body; one not applied yet is marked applied (there is no one to apply it to)."""
    events = state.webhook_events
    found: set[int] = {
        int(str(i)) for i in _text_hits(conn, batch, events, "id", ("payload", "error"))
    }
    for hashes in parts(batch.hashes):  # the deliveries about them, by their index
        query = sa.select(events.c.id).where(events.c.email_hash.in_(hashes))
        found.update(int(i) for i in conn.execute(query).scalars())
    ids = sorted(found)
    now = datetime.now(UTC)
    for part in parts(ids):
        conn.execute(
            events.update()
            .where(events.c.id.in_(part))
            .values(payload="{}", error="body removed: the person was erased", email_hash=None)
        )
        conn.execute(
            events.update()
            .where(events.c.id.in_(part), events.c.applied_at.is_(None))
            .values(applied_at=now)
        )
    return len(ids)


def _run_details(conn: Connection, batch: Batch) -> int:
    runs = state.sync_runs
    hits = _text_hits(conn, batch, runs, "id", ("error_summary",))
    for run_id, subject in hits.items():
        summary = conn.execute(sa.select(runs.c.error_summary).where(runs.c.id == run_id)).scalar()
        conn.execute(
            runs.update()
            .where(runs.c.id == run_id)
            .values(error_summary=_without(summary, subject))
        )
    return len(hits)


ERASE_RULES: dict[str, EraseRule] = {
    "cb_contact_state": _by_hash_or_key(state.contact_state),
    "cb_rejected_records": _by_hash_or_key(state.rejected_records),
    "cb_push_intents": _push_intents,
    "cb_member_status": _member_rows(state.member_status, email_column="email"),
    # member_id is the bridge's key, md5(lower(email)) (pull computes it), so the key is enough
    "cb_email_activity": _member_rows(landing.email_activity, email_column=None),
    "cb_marketing_permissions": _member_rows(privacy.marketing_permissions, email_column=None),
    "cb_consent_ledger": _ledger,
    "cb_webhook_events": _webhook_bodies,
    "cb_sync_runs": _run_details,
}
NO_PERSONAL_DATA = frozenset(
    {
        "cb_locks",
        "cb_pull_cursors",
        "cb_campaigns",
        "cb_campaign_reports",
        "cb_privacy_keys",
        "cb_erasures",  # tombstones: salted hashes only
        "cb_key_slots",  # API-key concurrency leases: key hash, process, sync
        "cb_key_waiters",
    }
)


def erase_in_store(
    engine: Engine,
    subjects: Sequence[Subject],
    providers: Mapping[str, str],
    *,
    origin: str,
    requested_at: datetime | None = None,
    provider_result: str | None = None,
    text_hits: dict[str, dict[object, Subject]] | None = None,
    list_ids: Sequence[str] | None = None,
) -> dict[str, int]:
    """Remove the people from every bridge table and record their tombstones, in one
    transaction. ``providers`` maps each sync in scope to its provider's name."""
    syncs = sorted(providers)
    now = datetime.now(UTC)
    removed: dict[str, int] = {}
    with engine.begin() as conn:
        salt = privacy.load_salt(conn)
        marks = {s.email_hash: privacy.tombstone(salt, s.email_hash) for s in subjects}
        names = tuple(sorted(set(providers.values())))
        scope = None if list_ids is None else tuple(sorted(set(list_ids)))
        batch = Batch(list(subjects), syncs, marks, text_hits, names, scope)
        for table, rule in ERASE_RULES.items():
            removed[table] = rule(conn, batch)
        _record_tombstones(
            conn, sorted(set(marks.values())), now, origin, requested_at, provider_result
        )
        conn.execute(
            state.consent_ledger.insert(),
            [
                {
                    "sync_name": name,
                    "provider": providers[name],
                    "email_hash": mark,
                    "source_key": None,
                    "old_status": None,
                    "new_status": privacy.ERASED,
                    "origin": "erasure",
                    "reason": f"erased on request ({origin}); the address is not kept",
                    "run_id": None,
                    "occurred_at": now,
                }
                for mark in sorted(set(marks.values()))
                for name in syncs
            ],
        )
    return removed


def parts(values: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), 1000):
        yield values[start : start + 1000]


def _record_tombstones(
    conn: Connection,
    marks: Sequence[str],
    now: datetime,
    origin: str,
    requested_at: datetime | None,
    provider_result: str | None,
) -> None:
    """Insert the tombstones, or refresh those that exist (a person erased again)."""
    table = privacy.erasures
    known: set[str] = set()
    for part in parts(marks):
        query = sa.select(table.c.subject_hash).where(table.c.subject_hash.in_(part))
        known.update(conn.execute(query).scalars())
    values = {
        "erased_at": now,
        "origin": origin,
        "requested_at": requested_at,
        "provider_result": provider_result,
    }
    for part in parts(sorted(known)):
        conn.execute(table.update().where(table.c.subject_hash.in_(part)).values(**values))
    fresh = [{"subject_hash": mark, **values} for mark in marks if mark not in known]
    if fresh:
        conn.execute(table.insert(), fresh)


# --- fresh consent ------------------------------------------------------------------------------


def admits(consent: bool | None, updated_at: object, erased_at: datetime) -> bool:
    """Whether a tombstoned person's source row may be pushed again: *fresh consent* means the
    row says consent true and its ``updated_at`` is later than the erasure. Without an
    ``updated_at`` column there is no way to tell a fresh consent, so never."""
    moment = as_utc(updated_at)
    return consent is True and moment is not None and moment > erased_at


def as_utc(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- helpers ------------------------------------------------------------------------------------


def needles(subject: Subject) -> list[str]:
    """The forms in which the address or its md5 can appear in stored text (lowercased)."""
    found = {subject.email_hash}
    if subject.email:
        found |= {subject.email, quote_plus(subject.email).lower(), quote(subject.email).lower()}
    return sorted(found)


def _without(text: str | None, subject: Subject) -> str | None:
    if text is None:
        return None
    cleaned = privacy.scrub_addresses(text) or ""
    lowered = cleaned.lower()
    for needle in needles(subject):
        while needle in lowered:
            at = lowered.index(needle)
            cleaned = cleaned[:at] + "<erased>" + cleaned[at + len(needle) :]
            lowered = cleaned.lower()
    return cleaned


def _rowcount(result: sa.CursorResult[Any]) -> int:
    return max(int(result.rowcount or 0), 0)


def tombstoned(
    engine_or_conn: Engine | Connection, hashes: Iterable[str]
) -> Mapping[str, datetime]:
    """``{email_hash: erased_at}`` for those of ``hashes`` that were erased."""
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.begin() as conn:
            return privacy.tombstones_of(conn, hashes)
    return privacy.tombstones_of(engine_or_conn, hashes)
