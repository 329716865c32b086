"""The state store as push uses it: :class:`~campaign_bridge.store.StateStore` plus the two bulk
queries only push needs (who holds an email hash; whose last status change was the bridge's).

Push calls these from one worker thread, in chunky units (one statement per chunk of keys).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from campaign_bridge.db import copy_tuples, merge_rows, merge_tuples
from campaign_bridge.errors import StateStoreError
from campaign_bridge.state import (
    consent_ledger,
    contact_state,
    member_status,
    push_intents,
    rejected_records,
)
from campaign_bridge.status_changes import (
    LEDGER_STATUSES,
    VACATED,
    last_ledger_statuses,
    opted_out_then_vacated,
)
from campaign_bridge.storable import storable_tuples
from campaign_bridge.store import (
    ConsentChange,
    ContactState,
    MemberStatusRecord,
    Rejection,
    StateStore,
    prepare_state_store,
)

logger = logging.getLogger(__name__)

__all__ = [
    "INTENT_FIELDS",
    "LEDGER_COLUMNS",
    "STATE_COLUMNS",
    "STATUS_COLUMNS",
    "ConfirmedRows",
    "ConsentChange",
    "ContactState",
    "Intent",
    "IntentRow",
    "LedgerRow",
    "MemberStatusRecord",
    "PushState",
    "Rejection",
    "StateRow",
    "StatusRow",
    "consent_ledger_row",
    "contact_state_row",
    "ledger_row",
    "member_status_row",
]

_IN_CHUNK = 1000  # keys per IN (...) list

STATE_COLUMNS = tuple(contact_state.c.keys())
STATUS_COLUMNS = tuple(member_status.c.keys())
LEDGER_COLUMNS = tuple(c.name for c in consent_ledger.columns if c.name != "id")
_INTENT_COLUMNS = tuple(push_intents.c.keys())
StateRow = tuple[Any, ...]  # one cb_contact_state row, in STATE_COLUMNS order
StatusRow = tuple[Any, ...]  # one cb_member_status row, in STATUS_COLUMNS order
LedgerRow = tuple[Any, ...]  # one cb_consent_ledger row, in LEDGER_COLUMNS order
IntentRow = tuple[Any, ...]  # one entry of a cb_push_intents row, in INTENT_FIELDS order
# Intents settled by a save: (sync, slice id, the email hashes settled; None: all of the slice's)
IntentsDone = tuple[str, str, Collection[str] | None]
PushedAs = tuple[str, str | None, str | None]  # (email hash, content hash, provider status)


_CONTACT_KEY = ("sync_name", "source_key")
_STATUS_KEY = ("provider", "list_id", "member_id")
# One status change in a cb_push_intents row's ``intents`` list (:class:`Intent`'s own fields).
INTENT_FIELDS = ("email_hash", "source_key", "old_status", "new_status", "reason", "consent")
# Columns of the confirmed rows whose every value push makes itself (hex digests of addresses
# and contents, status names, its run id, the origin): the storable check leaves them out.
# Source keys, addresses, provider ids and reasons (a provider's unsubscribe reason lands in
# the ledger) are checked, and so are the sync's names.
_MADE_HERE = frozenset(
    {
        "email_hash",
        "member_id",
        "source_email_hash",
        "content_hash",
        "provider_status",
        "status",
        "old_status",
        "new_status",
        "last_run_id",
        "run_id",
        "origin",
    }
)
# Columns that go through COPY as text: the JSON document and the timestamps.
_TEXT_COLUMNS = {
    "managed_tags",
    "pushed_at",
    "last_changed",
    "updated_at",
    "occurred_at",
    "created_at",
}


@dataclass(frozen=True)
class Intent:
    """A status change a push is about to send (an entry of a ``cb_push_intents`` row, one row
    per provider call): written before the call, removed in the transaction that writes its
    ledger row (the row with its last entry). One left behind means the run stopped in
    between; the next run checks it against the provider (see push's recovery)."""

    sync_name: str
    slice_id: str
    email_hash: str
    source_key: str
    old_status: str | None
    new_status: str
    reason: str | None
    consent: bool | None
    run_id: str | None
    created_at: dt.datetime


@dataclass
class ConfirmedRows:
    """What one group of confirmed slices writes: tuples in the tables' column order (see
    :func:`contact_state_row`, :func:`member_status_row`, :func:`consent_ledger_row`).

    An initial push saves three rows per contact, and building objects for them cost more than
    the database work; rows the caller knows to be new are kept apart, as they need no merge.
    """

    state_inserts: list[StateRow] = field(default_factory=list)
    state_updates: list[StateRow] = field(default_factory=list)
    status_inserts: list[StatusRow] = field(default_factory=list)
    status_updates: list[StatusRow] = field(default_factory=list)
    ledger: list[LedgerRow] = field(default_factory=list)
    members_gone: list[tuple[str, str, str]] = field(default_factory=list)  # (provider, list, id)
    intents_done: list[IntentsDone] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.state_inserts
            or self.state_updates
            or self.ledger
            or self.status_inserts
            or self.status_updates
            or self.members_gone
            or self.intents_done
        )


