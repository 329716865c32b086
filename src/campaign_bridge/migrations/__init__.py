"""Schema migrations for the bridge's own tables, run from code (no ``alembic.ini`` needed).

The Alembic environment (``env.py``) and the revisions (``versions/``) ship inside the package, so
an installed wheel can migrate its state store::

    from campaign_bridge import migrations
    migrations.upgrade("sqlite:////var/lib/campaign-bridge/state.db")
    assert migrations.is_current(url) and migrations.drift(url) == []

Every function takes the state store URL, opens its own short-lived engine and raises
:class:`~campaign_bridge.errors.StateStoreError` (with an actionable message and no password) when
the database cannot be reached or refuses the change. Alembic's version table is
``cb_alembic_version`` so it cannot collide with an application's own ``alembic_version``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import re
from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

if TYPE_CHECKING:  # Alembic loads only to migrate or compare: every run checks the revision
    from alembic.config import Config
    from alembic.util import CommandError

from campaign_bridge.db import (
    create_engine,
    describe_database_error,
    redact_url,
    sqlite_file_path,
)
from campaign_bridge.errors import StateStoreError

__all__ = [
    "MODEL_MODULES",
    "VERSION_TABLE",
    "current",
    "current_revision",
    "downgrade",
    "drift",
    "head",
    "include_name",
    "is_current",
    "known_revisions",
    "target_metadata",
    "upgrade",
]

VERSION_TABLE = "cb_alembic_version"
TABLE_PREFIX = "cb_"

# Modules that declare tables on ``campaign_bridge.state.metadata``. A module that keeps its own
# tables next to its code (rather than in state.py) adds its name here, so that migrations and the
# no-drift check both see them. See docs/state-store.md.
MODEL_MODULES: tuple[str, ...] = ("campaign_bridge.state", "campaign_bridge.landing")

_MIGRATION_LOCK = "campaign_bridge_migrate"
_PG_LOCK_KEY = 0x63625F6D69677261  # "cb_migra": any fixed 64-bit number


def target_metadata() -> sa.MetaData:
    """The model every revision must add up to: ``state.metadata`` with all contributed tables."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
    from campaign_bridge.state import metadata

    return metadata


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Only our ``cb_`` tables in the default schema: the state store may share a database."""
    if type_ == "schema":
        return name is None
    if type_ == "table":
        return name is not None and name.startswith(TABLE_PREFIX)
    return True


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the state store at ``url`` up to ``revision`` (creating an SQLite file if needed)."""
    from alembic import command

    _ensure_sqlite_directory(url)
    with _connection(url, "upgrade") as conn, _migration_lock(conn):
        command.upgrade(_config(conn), revision)


def downgrade(url: str, revision: str) -> None:
    """Take the state store back to ``revision``; ``"base"`` drops every bridge table."""
    from alembic import command

    with _connection(url, "downgrade") as conn, _migration_lock(conn):
        command.downgrade(_config(conn), revision)


def current(url: str) -> str | None:
    """The revision the state store is at, or ``None`` if it was never migrated."""
    if _missing_sqlite_file(url):
        return None
    with _connection(url, "read the revision of") as conn:
        return current_revision(conn)


def current_revision(conn: Connection) -> str | None:
    """The revision recorded in the version table on ``conn`` (``None``: never migrated).

    Read with one query rather than through Alembic's migration context, so that checking the
    revision (every run does) does not load Alembic.
    """
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    versions = [row[0] for row in conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))]
    if len(versions) > 1:  # pragma: no cover - a linear chain has one head
        raise StateStoreError(f"the state store records several revisions: {sorted(versions)}")
    return versions[0] if versions else None


_REVISION = re.compile(r"""^revision(?:: str)? = ["']([^"']+)["']""", re.M)
_DOWN = re.compile(r"""^down_revision(?:: [^=]+)? = (?:None|["']([^"']+)["'])""", re.M)


@functools.cache
def _chain() -> dict[str, str | None]:
    """``revision -> down_revision`` of every revision file shipped, read from their text.

    Alembic's ``ScriptDirectory`` gives the same answer (a test compares them) but imports and
    executes every revision module, which costs a run's start-up a noticeable part of a second.
    """
    chain: dict[str, str | None] = {}
    for item in (resources.files(__name__) / "versions").iterdir():
        if not item.name.endswith(".py") or item.name.startswith("_"):
            continue
        text = item.read_text(encoding="utf-8")
        revision, down = _REVISION.search(text), _DOWN.search(text)
        if revision is None or down is None:
            raise StateStoreError(
                f"migration {item.name} names no revision; the package is damaged"
            )
        chain[revision.group(1)] = down.group(1)
    return chain


