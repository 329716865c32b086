"""One place that turns a database URL into a SQLAlchemy engine, for every dialect we support.

Users write ordinary URLs (``postgresql://``, ``mysql://``, ``mariadb://``, ``sqlite:///``); this
module picks the drivers we ship (psycopg 3, PyMySQL, sqlite3) and the settings each dialect needs.
Dialect-specific fast paths (PostgreSQL COPY, ``ON CONFLICT``, MySQL ``ON DUPLICATE KEY``) belong
here too, so the rest of the code stays dialect-neutral.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from psycopg.types.json import Json, JsonBinaryDumper
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.engine import URL, Connection, Dialect, Engine, make_url

__all__ = [
    "copy_rows",
    "copy_tuples",
    "create_engine",
    "describe_database_error",
    "dialect_of",
    "insert_ignore_rows",
    "insert_new_rows",
    "insert_new_rows_statement",
    "merge_rows",
    "merge_tuples",
    "normalize_url",
    "redact_url",
    "share_engine",
    "sqlite_file_path",
    "upsert_rows",
]

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


def normalize_url(url: str | URL) -> URL:
    """Return ``url`` with the driver we ship filled in where the user named only the database."""
    parsed = make_url(url)
    driver = _DRIVERS.get(parsed.drivername)
    if driver is not None:
        parsed = parsed.set(drivername=driver)
    if parsed.get_backend_name() == "mysql" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def dialect_of(url: str | URL) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB included)."""
    return normalize_url(url).get_backend_name()


def sqlite_file_path(url: str | URL) -> Path | None:
    """The database file of a SQLite URL; None for other engines, in-memory and ``file:`` URIs."""
    try:
        parsed = normalize_url(url)
    except sa.exc.ArgumentError:
        return None  # callers that connect report the bad URL themselves
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def redact_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***``, safe for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def describe_database_error(url: str | URL, action: str, exc: BaseException) -> str:
    """A short, password-free sentence about a driver error, with what to check next.

    ``action`` completes "cannot ... the state store", e.g. ``"upgrade"`` or ``"read from"``.
    """
    try:
        where = redact_url(url)
        password = make_url(url).password
    except sa.exc.ArgumentError:
        where, password = "(an unparseable URL)", None
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    reason = lines[0] if lines else type(orig).__name__
    if password:
        reason = reason.replace(str(password), "***")
    if any(kind.__name__ in ("DataError", "IntegrityError") for kind in type(orig).__mro__):
        # the server is up and answered: it refused a value, which no connection check fixes
        return (
            f"cannot {action} the database at {where}: it refused a value ({reason}). "
            "The server is reachable; please report this with the log, it is a bug"
        )
    return (
        f"cannot {action} the database at {where}: {reason}. Check that the server is running "
        "and reachable, that the database exists, and that the user and password in the URL "
        "are right"
    )


_SQLITE_BUSY_SECONDS = 30  # how long a SQLite connection waits for another writer


# Engines shared by a whole process (a worker's state store: campaign_bridge.state_pool), by URL.
_SHARED: dict[str, Engine] = {}


def _identity(parsed: URL) -> str:
    return parsed.render_as_string(hide_password=False)


@contextlib.contextmanager
def share_engine(url: str | URL, engine: Engine) -> Iterator[Engine]:
    """While the block runs, :func:`create_engine` of ``url`` (with no other argument) returns
    ``engine`` instead of a new one: every part of the process that opens that database, now or
    later, draws on one pool. ``engine``'s pool must ignore ``dispose()`` (callers dispose of
    "their" engine when done), as :class:`campaign_bridge.state_pool.SharedPool` does."""
    key = _identity(normalize_url(url))
    if key in _SHARED:
        raise RuntimeError("this database already has a shared engine in this process")
    _SHARED[key] = engine
    try:
        yield engine
    finally:
        del _SHARED[key]


