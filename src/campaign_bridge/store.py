"""The state store: the one place push, pull and serve read and write the bridge's own tables.

Every method is synchronous, runs in one short transaction, and works on SQLite, PostgreSQL and
MySQL/MariaDB alike. Bulk methods take whole batches and write them with multi-row statements
(see :mod:`campaign_bridge.db`); nothing here goes to the database once per row. Async callers
hand a whole batch to a worker thread: ``await anyio.to_thread.run_sync(store.save_contact_states,
states)``. Timestamps are aware UTC datetimes in and out.

Driver errors become :class:`~campaign_bridge.errors.StateStoreError` with an actionable message.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from campaign_bridge import migrations
from campaign_bridge.db import (
    create_engine,
    describe_database_error,
    dialect_of,
    insert_ignore_rows,
    merge_rows,
)
from campaign_bridge.db import upsert_rows as _upsert
from campaign_bridge.errors import StateStoreError
from campaign_bridge.privacy import scrub_addresses
from campaign_bridge.state import (
    consent_ledger,
    contact_state,
    locks,
    member_status,
    pull_cursors,
    rejected_records,
    sync_runs,
)
from campaign_bridge.storable import storable_row, storable_rows

__all__ = [
    "ConsentChange",
    "ContactState",
    "MemberStatusRecord",
    "RejectedRecord",
    "Rejection",
    "RunStatus",
    "StateStore",
    "SyncRun",
    "prepare_state_store",
]

logger = logging.getLogger(__name__)

_IN_CHUNK = 1000  # keys per IN (...) list
_ERROR_SUMMARY_LIMIT = 8000  # characters kept of a run's error summary
_MIGRATE_HINT = "run `campaign-bridge migrate upgrade`"


def prepare_state_store(url: str) -> None:
    """Bring an embedded SQLite store up to date; leave a shared server database alone.

    A SQLite store lives on one machine and serves one installation, so it is migrated on use.
    A PostgreSQL/MariaDB store may be shared by several processes and versions, so it is
    migrated only by an explicit `campaign-bridge migrate upgrade` (docs/deploy.md: migrate
    before new code runs); :meth:`StateStore.check` refuses it until then, with that hint.
    """
    if dialect_of(url) == "sqlite" and not migrations.is_current(url):
        migrations.upgrade(url)


class RunStatus:
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class SyncRun:
    id: str
    sync_name: str
    direction: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    counts: dict[str, Any]
    error_summary: str | None


@dataclass(frozen=True)
class ContactState:
    """What the bridge knows about one source record in one sync."""

    sync_name: str
    source_key: str
    email_hash: str
    provider_member_id: str | None = None
    content_hash: str | None = None
    pushed_at: datetime | None = None
    provider_status: str | None = None
    managed: bool = False  # this bridge's create call made the member (mirror archives only those)
    last_consent: bool | None = None  # the last non-null source consent the bridge acted on
    managed_tags: tuple[str, ...] | None = None
    last_run_id: str | None = None
    #: the source row's address when last pushed, where it differs from ``email_hash``: the
    #: member changed it at the provider since (None: the same as ``email_hash``)
    source_email_hash: str | None = None

    @property
    def source_address(self) -> str:
        """The hash of the address the source row had when it was last pushed."""
        return self.source_email_hash or self.email_hash


@dataclass(frozen=True)
class Rejection:
    """A record the provider (or our checks) refused, to be recorded by a run."""

    sync_name: str
    source_key: str
    email_hash: str | None
    content_hash: str | None
    reason_code: str
    message: str


@dataclass(frozen=True)
class RejectedRecord:
    """A rejection as stored: how often and since when, and whether it was resolved."""

    id: int
    sync_name: str
    source_key: str
    email_hash: str | None
    content_hash: str | None
    reason_code: str
    message: str
    attempts: int
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    last_run_id: str | None


@dataclass(frozen=True)
class ConsentChange:
    """One entry of the consent ledger: a contact's status went from ``old`` to ``new``."""

    sync_name: str
    provider: str
    email_hash: str
    new_status: str
    origin: str  # source | push | pull | webhook
    occurred_at: datetime
    old_status: str | None = None
    source_key: str | None = None
    reason: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class MemberStatusRecord:
    """A member's status as the provider last reported it (``cb_member_status``)."""

    provider: str
    list_id: str
    member_id: str
    email: str
    status: str
    unsubscribe_reason: str | None = None
    last_changed: datetime | None = None
    updated_at: datetime | None = None  # set by the store on write
    provider_member_id: str | None = None  # the provider's own id; ``member_id`` is ours


