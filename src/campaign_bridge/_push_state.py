"""The state store as push uses it: :class:`~campaign_bridge.store.StateStore` plus the two bulk
queries only push needs (who holds an email hash; whose last status change was the bridge's).

Push calls these from one worker thread, in chunky units (one statement per chunk of keys).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence

import sqlalchemy as sa

from campaign_bridge.db import copy_rows, merge_rows
from campaign_bridge.errors import StateStoreError
from campaign_bridge.state import consent_ledger, contact_state, member_status, rejected_records
from campaign_bridge.store import (
    ConsentChange,
    ContactState,
    MemberStatusRecord,
    Rejection,
    StateStore,
    prepare_state_store,
)

__all__ = ["ConsentChange", "ContactState", "MemberStatusRecord", "PushState", "Rejection"]

_IN_CHUNK = 1000  # keys per IN (...) list


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _state_row(state: ContactState) -> dict[str, object]:
    row = dict(vars(state))
    if state.managed_tags is not None:
        row["managed_tags"] = list(state.managed_tags)
    return row


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

    def save_confirmed(
        self,
        states: Sequence[ContactState],
        statuses: Sequence[MemberStatusRecord],
        ledger: Sequence[ConsentChange],
    ) -> None:
        """Save what the provider confirmed for a group of slices, in one transaction.

        On PostgreSQL a big group goes through COPY (``merge_rows``), the fast path for the
        thousands of rows per second an initial push produces.
        """
        if not states and not ledger:
            return
        now = dt.datetime.now(dt.UTC)
        state_rows = [_state_row(state) for state in states]
        status_rows = [{**vars(row), "updated_at": now} for row in statuses]
        ledger_rows = [dict(vars(change)) for change in ledger]
        postgres = self.engine.dialect.name == "postgresql"
        with self.engine.begin() as conn:
            if state_rows:
                merge_rows(conn, contact_state, state_rows, ["sync_name", "source_key"])
            if status_rows:
                merge_rows(conn, member_status, status_rows, ["provider", "list_id", "member_id"])
            if ledger_rows and postgres:
                copy_rows(conn, consent_ledger, ledger_rows, list(ledger_rows[0]))
            elif ledger_rows:
                conn.execute(consent_ledger.insert(), ledger_rows)

    def append_consent_changes(self, changes: Iterable[ConsentChange]) -> None:
        """Like the store's, but through COPY on PostgreSQL for the large batches a push makes."""
        changes = list(changes)
        if len(changes) < 100 or self.engine.dialect.name != "postgresql":
            super().append_consent_changes(changes)
            return
        rows = [dict(vars(change)) for change in changes]
        with self.engine.begin() as conn:
            copy_rows(conn, consent_ledger, rows, list(rows[0]))

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
