"""One place that turns a database URL into a SQLAlchemy engine, for every dialect we support.

Users write ordinary URLs (``postgresql://``, ``mysql://``, ``mariadb://``, ``sqlite:///``); this
module picks the drivers we ship (psycopg 3, PyMySQL, sqlite3) and the settings each dialect needs.
Dialect-specific fast paths (PostgreSQL COPY, ``ON CONFLICT``, MySQL ``ON DUPLICATE KEY``) belong
here too, so the rest of the code stays dialect-neutral.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

__all__ = [
    "create_engine",
    "describe_database_error",
    "dialect_of",
    "normalize_url",
    "redact_url",
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
    return (
        f"cannot {action} the database at {where}: {reason}. Check that the server is running "
        "and reachable, that the database exists, and that the user and password in the URL "
        "are right"
    )


def create_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine with the right driver and per-dialect settings for ``url``."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {"future": True}
    if backend == "sqlite":
        options["connect_args"] = {"timeout": 30}
    else:
        options["pool_pre_ping"] = True
    options.update(kwargs)
    engine = sa.create_engine(parsed, **options)
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
