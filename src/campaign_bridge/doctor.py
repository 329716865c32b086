"""`campaign-bridge doctor`: check a target environment before anything runs.

Each check returns one :class:`CheckResult` (ok / warn / fail / skip) with the exact fix. Checks
never change anything the user owns: database permission probes run inside transactions that are
rolled back, and the only file written is a probe in the data directory, removed at once.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import socket
import ssl
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa

from campaign_bridge.config import Settings, SyncConfig
from campaign_bridge.db import create_engine, redact_url, sqlite_file_path
from campaign_bridge.errors import BridgeError, ConfigurationError
from campaign_bridge.providers._network import classify, proxy_for
from campaign_bridge.providers.base import Audience, MergeFieldSpec

__all__ = ["CheckResult", "CheckStatus", "run_checks"]

MIN_PYTHON = (3, 11)
CLOCK_SKEW_WARN_SECONDS = 30
CLOCK_SKEW_FAIL_SECONDS = 300
SAMPLE_ROWS = 200


class CheckStatus(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: CheckStatus
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {key: str(value) for key, value in asdict(self).items()}


def _ok(name: str, message: str) -> CheckResult:
    return CheckResult(name, CheckStatus.OK, message)


def _warn(name: str, message: str, fix: str = "") -> CheckResult:
    return CheckResult(name, CheckStatus.WARN, message, fix)


def _fail(name: str, message: str, fix: str) -> CheckResult:
    return CheckResult(name, CheckStatus.FAIL, message, fix)


def _skip(name: str, message: str) -> CheckResult:
    return CheckResult(name, CheckStatus.SKIP, message)


# --------------------------------------------------------------------------------------------
# Entry point


async def run_checks(
    load: Callable[[], Settings], *, environ: Mapping[str, str] | None = None
) -> list[CheckResult]:
    """Run every check; ``load`` returns the validated settings or raises ConfigurationError."""
    env = os.environ if environ is None else environ
    results = [check_python(), *check_dependencies()]
    try:
        settings = load()
    except ConfigurationError as exc:
        problems = "; ".join(str(problem) for problem in exc.problems)
        results.append(
            _fail("configuration", problems, "fix each setting named above, then run doctor again")
        )
        return results
    results.append(_ok("configuration", f"valid: {len(settings.syncs)} sync(s) configured"))
    results.append(check_data_dir(settings.data_dir))
    results.extend(await asyncio.to_thread(check_state_store, settings.effective_state_url()))
    for name, sync in settings.syncs.items():
        results.extend(await asyncio.to_thread(check_source, name, sync))
        if sync.writeback is not None:
            results.append(await asyncio.to_thread(check_writeback, name, sync))
        results.extend(await check_provider(name, sync, env))
    results.extend(await check_webhook(settings))
    results.append(check_port_free(settings.server.host, settings.server.port))
    return results


# --------------------------------------------------------------------------------------------
# Python and packages


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> CheckResult:
    shown = ".".join(str(part) for part in version)
    if version[:2] >= MIN_PYTHON:
        return _ok("python", f"Python {shown}")
    return _fail(
        "python",
        f"Python {shown} is too old; campaign-bridge needs 3.11 or newer",
        "install Python 3.11+ and recreate the virtual environment with it",
    )


def check_dependencies(distribution: str = "campaign-bridge") -> list[CheckResult]:
    """Every runtime requirement of the installed distribution is installed."""
    try:
        requirements = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return [
            _fail(
                "dependencies",
                f"the {distribution} distribution is not installed",
                "install it: pip install campaign-bridge (or `make demo` in a checkout)",
            )
        ]
    missing: list[str] = []
    for requirement in requirements:
        if "extra ==" in requirement:
            continue
        name = _requirement_name(requirement)
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
    if missing:
        return [
            _fail(
                "dependencies",
                "missing packages: " + ", ".join(missing),
                f"pip install {' '.join(repr(item) for item in missing)}",
            )
        ]
    return [_ok("dependencies", f"{len(requirements)} requirements installed")]


def _requirement_name(requirement: str) -> str:
    name = requirement
    for separator in "[<>=!~; ":
        name = name.split(separator, 1)[0]
    return name.strip()


# --------------------------------------------------------------------------------------------
# Files and ports


def check_data_dir(data_dir: Path) -> CheckResult:
    name = "data directory"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".doctor-{uuid.uuid4().hex}"
        probe.write_text("probe", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        return _fail(
            name,
            f"{data_dir} is not writable ({exc.strerror or exc})",
            f"give the service user write access (chown/chmod {data_dir}) "
            "or point CAMPAIGN_BRIDGE_DATA_DIR at a writable directory",
        )
    return _ok(name, f"{data_dir} is writable")


def check_port_free(host: str, port: int) -> CheckResult:
    name = "serve port"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return _fail(
                name,
                f"{host}:{port} is not free ({exc.strerror or exc})",
                "stop whatever listens there (`ss -ltnp 'sport = :"
                f"{port}'`) or set CAMPAIGN_BRIDGE_SERVER__PORT to a free port",
            )
    return _ok(name, f"{host}:{port} is free")


# --------------------------------------------------------------------------------------------
# Databases


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
            return [_fail(name, message, fix)]
        results = [_ok(name, f"reachable at {redact_url(url)}")]
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
        return _ok(name, "on")
    return _warn(
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
        return _fail(
            name,
            f"cannot create tables in the state store ({detail})",
            "grant the bridge's database user CREATE/ALTER/DROP on its schema "
            "(migrations need them), or run migrations with a user that has them",
        )
    return _ok(name, "can create and drop tables (needed by migrations)")


def _check_migrations(
    url: str, current: Callable[[str], str | None], head: Callable[[], str]
) -> CheckResult:
    name = "migrations"
    try:
        at, latest = current(url), head()
    except BridgeError as exc:
        return _fail(name, str(exc), "run `campaign-bridge migrate upgrade`")
    if at == latest:
        return _ok(name, f"current ({latest})")
    return _fail(
        name,
        f"the state store is at {at or 'no revision'}; this version needs {latest}",
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
    return _fail(
        name,
        f"the SQLite database file {path} does not exist (resolved: {path.resolve()})",
        f"correct {what} (a relative path is relative to the working directory), "
        "or create the database",
    )


def check_source(sync_name: str, sync: SyncConfig) -> list[CheckResult]:
    name = f"source [{sync_name}]"
    url = sync.source.url
    missing_file = _missing_sqlite_file(url)
    if missing_file is not None:
        return [_sqlite_missing_result(name, missing_file, "source.url")]
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        try:
            with engine.connect() as conn:
                result = conn.execute(_source_select(sync, SAMPLE_ROWS))
                columns = list(result.keys())
                rows = [dict(row._mapping) for row in result]
        except sa.exc.OperationalError as exc:
            message, fix = _database_failure(name, url, exc)
            if (
                "no such table" in message
                or "doesn't exist" in message
                or "does not exist" in message
            ):
                fix = _missing_source_fix(sync)
            return [_fail(name, message, fix)]
        except sa.exc.ProgrammingError as exc:
            detail = str(getattr(exc, "orig", exc)).splitlines()[0]
            return [_fail(name, f"cannot read the source: {detail}", _missing_source_fix(sync))]
        missing = [column for column in _source_columns(sync) if column not in columns]
        if missing:
            return [
                _fail(
                    name,
                    "the source has no column(s) " + ", ".join(missing),
                    f"add them to the query/table, or correct the mapping of sync '{sync_name}'",
                )
            ]
        return [_ok(name, f"readable; {len(columns)} columns; sampled {len(rows)} row(s)")]
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
                return _fail(
                    name,
                    f"the write-back table '{writeback.table}' does not exist",
                    "create it or correct writeback.table",
                )
            present = {column["name"] for column in inspector.get_columns(table, schema or None)}
            missing = [column for column in wanted if column not in present]
            if missing:
                return _fail(
                    name,
                    f"table '{writeback.table}' has no column(s) " + ", ".join(missing),
                    "add the column(s) (e.g. ALTER TABLE ... ADD COLUMN unsubscribed_at TIMESTAMP) "
                    "or correct the writeback settings",
                )
            _probe_update(engine, writeback.table, [c for c in wanted if c != writeback.key_column])
        except sa.exc.SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", exc)).splitlines()[0]
            return _fail(
                name,
                f"cannot write to '{writeback.table}': {detail}",
                f"grant the database user UPDATE on {writeback.table} ({', '.join(wanted[1:])})",
            )
        return _ok(name, f"table '{writeback.table}' has every column and accepts UPDATE")
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


# --------------------------------------------------------------------------------------------
# Provider


def mailchimp_base_url(api_key: str, base_url: str | None) -> str:
    if base_url:
        return base_url.rstrip("/")
    dc = api_key.rsplit("-", 1)[-1] if "-" in api_key else ""
    return f"https://{dc}.api.mailchimp.com/3.0"


async def probe_https(
    url: str, env: Mapping[str, str], *, ca_bundle: str | None = None
) -> tuple[CheckResult, datetime | None]:
    """Reach ``url`` and classify DNS, connection, proxy and TLS failures with their fixes."""
    name = "outbound HTTPS"
    host = urlsplit(url).hostname or url
    found = proxy_for(url, env)
    proxied = f" through proxy {redact_url(found[1])}" if found else ""
    try:
        verify = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        async with httpx.AsyncClient(timeout=10.0, trust_env=True, verify=verify) as client:
            response = await client.get(url.rstrip("/") + "/ping")
    except httpx.TransportError as exc:  # the adapters' own classification (providers/_network)
        fault = classify(exc, url, env=env, timeout=10.0)
        message, _, fix = fault.message.partition(". Fix: ")
        return _fail(name, message, fix), None
    server_time = _parse_date_header(response.headers.get("date"))
    return _ok(name, f"{host} reachable{proxied} (HTTP {response.status_code})"), server_time


def _parse_date_header(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def check_clock(server_time: datetime | None, now: datetime | None = None) -> CheckResult:
    name = "clock"
    if server_time is None:
        return _skip(name, "the provider sent no Date header to compare with")
    local = now or datetime.now(UTC)
    skew = abs((local - server_time).total_seconds())
    if skew >= CLOCK_SKEW_FAIL_SECONDS:
        return _fail(
            name,
            f"local clock is {skew:.0f} s away from the provider's",
            "enable time synchronisation (chrony / systemd-timesyncd / NTP)",
        )
    if skew >= CLOCK_SKEW_WARN_SECONDS:
        return _warn(name, f"local clock is {skew:.0f} s away from the provider's", "enable NTP")
    return _ok(name, f"within {skew:.0f} s of the provider's clock")


async def check_provider(
    sync_name: str, sync: SyncConfig, env: Mapping[str, str]
) -> list[CheckResult]:
    from campaign_bridge.providers import create_provider

    destination = sync.destination
    key = destination.api_key.get_secret_value()
    base = mailchimp_base_url(key, destination.base_url)
    results: list[CheckResult] = []
    ca_bundle = str(destination.ca_bundle) if destination.ca_bundle else None
    reach, server_time = await probe_https(base, env, ca_bundle=ca_bundle)
    results.append(
        CheckResult(f"{reach.name} [{sync_name}]", reach.status, reach.message, reach.fix)
    )
    if reach.status is CheckStatus.FAIL:
        return results
    results.append(check_clock(server_time))
    name = f"provider [{sync_name}]"
    provider = create_provider(destination)
    try:
        try:
            facts = await provider.check()
        except BridgeError as exc:
            dc = key.rsplit("-", 1)[-1] if "-" in key else "?"
            results.append(
                _fail(
                    name,
                    f"the provider rejected the API key: {exc}",
                    f"check destination.api_key; its data centre suffix is '{dc}' and must match "
                    "the account's (the part after the '-' in the key Mailchimp shows you)",
                )
            )
            return results
        account = facts.get("account_name") or facts.get("account_id") or "account"
        results.append(_ok(name, f"API key valid ({account})"))
        results.extend(await _check_audience(sync_name, sync, provider.audience))
    finally:
        await provider.aclose()
    return results


async def _check_audience(
    sync_name: str, sync: SyncConfig, fetch: Callable[[str], Awaitable[Audience]]
) -> list[CheckResult]:
    name = f"audience [{sync_name}]"
    list_id = sync.destination.list_id
    try:
        audience = await fetch(list_id)
    except BridgeError as exc:
        return [
            _fail(
                name,
                f"audience '{list_id}' cannot be read: {exc}",
                "correct destination.list_id (Audience → Settings → Audience name and defaults "
                "shows the id)",
            )
        ]
    results = [_ok(name, f"audience '{audience.name}' ({list_id}) exists")]
    results.append(check_merge_fields(sync_name, sync, audience))
    return results


def check_merge_fields(sync_name: str, sync: SyncConfig, audience: Audience) -> CheckResult:
    name = f"merge fields [{sync_name}]"
    by_tag: dict[str, MergeFieldSpec] = {spec.tag: spec for spec in audience.merge_fields}
    problems = [
        f"'{tag}' does not exist in the audience" for tag in sync.fields if tag not in by_tag
    ]
    problems += [
        f"required field '{spec.tag}' ({spec.name}) is not mapped"
        for spec in audience.merge_fields
        if spec.required and spec.tag not in sync.fields and not spec.default_value
    ]
    if problems:
        known = ", ".join(sorted(by_tag)) or "none"
        return _fail(
            name,
            "; ".join(problems),
            f"map every required field and use existing tags only (the audience has: {known}); "
            "or create the missing merge fields in the provider",
        )
    return _ok(name, f"{len(sync.fields)} mapped field(s) exist; required fields covered")


# --------------------------------------------------------------------------------------------
# Webhooks


async def check_webhook(settings: Settings) -> list[CheckResult]:
    name = "webhook URL"
    public_url = settings.server.public_url
    if not public_url:
        return [_skip(name, "server.public_url is not set; webhooks are not configured")]
    if not settings.server.webhook_tokens:
        return [
            _fail(
                name,
                "server.public_url is set but no webhook token is configured",
                "set CAMPAIGN_BRIDGE_SERVER__WEBHOOK_TOKENS (a long random secret)",
            )
        ]
    token = settings.server.webhook_tokens[0].get_secret_value()
    url = f"{public_url.rstrip('/')}/webhooks/mailchimp/{token}"
    shown = f"{public_url.rstrip('/')}/webhooks/mailchimp/<token>"
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return [
            _fail(
                name,
                f"{shown} is not reachable ({type(exc).__name__})",
                "start `campaign-bridge serve` and make public_url reachable from the internet "
                "(reverse proxy / load balancer); Mailchimp validates it with a GET",
            )
        ]
    if response.status_code >= 300:
        return [
            _fail(
                name,
                f"{shown} answered HTTP {response.status_code} to the validating GET",
                "check that public_url routes to `campaign-bridge serve` and the token matches",
            )
        ]
    results = [_ok(name, f"{shown} answers the validating GET")]
    for sync_name, sync in settings.syncs.items():
        results.append(await _check_webhook_registered(sync_name, sync, url, shown))
    return results


async def _check_webhook_registered(
    sync_name: str, sync: SyncConfig, url: str, shown: str
) -> CheckResult:
    from campaign_bridge.providers import create_provider

    name = f"webhook registered [{sync_name}]"
    provider = create_provider(sync.destination)
    try:
        registered = await provider.webhook_urls(sync.destination.list_id)
    except BridgeError as exc:
        return _skip(name, f"cannot list the audience's webhooks: {exc}")
    finally:
        await provider.aclose()
    if url in registered:
        return _ok(name, f"{shown} is registered on audience {sync.destination.list_id}")
    return _fail(
        name,
        f"{shown} is not registered on audience {sync.destination.list_id}",
        f"run `campaign-bridge webhooks register {sync_name}`",
    )


# --------------------------------------------------------------------------------------------
# Rendering


def exit_code(results: Sequence[CheckResult]) -> int:
    return 1 if any(result.status is CheckStatus.FAIL for result in results) else 0
