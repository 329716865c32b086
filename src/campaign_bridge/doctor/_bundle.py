"""`doctor --bundle FILE`: a redacted support bundle a customer can send to whoever supports them.

One JSON file: versions, platform, Python, installed drivers, each database's server version and
the settings that matter (time zone, sql_mode, character sets, encodings, TLS), the TLS and proxy
environment, the configuration with secrets masked and where each value came from, the doctor
and rehearsal results, and recent runs and errors.

Redaction happens twice: values are collected masked (``config show``'s masking, URL passwords
hidden, proxy credentials removed, no payloads, no source rows), and then every string in the
bundle goes through the log redactor with every secret of the configuration registered and email
addresses replaced by their hash. The file is written with mode 0600.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import ssl
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from campaign_bridge import __version__
from campaign_bridge.config import LoadedSettings, secret_values
from campaign_bridge.db import create_engine, redact_url
from campaign_bridge.doctor._rehearse import Rehearsal
from campaign_bridge.doctor._result import CheckResult
from campaign_bridge.logs import Redactor

__all__ = ["bundle", "write_bundle"]

PACKAGES = (
    "campaign-bridge", "sqlalchemy", "alembic", "psycopg", "psycopg-binary", "pymysql",
    "httpx", "httpcore", "certifi", "pydantic", "starlette", "uvicorn",
    "uvloop", "httptools", "orjson", "typer", "prometheus-client",
)  # fmt: skip
NETWORK_ENV = (
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
    "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "TZ",
)  # fmt: skip
RECENT_RUNS = 20

_POSTGRES_SETTINGS = (
    "server_version", "TimeZone", "server_encoding", "client_encoding", "DateStyle",
    "lc_collate", "standard_conforming_strings", "default_transaction_isolation",
    "statement_timeout", "idle_in_transaction_session_timeout", "autovacuum", "ssl",
)  # fmt: skip
_MYSQL_SETTINGS = (
    "version", "version_comment", "time_zone", "system_time_zone", "sql_mode",
    "character_set_server", "collation_server", "character_set_connection",
    "character_set_client", "max_allowed_packet", "wait_timeout", "innodb_lock_wait_timeout",
    "transaction_isolation", "have_ssl",
)  # fmt: skip


def write_bundle(
    path: Path,
    loaded: LoadedSettings | None,
    results: Sequence[CheckResult],
    rehearsal: Rehearsal | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Collect, redact and write the bundle to ``path`` (mode 0600); return what was written."""
    data = bundle(loaded, results, rehearsal, environ=environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.write("\n")
    return data


def bundle(
    loaded: LoadedSettings | None,
    results: Sequence[CheckResult],
    rehearsal: Rehearsal | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {
        "bundle": "campaign-bridge support bundle",
        "generated_at": datetime.now(UTC).isoformat(),
        "campaign_bridge": __version__,
        "platform": {
            "system": platform.platform(),
            "machine": platform.machine(),
            "python": sys.version.split()[0],
            "implementation": platform.python_implementation(),
            "openssl": ssl.OPENSSL_VERSION,
        },
        "packages": _packages(),
        "environment": _environment(env),
        "doctor": [result.as_dict() for result in results],
        "rehearsal": rehearsal.as_dict() if rehearsal is not None else None,
    }
    secrets: list[str] = []
    if loaded is not None:
        settings = loaded.settings
        secrets = secret_values(settings)
        from campaign_bridge._config_view import rows

        data["configuration"] = {
            "file": str(loaded.config_file) if loaded.config_file else None,
            "settings": [row.as_dict() for row in rows(loaded)],
        }
        databases = {"state store": settings.effective_state_url()}
        for name, sync in settings.syncs.items():
            databases[f"source [{name}]"] = sync.source.url
            if sync.writeback is not None and sync.writeback.url:
                databases[f"write-back [{name}]"] = sync.writeback.url
        data["databases"] = {what: _database(url) for what, url in databases.items()}
        data["recent"] = _recent(settings.effective_state_url())
    redactor = Redactor(secrets, log_emails=False)
    redacted: dict[str, Any] = redactor.redact_value(data)
    return redacted


def _packages() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _environment(env: Mapping[str, str]) -> dict[str, Any]:
    network: dict[str, Any] = {}
    for name in NETWORK_ENV:
        value = env.get(name)
        if value is None:
            continue
        if "PROXY" in name.upper() and "://" in value:
            value = redact_url(value)
        if name.endswith(("_FILE", "_DIR", "_BUNDLE", "ROOTCERT", "SSLCERT")):
            network[name] = {"path": value, "exists": Path(value).exists()}
        else:
            network[name] = value
    ours = sorted(name for name in env if name.startswith("CAMPAIGN_BRIDGE_"))
    return {"network": network, "campaign_bridge_variables_set": ours}


def _database(url: str) -> dict[str, Any]:
    """Server version and the settings that explain most cross-environment surprises."""
    parsed = sa.make_url(url)
    info: dict[str, Any] = {"url": redact_url(url), "dialect": parsed.get_backend_name()}
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            info["driver"] = engine.dialect.driver
            info["settings"] = _server_settings(conn)
    except sa.exc.SQLAlchemyError as exc:
        info["error"] = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    finally:
        engine.dispose()
    return info


def _server_settings(conn: sa.Connection) -> dict[str, Any]:
    from campaign_bridge.doctor._security import connection_encrypted

    dialect = conn.dialect.name
    values: dict[str, Any] = {}
    if dialect == "postgresql":
        for name in _POSTGRES_SETTINGS:
            try:
                values[name] = conn.execute(sa.text(f"SHOW {name}")).scalar()
            except sa.exc.SQLAlchemyError:
                conn.rollback()
    elif dialect == "mysql":
        for name in _MYSQL_SETTINGS:
            row = conn.execute(sa.text("SHOW VARIABLES LIKE :n"), {"n": name}).first()
            values[name] = row[1] if row else None
    else:
        values["sqlite_version"] = conn.execute(sa.text("SELECT sqlite_version()")).scalar()
        values["journal_mode"] = conn.execute(sa.text("PRAGMA journal_mode")).scalar()
    values["connection_encrypted"] = connection_encrypted(conn)
    return values


def _recent(state_url: str) -> dict[str, Any]:
    """The last runs, rejections counted by reason, and webhook errors (never payloads)."""
    from campaign_bridge.state import rejected_records, sync_runs, webhook_events

    engine = create_engine(state_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            runs = conn.execute(
                sa.select(
                    sync_runs.c.sync_name,
                    sync_runs.c.direction,
                    sync_runs.c.status,
                    sync_runs.c.started_at,
                    sync_runs.c.finished_at,
                    sync_runs.c.counts,
                    sync_runs.c.error_summary,
                )
                .order_by(sync_runs.c.started_at.desc())
                .limit(RECENT_RUNS)
            ).all()
            rejected = conn.execute(
                sa.select(
                    rejected_records.c.sync_name,
                    rejected_records.c.reason_code,
                    sa.func.count(),
                )
                .where(rejected_records.c.resolved_at.is_(None))
                .group_by(rejected_records.c.sync_name, rejected_records.c.reason_code)
            ).all()
            webhook_errors = conn.execute(
                sa.select(webhook_events.c.event_type, webhook_events.c.error, sa.func.count())
                .where(webhook_events.c.error.is_not(None))
                .group_by(webhook_events.c.event_type, webhook_events.c.error)
            ).all()
    except sa.exc.SQLAlchemyError as exc:
        return {"error": str(getattr(exc, "orig", exc)).strip().splitlines()[0]}
    finally:
        engine.dispose()
    return {
        "runs": [dict(row._mapping) for row in runs],
        "open_rejections": [
            {"sync": sync, "reason": reason, "count": count} for sync, reason, count in rejected
        ],
        "webhook_errors": [
            {"event_type": kind, "error": error, "count": count}
            for kind, error, count in webhook_errors
        ],
    }
