"""Streaming read of the user's contacts from PostgreSQL, MySQL/MariaDB or SQLite.

The configured table (an identifier, quoted by SQLAlchemy) or query (wrapped as a subquery) is
read through a server-side cursor (``stream_results`` + ``yield_per``) so memory stays flat
whatever the number of contacts. With ``updated_at_column`` the scan is incremental: see
:class:`SourceCursor` for which rows a later scan reads again.

A row whose values cannot be decoded (bytes that are not UTF-8, NUL characters) does not stop the
read: it comes out as a :class:`SourceRejection` naming the source key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaign_bridge.config import SourceConfig
from campaign_bridge.db import create_engine, dialect_of, redact_url
from campaign_bridge.errors import ConfigProblem, ConfigurationError, SourceError
from campaign_bridge.mapping import email_hash, row_hash

__all__ = ["DEFAULT_OVERLAP", "Source", "SourceChunk", "SourceCursor", "SourceRejection"]

DEFAULT_OVERLAP = dt.timedelta(minutes=5)
_BYTEA_OID = 17
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
# Removed from the email column before a lookup by address compares it in SQL: the ASCII
# whitespace and the no-break space (a valid address holds none of them inside; every match is
# checked again with the bridge's own hash, and rows with other non-ASCII characters, which
# str.strip may remove, are always checked that way).
_SQL_SPACES = (" ", "\t", "\n", "\r", "\x0b", "\x0c", "\xa0")
_LOOKUP_BATCH = 1000


@dataclass(frozen=True)
class SourceRejection:
    key: str
    reason_code: str
    message: str
    content_hash: str | None = None  # the raw row's version (mapping.row_hash)


@dataclass(frozen=True)
class SourceCursor:
    """Where the next incremental scan starts.

    ``newest`` is the largest updated_at value the last complete scan read; ``read_at`` is the
    source database's own clock when that scan began. The next scan reads the rows changed after
    ``newest`` plus the rows stamped within the overlap window before ``read_at``: a transaction
    that stamped its rows before that scan but committed after it is still picked up, and a bulk
    load that gave a million rows one timestamp is not read again on every run. A cursor written
    by an older version has no ``read_at``; it re-reads the overlap window before ``newest``.
    """

    newest: str
    read_at: str | None = None

    def to_text(self) -> str:
        return json.dumps({"newest": self.newest, "read_at": self.read_at})

    @classmethod
    def parse(cls, text: str) -> SourceCursor:
        if text.startswith("{"):
            data = json.loads(text)
            return cls(str(data["newest"]), data.get("read_at"))
        return cls(text)


@dataclass
class SourceChunk:
    rows: list[dict[str, object]] = field(default_factory=list)
    rejections: list[SourceRejection] = field(default_factory=list)
    max_updated_at: object = None  # raw value of the updated_at column (driver's type)


class Source:
    """One sync's source. Call :meth:`check_columns` first; it resolves the column names."""

    def __init__(self, config: SourceConfig, *, engine: Engine | None = None) -> None:
        if not config.table and not config.query:
            raise ConfigurationError(
                [ConfigProblem("source", "neither table nor query is set", "one of them")]
            )
        self._config = config
        self._dialect = dialect_of(config.url)
        self._engine = engine or create_engine(config.url)
        self._columns: dict[str, str] = {}  # configured name -> actual name
        # Whether keys are integers, from a sampled row; None while the source had no row.
        self._key_is_int: bool | None = None
        self.read_at: str | None = None  # the source's clock when the last scan began

    @property
    def dialect(self) -> str:
        return self._dialect

    def close(self) -> None:
        self._engine.dispose()

    # -- schema -------------------------------------------------------------------------------

    def _from(self, columns: Sequence[str]) -> sa.FromClause:
        config = self._config
        if config.table:
            schema, _, name = config.table.rpartition(".")
            return sa.table(name, *(sa.column(c) for c in columns), schema=schema or None)
        assert config.query is not None
        query = config.query.strip().rstrip(";")
        return sa.text(query).columns(*(sa.column(c) for c in columns)).subquery("cb_src")

    def check_columns(self, wanted: Sequence[str]) -> None:
        """Check that every wanted column exists; raise one ConfigurationError listing all."""
        problems: list[ConfigProblem] = []
        if self._config.table:
            for part in self._config.table.split("."):
                if not _IDENTIFIER.match(part):
                    problems.append(
                        ConfigProblem("source.table", f"{self._config.table!r} is not a name")
                    )
        for name in wanted:
            if not _IDENTIFIER.match(name):
                problems.append(ConfigProblem("source", f"column {name!r} is not a plain name"))
        if problems:
            raise ConfigurationError(problems)
        probe: sa.Select[Any] = (
            sa.select(sa.literal_column("*")).select_from(self._from([])).limit(0)
        )
        try:
            with self._engine.connect() as conn:
                actual = list(conn.execute(probe).keys())
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(
                f"cannot read the source at {redact_url(self._config.url)}: "
                f"{_first_line(exc)}. "
                "Check source.url, and source.table or source.query."
            ) from exc
        by_lower: dict[str, list[str]] = {}
        for name in actual:
            by_lower.setdefault(name.lower(), []).append(name)
        for name in wanted:
            if name in actual:
                self._columns[name] = name
            elif len(by_lower.get(name.lower(), [])) == 1:
                self._columns[name] = by_lower[name.lower()][0]
            else:
                problems.append(
                    ConfigProblem(
                        "source",
                        f"column {name!r} is not in the source",
                        "one of " + ", ".join(actual),
                    )
                )
        if problems:
            raise ConfigurationError(problems)
        key = self._col(self._config.key_column)
        sample: sa.Select[Any] = sa.select(sa.column(key)).select_from(self._from([key])).limit(1)
        with self._engine.connect() as conn:
            first = conn.execute(sample).scalar()
        if first is not None:
            self._key_is_int = isinstance(first, int) and not isinstance(first, bool)

    def _col(self, name: str) -> str:
        return self._columns.get(name, name)

    # -- reading ------------------------------------------------------------------------------

    def iter_chunks(
        self,
        columns: Sequence[str],
        *,
        since: SourceCursor | None = None,
        overlap: dt.timedelta = DEFAULT_OVERLAP,
        limit: int | None = None,
    ) -> Iterator[SourceChunk]:
        """Rows (keyed by the configured column names) in chunks of ``chunk_size``."""
        actual = [self._col(c) for c in columns]
        rename = dict(zip(actual, columns, strict=True))
        src = self._from(actual)
        key = src.c[self._col(self._config.key_column)]
        updated = self._config.updated_at_column
        stmt = sa.select(*(src.c[c] for c in actual))
        if updated:
            updated_col = src.c[self._col(updated)]
            if since is not None:
                stmt = stmt.where(self._since_clause(updated_col, since, overlap))
            stmt = stmt.order_by(updated_col, key)
        else:
            stmt = stmt.order_by(key)
        if limit is not None:
            stmt = stmt.limit(limit)
        key_name = self._config.key_column
        check_surrogates = self._dialect == "sqlite"
        try:
            with self._engine.connect() as conn, contextlib.ExitStack() as stack:
                self._prepare(conn)
                if updated:
                    clock = conn.execute(sa.select(sa.func.current_timestamp())).scalar()
                    self.read_at = self.cursor_text(clock)
                result = conn.execution_options(
                    stream_results=True, yield_per=self._config.chunk_size
                ).execute(stmt)
                # Closed explicitly when the reader stops early (a failed run closes this
                # generator): a server-side cursor left to the garbage collector warns.
                stack.callback(result.close)
                names = [rename[k] for k in actual]
                updated_at = names.index(updated) if updated else None
                checked = self._columns_to_check(result)
                for partition in result.partitions():
                    chunk = SourceChunk()
                    if updated_at is not None:
                        # Rows come ordered by updated_at: the chunk's newest is its last value.
                        chunk.max_updated_at = _last_value(partition, updated_at)
                    for raw in partition:
                        row = dict(zip(names, raw, strict=True))
                        problem = _encoding_problem(row, check_surrogates) if checked else None
                        if problem is None:
                            chunk.rows.append(row)
                        else:
                            rejected_key = _key_text(row[key_name])
                            chunk.rejections.append(
                                SourceRejection(
                                    rejected_key, "invalid_encoding", problem, row_hash(row)
                                )
                            )
                    yield chunk
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(
                f"reading the source failed: {_first_line(exc)}. "
                "Check the source database and query, then run push again."
            ) from exc

    def count(self, since: SourceCursor | None = None, limit: int | None = None) -> int:
        """How many rows a scan from ``since`` would read (for progress and ETA)."""
        key = self._col(self._config.key_column)
        columns = [key]
        updated = self._config.updated_at_column
        if updated:
            columns.append(self._col(updated))
        src = self._from(columns)
        stmt: sa.Select[Any] = sa.select(sa.func.count()).select_from(src)
        if updated and since is not None:
            stmt = stmt.where(self._since_clause(src.c[self._col(updated)], since, DEFAULT_OVERLAP))
        with self._engine.connect() as conn:
            total = int(conn.execute(stmt).scalar() or 0)
        return min(total, limit) if limit is not None else total

    def _since_clause(
        self, column: sa.ColumnElement[Any], since: SourceCursor, overlap: dt.timedelta
    ) -> sa.ColumnElement[bool]:
        if since.read_at is None or _parse_time(since.newest) is None:
            # An older cursor, or a non-time column (a version number): as before.
            return self._compare(column, ">", self._cursor_param(since.newest, overlap))
        newest = self._cursor_param(since.newest, dt.timedelta(0))
        if _is_date_only(since.newest):  # a DATE column: later rows of the same day count too
            return self._compare(column, ">=", newest)
        late = self._cursor_param(since.read_at, overlap)
        return sa.or_(self._compare(column, ">", newest), self._compare(column, ">=", late))

    def _compare(
        self, column: sa.ColumnElement[Any], op: str, bound: object
    ) -> sa.ColumnElement[bool]:
        left: sa.ColumnElement[Any] = column
        right: sa.ColumnElement[Any] = sa.bindparam(None, bound, type_=column.type)
        if self._dialect == "sqlite":
            # SQLite keeps times as text in several layouts; compare them normalised.
            left, right = sa.func.datetime(column), sa.func.datetime(bound)
        comparison: sa.ColumnElement[bool] = left > right if op == ">" else left >= right
        return comparison

    def iter_keys(self, batch: int = 10_000) -> Iterator[list[str]]:
        """Every source key, in batches (for mirror mode)."""
        key = self._col(self._config.key_column)
        src = self._from([key])
        stmt = sa.select(src.c[key]).order_by(src.c[key])
        with self._engine.connect() as conn:
            self._prepare(conn)
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(stmt)
            for partition in result.partitions():
                yield [_key_text(row[0]) for row in partition]

    def existing_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` are still in the source (an indexed lookup, memory bounded)."""
        return set(self._rows_by_key(keys, []))

    def addresses_of_keys(self, keys: Sequence[str]) -> dict[str, str | None]:
        """The :func:`~campaign_bridge.mapping.email_hash` of the address each of ``keys``
        holds in the source now (None: the row has no address); keys not in the source are
        left out. An indexed lookup by key."""
        email = self._col(self._config.email_column)
        if email == self._col(self._config.key_column):
            return {k: email_hash(k) for k in self.existing_keys(keys)}
        found = self._rows_by_key(keys, [email])
        return {
            key: email_hash(_key_text(raw)) if raw is not None else None
            for key, (raw,) in found.items()
        }

    def _rows_by_key(self, keys: Sequence[str], columns: list[str]) -> dict[str, tuple[Any, ...]]:
        """``columns`` of the rows holding ``keys``, by key (1000 keys a query)."""
        if not keys:
            return {}
        key = self._col(self._config.key_column)
        src = self._from([key, *columns])
        values: list[Any] = list(keys)
        column: sa.ColumnElement[Any] = src.c[key]
        if self._key_is_int:
            values = [int(k) for k in keys if re.fullmatch(r"-?\d+", k)]
        elif self._key_is_int is None:
            # The key's type is unknown (the source had no row when it was checked): compare
            # as text, which is right for every key type (and the table is small or empty).
            column = sa.cast(column, sa.String)
        found: dict[str, tuple[Any, ...]] = {}
        with self._engine.connect() as conn:
            self._prepare(conn)
            for start in range(0, len(values), 1000):
                part = values[start : start + 1000]
                stmt = sa.select(src.c[key], *(src.c[c] for c in columns)).where(column.in_(part))
                for row in conn.execute(stmt):
                    found[_key_text(row[0])] = tuple(row[1:])
        return found

    def addresses_present(self, addresses: Sequence[str]) -> set[str]:
        """The :func:`~campaign_bridge.mapping.email_hash` of each of ``addresses`` that a row
        still in the source holds, compared as the bridge compares addresses (trimmed,
        lowercased), whether or not that row is valid.

        One query per 1000 addresses: SQL finds the candidate rows (the email column with
        whitespace removed, lowercased), the bridge's hash decides. The comparison cannot use
        a plain index on the column, so each query reads the column through."""
        wanted = {email_hash(a): a.strip().lower() for a in addresses}
        if not wanted:
            return set()
        src = self._from([self._col(self._config.email_column)])
        compared: sa.ColumnElement[Any] = src.c[0]
        for space in _SQL_SPACES:
            compared = sa.func.replace(compared, space, "")
        compared = sa.func.lower(compared)
        # Other whitespace str.strip removes is not ASCII: rows with any non-ASCII character
        # come back too, for the hash to decide (a valid address is ASCII, so they are few).
        candidate = sa.or_(
            compared.in_(sa.bindparam("part", expanding=True)), self._non_ascii(src.c[0])
        )
        values = sorted(set(wanted.values()))
        found: set[str] = set()
        try:
            with self._engine.connect() as conn:
                self._prepare(conn)
                for start in range(0, len(values), _LOOKUP_BATCH):
                    part = values[start : start + _LOOKUP_BATCH]
                    stmt = sa.select(src.c[0]).where(candidate)
                    for raw in conn.execute(stmt, {"part": part}).scalars():
                        held = email_hash(_key_text(raw))  # _key_text: bytes, bad text
                        if held in wanted:
                            found.add(held)
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(
                f"looking up addresses in the source failed: {_first_line(exc)}. "
                "Check the source database, then run push again."
            ) from exc
        return found

    def _non_ascii(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """``column`` holds a character outside ASCII: its length in bytes is not its length
        in characters."""
        if self._dialect == "sqlite":
            octets: sa.ColumnElement[Any] = sa.func.length(sa.cast(column, sa.LargeBinary))
            chars: sa.ColumnElement[Any] = sa.func.length(column)
        elif self._dialect == "mysql":
            octets, chars = sa.func.length(column), sa.func.char_length(column)
        else:
            octets, chars = sa.func.octet_length(column), sa.func.char_length(column)
        return octets != chars

    def _columns_to_check(self, result: sa.CursorResult[Any]) -> bool:
        """Whether rows need the encoding check. PostgreSQL text is always valid UTF-8 and can
        hold no NUL, so there only a ``bytea`` column (type OID 17) can bring bad bytes."""
        if self._dialect != "postgresql":
            return True
        description = result.cursor.description if result.cursor is not None else None
        return description is None or any(column[1] == _BYTEA_OID for column in description)

    def _prepare(self, conn: Connection) -> None:
        if self._dialect == "sqlite":
            # Decode text ourselves so invalid UTF-8 becomes a rejected record, not a crash.
            raw = conn.connection.driver_connection
            raw.text_factory = _lenient_text  # type: ignore[union-attr]
        elif self._dialect == "mysql":
            # A streaming read pauses while the provider is slow; keep the server waiting.
            conn.exec_driver_sql("SET SESSION net_write_timeout = 3600")

    def _cursor_param(self, since: object, overlap: dt.timedelta) -> object:
        if isinstance(since, str):
            parsed = _parse_time(since)
            if parsed is None:
                return since
            value = parsed - overlap
            if self._dialect == "sqlite":
                return value.isoformat(sep=" ")
            return value
        if isinstance(since, dt.datetime):
            value = since - overlap
            return value.isoformat(sep=" ") if self._dialect == "sqlite" else value
        return since

    @staticmethod
    def cursor_text(value: object) -> str | None:
        """The updated_at value as text for the cursor table."""
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            return value.isoformat()
        return str(value)


def _is_date_only(text: str) -> bool:
    return len(text.strip()) == len("2025-01-31")


def _parse_time(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def _last_value(rows: Sequence[Sequence[object]], index: int) -> object:
    """The last non-NULL value at ``index`` (NULLs sort first on some engines, last on others)."""
    for row in reversed(rows):
        if row[index] is not None:
            return row[index]
    return None


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def _key_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    text = str(value)
    if "\x00" in text or _has_surrogates(text):
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _encoding_problem(row: dict[str, object], check_surrogates: bool) -> str | None:
    """Turn bytes into text in place; describe the first value that is not clean UTF-8."""
    for column, value in row.items():
        if isinstance(value, bytes | bytearray | memoryview):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return f"column {column} holds bytes that are not valid UTF-8"
            row[column] = value
        if isinstance(value, str):
            if "\x00" in value:
                return f"column {column} contains a NUL character"
            if check_surrogates and _has_surrogates(value):
                return f"column {column} holds bytes that are not valid UTF-8"
    return None


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(cause).__name__}: {first}"
