"""The state store, each sync's source and write-back table."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from campaign_bridge.config import SyncConfig
from campaign_bridge.db import create_engine, redact_url, sqlite_file_path
from campaign_bridge.doctor._result import CheckResult, fail, next_step, ok, warn
from campaign_bridge.doctor._security import connection_encrypted, database_tls_result
from campaign_bridge.errors import BridgeError

SAMPLE_ROWS = 200


def _database_failure(what: str, url: str, exc: Exception) -> tuple[str, str]:
    """A message and a fix for a failed connection, phrased from the driver's error."""
    text = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else repr(exc)
    lowered = text.lower()
    where = redact_url(url)
    if "password" in lowered or "access denied" in lowered or "authentication" in lowered:
        return (
            f"{what}: the database refused the credentials ({text})",
            f"check the user and password in the URL ({where}); a secret can be given as *_FILE",
        )
    if "unknown database" in lowered or ("database" in lowered and "does not exist" in lowered):
        return (
            f"{what}: the database does not exist ({text})",
            f"create it, or correct the database name in {where}",
        )
    if (
        "connection refused" in lowered
        or "can't connect" in lowered
        or "could not connect" in lowered
    ):
        return (
            f"{what}: nothing accepts connections at {where} ({text})",
            "start the database server, or correct host and port in the URL",
        )
    if "name or service not known" in lowered or "could not translate host" in lowered:
        return (
            f"{what}: the database host name does not resolve ({text})",
            "correct the host in the URL, or fix DNS on this machine",
        )
    return (f"{what}: {text}", f"check that {where} is reachable from this machine")


def check_state_store(url: str) -> list[CheckResult]:
    from campaign_bridge import migrations

    name = "state store"
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            message, fix = _database_failure(name, url, exc)
            return [fail(name, message, fix)]
        results = [ok(name, f"reachable at {redact_url(url)}")]
        with engine.connect() as conn:
            encrypted = connection_encrypted(conn)
        results.append(database_tls_result(name, sa.make_url(url).host, encrypted))
        results.append(_check_ddl_permission(engine))
        results.append(_check_migrations(url, migrations.current, migrations.head))
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                setting = str(conn.execute(sa.text("SHOW autovacuum")).scalar())
            results.append(autovacuum_result(setting))
        return results
    finally:
        engine.dispose()


def autovacuum_result(setting: str) -> CheckResult:
    """PostgreSQL's ``autovacuum`` setting: without it the state store's busiest tables (member
    statuses, contact state, the webhook inbox) keep every dead row version and their planner
    statistics go stale, and lookups slow down run after run."""
    name = "state store autovacuum"
    if setting.strip().lower() == "on":
        return ok(name, "on")
    return warn(
        name,
        f"PostgreSQL's autovacuum is {setting}: the state store's tables will keep dead rows and "
        "stale statistics, and pushes, pulls and the webhook applier slow down over time",
        "set autovacuum = on (and track_counts = on) in postgresql.conf and reload, or run "
        "VACUUM ANALYZE on the cb_* tables after big runs",
    )


def _check_ddl_permission(engine: sa.Engine) -> CheckResult:
    name = "state store DDL"
    table = f"cb_doctor_probe_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)"))
            conn.execute(sa.text(f"DROP TABLE {table}"))
    except sa.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", exc)).splitlines()[0]
        return fail(
            name,
            f"cannot create tables in the state store ({detail})",
            "grant the bridge's database user CREATE/ALTER/DROP on its schema "
            "(migrations need them), or run migrations with a user that has them",
        )
    return ok(name, "can create and drop tables (needed by migrations)")


def _check_migrations(
    url: str, current: Callable[[str], str | None], head: Callable[[], str]
) -> CheckResult:
    name = "migrations"
    try:
        at, latest = current(url), head()
    except BridgeError as exc:
        return fail(name, str(exc), "run `campaign-bridge migrate upgrade`")
    if at == latest:
        return ok(name, f"current ({latest})")
    # Pending migrations are the runbook's next step, not a fault: a fresh install has none
    # applied, and an upgrade runs the new version's doctor before `migrate upgrade`.
    return next_step(
        name,
        f"pending: the state store is at {at or 'no revision (a fresh install)'}; "
        f"this version needs {latest}",
        "run `campaign-bridge migrate upgrade` before starting the new version",
    )


def _source_columns(sync: SyncConfig) -> list[str]:
    source = sync.source
    wanted = [source.key_column, source.email_column]
    wanted += [c for c in (source.updated_at_column, source.consent_column) if c]
    wanted += list(sync.fields.values()) + list(sync.tags.values())
    wanted += list(sync.interests.values()) + list(sync.marketing_permissions.values())
    wanted += [c for c in (sync.tags_column, sync.language_column) if c]
    return list(dict.fromkeys(wanted))


def _source_select(sync: SyncConfig, limit: int) -> sa.Select[Any]:
    source = sync.source
    if source.table:
        schema, _, table = source.table.rpartition(".")
        target: sa.FromClause = sa.table(table, schema=schema or None)
        query = sa.select(sa.text("*")).select_from(target)
    else:
        subquery = sa.text(source.query or "").columns().subquery("cb_source")
        query = sa.select(sa.text("*")).select_from(subquery)
    return query.limit(limit)