def _delete_side(conn: sa.Connection, rows: ConfirmedRows) -> None:
    """Members renamed away and intents now explained by their ledger rows: same transaction."""
    for provider, list_id, member_id in rows.members_gone:
        conn.execute(
            member_status.delete().where(
                member_status.c.provider == provider,
                member_status.c.list_id == list_id,
                member_status.c.member_id == member_id,
            )
        )
    remove_intents(conn, rows.intents_done)


def remove_intents(conn: sa.Connection, done: Iterable[IntentsDone]) -> None:
    """Remove settled intents from their rows, in the caller's transaction: a row whose every
    entry is settled is deleted; another keeps the entries not settled (a retried member, one
    left for the next run), read and rewritten under its row lock. Rows are taken in key order,
    so two transactions settling parts of the same rows cannot deadlock."""
    whole: dict[str, list[str]] = {}
    parts: dict[tuple[str, str], set[str]] = {}
    for sync_name, slice_id, hashes in done:
        if hashes is None:
            whole.setdefault(sync_name, []).append(slice_id)
        else:
            parts.setdefault((sync_name, slice_id), set()).update(hashes)
    for sync_name, slice_ids in sorted(whole.items()):
        for part in _chunks(sorted(set(slice_ids))):
            conn.execute(
                push_intents.delete().where(
                    push_intents.c.sync_name == sync_name, push_intents.c.slice_id.in_(part)
                )
            )
    for (sync_name, slice_id), hashes in sorted(parts.items()):
        if slice_id in whole.get(sync_name, ()) or not hashes:
            continue
        key = (push_intents.c.sync_name == sync_name, push_intents.c.slice_id == slice_id)
        found = conn.execute(
            sa.select(push_intents.c.intents).where(*key).with_for_update()
        ).scalar()
        if found is None:
            continue
        left = [entry for entry in found if entry[0] not in hashes]
        if len(left) == len(found):
            continue
        if left:
            conn.execute(push_intents.update().where(*key).values(intents=left))
        else:
            conn.execute(push_intents.delete().where(*key))


def _save_by_upsert(conn: sa.Connection, rows: ConfirmedRows) -> None:
    """SQLite and MySQL/MariaDB: multi-row upserts (their bulk paths live in db.py)."""
    states = [*rows.state_inserts, *rows.state_updates]
    statuses = [*rows.status_inserts, *rows.status_updates]
    # Member statuses before contact states: the order status_changes' applier takes its row
    # locks in, so a push saving and a webhook being applied cannot deadlock.
    if statuses:
        named = [dict(zip(STATUS_COLUMNS, row, strict=True)) for row in statuses]
        merge_rows(conn, member_status, named, ["provider", "list_id", "member_id"])
    if states:
        named = [dict(zip(STATE_COLUMNS, row, strict=True)) for row in states]
        merge_rows(conn, contact_state, named, ["sync_name", "source_key"])
    if rows.ledger:
        named = [dict(zip(LEDGER_COLUMNS, row, strict=True)) for row in rows.ledger]
        conn.execute(consent_ledger.insert(), named)


