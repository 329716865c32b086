"""Security checks, in the spirit of Django's ``check --deploy``: each names the risk and the fix.

They read the settings and the files they name; the TLS check asks the database server whether
the connection it is holding is encrypted.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa

from campaign_bridge._net import is_loopback
from campaign_bridge.config import Settings
from campaign_bridge.doctor._result import CheckResult, fail, ok, skip, warn

__all__ = [
    "MIN_TOKEN_LENGTH",
    "check_security",
    "connection_encrypted",
    "database_tls_result",
    "is_loopback",
]

MIN_TOKEN_LENGTH = 32
# Tokens that appear in our own docs and examples, or that people type when asked for one.
KNOWN_TOKENS = frozenset(
    {"changeme", "change-me", "secret", "password", "token", "webhook", "admin", "example"}
)


def check_security(
    settings: Settings, environ: Mapping[str, str], config_paths: Sequence[Path] = ()
) -> list[CheckResult]:
    """Every check that reads only the settings and the files they name."""
    results = [
        _status_page(settings),
        _metrics(settings),
        _public_url(settings),
        _webhook_tokens(settings),
        _log_emails(settings),
    ]
    results.extend(_secret_files(environ, config_paths))
    return results


def _status_page(settings: Settings) -> CheckResult:
    name = "security: status page"
    host = settings.server.host
    if settings.server.admin_token is not None:
        return ok(name, "protected by server.admin_token")
    if is_loopback(host):
        return ok(name, f"open, but only on the loopback address {host}")
    return fail(
        name,
        f"serve listens on {host} and the status page (runs, errors, sync names) has no "
        "admin token: anyone who reaches the port can read it",
        "set CAMPAIGN_BRIDGE_SERVER__ADMIN_TOKEN_FILE to a file holding a long random token; "
        "serve refuses this bind without one unless started with --public-status",
    )


def _metrics(settings: Settings) -> CheckResult:
    name = "security: metrics"
    host = settings.server.host
    if is_loopback(host):
        return ok(name, f"/-/metrics is served on the loopback address {host} only")
    return warn(
        name,
        f"/-/metrics is served without authentication on {host} (sync names, counts, errors)",
        "let only the Prometheus server reach the port (firewall / network policy), or publish "
        "the service through a reverse proxy that does not route /-/metrics",
    )


def _public_url(settings: Settings) -> CheckResult:
    name = "security: public URL"
    url = settings.server.public_url
    if not url:
        return skip(name, "server.public_url is not set (no webhooks)")
    parts = urlsplit(url)
    if parts.scheme == "https":
        return ok(name, "webhooks are received over HTTPS")
    if is_loopback(parts.hostname):
        return ok(name, "http:// on a loopback address")
    return warn(
        name,
        f"server.public_url is http:// ({parts.hostname}): the webhook token travels in the "
        "URL, readable by anyone on the path",
        "terminate TLS in front of the service (reverse proxy / load balancer) and set an "
        "https:// public_url, then run `campaign-bridge webhooks register` again",
    )


def _webhook_tokens(settings: Settings) -> CheckResult:
    name = "security: webhook token"
    tokens = [token.get_secret_value() for token in settings.server.webhook_tokens]
    if not tokens and settings.server.public_url:
        return fail(
            name,
            "server.public_url is set but no webhook token is configured: webhooks cannot be "
            "received",
            "set CAMPAIGN_BRIDGE_SERVER__WEBHOOK_TOKENS_FILE to a file holding a long random "
            "token, or unset server.public_url",
        )
    if not tokens:
        return skip(name, "no webhook token is configured")
    weak = [index for index, token in enumerate(tokens, 1) if _weak(token)]
    if not weak:
        return ok(name, f"{len(tokens)} token(s), each long and varied")
    which = ", ".join(f"#{index}" for index in weak)
    return warn(
        name,
        f"webhook token {which} is weak (shorter than {MIN_TOKEN_LENGTH} characters, repetitive "
        "or a well-known word): it is the only thing authenticating webhooks",
        "generate one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`, add "
        "it as a second token, re-register the webhook, then remove the old one",
    )


def _weak(token: str) -> bool:
    lowered = token.lower()
    if any(word in lowered for word in KNOWN_TOKENS) and len(set(lowered)) < 16:
        return True
    return len(token) < MIN_TOKEN_LENGTH or len(set(token)) < 10


def _log_emails(settings: Settings) -> CheckResult:
    name = "security: addresses in logs"
    if not settings.log_emails:
        return ok(name, "email addresses are hashed in logs")
    return warn(
        name,
        "log_emails is on: every log line about a contact carries the address in clear, and "
        "logs are copied to places the contact data is not",
        "unset CAMPAIGN_BRIDGE_LOG_EMAILS (default false) once the investigation that needed it "
        "is over",
    )


def _secret_files(environ: Mapping[str, str], config_paths: Sequence[Path]) -> list[CheckResult]:
    name = "security: secret files"
    files = [
        (key, Path(value))
        for key, value in sorted(environ.items())
        if key.startswith("CAMPAIGN_BRIDGE_") and key.endswith("_FILE") and value
    ]
    files += [("the configuration file", path) for path in config_paths]
    if not files:
        return [skip(name, "no secret is read from a file")]
    readable = []
    for origin, path in files:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue  # a missing file is a configuration problem, reported there
        if mode & stat.S_IROTH:
            readable.append(f"{path} ({origin}, mode {stat.S_IMODE(mode):o})")
    if not readable:
        return [ok(name, f"{len(files)} file(s), none readable by other users")]
    return [
        warn(
            name,
            "readable by every user on this machine: " + "; ".join(readable),
            "chmod 0400 (or 0440 with the service's group) each file listed",
        )
    ]


# --------------------------------------------------------------------------------------------
# Database transport


def connection_encrypted(conn: sa.Connection) -> bool | None:
    """Whether the server says this connection is encrypted (None: the engine has no network)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        return bool(conn.execute(sa.text(query)).scalar())
    if dialect == "mysql":
        row = conn.execute(sa.text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).first()
        return bool(row and row[1])
    return None


def database_tls_result(what: str, host: str | None, encrypted: bool | None) -> CheckResult:
    """A warning when a database on another machine is reached without TLS."""
    name = f"security: {what} TLS"
    if encrypted is None:
        return skip(name, "a file database: no network")
    if encrypted:
        return ok(name, "the connection is encrypted (TLS)")
    if is_loopback(host):
        return ok(name, f"not encrypted, but on the loopback address {host or '(socket)'}")
    return warn(
        name,
        f"the connection to {host} is not encrypted: passwords and contact data cross the "
        "network in clear",
        "enable TLS on the server and require it in the URL (PostgreSQL: ?sslmode=verify-full; "
        "MariaDB/MySQL: ?ssl_ca=/path/to/ca.pem)",
    )