@functools.cache
def head() -> str:
    """The newest revision this version of campaign-bridge ships."""
    chain = _chain()
    heads = set(chain) - {down for down in chain.values() if down is not None}
    if len(heads) != 1:  # pragma: no cover - the chain is linear (tests check it)
        raise StateStoreError(f"campaign-bridge ships {len(heads)} migration heads; expected one")
    return heads.pop()


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision this version of campaign-bridge ships."""
    return frozenset(_chain())


def is_current(url: str) -> bool:
    """True when the state store is at :func:`head`."""
    return current(url) == head()


def drift(url: str) -> list[str]:
    """Differences between the live ``cb_`` tables and the model, one line each; ``[]`` is none."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    metadata = target_metadata()
    with _connection(url, "inspect") as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": VERSION_TABLE,
                "compare_type": True,
                "include_name": include_name,
                "target_metadata": metadata,
            },
        )
        return [_describe(diff) for diff in compare_metadata(context, metadata)]


# --- internals ------------------------------------------------------------------------------


def _config(connection: Connection | None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files(__name__)))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextlib.contextmanager
def _connection(url: str, action: str) -> Iterator[Connection]:
    """One transaction on a throwaway engine; foreign errors become StateStoreError."""
    try:
        engine = create_engine(url, poolclass=sa.pool.NullPool)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise StateStoreError(
            "the state store URL is not a database URL campaign-bridge can use; expected e.g. "
            "sqlite:////var/lib/campaign-bridge/state.db or postgresql://user@host/database"
        ) from exc
    try:
        with engine.begin() as conn:
            yield conn
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        raise StateStoreError(describe_database_error(url, action, exc)) from exc
    except Exception as exc:
        from alembic.util import CommandError

        if isinstance(exc, CommandError):
            raise StateStoreError(_command_message(url, action, exc)) from exc
        raise
    finally:
        engine.dispose()


@contextlib.contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    """Serialise concurrent migrators (two services starting at once) on server databases."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        yield
    elif dialect == "mysql":
        got = conn.execute(sa.text("SELECT GET_LOCK(:name, 300)"), {"name": _MIGRATION_LOCK})
        if got.scalar() != 1:
            raise StateStoreError(
                "another process has been migrating the state store for 5 minutes; "
                "wait for it to finish, then run `campaign-bridge migrate upgrade` again"
            )
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": _MIGRATION_LOCK})
    else:  # SQLite: take the write lock up front (waits up to busy_timeout for another writer)
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield


def _ensure_sqlite_directory(url: str) -> None:
    path = sqlite_file_path(url)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateStoreError(
            f"cannot create the directory {path.parent} for the SQLite state store "
            f"({exc.strerror}); create it or choose another data directory"
        ) from exc


def _missing_sqlite_file(url: str) -> bool:
    path = sqlite_file_path(url)
    return path is not None and not path.exists()


def _command_message(url: str, action: str, exc: CommandError) -> str:
    text = str(exc)
    if "Can't locate revision" in text or "No such revision" in text:
        return (
            f"cannot {action} the state store at {redact_url(url)}: {text}. The database may "
            "have been migrated by a newer campaign-bridge; upgrade campaign-bridge, or name a "
            "revision this version ships (see `campaign-bridge migrate current`)"
        )
    return f"cannot {action} the state store at {redact_url(url)}: {text}"


def _describe(diff: Any) -> str:
    """One readable line for an Alembic autogenerate difference."""
    if isinstance(diff, list):
        return "; ".join(_describe(item) for item in diff)
    kind = diff[0]
    if kind in ("add_table", "remove_table"):
        return f"{kind} {diff[1].name}"
    if kind in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        item = diff[1]
        table = getattr(item, "table", None)
        columns = ", ".join(column.name for column in getattr(item, "columns", []))
        return f"{kind} {item.name} on {getattr(table, 'name', '?')} ({columns})"
    if kind in ("add_column", "remove_column"):
        return f"{kind} {diff[2]}.{diff[3].name}"
    if kind.startswith("modify_"):
        _, _schema, table, column, _info, old, new = diff
        return f"{kind} {table}.{column}: database has {old!r}, model has {new!r}"
    return repr(diff)