def _storable_confirmed(rows: ConfirmedRows, dialect: str) -> ConfirmedRows:
    """The rows with every value the store could not hold made storable (provider answers such
    as member ids land here); a row whose key cannot be stored is left out, logged."""

    def fix(table: sa.Table, columns: Sequence[str], part: list[Any]) -> list[Any]:
        return storable_tuples(
            table, columns, part, dialect, what="confirmed record", made_here=_MADE_HERE
        )

    return dataclasses.replace(  # every other field (deletions, intents) as it is
        rows,
        state_inserts=fix(contact_state, STATE_COLUMNS, rows.state_inserts),
        state_updates=fix(contact_state, STATE_COLUMNS, rows.state_updates),
        status_inserts=fix(member_status, STATUS_COLUMNS, rows.status_inserts),
        status_updates=fix(member_status, STATUS_COLUMNS, rows.status_updates),
        ledger=fix(consent_ledger, LEDGER_COLUMNS, rows.ledger),
    )


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def contact_state_row(
    *,
    sync_name: str,
    source_key: str,
    email_hash: str,
    provider_member_id: str | None,
    content_hash: str | None,
    pushed_at: dt.datetime | None,
    provider_status: str | None,
    managed: bool,
    last_consent: bool | None,
    managed_tags: Sequence[str] | None,
    last_run_id: str | None,
    source_email_hash: str | None = None,
) -> StateRow:
    """One cb_contact_state row (the columns of :class:`ContactState`)."""
    return (
        sync_name,
        source_key,
        email_hash,
        provider_member_id,
        content_hash,
        pushed_at,
        provider_status,
        managed,
        last_consent,
        managed_tags,
        last_run_id,
        source_email_hash,
    )


def member_status_row(
    *,
    provider: str,
    list_id: str,
    member_id: str,
    email: str,
    status: str,
    last_changed: dt.datetime | None,
    updated_at: dt.datetime,
    provider_member_id: str | None = None,
) -> StatusRow:
    """One cb_member_status row (no unsubscribe reason: push never unsubscribes with one).
    ``member_id`` is the bridge's key (the email hash); ``provider_member_id`` the provider's
    own id when it gave one."""
    return (
        provider,
        list_id,
        member_id,
        email,
        status,
        None,
        last_changed,
        updated_at,
        provider_member_id,
    )


def consent_ledger_row(
    *,
    sync_name: str,
    provider: str,
    email_hash: str,
    source_key: str | None,
    old_status: str | None,
    new_status: str,
    origin: str,
    reason: str | None,
    run_id: str | None,
    occurred_at: dt.datetime,
) -> LedgerRow:
    """One cb_consent_ledger row (the fields of :class:`ConsentChange`)."""
    return (
        sync_name,
        provider,
        email_hash,
        source_key,
        old_status,
        new_status,
        origin,
        reason,
        run_id,
        occurred_at,
    )


def ledger_row(change: ConsentChange) -> LedgerRow:
    """A :class:`ConsentChange` as a cb_consent_ledger row."""
    return tuple(getattr(change, name) for name in LEDGER_COLUMNS)


def _last_per_key(rows: Sequence[tuple[Any, ...]], width: int) -> Sequence[tuple[Any, ...]]:
    """Rows whose first ``width`` values repeat collapse to the last one (a merge may not
    touch a row twice)."""
    unique = {row[:width]: row for row in rows}
    return rows if len(unique) == len(rows) else list(unique.values())


def _merge_by_copy(
    conn: sa.Connection,
    table: sa.Table,
    keys: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    unless_same: Sequence[str] = (),
) -> None:
    merge_tuples(conn, table, keys, rows, unless_same=unless_same, as_text=_TEXT_COLUMNS)