def _missing_sqlite_file(url: str) -> Path | None:
    """The path of a SQLite database file that does not exist (connecting would create it)."""
    path = sqlite_file_path(url)
    return None if path is None or path.exists() else path


def _sqlite_missing_result(name: str, path: Path, what: str) -> CheckResult:
    return fail(
        name,
        f"the SQLite database file {path} does not exist (resolved: {path.resolve()})",
        f"correct {what} (a relative path is relative to the working directory), "
        "or create the database",
    )


def check_source(sync_name: str, sync: SyncConfig) -> list[CheckResult]:
    """Whether the source can be read with every mapped column (see :func:`read_source`)."""
    return read_source(sync_name, sync)[0]


def read_source(
    sync_name: str, sync: SyncConfig
) -> tuple[list[CheckResult], list[dict[str, object]]]:
    """The source check and the sample of rows it read (empty when the check failed)."""
    name = f"source [{sync_name}]"
    url = sync.source.url
    missing_file = _missing_sqlite_file(url)
    if missing_file is not None:
        return [_sqlite_missing_result(name, missing_file, "source.url")], []
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        try:
            with engine.connect() as conn:
                result = conn.execute(_source_select(sync, SAMPLE_ROWS))
                columns = list(result.keys())
                rows = [dict(row._mapping) for row in result]
                encrypted = connection_encrypted(conn)
        except sa.exc.OperationalError as exc:
            message, fix = _database_failure(name, url, exc)
            if (
                "no such table" in message
                or "doesn't exist" in message
                or "does not exist" in message
            ):
                fix = _missing_source_fix(sync)
            return [fail(name, message, fix)], []
        except sa.exc.ProgrammingError as exc:
            detail = str(getattr(exc, "orig", exc)).splitlines()[0]
            problem = f"cannot read the source: {detail}"
            return [fail(name, problem, _missing_source_fix(sync))], []
        missing = [column for column in _source_columns(sync) if column not in columns]
        if missing:
            problem = "the source has no column(s) " + ", ".join(missing)
            fix = f"add them to the query/table, or correct the mapping of sync '{sync_name}'"
            return [fail(name, problem, fix)], []
        sampled = f"readable; {len(columns)} columns; sampled {len(rows)} row(s)"
        tls = database_tls_result(name, sa.make_url(url).host, encrypted)
        return [ok(name, sampled), tls], rows
    finally:
        engine.dispose()


def _missing_source_fix(sync: SyncConfig) -> str:
    if sync.source.table:
        return (
            f"create the table or view '{sync.source.table}', correct source.table, and check "
            "that the database user may SELECT from it"
        )
    return "correct source.query and check that the database user may SELECT what it reads"


def check_writeback(sync_name: str, sync: SyncConfig) -> CheckResult:
    assert sync.writeback is not None
    writeback = sync.writeback
    name = f"write-back [{sync_name}]"
    url = writeback.url or sync.source.url
    missing_file = _missing_sqlite_file(url)
    if missing_file is not None:
        return _sqlite_missing_result(name, missing_file, "writeback.url (or source.url)")
    wanted = [writeback.key_column] + [
        c
        for c in (
            writeback.status_column,
            writeback.unsubscribed_at_column,
            writeback.bounced_at_column,
            writeback.consent_column,
        )
        if c
    ]
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        try:
            inspector = sa.inspect(engine)
            schema, _, table = writeback.table.rpartition(".")
            if not inspector.has_table(table, schema=schema or None):
                return fail(
                    name,
                    f"the write-back table '{writeback.table}' does not exist",
                    "create it or correct writeback.table",
                )
            present = {column["name"] for column in inspector.get_columns(table, schema or None)}
            missing = [column for column in wanted if column not in present]
            if missing:
                return fail(
                    name,
                    f"table '{writeback.table}' has no column(s) " + ", ".join(missing),
                    "add the column(s) (e.g. ALTER TABLE ... ADD COLUMN unsubscribed_at TIMESTAMP) "
                    "or correct the writeback settings",
                )
            _probe_update(engine, writeback.table, [c for c in wanted if c != writeback.key_column])
        except sa.exc.SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", exc)).splitlines()[0]
            return fail(
                name,
                f"cannot write to '{writeback.table}': {detail}",
                f"grant the database user UPDATE on {writeback.table} ({', '.join(wanted[1:])})",
            )
        return ok(name, f"table '{writeback.table}' has every column and accepts UPDATE")
    finally:
        engine.dispose()


def _probe_update(engine: sa.Engine, table_name: str, columns: Sequence[str]) -> None:
    """An UPDATE that matches no row, rolled back: proves the privilege, changes nothing."""
    if not columns:
        return
    schema, _, table = table_name.rpartition(".")
    target = sa.table(table, *[sa.column(c) for c in columns], schema=schema or None)
    statement = sa.update(target).values({c: target.c[c] for c in columns}).where(sa.false())
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            conn.execute(statement)
        finally:
            transaction.rollback()
