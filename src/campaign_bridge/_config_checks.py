"""Pure checks behind the configuration model's validators (no I/O).

Each check returns the (possibly normalised) value or raises :class:`PydanticCustomError` of type
``config`` whose context carries ``problem`` and ``expected``; the loader turns those into
:class:`~campaign_bridge.errors.ConfigProblem` entries. Messages never contain secret values.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic_core import PydanticCustomError

__all__ = [
    "BREVO_KEY",
    "MAILCHIMP_KEY",
    "SYNC_NAME",
    "brevo_key",
    "database_url",
    "http_url",
    "log_level",
    "mailchimp_data_centre",
    "mailchimp_key",
    "non_empty",
    "schedule",
    "sync_name",
]

MAILCHIMP_KEY = re.compile(r"^[0-9a-f]{32}-(?P<dc>[a-z]+[0-9]+)$")
_MAILCHIMP_HOST = re.compile(r"^(?P<dc>[a-z]+[0-9]+)\.api\.mailchimp\.com$")
BREVO_KEY = re.compile(r"^xkeysib-[0-9a-f]{64}-[0-9A-Za-z]{16}$")
SYNC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def fail(problem: str, expected: str = "") -> PydanticCustomError:
    """The error every check raises: ``problem`` and ``expected`` travel in the context."""
    message = f"{problem} (expected {expected})" if expected else problem
    return PydanticCustomError(
        "config", "{message}", {"message": message, "problem": problem, "expected": expected}
    )


def non_empty(value: str, expected: str) -> str:
    if not value.strip():
        raise fail("is empty", expected)
    return value.strip()


def log_level(value: str) -> str:
    upper = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(
        value.strip().upper(), value.strip().upper()
    )
    if upper not in _LEVELS:
        raise fail(f"unknown log level {value!r}", "one of " + ", ".join(_LEVELS))
    return upper


def http_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail(f"{value!r} is not an http(s) URL", "a URL such as http://127.0.0.1:8025/3.0")
    return value.rstrip("/")


def mailchimp_key(key: str, base_url: str | None) -> None:
    """Check a Mailchimp API key against the base URL it will be sent to.

    - No base_url: the data centre comes from the key, so it must be ``<32 hex>-<dc>``.
    - base_url on ``<dc>.api.mailchimp.com``: same format, and the key's dc must be that host's.
    - base_url on any other host (the sandbox, a proxy): any non-empty key is accepted.
    """
    if not key.strip():
        raise fail("is empty", "the Mailchimp API key, <32 hex characters>-<dc> such as ...-us6")
    host = (urlsplit(base_url).hostname or "") if base_url else ""
    host_match = _MAILCHIMP_HOST.match(host)
    if base_url and not host_match and not host.endswith("mailchimp.com"):
        return
    key_match = MAILCHIMP_KEY.match(key.strip())
    if key_match is None:
        raise fail(
            "does not look like a Mailchimp API key",
            "<32 lowercase hex characters>-<data centre>, e.g. 0123…cdef-us6 "
            "(Mailchimp: Profile → Extras → API keys); for the sandbox set base_url too",
        )
    if host_match and host_match["dc"] != key_match["dc"]:
        raise fail(
            f"the key belongs to data centre {key_match['dc']!r} but base_url points at "
            f"{host_match['dc']!r}",
            "base_url left empty (derived from the key) or matching the key's data centre",
        )


def brevo_key(key: str, base_url: str | None) -> None:
    """Check a Brevo API key: ``xkeysib-<64 hex>-<16 alphanumerics>`` when it goes to Brevo
    (base_url empty or on ``*.brevo.com``); any non-empty key for other hosts (the sandbox)."""
    if not key.strip():
        raise fail("is empty", "the Brevo API key, xkeysib-…")
    host = (urlsplit(base_url).hostname or "") if base_url else ""
    if base_url and not (host == "brevo.com" or host.endswith(".brevo.com")):
        return
    if BREVO_KEY.match(key.strip()) is None:
        raise fail(
            "does not look like a Brevo API key",
            "xkeysib-<64 hex characters>-<16 letters or digits> (Brevo: SMTP & API → API keys; "
            "an SMTP key xsmtpsib-… does not work here); for the sandbox set base_url too",
        )


def mailchimp_data_centre(key: str) -> str:
    """The data centre a Mailchimp key names (``…-us6`` → ``us6``); empty when it names none."""
    _, sep, dc = key.strip().rpartition("-")
    return dc.lower() if sep and dc.isalnum() else ""


def database_url(value: str | None, *, what: str) -> str | None:
    """A SQLAlchemy URL for one of the dialects we ship drivers for."""
    if value is None or not value.strip():
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    value = value.strip()
    expected = (
        f"a {what} URL such as postgresql://user:password@host/db, "
        "mysql://user:password@host/db or sqlite:///path/to/file.db"
    )
    try:
        parsed = make_url(value)
    except (ArgumentError, ValueError) as exc:
        raise fail("is not a database URL", expected) from exc
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "postgres", "mysql", "mariadb", "sqlite"):
        raise fail(f"unsupported database {backend!r}", expected)
    return value


def sync_name(name: str) -> str:
    if not SYNC_NAME.match(name):
        raise fail(
            f"sync name {name!r} is not allowed",
            "1-100 letters, digits, '_', '-' or '.', starting with a letter or digit",
        )
    return name


def schedule(value: str | None) -> str | None:
    """An interval (``every 15m``, ``every 1h30m``) or a 5-field cron expression (or ``@daily``).

    Parsed by the scheduler itself, so what validates here is exactly what ``serve`` runs.
    """
    if value is None or not value.strip():
        return None
    from campaign_bridge.scheduler import ScheduleError, parse_schedule

    text = " ".join(value.split())
    try:
        parse_schedule(text)
    except ScheduleError as exc:
        raise fail(
            str(exc),
            "'every <N><s|m|h|d|w>' such as 'every 15m', or a 5-field cron expression in UTC "
            "(minute hour day-of-month month day-of-week) such as '*/15 * * * *', or @daily",
        ) from None
    return text