def _copy_into(conn: sa.Connection, table: sa.Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """COPY ``rows`` (tuples in ``table``'s column order, the ledger's without its id) in
    binary: no text to escape here nor to parse in the server, whose CPU an initial push's
    three rows a contact are (about 1 µs a row less on each side than text)."""
    if rows:
        columns, types = _copy_layout(table, conn.dialect)
        copy_tuples(conn, table.name, columns, rows, binary_types=types)


def _copy_layout(table: sa.Table, dialect: sa.Dialect) -> tuple[tuple[str, ...], list[str]]:
    """The columns push COPYs into ``table`` (PostgreSQL's) and their type names, worked out
    once a process (compiling the column types took about 0.1 ms a COPY)."""
    layout = _COPY_LAYOUTS.get(table.name)
    if layout is None:
        columns = LEDGER_COLUMNS if table is consent_ledger else tuple(table.c.keys())
        types = [_binary_type(table.c[name], dialect) for name in columns]
        layout = _COPY_LAYOUTS[table.name] = (columns, types)
    return layout


_COPY_LAYOUTS: dict[str, tuple[tuple[str, ...], list[str]]] = {}


# PostgreSQL's names for the types of the columns push COPYs in binary (JSON documents go as
# Python values: psycopg's json dumper serialises them).
_BINARY_TYPES = {
    "VARCHAR": "varchar",
    "TEXT": "text",
    "BOOLEAN": "bool",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "JSON": "json",
    "BIGINT": "int8",
    "INTEGER": "int4",
}


def _binary_type(column: sa.Column[Any], dialect: sa.Dialect) -> str:
    rendered = column.type.compile(dialect=dialect)
    return _BINARY_TYPES[rendered.split("(", 1)[0]]


class PushState(StateStore):
    """A state store for one push run. An embedded store is brought up to date; a shared one
    must be current already (see :func:`~campaign_bridge.store.prepare_state_store`)."""

    def __init__(self, url: str) -> None:
        try:
            prepare_state_store(url)
        except StateStoreError:
            raise
        except Exception as exc:  # a driver error while checking the schema
            raise StateStoreError(
                f"cannot open the state store: {type(exc).__name__}. Check state_url, then run "
                "`campaign-bridge migrate`"
            ) from exc
        super().__init__(url)
        self.check()

    def refresh_statistics(self) -> None:
        """PostgreSQL: refresh the planner's statistics of the tables push looks up by key.

        A table that grew from empty within a run still looks empty to the planner, which then
        picks the wrong index for the per-chunk lookups (a scan per chunk, quadratic overall).
        """
        if self.engine.dialect.name != "postgresql":
            return
        with self.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE cb_contact_state")
            conn.exec_driver_sql("ANALYZE cb_member_status")

    def settle_after_initial_push(self) -> None:
        """PostgreSQL, after a push filled the state from empty: VACUUM (ANALYZE) the tables
        push looks up by key. Besides the statistics (``refresh_statistics``), the VACUUM sets
        the pages' visibility, so every later run counts the audience's known members
        (``campaign_bridge.vanished``) and reads the contacts' state from the indexes alone
        instead of every row, without waiting for autovacuum (when it is on at all): about
        0.5 s a table of 1,000,000 rows, once, against 80-130 ms saved on every later run.
        Where VACUUM is refused, ANALYZE alone (a warning says so)."""
        if self.engine.dialect.name != "postgresql":
            return
        if not self._vacuum("(ANALYZE) cb_contact_state, cb_member_status"):
            self.refresh_statistics()

    def _vacuum(self, what: str) -> bool:
        """PostgreSQL: ``VACUUM {what}`` outside a transaction (as VACUUM must run). Best
        effort: a refusal is logged and answered False."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql(f"VACUUM {what}")
        except sa.exc.DBAPIError as exc:
            logger.warning("could not VACUUM %s: %s", what, exc.orig)
            return False
        return True

    def save_confirmed(self, rows: ConfirmedRows) -> None:
        """Save what the provider confirmed for a group of slices, in one transaction.

        On PostgreSQL rows known to be new go straight in through COPY; the others are COPYed
        into per-connection staging tables and merged from there. Should a "new" row exist
        after all (a duplicate key in a query source, another writer), the group falls back to
        merging everything.
        """
        if not rows:
            return
        rows = _storable_confirmed(rows, self.engine.dialect.name)
        with self.engine.begin() as conn:
            _delete_side(conn, rows)
            if self.engine.dialect.name != "postgresql":
                _save_by_upsert(conn, rows)
                return
            try:
                with conn.begin_nested():
                    _copy_into(conn, member_status, rows.status_inserts)
                    _copy_into(conn, contact_state, rows.state_inserts)
                state_merges, status_merges = rows.state_updates, rows.status_updates
            except (sa.exc.IntegrityError, psycopg.IntegrityError):
                state_merges = [*rows.state_inserts, *rows.state_updates]
                status_merges = [*rows.status_inserts, *rows.status_updates]
            # Member statuses first, as the webhook applier locks them (no deadlock).
            _merge_by_copy(conn, member_status, _STATUS_KEY, _last_per_key(status_merges, 3))
            _merge_by_copy(conn, contact_state, _CONTACT_KEY, _last_per_key(state_merges, 2))
            _copy_into(conn, consent_ledger, rows.ledger)

    def write_intents(
        self,
        sync_name: str,
        slice_id: str,
        run_id: str | None,
        intents: Sequence[IntentRow],
        replacing: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        """Record the status changes one provider call is about to send, as one row
        (``intents``: entries in :data:`INTENT_FIELDS` order). ``replacing``: the rows (slice
        ids) holding earlier intents of the same members (a retried call), from which they are
        removed in the same transaction: a member has one intent at a time."""
        if not intents:
            return
        row = {
            "sync_name": sync_name,
            "slice_id": slice_id,
            "run_id": run_id,
            "created_at": dt.datetime.now(dt.UTC),
            "intents": [list(entry) for entry in intents],
        }
        with self.engine.begin() as conn:
            if replacing:
                remove_intents(conn, [(sync_name, s, h) for s, h in replacing.items()])
            if conn.dialect.name == "postgresql":  # orjson serialises the list (see copy_tuples)
                _copy_into(conn, push_intents, [tuple(row[name] for name in _INTENT_COLUMNS)])
            else:
                conn.execute(push_intents.insert().values(row))

    def vacuum_intents(self) -> None:
        """PostgreSQL: VACUUM ``cb_push_intents``. It is a queue (a push writes a row before
        each status change it sends and deletes it when the change is saved), so a large push
        leaves as many dead rows, which every later run's look-up wades through until
        autovacuum, when it is on at all, comes by. Best effort: a failure is logged."""
        if self.engine.dialect.name != "postgresql":
            return
        self._vacuum(push_intents.name)

    def load_intents(self, sync_name: str) -> list[Intent]:
        """Every intent of the sync, oldest first (a member may appear twice: a retried call
        whose earlier row a crash left before the retry's row replaced it)."""
        found: list[Intent] = []
        with self.engine.connect() as conn:
            query = (
                sa.select(*push_intents.c)
                .where(push_intents.c.sync_name == sync_name)
                .order_by(push_intents.c.created_at, push_intents.c.slice_id)
            )
            for row in conn.execute(query):
                found += [
                    Intent(
                        sync_name=row.sync_name,
                        slice_id=row.slice_id,
                        run_id=row.run_id,
                        created_at=row.created_at,
                        **dict(zip(INTENT_FIELDS, entry, strict=True)),
                    )
                    for entry in row.intents
                ]
        return found

    def upsert_member_statuses(self, rows: Iterable[MemberStatusRecord]) -> None:
        """Like the store's, but through COPY and a staging merge on PostgreSQL: a status
        refresh can bring tens of thousands of rows."""
        if self.engine.dialect.name != "postgresql":
            super().upsert_member_statuses(rows)
            return
        now = self._clock()
        tuples = storable_tuples(
            member_status,
            STATUS_COLUMNS,
            [
                tuple(
                    now if name == "updated_at" else getattr(row, name) for name in STATUS_COLUMNS
                )
                for row in rows
            ],
            "postgresql",
            what="member status",
        )
        if not tuples:
            return
        with self.engine.begin() as conn:
            # A refresh re-reads the members the last run wrote; most come back as they are.
            same = ("email", "status", "unsubscribe_reason", "last_changed")
            _merge_by_copy(
                conn, member_status, _STATUS_KEY, _last_per_key(tuples, 3), unless_same=same
            )

    def nothing_stored(self, sync_name: str, provider: str, list_id: str) -> bool:
        """True when the sync has no contact state and the audience no member status yet: an
        initial push into an empty audience, whose per-chunk lookups would all come back empty.
        """
        with self.engine.connect() as conn:
            state = conn.execute(
                sa.select(contact_state.c.source_key)
                .where(contact_state.c.sync_name == sync_name)
                .limit(1)
            ).first()
            status = conn.execute(
                sa.select(member_status.c.member_id)
                .where(member_status.c.provider == provider, member_status.c.list_id == list_id)
                .limit(1)
            ).first()
        return state is None and status is None

    def append_consent_changes(self, changes: Iterable[ConsentChange]) -> None:
        """Like the store's, but through COPY on PostgreSQL for the large batches a push makes."""
        changes = list(changes)
        if len(changes) < 100 or self.engine.dialect.name != "postgresql":
            super().append_consent_changes(changes)
            return
        with self.engine.begin() as conn:
            rows = storable_tuples(
                consent_ledger,
                LEDGER_COLUMNS,
                [ledger_row(change) for change in changes],
                "postgresql",
                what="consent change",
            )
            _copy_into(conn, consent_ledger, rows)

    def managed_contacts(self, sync_name: str, batch_size: int) -> Iterator[list[ContactState]]:
        """Contact states the bridge manages and has not archived, in batches."""
        batch: list[ContactState] = []
        for state in self.iter_contact_states(sync_name, chunk=batch_size):
            if state.managed and state.provider_status != "archived":
                batch.append(state)
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def pushed_as(self, sync_name: str, keys: Sequence[str]) -> dict[str, PushedAs]:
        """What was last pushed for each of ``keys`` that has a state, as plain tuples (one
        statement per chunk, one array parameter on PostgreSQL): a re-read of a source where
        little changed builds no objects for the unchanged majority."""
        found: dict[str, PushedAs] = {}
        columns = (
            contact_state.c.source_key,
            contact_state.c.email_hash,
            contact_state.c.content_hash,
            contact_state.c.provider_status,
        )
        postgresql = self.engine.dialect.name == "postgresql"
        with self.engine.connect() as conn:
            for part in [keys] if postgresql else _chunks(keys):
                one_of = (
                    contact_state.c.source_key == sa.any_(sa.literal(list(part), ARRAY(sa.Text())))
                    if postgresql
                    else contact_state.c.source_key.in_(part)
                )
                query = sa.select(*columns).where(contact_state.c.sync_name == sync_name, one_of)
                for key, email_hash, content_hash, status in conn.execute(query):
                    found[key] = (email_hash, content_hash, status)
        return found

    def webhook_archives_since(
        self, sync_name: str, provider: str, list_id: str, since: dt.datetime
    ) -> set[str]:
        """Email hashes a webhook recorded as archived at or after ``since``, among the members
        the store now holds as archived.

        The members come first, from the index on their change time (a webhook's archive sets
        ``last_changed`` to at least its own time); the ledger is then read only for them, by
        address: a scan of the sync's whole ledger cost a second per run at a million rows.
        """
        with self.engine.connect() as conn:
            members = sa.select(member_status.c.member_id).where(
                member_status.c.provider == provider,
                member_status.c.list_id == list_id,
                member_status.c.last_changed >= since,
                member_status.c.status == "archived",
            )
            candidates = sorted(conn.execute(members).scalars())
            found: set[str] = set()
            for part in _chunks(candidates):
                query = (
                    sa.select(consent_ledger.c.email_hash)
                    .where(
                        consent_ledger.c.sync_name == sync_name,
                        consent_ledger.c.email_hash.in_(part),
                        consent_ledger.c.origin == "webhook",
                        consent_ledger.c.new_status == "archived",
                        consent_ledger.c.occurred_at >= since,
                    )
                    .distinct()
                )
                found.update(conn.execute(query).scalars())
        return found

    def last_ledger_statuses(self, sync_name: str, hashes: Sequence[str]) -> dict[str, str]:
        """Per email hash among ``hashes``, the status the sync's last consent-ledger row for
        it says (:func:`~campaign_bridge.status_changes.last_ledger_statuses`)."""
        with self.engine.connect() as conn:
            return last_ledger_statuses(conn, sync_name, hashes)

    def opted_out_then_vacated(self, sync_name: str, hashes: Sequence[str]) -> dict[str, str]:
        """The email hashes among ``hashes`` whose member opted out there, then moved away
        (:func:`~campaign_bridge.status_changes.opted_out_then_vacated`), with that status."""
        if not hashes:
            return {}
        with self.engine.connect() as conn:
            return opted_out_then_vacated(conn, sync_name, hashes)

    def hashes_without_history(self, sync_name: str, hashes: Sequence[str]) -> set[str]:
        """The email hashes among ``hashes`` where the sync's ledger tells no member's story
        yet: no status row, or the last one says the address was vacated."""
        said = self.last_ledger_statuses(sync_name, hashes)
        return {h for h in hashes if said.get(h, VACATED) == VACATED}

    def contacts_with_other_status(self, sync_name: str, statuses: dict[str, str]) -> set[str]:
        """The email hashes among ``statuses`` held by a contact of the sync whose saved
        provider status differs from the given one."""
        found: set[str] = set()
        with self.engine.connect() as conn:
            for part in _chunks(list(statuses)):
                query = sa.select(
                    contact_state.c.email_hash, contact_state.c.provider_status
                ).where(
                    contact_state.c.sync_name == sync_name, contact_state.c.email_hash.in_(part)
                )
                for digest, status in conn.execute(query):
                    if status != statuses[digest]:
                        found.add(digest)
        return found

    def keys_by_email_hash(
        self, sync_name: str, hashes: Sequence[str], exclude: Sequence[str] = ()
    ) -> dict[str, str]:
        """A source key holding each email hash (contact state first, then rejections)."""
        found: dict[str, str] = {}
        skip = set(exclude)
        with self.engine.connect() as conn:
            for table in (contact_state, rejected_records):
                for part in _chunks(list(hashes)):
                    query = sa.select(table.c.email_hash, table.c.source_key).where(
                        table.c.sync_name == sync_name, table.c.email_hash.in_(part)
                    )
                    for digest, key in conn.execute(query):
                        if key not in skip:
                            found.setdefault(digest, key)
        return found

    def last_bridge_status_change(
        self, sync_name: str, hashes: Sequence[str]
    ) -> dict[str, tuple[str, dt.datetime]]:
        """Per email hash, (new status, time) when the ledger's last change is this bridge's."""
        last: dict[str, tuple[int, str, str, dt.datetime]] = {}
        with self.engine.connect() as conn:
            for part in _chunks(list(hashes)):
                query = sa.select(
                    consent_ledger.c.id,
                    consent_ledger.c.email_hash,
                    consent_ledger.c.new_status,
                    consent_ledger.c.old_status,
                    consent_ledger.c.origin,
                    consent_ledger.c.occurred_at,
                ).where(
                    consent_ledger.c.sync_name == sync_name,
                    consent_ledger.c.email_hash.in_(part),
                    consent_ledger.c.new_status.in_(sorted(LEDGER_STATUSES)),  # no permissions
                )
                for row_id, digest, new, old, origin, when in conn.execute(query):
                    if old == new:  # "kept" entries record a decision, not a change
                        continue
                    if digest not in last or row_id > last[digest][0]:
                        last[digest] = (row_id, new, origin, when)
        return {
            digest: (new, when)
            for digest, (_, new, origin, when) in last.items()
            if origin == "push"
        }