def create_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine with the right driver and per-dialect settings for ``url`` (the process's
    shared one when :func:`share_engine` installed one for ``url`` and no option is given)."""
    parsed = normalize_url(url)
    shared = None if kwargs else _SHARED.get(_identity(parsed))
    if shared is not None:
        return shared
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {"future": True}
    if backend == "sqlite":
        options["connect_args"] = {"timeout": _SQLITE_BUSY_SECONDS}
    else:
        options["pool_pre_ping"] = True
    options.update(kwargs)
    engine = sa.create_engine(parsed, **options)
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_SECONDS * 1000}")
    _use_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _use_wal(cursor: Any) -> None:
    """Put the database file in WAL mode (a property of the file, kept once set).

    Switching needs a moment of exclusive access, and SQLite does not wait for it (the busy
    timeout does not apply): when several processes open a new file at once, the switch fails
    with "database is locked" while another holds it. Retry until the busy timeout instead.
    """
    import sqlite3  # SQLite's own modules load only for an SQLite database

    deadline = time.monotonic() + _SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# --- bulk writes: one multi-row statement per chunk, never one statement per row ------------

Row = Mapping[str, Any]

# Bound parameters one statement may carry. SQLite's default limit is 32766 (since 3.32);
# PostgreSQL's wire protocol allows 65535. MySQL has no parameter limit (PyMySQL inlines values)
# but a packet limit (max_allowed_packet, 16 MiB by default on MariaDB), hence the byte budget.
_MAX_PARAMETERS = {"sqlite": 32766, "postgresql": 65535, "mysql": 65535}
_MAX_ROWS_PER_STATEMENT = 2000
_MYSQL_MAX_STATEMENT_BYTES = 4 * 1024 * 1024
# PostgreSQL takes one array per column (see _unnest_sql), so only memory bounds a statement.
_PG_ROWS_PER_STATEMENT = 10000
# At or above this many rows, merge_rows() on PostgreSQL goes through COPY and a temp table.
COPY_THRESHOLD = 5000


def upsert_rows(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Row],
    key_columns: Sequence[str],
    update_columns: Sequence[str] | None = None,
    *,
    accumulate_columns: Sequence[str] = (),
) -> None:
    """Insert ``rows``, or update ``update_columns`` of the rows whose key already exists.

    ``update_columns`` defaults to every non-key column present in the rows; an empty list
    leaves existing rows untouched. A column in ``accumulate_columns`` (which must also be
    updated) is added to rather than replaced: ``attempts = attempts + new.attempts``. Every
    row must carry the same columns. Within one call a key that appears twice is written once,
    with its last row. On MySQL/MariaDB the conflict is detected on *any* unique key of
    ``table`` (that is how ``ON DUPLICATE KEY`` works), so ``key_columns`` should be the
    table's only unique key there.
    """
    if not rows:
        return
    columns = _columns(rows)
    plain = _update_columns(columns, key_columns, update_columns)
    if not set(accumulate_columns) <= set(plain):
        raise ValueError("every accumulated column must also be an updated column")
    updates = tuple(f"+{name}" if name in accumulate_columns else name for name in plain)
    unique = _last_per_key(rows, key_columns)
    _execute_chunks(conn, table, unique, columns, tuple(key_columns), updates, "upsert")


def insert_ignore_rows(
    conn: Connection, table: sa.Table, rows: Sequence[Row], key_columns: Sequence[str]
) -> int:
    """Insert the rows whose key does not exist yet; return how many were inserted.

    PostgreSQL and SQLite use ``ON CONFLICT (key) DO NOTHING``; MySQL/MariaDB use
    ``INSERT IGNORE``, which also turns other errors (a too-long string, a NULL in a NOT NULL
    column) into warnings, so callers must pass valid rows.
    """
    if not rows:
        return 0
    columns = _columns(rows)
    return _execute_chunks(conn, table, rows, columns, tuple(key_columns), (), "ignore")


def insert_new_rows(
    conn: Connection, table: sa.Table, rows: Sequence[Row], key_columns: Sequence[str]
) -> set[tuple[Any, ...]]:
    """Insert the ``rows`` whose key is not stored yet; return the keys (tuples of
    ``key_columns`` values) that were inserted. Race-safe: a key is stored once.

    PostgreSQL: one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING RETURNING``
    (:func:`insert_new_rows_statement`); SQLite: ``ON CONFLICT DO NOTHING RETURNING``;
    MySQL/MariaDB: ``INSERT IGNORE`` after reading which keys exist (a concurrent twin may then
    be reported new twice, but is stored once). Runs in ``conn``'s transaction (or its
    autocommit).
    """
    if not rows:
        return set()
    keys = list(key_columns)
    if conn.dialect.name == "postgresql":
        sql, params = insert_new_rows_statement(conn.dialect, table, rows, keys)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, params)
            return {tuple(row) for row in cursor.fetchall()}
        finally:
            cursor.close()
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = (
            sqlite_insert(table)
            .on_conflict_do_nothing(index_elements=keys)
            .returning(*(table.c[name] for name in keys))
        )
        return {tuple(row) for row in conn.execute(stmt, list(rows)).all()}
    given = {tuple(row[name] for name in keys) for row in rows}
    last = table.c[keys[-1]]  # the most selective key column comes last
    query = sa.select(*(table.c[name] for name in keys)).where(
        last.in_(sorted({key[-1] for key in given}))
    )
    existing = {tuple(row) for row in conn.execute(query)}
    conn.execute(table.insert().prefix_with("IGNORE"), list(rows))
    return given - existing


def insert_new_rows_statement(
    dialect: Dialect, table: sa.Table, rows: Sequence[Row], key_columns: Sequence[str]
) -> tuple[str, tuple[list[Any], ...]]:
    """PostgreSQL: the SQL and parameters of :func:`insert_new_rows`, for a caller that runs it
    on a driver cursor of its own (an asyncio one). One array per column, as binary parameters
    (``%b``: text needs no escaping), so no per-row SQL is built, parsed or planned."""
    columns = _columns(rows)
    processors = [_bind_processor(table.c[name], dialect) for name in columns]
    arrays = tuple(
        [_processed(row[name], process) for row in rows]
        for name, process in zip(columns, processors, strict=True)
    )
    return _new_rows_sql(dialect, table, tuple(columns), tuple(key_columns)), arrays


@functools.lru_cache(maxsize=64)
def _new_rows_sql(
    dialect: Dialect, table: sa.Table, columns: tuple[str, ...], key_columns: tuple[str, ...]
) -> str:
    quote = dialect.identifier_preparer.quote
    arrays = ", ".join(f"%b::{table.c[name].type.compile(dialect=dialect)}[]" for name in columns)
    keys = ", ".join(quote(name) for name in key_columns)
    return (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
        f"({', '.join(quote(name) for name in columns)}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({keys}) DO NOTHING RETURNING {keys}"
    )


def copy_rows(
    conn: Connection, table: sa.Table, rows: Iterable[Row], columns: Sequence[str]
) -> int:
    """PostgreSQL only: stream ``rows`` into ``table`` with ``COPY ... FROM STDIN``.

    Values go through each column's SQLAlchemy bind processing first, so ``UTCDateTime`` and JSON
    columns behave exactly as they do in ordinary inserts. Runs inside ``conn``'s transaction.
    Returns the number of rows copied.
    """
    processors = [_bind_processor(table.c[name], conn.dialect) for name in columns]
    pairs = list(zip(columns, processors, strict=True))
    preparer = conn.dialect.identifier_preparer
    return copy_tuples(
        conn,
        preparer.format_table(table),
        [preparer.quote(name) for name in columns],
        ([_processed(row[name], process) for name, process in pairs] for row in rows),
    )


def copy_tuples(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    binary_types: Sequence[str] | None = None,
    as_text: Collection[str] = (),
) -> int:
    """PostgreSQL only: ``COPY table (columns) FROM STDIN`` of ``rows`` (sequences in
    ``columns`` order, values as psycopg adapts them), in ``conn``'s transaction; the number
    of rows. ``table`` and ``columns`` are SQL as written (quoted where needed).

    With ``binary_types`` (one PostgreSQL type name per column) the copy is binary: psycopg's C
    row writer, several times cheaper than text for us and for the server; ``json`` values go
    as Python values, serialised by orjson (:func:`_json_bytes`). The columns named in
    ``as_text`` (timestamps, JSON documents) are sent as text, each distinct timestamp
    formatted once (:class:`_TextValues`).
    """
    text = _TextValues(columns, as_text)
    if text.positions:
        rows = map(text, rows)
    if conn.dialect.name != "postgresql":
        raise ValueError(f"COPY is a PostgreSQL feature, not available on {conn.dialect.name}")
    driver_connection = conn.connection.driver_connection
    if driver_connection is None:  # pragma: no cover - a live connection always has one
        raise RuntimeError("the connection has no driver connection")
    binary = " (FORMAT BINARY)" if binary_types is not None else ""
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN{binary}"
    count = 0
    with driver_connection.cursor() as cursor:
        if binary_types is not None and "json" in binary_types:
            # Before set_types picks the dumpers (by type, whatever the Python value).
            cursor.adapters.register_dumper(Json, _JsonCopyDumper)
        with cursor.copy(sql) as copy:
            if binary_types is not None:
                copy.set_types(list(binary_types))
            write = copy.write_row
            for row in rows:
                write(row)
                count += 1
    return count


class _JsonCopyDumper(JsonBinaryDumper):
    """JSON documents for a binary COPY: orjson, several times cheaper than the json module
    psycopg calls by default (an initial push writes a document a contact, and a 1,000-entry
    intents list a provider call); the json module for what orjson refuses (a lone surrogate,
    a non-string key)."""

    def dump(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj)
        except TypeError:  # orjson.JSONEncodeError is one
            return json.dumps(obj).encode()


class _TextValues:
    """Turns a row's timestamps and JSON values into the text COPY reads.

    psycopg formats a datetime several times slower than a string, and the rows of one write
    share a handful of timestamps: each distinct one is formatted once.
    """

    def __init__(self, columns: Sequence[str], as_text: Collection[str]) -> None:
        self.positions = [i for i, name in enumerate(columns) if name in as_text]
        self.times: dict[datetime, str] = {}

    def __call__(self, row: Sequence[Any]) -> tuple[Any, ...]:
        values = list(row)
        for index in self.positions:
            value = values[index]
            if isinstance(value, datetime):
                text = self.times.get(value)
                if text is None:
                    text = self.times[value] = value.isoformat()
                values[index] = text
            elif value is not None:
                values[index] = orjson.dumps(value).decode()
        return tuple(values)


def merge_tuples(
    conn: Connection,
    table: sa.Table,
    key_columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    unless_same: Sequence[str] = (),
    as_text: Collection[str] = (),
) -> None:
    """PostgreSQL only: insert or update whole rows (tuples in ``table``'s column order, one per
    key) by COPY into a staging table and one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``.

    The staging table is temporary, per connection, emptied at each commit: created once and
    reused by every later merge on that connection. With ``unless_same``, a row whose columns
    of those names all equal the stored ones is left as it is (no new row version, no index or
    WAL work). ``as_text`` as for :func:`copy_tuples`.
    """
    if not rows:
        return
    columns = tuple(table.c.keys())
    stage = f"cb_stage_{table.name}"
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (LIKE {table.name}) ON COMMIT DELETE ROWS"
    )
    copy_tuples(conn, stage, columns, rows, as_text=as_text)
    updates = ", ".join(f"{name} = excluded.{name}" for name in columns if name not in key_columns)
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {', '.join(columns)} "
        f"FROM {stage} ON CONFLICT ({', '.join(key_columns)}) DO UPDATE SET {updates}"
    )
    if unless_same:
        stored = ", ".join(f"{table.name}.{name}" for name in unless_same)
        given = ", ".join(f"excluded.{name}" for name in unless_same)
        sql += f" WHERE ({stored}) IS DISTINCT FROM ({given})"
    conn.exec_driver_sql(sql)


def merge_rows(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Row],
    key_columns: Sequence[str],
    update_columns: Sequence[str] | None = None,
) -> None:
    """:func:`upsert_rows` for big landings: on PostgreSQL, COPY into a temp table then merge.

    Below :data:`COPY_THRESHOLD` rows, or on another engine, this is :func:`upsert_rows`.
    """
    if conn.dialect.name != "postgresql" or len(rows) < COPY_THRESHOLD:
        upsert_rows(conn, table, rows, key_columns, update_columns)
        return
    columns = _columns(rows)
    updates = _update_columns(columns, key_columns, update_columns)
    unique = _last_per_key(rows, key_columns)
    preparer = conn.dialect.identifier_preparer
    staging = sa.Table(
        f"cb_staging_{table.name}",
        sa.MetaData(),
        *(sa.Column(name, table.c[name].type) for name in columns),
    )
    column_list = ", ".join(preparer.quote(name) for name in columns)
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {preparer.quote(staging.name)}"))
    conn.execute(
        sa.text(
            f"CREATE TEMP TABLE {preparer.quote(staging.name)} ON COMMIT DROP AS "
            f"SELECT {column_list} FROM {preparer.format_table(table)} WITH NO DATA"
        )
    )
    copy_rows(conn, staging, unique, columns)
    select = sa.select(*(staging.c[name] for name in columns))
    statement = pg_dialect.insert(table).from_select(list(columns), select)
    if updates:
        statement = statement.on_conflict_do_update(
            index_elements=list(key_columns),
            set_={name: statement.excluded[name] for name in updates},
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(key_columns))
    conn.execute(statement)
    conn.execute(sa.text(f"DROP TABLE {preparer.quote(staging.name)}"))


def _columns(rows: Sequence[Row]) -> list[str]:
    columns = list(rows[0])
    expected = set(columns)
    for row in rows:
        if len(row) != len(columns) or set(row) != expected:
            raise ValueError("every row of one bulk write must carry the same columns")
    return columns


def _update_columns(
    columns: Sequence[str], key_columns: Sequence[str], update_columns: Sequence[str] | None
) -> list[str]:
    if update_columns is None:
        return [name for name in columns if name not in key_columns]
    missing = [name for name in update_columns if name not in columns]
    if missing:
        raise ValueError(f"update columns not present in the rows: {', '.join(missing)}")
    return list(update_columns)


def _last_per_key(rows: Sequence[Row], key_columns: Sequence[str]) -> list[Row]:
    """The rows with duplicate keys collapsed to the last one, in first-seen order."""
    by_key: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        by_key[tuple(row[name] for name in key_columns)] = row
    return list(by_key.values()) if len(by_key) != len(rows) else list(rows)


def _chunks(dialect: Dialect, rows: Sequence[Row], width: int) -> Iterator[Sequence[Row]]:
    """Slices of ``rows`` that fit one statement on ``dialect``."""
    per_statement = max(1, min(_MAX_ROWS_PER_STATEMENT, _MAX_PARAMETERS[dialect.name] // width))
    if dialect.name != "mysql":
        for start in range(0, len(rows), per_statement):
            yield rows[start : start + per_statement]
        return
    start, size = 0, 0
    for index, row in enumerate(rows):
        row_bytes = 8 + sum(8 + len(str(value)) for value in row.values())
        if index > start and (
            index - start >= per_statement or size + row_bytes > _MYSQL_MAX_STATEMENT_BYTES
        ):
            yield rows[start:index]
            start, size = index, 0
        size += row_bytes
    if start < len(rows):
        yield rows[start:]


def _execute_chunks(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Row],
    columns: Sequence[str],
    key_columns: tuple[str, ...],
    updates: tuple[str, ...],
    mode: str,
) -> int:
    """Run one multi-row statement per chunk; return the driver's total affected-row count.

    The SQL is written here rather than compiled by SQLAlchemy for every chunk: compiling a
    statement with tens of thousands of bound parameters costs more than executing it. Values
    still pass through each column's bind processing, exactly as in a Core insert.
    """
    dialect = conn.dialect
    processors = [_bind_processor(table.c[name], dialect) for name in columns]
    affected = 0
    if dialect.name == "postgresql":
        # One array per column through unnest(): a statement of a handful of parameters,
        # which psycopg parses once and PostgreSQL plans once, whatever the row count.
        sql = _unnest_sql(dialect, table, tuple(columns), key_columns, updates, mode)
        for start in range(0, len(rows), _PG_ROWS_PER_STATEMENT):
            chunk = rows[start : start + _PG_ROWS_PER_STATEMENT]
            arrays = [
                [_processed(row[name], process) for row in chunk]
                for name, process in zip(columns, processors, strict=True)
            ]
            affected += max(conn.exec_driver_sql(sql, tuple(arrays)).rowcount, 0)
        return affected
    for chunk in _chunks(dialect, rows, len(columns)):
        sql = _bulk_sql(dialect, table, tuple(columns), len(chunk), key_columns, updates, mode)
        params = [
            _processed(row[name], process)
            for row in chunk
            for name, process in zip(columns, processors, strict=True)
        ]
        affected += max(conn.exec_driver_sql(sql, tuple(params)).rowcount, 0)
    return affected


def _processed(value: Any, process: Callable[[Any], Any] | None) -> Any:
    return value if process is None or value is None else process(value)


@functools.lru_cache(maxsize=256)
def _unnest_sql(
    dialect: Dialect,
    table: sa.Table,
    columns: tuple[str, ...],
    key_columns: tuple[str, ...],
    updates: tuple[str, ...],
    mode: str,
) -> str:
    quote = dialect.identifier_preparer.quote
    column_list = ", ".join(quote(name) for name in columns)
    arrays = ", ".join(f"%s::{table.c[name].type.compile(dialect=dialect)}[]" for name in columns)
    keys = ", ".join(quote(name) for name in key_columns)
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({column_list}) "
        f"SELECT * FROM unnest({arrays}) ON CONFLICT ({keys}) "
    )
    if mode == "ignore" or not updates:
        return sql + "DO NOTHING"
    return sql + f"DO UPDATE SET {_assignments(dialect, table, updates)}"


def _assignments(dialect: Dialect, table: sa.Table, updates: Sequence[str]) -> str:
    """``col = <new value>`` for each update; a leading ``+`` means add to the current value."""
    quote = dialect.identifier_preparer.quote
    parts = []
    for update in updates:
        name = update.removeprefix("+")
        column = quote(name)
        new = f"VALUES({column})" if dialect.name == "mysql" else f"excluded.{column}"
        if update.startswith("+"):
            current = f"{dialect.identifier_preparer.format_table(table)}.{column}"
            new = f"{current} + {new}"
        parts.append(f"{column} = {new}")
    return ", ".join(parts)


@functools.lru_cache(maxsize=256)
def _bulk_sql(
    dialect: Dialect,
    table: sa.Table,
    columns: tuple[str, ...],
    row_count: int,
    key_columns: tuple[str, ...],
    updates: tuple[str, ...],
    mode: str,
) -> str:
    """``INSERT ... VALUES (...), (...)`` plus the dialect's conflict clause, for ``mode``.

    ``mode`` is ``"upsert"`` (update ``updates``, or leave the row if there are none) or
    ``"ignore"`` (insert only the new keys).
    """
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    group = "(" + ", ".join([mark] * len(columns)) + ")"
    column_list = ", ".join(quote(name) for name in columns)
    verb = "INSERT IGNORE INTO" if dialect.name == "mysql" and mode == "ignore" else "INSERT INTO"
    head = f"{verb} {dialect.identifier_preparer.format_table(table)} ({column_list}) VALUES "
    values = ", ".join([group] * row_count)
    if dialect.name == "mysql":
        if mode == "ignore":
            return head + values
        # With no columns to update, a no-op update: unlike IGNORE it hides no other error.
        assignments = _assignments(dialect, table, updates or key_columns[:1])
        return f"{head}{values} ON DUPLICATE KEY UPDATE {assignments}"
    if dialect.name in ("postgresql", "sqlite"):
        keys = ", ".join(quote(name) for name in key_columns)
        if mode == "ignore" or not updates:
            return f"{head}{values} ON CONFLICT ({keys}) DO NOTHING"
        assignments = _assignments(dialect, table, updates)
        return f"{head}{values} ON CONFLICT ({keys}) DO UPDATE SET {assignments}"
    raise ValueError(f"no bulk upsert for the {dialect.name} dialect")


def _bind_processor(column: sa.Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    return column.type._cached_bind_processor(dialect)
