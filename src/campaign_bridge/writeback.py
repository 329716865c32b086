"""Write-back: provider status changes written into the user's own contact table.

Configured per sync (``[syncs.<name>.writeback]``): the table, its key column (matching the
source key), and any of a status column, an ``unsubscribed_at`` column, a ``bounced_at`` column
and a boolean consent column. Only those columns are ever written, one ``UPDATE`` per contact in
one transaction per chunk. What each new status writes:

================  ==========  ==================  ===============  ===========
change            status      unsubscribed_at     bounced_at       consent
================  ==========  ==================  ===============  ===========
-> unsubscribed   the status  time of the change  --               false
-> forgotten      the status  time of the change  --               false
-> cleaned        the status  --                  time of change   --
re-subscribed     the status  NULL                --               true
any other         the status  --                  --               --
================  ==========  ==================  ===============  ===========

"Re-subscribed" means subscribed after unsubscribed or forgotten, as the bridge last recorded it
(``provider_status`` in ``cb_contact_state``): only the bridge's own ``false`` is ever turned back
to ``true``, when the person re-subscribes at the provider. A contact the bridge sees for the
first time as subscribed gets its status column filled and nothing else, so a pull can never
override an opt-out that the user's own application recorded and the push has not yet sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaign_bridge.config import SyncConfig, WritebackConfig
from campaign_bridge.db import create_engine, normalize_url, redact_url
from campaign_bridge.errors import ConfigProblem, ConfigurationError, DatabaseError
from campaign_bridge.storable import column_limit, storable_value

__all__ = [
    "WriteRequest",
    "WritebackTarget",
    "missing_columns",
    "values_for",
]

logger = logging.getLogger(__name__)

_CONSENT_OFF = frozenset({"unsubscribed", "forgotten"})
_COLUMN_FIELDS = (
    "key_column",
    "status_column",
    "unsubscribed_at_column",
    "bounced_at_column",
    "consent_column",
)


@dataclass(frozen=True)
class WriteRequest:
    """One contact's new provider status, to be written to the user's table.

    ``previous`` is the status the bridge had recorded for the contact; ``transition`` is false
    when only the status column needs to catch up (the contact's recorded status did not change).
    """

    source_key: str
    status: str
    occurred_at: datetime
    previous: str | None = None
    transition: bool = True


def values_for(request: WriteRequest, config: WritebackConfig) -> dict[str, object]:
    """The user-table columns (configured names) and values that ``request`` writes."""
    values: dict[str, object] = {}
    if config.status_column:
        values[config.status_column] = request.status
    if not request.transition:
        return values
    opted_out = request.status in _CONSENT_OFF
    opted_back_in = request.status == "subscribed" and request.previous in _CONSENT_OFF
    if config.unsubscribed_at_column and opted_out:
        values[config.unsubscribed_at_column] = request.occurred_at
    if config.unsubscribed_at_column and opted_back_in:
        values[config.unsubscribed_at_column] = None
    if config.bounced_at_column and request.status == "cleaned":
        values[config.bounced_at_column] = request.occurred_at
    if config.consent_column and (opted_out or opted_back_in):
        values[config.consent_column] = opted_back_in
    return values


def missing_columns(
    sync_name: str, config: WritebackConfig, columns: Sequence[str]
) -> list[ConfigProblem]:
    """Every configured write-back column that the table does not have."""
    present = {name.lower() for name in columns}
    problems = []
    for name in _COLUMN_FIELDS:
        column = getattr(config, name)
        if column and column.lower() not in present:
            problems.append(
                ConfigProblem(
                    location=f"syncs.{sync_name}.writeback.{name}",
                    problem=f"column {column!r} does not exist in table {config.table!r}",
                    expected="a column of that table",
                )
            )
    return problems


class WritebackTarget:
    """The user's table, reflected and checked once, ready to take status changes."""

    def __init__(
        self,
        engine: Engine,
        table: sa.Table,
        config: WritebackConfig,
        *,
        same_database: bool,
        owns_engine: bool,
    ) -> None:
        self.engine = engine
        self.table = table
        self.config = config
        self.same_database = same_database
        self._owns_engine = owns_engine
        self._names = {column.name.lower(): column.name for column in table.columns}

    @classmethod
    def open(
        cls, sync_name: str, sync: SyncConfig, *, state_url: str | None = None
    ) -> WritebackTarget | None:
        """Connect to and validate the sync's write-back table; ``None`` if none is configured.

        Raises :class:`ConfigurationError` listing every missing column (or the missing table).
        """
        config = sync.writeback
        if config is None:
            return None
        url = config.url or sync.source.url
        same = state_url is not None and _same_database(url, state_url)
        engine = create_engine(url)
        schema, name = _split_table(config.table)
        try:
            table = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=engine)
        except sa.exc.NoSuchTableError as exc:
            engine.dispose()
            raise ConfigurationError(
                [
                    ConfigProblem(
                        location=f"syncs.{sync_name}.writeback.table",
                        problem=f"table {config.table!r} does not exist",
                        expected="an existing table in the write-back database",
                    )
                ]
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise DatabaseError(
                f"cannot read the write-back table {config.table!r} at {redact_url(url)}: "
                f"{type(exc).__name__}; check the database is reachable"
            ) from exc
        problems = missing_columns(sync_name, config, [c.name for c in table.columns])
        if problems:
            engine.dispose()
            raise ConfigurationError(problems)
        return cls(engine, table, config, same_database=same, owns_engine=True)

    def write(
        self, requests: Sequence[WriteRequest], *, state_connection: Connection | None = None
    ) -> int:
        """Write ``requests`` in one transaction; return the number of user rows updated.

        When the user's table lives in the state store's database, the write joins the state
        store's transaction (``state_connection``) so both commit together.
        """
        if not requests:
            return 0
        if self.same_database and state_connection is not None:
            return self._write(state_connection, requests)
        try:
            with self.engine.begin() as conn:
                return self._write(conn, requests)
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseError(
                f"write-back to {self.config.table!r} failed ({type(exc).__name__}); "
                "nothing was recorded, the next pull or webhook retries it"
            ) from exc

    def _write(self, conn: Connection, requests: Sequence[WriteRequest]) -> int:
        key = self.table.c[self._names[self.config.key_column.lower()]]
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for request in requests:
            values = values_for(request, self.config)
            if not values:
                continue
            columns = tuple(sorted(self._names[name.lower()] for name in values))
            params = {"wb_key": _key_value(key, request.source_key)}
            for name, value in values.items():
                column = self._names[name.lower()]
                params[f"wb_{column}"] = self._value(column, value)
            groups.setdefault(columns, []).append(params)
        written = 0
        for columns, rows in groups.items():
            stmt = (
                self.table.update()
                .where(key == sa.bindparam("wb_key"))
                .values({column: sa.bindparam(f"wb_{column}") for column in columns})
            )
            result = conn.execute(stmt, rows)
            written += max(int(result.rowcount or 0), 0)
        return written

    def _value(self, column: str, value: object) -> object:
        kind = self.table.c[column].type
        if isinstance(value, datetime):
            if isinstance(kind, sa.DateTime):
                if kind.timezone and self.engine.dialect.name == "postgresql":
                    return value.astimezone(UTC)
                return value.astimezone(UTC).replace(tzinfo=None)
            return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(value, bool) and not isinstance(kind, sa.Boolean):
            if isinstance(kind, sa.Integer):
                return int(value)
            if isinstance(kind, sa.String | sa.Text):
                value = "true" if value else "false"
        if isinstance(value, str):  # cut to the user's column, cleaned (see storable.py)
            limit = column_limit(kind, self.engine.dialect.name)
            return storable_value(self.table.name, column, value, limit)
        return value

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()


def _key_value(column: sa.Column[Any], key: str) -> object:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return key
    if python_type is int:
        try:
            return int(key)
        except ValueError:
            return key
    return key


def _split_table(name: str) -> tuple[str | None, str]:
    if "." in name:
        schema, _, table = name.rpartition(".")
        return schema, table
    return None, name


def _same_database(first: str, second: str) -> bool:
    a, b = normalize_url(first), normalize_url(second)
    return a.render_as_string(hide_password=False) == b.render_as_string(hide_password=False)


def describe(values: Mapping[str, object]) -> str:
    """Column names only (never values: they may hold personal data), for logs."""
    return ", ".join(sorted(values))