def _utcnow() -> datetime:
    return datetime.now(UTC)


class StateStore:
    """Sync repository over the bridge's tables. Build it from an :class:`Engine` or a URL.

    A store built from a URL owns its engine; :meth:`close` (or ``with StateStore(url) as
    store:``) disposes of it. ``clock`` returns the current aware UTC time (tests pass their own).
    """

    def __init__(
        self, engine_or_url: Engine | str, *, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        if isinstance(engine_or_url, Engine):
            self._engine = engine_or_url
            self._owns_engine = False
        else:
            try:
                self._engine = create_engine(engine_or_url)
            except (sa.exc.ArgumentError, ImportError) as exc:
                raise StateStoreError(
                    "the state store URL is not a valid database URL; expected e.g. "
                    "sqlite:///path/state.db or postgresql://user@host/db"
                ) from exc
            self._owns_engine = True
        self._clock = clock

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- health ---------------------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`StateStoreError` unless the store is reachable and fully migrated."""
        where = self._where()
        with self._begin("reach") as conn:
            revision = migrations.current_revision(conn)
        wanted = _head()
        if revision == wanted:
            return
        if revision is None:
            raise StateStoreError(f"the state store at {where} has no tables yet; {_MIGRATE_HINT}")
        if revision in _known_revisions():
            raise StateStoreError(
                f"the state store at {where} is at revision {revision} but this version of "
                f"campaign-bridge needs {wanted}; {_MIGRATE_HINT}"
            )
        raise StateStoreError(
            f"the state store at {where} is at revision {revision}, which this version of "
            "campaign-bridge does not know (a newer version migrated it); upgrade campaign-bridge"
        )

    # --- runs -----------------------------------------------------------------------------

    def start_run(self, sync_name: str, direction: str) -> str:
        """Record a run as started; returns its id."""
        run_id = str(uuid.uuid4())
        with self._begin() as conn:
            conn.execute(
                sync_runs.insert().values(
                    id=run_id,
                    sync_name=sync_name,
                    direction=direction,
                    started_at=self._clock(),
                    status=RunStatus.RUNNING,
                    counts={},
                )
            )
        return run_id

    def finish_run(
        self,
        run_id: str,
        status: str,
        counts: Mapping[str, int | dict[str, Any]],
        error_summary: str | None = None,
    ) -> None:
        """Record how a run ended (``succeeded`` or ``failed``), with its counts."""
        error_summary = scrub_addresses(error_summary)  # no address at rest (docs/privacy.md)
        if error_summary is not None and len(error_summary) > _ERROR_SUMMARY_LIMIT:
            error_summary = error_summary[: _ERROR_SUMMARY_LIMIT - 1] + "…"
        with self._begin() as conn:
            result = conn.execute(
                sync_runs.update()
                .where(sync_runs.c.id == run_id)
                .values(
                    finished_at=self._clock(),
                    status=status,
                    counts=dict(counts),
                    error_summary=error_summary,
                )
            )
        if result.rowcount == 0:
            raise StateStoreError(f"no sync run with id {run_id} in the state store")

    def recent_runs(self, sync_name: str | None = None, limit: int = 50) -> list[SyncRun]:
        """The latest runs, newest first, of one sync or of all."""
        query = sa.select(sync_runs).order_by(sync_runs.c.started_at.desc(), sync_runs.c.id)
        if sync_name is not None:
            query = query.where(sync_runs.c.sync_name == sync_name)
        with self._begin() as conn:
            return [_run(row) for row in conn.execute(query.limit(limit)).mappings()]

    def last_successful_run(self, sync_name: str, direction: str) -> SyncRun | None:
        query = (
            sa.select(sync_runs)
            .where(
                sync_runs.c.sync_name == sync_name,
                sync_runs.c.direction == direction,
                sync_runs.c.status == RunStatus.SUCCEEDED,
            )
            .order_by(sync_runs.c.started_at.desc())
            .limit(1)
        )
        with self._begin() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _run(row)

    # --- contact state --------------------------------------------------------------------

    def load_contact_states(self, sync_name: str, keys: Iterable[str]) -> dict[str, ContactState]:
        """The stored state of ``keys`` (those that have one), by source key."""
        found: dict[str, ContactState] = {}
        with self._begin() as conn:
            for chunk in _chunked(sorted(set(keys)), _IN_CHUNK):
                query = sa.select(*_CONTACT_COLUMNS).where(
                    contact_state.c.sync_name == sync_name,
                    _one_of(contact_state.c.source_key, chunk, conn),
                )
                for row in conn.execute(query):
                    state = _contact(row)
                    found[state.source_key] = state
        return found

    def iter_contact_states(self, sync_name: str, chunk: int = 5000) -> Iterator[ContactState]:
        """Every contact state of a sync, in source-key order, ``chunk`` rows per query.

        Pages by key (one short transaction each), so no transaction stays open between yields.
        """
        after: str | None = None
        while True:
            query = (
                sa.select(*_CONTACT_COLUMNS)
                .where(contact_state.c.sync_name == sync_name)
                .order_by(contact_state.c.source_key)
                .limit(chunk)
            )
            if after is not None:
                query = query.where(contact_state.c.source_key > after)
            with self._begin() as conn:
                page = [_contact(row) for row in conn.execute(query)]
            yield from page
            if len(page) < chunk:
                return
            after = page[-1].source_key

    def save_contact_states(self, states: Iterable[ContactState]) -> None:
        """Insert or replace the given contact states (bulk upsert on (sync, source key))."""
        rows = self._storable(contact_state, (_contact_row(state) for state in states))
        if not rows:
            return
        with self._begin() as conn:
            merge_rows(conn, contact_state, rows, ["sync_name", "source_key"])

    def delete_contact_states(self, sync_name: str, keys: Iterable[str]) -> int:
        """Forget the state of ``keys``; returns how many were deleted."""
        deleted = 0
        with self._begin() as conn:
            for chunk in _chunked(sorted(set(keys)), _IN_CHUNK):
                result = conn.execute(
                    contact_state.delete().where(
                        contact_state.c.sync_name == sync_name,
                        _one_of(contact_state.c.source_key, chunk, conn),
                    )
                )
                deleted += result.rowcount
        return deleted

    # --- rejections -----------------------------------------------------------------------

    def record_rejections(self, run_id: str | None, rejections: Iterable[Rejection]) -> None:
        """Record rejections: new ones with one attempt; known ones get ``attempts + 1``, a new
        ``last_seen``, the latest reason and content hash, and are re-opened if resolved."""
        now = self._clock()
        rows = [
            {
                **self._storable_one(
                    rejected_records,
                    {**_fields(rejection), "message": scrub_addresses(rejection.message)},
                ),
                "attempts": 1,
                "first_seen": now,
                "last_seen": now,
                "resolved_at": None,
                "last_run_id": run_id,
            }
            for rejection in rejections
        ]
        if not rows:
            return
        updates = [
            "email_hash",
            "content_hash",
            "reason_code",
            "message",
            "attempts",
            "last_seen",
            "resolved_at",
            "last_run_id",
        ]
        with self._begin() as conn:
            _upsert(
                conn,
                rejected_records,
                rows,
                ["sync_name", "source_key"],
                updates,
                accumulate_columns=["attempts"],
            )

    def resolve_rejections(self, sync_name: str, keys: Iterable[str], when: datetime) -> int:
        """Mark the open rejections of ``keys`` resolved at ``when``; returns how many."""
        resolved = 0
        with self._begin() as conn:
            for chunk in _chunked(sorted(set(keys)), _IN_CHUNK):
                result = conn.execute(
                    rejected_records.update()
                    .where(
                        rejected_records.c.sync_name == sync_name,
                        _one_of(rejected_records.c.source_key, chunk, conn),
                        rejected_records.c.resolved_at.is_(None),
                    )
                    .values(resolved_at=when)
                )
                resolved += result.rowcount
        return resolved

    def open_rejections(self, sync_name: str) -> list[RejectedRecord]:
        """Unresolved rejections of a sync, most recently seen first."""
        query = (
            sa.select(rejected_records)
            .where(
                rejected_records.c.sync_name == sync_name,
                rejected_records.c.resolved_at.is_(None),
            )
            .order_by(rejected_records.c.last_seen.desc(), rejected_records.c.source_key)
        )
        with self._begin() as conn:
            return [RejectedRecord(**row) for row in conn.execute(query).mappings()]

    def rejected_keys_with_hash(self, sync_name: str) -> dict[str, str | None]:
        """Open rejections as ``{source_key: content_hash}``, so push can skip a record that was
        rejected and has not changed since."""
        query = sa.select(rejected_records.c.source_key, rejected_records.c.content_hash).where(
            rejected_records.c.sync_name == sync_name,
            rejected_records.c.resolved_at.is_(None),
        )
        with self._begin() as conn:
            return {row[0]: row[1] for row in conn.execute(query)}

    # --- consent ledger -------------------------------------------------------------------

    def append_consent_changes(self, changes: Iterable[ConsentChange]) -> None:
        rows = self._storable(consent_ledger, (_fields(change) for change in changes))
        if not rows:
            return
        with self._begin() as conn:
            conn.execute(consent_ledger.insert(), rows)

    def consent_history(self, sync_name: str, email_hash: str) -> list[ConsentChange]:
        """A contact's consent changes in this sync, oldest first."""
        columns = [consent_ledger.c[name] for name in ConsentChange.__dataclass_fields__]
        query = (
            sa.select(*columns)
            .where(
                consent_ledger.c.sync_name == sync_name,
                consent_ledger.c.email_hash == email_hash,
            )
            .order_by(consent_ledger.c.occurred_at, consent_ledger.c.id)
        )
        with self._begin() as conn:
            return [ConsentChange(**row) for row in conn.execute(query).mappings()]

    # --- pull cursors ---------------------------------------------------------------------

    def get_cursor(self, sync_name: str, stream: str) -> str | None:
        query = sa.select(pull_cursors.c.cursor).where(
            pull_cursors.c.sync_name == sync_name, pull_cursors.c.stream == stream
        )
        with self._begin() as conn:
            value: str | None = conn.execute(query).scalar()
        return value

    def set_cursor(self, sync_name: str, stream: str, value: str) -> None:
        row = {"sync_name": sync_name, "stream": stream, "cursor": value}
        with self._begin() as conn:
            _upsert(
                conn, pull_cursors, [{**row, "updated_at": self._clock()}], ["sync_name", "stream"]
            )

    # --- provider-side member status ------------------------------------------------------

    def upsert_member_statuses(self, rows: Iterable[MemberStatusRecord]) -> None:
        now = self._clock()
        values = self._storable(
            member_status, ({**_fields(row), "updated_at": now} for row in rows)
        )
        if not values:
            return
        with self._begin() as conn:
            merge_rows(conn, member_status, values, ["provider", "list_id", "member_id"])

    def member_statuses(
        self, provider: str, list_id: str, member_ids: Iterable[str]
    ) -> dict[str, MemberStatusRecord]:
        """The stored status of ``member_ids`` (those known), by member id."""
        found: dict[str, MemberStatusRecord] = {}
        with self._begin() as conn:
            for chunk in _chunked(sorted(set(member_ids)), _IN_CHUNK):
                query = sa.select(member_status).where(
                    member_status.c.provider == provider,
                    member_status.c.list_id == list_id,
                    _one_of(member_status.c.member_id, chunk, conn),
                )
                for row in conn.execute(query).mappings():
                    found[row["member_id"]] = MemberStatusRecord(**row)
        return found

    # --- locks ----------------------------------------------------------------------------

    def try_acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take the lock ``name`` for ``owner`` for ``ttl_seconds``; True if ``owner`` holds it.

        Atomic on every engine: an expired lock (or one ``owner`` already holds, which renews
        it) is taken over by one conditional UPDATE; otherwise an insert that does nothing on a
        conflict. Two contenders can never both win. Expiry compares the callers' clocks, so
        machines sharing a lock need synchronised clocks (NTP) well within the TTL.
        """
        for attempt in range(3):
            try:
                return self._acquire(name, owner, ttl_seconds)
            except StateStoreError as exc:
                if attempt == 2 or not _is_transient(exc.__cause__):
                    raise
                logger.debug("lock %s: transient conflict, trying again", name)
        return False  # pragma: no cover - the loop returns or raises

    def refresh_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Extend a lock ``owner`` holds; False if it has lost it (taken over after expiry)."""
        now = self._clock()
        with self._begin() as conn:
            result = conn.execute(
                locks.update()
                .where(locks.c.name == name, locks.c.owner == owner)
                .values(expires_at=now + timedelta(seconds=ttl_seconds))
            )
        return result.rowcount == 1

    def lock_holder(self, name: str) -> tuple[str, datetime] | None:
        """Who holds the lock ``name`` and until when, or None when nobody does."""
        with self._begin("read a lock") as conn:
            row = conn.execute(
                sa.select(locks.c.owner, locks.c.expires_at).where(locks.c.name == name)
            ).first()
        if row is None:
            return None
        expires = row.expires_at
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return (str(row.owner), expires)

    def take_over_lock(self, name: str, holder: str, owner: str, ttl_seconds: float) -> bool:
        """Take the lock ``name`` from ``holder`` (a process known to be dead); False if
        ``holder`` no longer holds it (someone else was quicker)."""
        now = self._clock()
        with self._begin("take over a lock") as conn:
            taken = conn.execute(
                locks.update()
                .where(locks.c.name == name, locks.c.owner == holder)
                .values(
                    owner=owner, acquired_at=now, expires_at=now + timedelta(seconds=ttl_seconds)
                )
            )
            return taken.rowcount == 1

    def release_lock(self, name: str, owner: str) -> bool:
        """Release a lock ``owner`` holds; False if it did not hold it."""
        with self._begin() as conn:
            result = conn.execute(
                locks.delete().where(locks.c.name == name, locks.c.owner == owner)
            )
        return result.rowcount == 1

    def _acquire(self, name: str, owner: str, ttl_seconds: float) -> bool:
        now = self._clock()
        row = {
            "name": name,
            "owner": owner,
            "acquired_at": now,
            "expires_at": now + timedelta(seconds=ttl_seconds),
        }
        # UPDATE first, then INSERT: on InnoDB the other order can deadlock two contenders
        # (both hold a shared lock from the duplicate-key check, both want an exclusive one).
        with self._begin(isolation="READ COMMITTED") as conn:
            taken = conn.execute(
                locks.update()
                .where(
                    locks.c.name == name,
                    sa.or_(locks.c.expires_at <= now, locks.c.owner == owner),
                )
                .values(owner=owner, acquired_at=now, expires_at=row["expires_at"])
            )
            if taken.rowcount == 1:
                return True
            return insert_ignore_rows(conn, locks, [row], ["name"]) == 1

    # --- internals ------------------------------------------------------------------------

    def _storable(self, table: sa.Table, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Rows with every value the store could not hold made storable (see storable.py)."""
        return storable_rows(table, rows, self.engine.dialect.name)

    def _storable_one(self, table: sa.Table, row: Mapping[str, Any]) -> dict[str, Any]:
        """One row made storable, its key too: a rejection is kept even when its key is the
        problem (the message says so)."""
        return storable_row(table, row, self.engine.dialect.name, clean_keys=True)

    def _where(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    @contextlib.contextmanager
    def _begin(self, action: str = "use", *, isolation: str | None = None) -> Iterator[Connection]:
        """One transaction; driver errors become StateStoreError with what to do next."""
        try:
            with self._engine.connect() as conn:
                if isolation is not None and conn.dialect.name == "mysql":
                    conn.execution_options(isolation_level=isolation)
                with conn.begin():
                    yield conn
        except sa.exc.DBAPIError as exc:
            raise StateStoreError(self._explain(action, exc)) from exc

    def _explain(self, action: str, exc: sa.exc.DBAPIError) -> str:
        text = str(exc.orig).lower()
        if any(hint in text for hint in ("no such table", "does not exist", "doesn't exist")) and (
            "cb_" in text
        ):
            return f"the state store at {self._where()} is missing its tables; {_MIGRATE_HINT}"
        return describe_database_error(self._engine.url, action, exc).replace(
            "the database at", "the state store at", 1
        )


# --- row <-> value helpers ----------------------------------------------------------------


def _run(row: sa.RowMapping) -> SyncRun:
    return SyncRun(**{**row, "counts": dict(row["counts"] or {})})


# Rows are read positionally in ContactState's field order: building from a RowMapping costs
# several times more, and load_contact_states runs for every batch a push sends.
_CONTACT_COLUMNS = [contact_state.c[name] for name in ContactState.__dataclass_fields__]
_MANAGED = list(ContactState.__dataclass_fields__).index("managed")
_LAST_CONSENT = list(ContactState.__dataclass_fields__).index("last_consent")
_MANAGED_TAGS = list(ContactState.__dataclass_fields__).index("managed_tags")


def _contact(row: sa.Row[Any]) -> ContactState:
    values = list(row)
    values[_MANAGED] = bool(values[_MANAGED])
    if values[_LAST_CONSENT] is not None:
        values[_LAST_CONSENT] = bool(values[_LAST_CONSENT])
    values[_MANAGED_TAGS] = _tags(values[_MANAGED_TAGS])
    return ContactState(*values)


def _tags(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(tag) for tag in value)


def _contact_row(state: ContactState) -> dict[str, Any]:
    row = _fields(state)
    if state.managed_tags is not None:
        row["managed_tags"] = list(state.managed_tags)
    return row


def _one_of(
    column: sa.Column[str], values: Sequence[str], conn: Connection
) -> sa.ColumnElement[bool]:
    """``column IN (...)``; on PostgreSQL ``column = ANY(array)``, one parameter however many
    values, which psycopg sends and PostgreSQL plans much faster than a long IN list."""
    if conn.dialect.name == "postgresql":
        return column == sa.any_(sa.literal(list(values), postgresql.ARRAY(sa.Text())))
    return column.in_(values)


def _chunked(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _is_transient(exc: BaseException | None) -> bool:
    """A deadlock or serialisation failure: the transaction can simply be run again."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)  # psycopg
    if sqlstate in ("40001", "40P01"):
        return True
    code = orig.args[0] if orig is not None and orig.args else None  # PyMySQL: (errno, text)
    return code in (1205, 1213)


@functools.cache
def _head() -> str:
    return migrations.head()


@functools.cache
def _known_revisions() -> frozenset[str]:
    return migrations.known_revisions()


def _fields(value: object) -> dict[str, Any]:
    """A dataclass's fields as a new dict, shallow (``dataclasses.asdict`` deep-copies, slowly)."""
    return dict(vars(value))
