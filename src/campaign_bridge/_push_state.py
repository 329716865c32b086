"""The state-store operations push needs, in chunky units (one statement per chunk, never per row).

Sync SQLAlchemy Core over the tables in :mod:`campaign_bridge.state`; push calls these from a
single worker thread. Every method takes and returns plain values.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from campaign_bridge.db import create_engine, describe_database_error, upsert_rows
from campaign_bridge.errors import StateStoreError
from campaign_bridge.state import (
    consent_ledger,
    contact_state,
    member_status,
    pull_cursors,
    rejected_records,
    sync_runs,
)

__all__ = ["ConsentEntry", "ContactState", "MemberStatusRow", "PushState", "Rejection"]

_IN_CHUNK = 1000  # keys per IN (...) list


@dataclass(frozen=True)
class ContactState:
    sync_name: str
    source_key: str
    email_hash: str
    provider_member_id: str | None
    content_hash: str | None
    pushed_at: dt.datetime | None
    provider_status: str | None
    managed: bool
    managed_tags: list[str] | None
    last_run_id: str | None


@dataclass(frozen=True)
class MemberStatusRow:
    provider: str
    list_id: str
    member_id: str
    email: str
    status: str
    unsubscribe_reason: str | None
    last_changed: dt.datetime | None


@dataclass(frozen=True)
class Rejection:
    source_key: str
    email_hash: str | None
    content_hash: str | None
    reason_code: str
    message: str


@dataclass(frozen=True)
class ConsentEntry:
    sync_name: str
    provider: str
    email_hash: str
    source_key: str | None
    old_status: str | None
    new_status: str
    origin: str
    reason: str | None
    run_id: str | None
    occurred_at: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


class PushState:
    """Runs, contact state, rejections, ledger, cursors and provider statuses for push."""

    def __init__(self, url: str) -> None:
        from campaign_bridge import migrations  # alembic is slow to import; only when needed

        self.url = url
        try:
            if not migrations.is_current(url):
                migrations.upgrade(url)
        except StateStoreError:
            raise
        except Exception as exc:  # a driver error while checking the schema
            raise StateStoreError(
                describe_database_error(url, "open the state store", exc)
            ) from exc
        self.engine = create_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    def _begin(self) -> Any:
        return self.engine.begin()

    # -- runs ---------------------------------------------------------------------------------

    def start_run(self, sync_name: str, direction: str) -> str:
        run_id = str(uuid.uuid4())
        with self._guard("start a run"), self._begin() as conn:
            conn.execute(
                sync_runs.insert().values(
                    id=run_id,
                    sync_name=sync_name,
                    direction=direction,
                    started_at=_now(),
                    status="running",
                    counts={},
                )
            )
        return run_id

    def finish_run(
        self, run_id: str, status: str, counts: dict[str, Any], error: str | None
    ) -> None:
        with self._guard("finish the run"), self._begin() as conn:
            conn.execute(
                sync_runs.update()
                .where(sync_runs.c.id == run_id)
                .values(finished_at=_now(), status=status, counts=counts, error_summary=error)
            )

    # -- cursors ------------------------------------------------------------------------------

    def get_cursor(self, sync_name: str, stream: str) -> str | None:
        with self._guard("read a cursor"), self.engine.connect() as conn:
            value = conn.execute(
                sa.select(pull_cursors.c.cursor).where(
                    pull_cursors.c.sync_name == sync_name, pull_cursors.c.stream == stream
                )
            ).scalar()
        return str(value) if value is not None else None

    def set_cursor(self, sync_name: str, stream: str, value: str) -> None:
        row = {"sync_name": sync_name, "stream": stream, "cursor": value, "updated_at": _now()}
        with self._guard("save a cursor"), self._begin() as conn:
            upsert_rows(conn, pull_cursors, [row], ["sync_name", "stream"])

    # -- contact state ------------------------------------------------------------------------

    def load_contact_states(self, sync_name: str, keys: Sequence[str]) -> dict[str, ContactState]:
        found: dict[str, ContactState] = {}
        with self._guard("read contact state"), self.engine.connect() as conn:
            for part in _chunks(keys):
                stmt = sa.select(contact_state).where(
                    contact_state.c.sync_name == sync_name,
                    contact_state.c.source_key.in_(part),
                )
                for row in conn.execute(stmt).mappings():
                    found[row["source_key"]] = ContactState(**dict(row))
        return found

    def save_contact_states(self, states: Sequence[ContactState]) -> None:
        if not states:
            return
        rows = [asdict(state) for state in states]
        with self._guard("save contact state"), self._begin() as conn:
            upsert_rows(conn, contact_state, rows, ["sync_name", "source_key"])

    def iter_managed_contacts(
        self, sync_name: str, *, batch_size: int = 500
    ) -> Iterator[list[ContactState]]:
        after = ""
        while True:
            with self._guard("read managed contacts"), self.engine.connect() as conn:
                stmt = (
                    sa.select(contact_state)
                    .where(
                        contact_state.c.sync_name == sync_name,
                        contact_state.c.managed.is_(True),
                        contact_state.c.source_key > after,
                    )
                    .order_by(contact_state.c.source_key)
                    .limit(batch_size)
                )
                batch = [ContactState(**dict(row)) for row in conn.execute(stmt).mappings()]
            if not batch:
                return
            yield batch
            after = batch[-1].source_key

    def keys_by_email_hash(
        self, sync_name: str, hashes: Sequence[str], exclude: Sequence[str] = ()
    ) -> dict[str, str]:
        """A source key holding each email hash (contact state first, then rejections)."""
        found: dict[str, str] = {}
        skip = set(exclude)
        with self._guard("read contact state"), self.engine.connect() as conn:
            for table in (contact_state, rejected_records):
                for part in _chunks(hashes):
                    stmt = sa.select(table.c.email_hash, table.c.source_key).where(
                        table.c.sync_name == sync_name, table.c.email_hash.in_(part)
                    )
                    for digest, key in conn.execute(stmt):
                        if key not in skip:
                            found.setdefault(digest, key)
        return found

    # -- rejections ---------------------------------------------------------------------------

    def rejected_content_hashes(self, sync_name: str, keys: Sequence[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        with self._guard("read rejected records"), self.engine.connect() as conn:
            for part in _chunks(keys):
                stmt = sa.select(
                    rejected_records.c.source_key, rejected_records.c.content_hash
                ).where(
                    rejected_records.c.sync_name == sync_name,
                    rejected_records.c.source_key.in_(part),
                    rejected_records.c.resolved_at.is_(None),
                )
                found.update({row[0]: row[1] for row in conn.execute(stmt)})
        return found

    def record_rejections(
        self, sync_name: str, run_id: str, rejections: Sequence[Rejection]
    ) -> None:
        if not rejections:
            return
        now = _now()
        keys = [r.source_key for r in rejections]
        with self._guard("record rejected records"), self._begin() as conn:
            existing: dict[str, int] = {}
            for part in _chunks(keys):
                stmt = sa.select(rejected_records.c.source_key, rejected_records.c.attempts).where(
                    rejected_records.c.sync_name == sync_name,
                    rejected_records.c.source_key.in_(part),
                )
                existing.update({row[0]: row[1] for row in conn.execute(stmt)})
            rows = [
                {
                    "sync_name": sync_name,
                    "source_key": r.source_key[:255],
                    "email_hash": r.email_hash,
                    "content_hash": r.content_hash,
                    "reason_code": r.reason_code[:64],
                    "message": r.message,
                    "attempts": existing.get(r.source_key, 0) + 1,
                    "first_seen": now,
                    "last_seen": now,
                    "resolved_at": None,
                    "last_run_id": run_id,
                }
                for r in rejections
            ]
            upsert_rows(
                conn,
                rejected_records,
                rows,
                ["sync_name", "source_key"],
                [
                    "email_hash",
                    "content_hash",
                    "reason_code",
                    "message",
                    "attempts",
                    "last_seen",
                    "resolved_at",
                    "last_run_id",
                ],
            )

    def resolve_rejections(self, sync_name: str, keys: Sequence[str], run_id: str) -> int:
        resolved = 0
        with self._guard("resolve rejected records"), self._begin() as conn:
            for part in _chunks(keys):
                result = conn.execute(
                    rejected_records.update()
                    .where(
                        rejected_records.c.sync_name == sync_name,
                        rejected_records.c.source_key.in_(part),
                        rejected_records.c.resolved_at.is_(None),
                    )
                    .values(resolved_at=_now(), last_run_id=run_id)
                )
                resolved += result.rowcount or 0
        return resolved

    # -- consent ledger -----------------------------------------------------------------------

    def append_consent(self, entries: Sequence[ConsentEntry]) -> None:
        if not entries:
            return
        with self._guard("append to the consent ledger"), self._begin() as conn:
            conn.execute(consent_ledger.insert(), [asdict(entry) for entry in entries])

    def last_bridge_status_change(
        self, sync_name: str, hashes: Sequence[str]
    ) -> dict[str, tuple[str, dt.datetime]]:
        """Per email hash, (new status, time) when the last ledger entry is this bridge's own."""
        last: dict[str, tuple[int, str, str, dt.datetime]] = {}
        with self._guard("read the consent ledger"), self.engine.connect() as conn:
            for part in _chunks(hashes):
                stmt = sa.select(
                    consent_ledger.c.id,
                    consent_ledger.c.email_hash,
                    consent_ledger.c.new_status,
                    consent_ledger.c.old_status,
                    consent_ledger.c.origin,
                    consent_ledger.c.occurred_at,
                ).where(
                    consent_ledger.c.sync_name == sync_name,
                    consent_ledger.c.email_hash.in_(part),
                )
                for row_id, digest, new, old, origin, when in conn.execute(stmt):
                    if old == new:  # "kept" entries record a decision, not a change
                        continue
                    if digest not in last or row_id > last[digest][0]:
                        last[digest] = (row_id, new, origin, when)
        return {
            digest: (new, when)
            for digest, (_, new, origin, when) in last.items()
            if origin == "push"
        }

    # -- provider-side member statuses --------------------------------------------------------

    def member_statuses(
        self, provider: str, list_id: str, member_ids: Sequence[str]
    ) -> dict[str, MemberStatusRow]:
        found: dict[str, MemberStatusRow] = {}
        columns = [member_status.c[name] for name in MemberStatusRow.__dataclass_fields__]
        with self._guard("read member statuses"), self.engine.connect() as conn:
            for part in _chunks(member_ids):
                stmt = sa.select(*columns).where(
                    member_status.c.provider == provider,
                    member_status.c.list_id == list_id,
                    member_status.c.member_id.in_(part),
                )
                for row in conn.execute(stmt).mappings():
                    found[row["member_id"]] = MemberStatusRow(**dict(row))
        return found

    def upsert_member_statuses(self, rows: Sequence[MemberStatusRow]) -> None:
        if not rows:
            return
        now = _now()
        values = [{**asdict(row), "email": row.email[:320], "updated_at": now} for row in rows]
        with self._guard("save member statuses"), self._begin() as conn:
            upsert_rows(conn, member_status, values, ["provider", "list_id", "member_id"])

    # -- errors -------------------------------------------------------------------------------

    def _guard(self, action: str) -> _Guard:
        return _Guard(self.url, action)


class _Guard:
    """Translate driver errors into StateStoreError with an actionable, password-free message."""

    def __init__(self, url: str, action: str) -> None:
        self.url = url
        self.action = action

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, sa.exc.SQLAlchemyError):
            message = describe_database_error(self.url, self.action, exc)
            raise StateStoreError(message) from exc
