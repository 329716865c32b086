"""Logging for the whole program, configured once, at the CLI edge, by :func:`configure_logging`.

Modules log with ``logging.getLogger(__name__)`` and pass context as ``extra`` (``action``,
``provider``, ``run_id``, ``sync``, ``email_hash``, counts...). This module decides how lines look:

- JSON lines (``ts``, ``level``, ``logger``, ``message`` plus every extra field) when standard
  error is not a terminal or ``--log-format json``; short human text on a terminal.
- A filter on the handler rewrites every record before it is written: registered secret values
  (from the loaded settings) and secret-looking patterns (Mailchimp and Brevo API keys,
  ``Authorization`` and ``api-key`` headers, passwords in URLs) become ``********``; email
  addresses become ``email:<md5 of the lowercased address>`` unless the user opted in with
  ``log_emails``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from campaign_bridge.config import Settings

__all__ = [
    "MASK",
    "JsonFormatter",
    "LogFormat",
    "RedactingFilter",
    "Redactor",
    "TextFormatter",
    "configure_logging",
    "email_hash",
    "log_through",
]


class LogFormat(StrEnum):
    """How log lines look: ``auto`` (text on a terminal, JSON otherwise), ``text`` or ``json``."""

    AUTO = "auto"
    TEXT = "text"
    JSON = "json"


MASK = "********"

# Provider API keys by their shape: Mailchimp <32 hex>-<dc>, Brevo xkeysib-/xsmtpsib-<hex>-<16>.
_PROVIDER_KEY = re.compile(
    r"\b(?:[0-9a-f]{32}-[a-z]+[0-9]+|x(?:keysib|smtpsib)-[0-9a-f]{64}-[0-9A-Za-z]{16})\b"
)
# "Authorization: Basic abc", "authorization=Bearer abc", "'Authorization': 'OAuth abc'",
# "api-key: abc" (Brevo's header).
_AUTH_HEADER = re.compile(
    r"(?P<head>(?:authorization|api-key)['\"]?\s*[:=]\s*['\"]?)"
    r"(?P<scheme>(?:basic|bearer|oauth|apikey|token)\s+)?"
    r"(?P<cred>[^\s'\",}]+)",
    re.IGNORECASE,
)
# scheme://user:password@host -> scheme://user:********@host
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^\s:/@]*:)(?P<pw>[^\s@/]+)(?=@)")
# An address not glued to a preceding word, path or URL ("postgresql://user@host" is no email).
_EMAIL = re.compile(
    r"(?<![\w.%+\-/])[A-Za-z0-9._%+\-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)+"
)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

_OUR_HANDLER_ATTR = "_campaign_bridge_handler"


def email_hash(email: str) -> str:
    """The md5 of the trimmed, lowercased address: the bridge's key for a member."""
    return hashlib.md5(email.strip().lower().encode("utf-8"), usedforsecurity=False).hexdigest()


class Redactor:
    """Replaces secrets and (unless allowed) email addresses in text and nested values."""

    def __init__(self, secrets: Iterable[str] = (), *, log_emails: bool = False) -> None:
        # Longest first so a secret containing another is masked whole; very short values
        # (a 1-3 character "secret") would mask ordinary words, so they are not registered.
        unique = {s for s in secrets if s and len(s) >= 4}
        self.secrets = sorted(unique, key=len, reverse=True)
        self.log_emails = log_emails

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _PROVIDER_KEY.sub(MASK, text)
        text = _AUTH_HEADER.sub(lambda m: f"{m['head']}{m['scheme'] or ''}{MASK}", text)
        text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
        if not self.log_emails:
            text = _EMAIL.sub(lambda m: f"email:{email_hash(m.group(0))}", text)
        return text

    def redact_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {
                self.redact(key) if isinstance(key, str) else key: self.redact_value(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact_value(item) for item in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.redact(str(value))


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, extra fields and traceback through a :class:`Redactor`."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor.redact
        record.msg = redact(record.getMessage())
        record.args = None
        for key in _extra_keys(record):
            setattr(record, key, self.redactor.redact_value(getattr(record, key)))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # the redacted text is what gets written
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _extra_keys(record: logging.LogRecord) -> list[str]:
    return [key for key in vars(record) if key not in _RECORD_ATTRS and not key.startswith("_")]


def _timestamp(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, then the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _extra_keys(record):
            if key not in payload:
                payload[key] = getattr(record, key)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        return json.dumps(payload, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``12:00:01 INFO  campaign_bridge.push: message  key=value ...`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        moment = dt.datetime.fromtimestamp(record.created, tz=dt.UTC).strftime("%H:%M:%S")
        extras = " ".join(f"{key}={getattr(record, key)}" for key in _extra_keys(record))
        line = f"{moment} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line = f"{line}  {extras}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{record.stack_info}"
        return line


def _secret_values(secrets: Settings | Iterable[str] | None) -> list[str]:
    if secrets is None:
        return []
    from campaign_bridge.config import Settings, secret_values

    if isinstance(secrets, Settings):
        return secret_values(secrets)
    return [str(value) for value in secrets]


def configure_logging(
    level: str = "INFO",
    fmt: LogFormat | str = "auto",
    log_emails: bool = False,
    *,
    secrets: Settings | Iterable[str] | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Install the program's single log handler on the root logger (replacing an earlier one).

    Call only from the CLI edge. ``secrets`` is the loaded :class:`Settings` (every secret value
    in it is registered for masking) or plain strings. Returns the handler, mostly for tests.
    """
    stream = stream if stream is not None else sys.stderr
    fmt_value = str(getattr(fmt, "value", fmt)).lower()
    if fmt_value not in {"auto", "text", "json"}:
        fmt_value = "auto"
    use_json = fmt_value == "json" or (fmt_value == "auto" and not _isatty(stream))
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(RedactingFilter(Redactor(_secret_values(secrets), log_emails=log_emails)))
    setattr(handler, _OUR_HANDLER_ATTR, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _OUR_HANDLER_ATTR, False):
            root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    root.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    # Chatty libraries stay quiet unless we are debugging. httpx and httpcore stay quiet even
    # then: they log full URLs, and Mailchimp's batch-result links are signed (a credential);
    # so do apprise and urllib3 (alert URLs carry tokens in their paths: Slack, Teams...).
    quiet = logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    for name in ("alembic", "uvicorn.access", "asyncio"):
        logging.getLogger(name).setLevel(quiet)
    for name in ("httpx", "httpcore", "apprise", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


class _Writer:
    """A file-like object that hands each write to a function (see :func:`log_through`)."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self._write = write

    def write(self, text: str) -> int:
        self._write(text)
        return len(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def log_through(write: Callable[[str], object]) -> Iterator[None]:
    """While inside, the program's log handler writes each line through ``write``.

    A live progress bar redraws itself in place; a log line written straight to the terminal
    lands in the middle of it. Handing lines to the bar's console (which prints them above the
    bar) keeps both readable. Formatting and masking are unchanged.
    """
    ours = [h for h in logging.getLogger().handlers if getattr(h, _OUR_HANDLER_ATTR, False)]
    streams = [h for h in ours if isinstance(h, logging.StreamHandler)]
    previous = [h.setStream(_Writer(write)) for h in streams]
    try:
        yield
    finally:
        for handler, stream in zip(streams, previous, strict=True):
            if stream is not None:
                handler.setStream(stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
