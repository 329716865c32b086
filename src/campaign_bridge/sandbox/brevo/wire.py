"""Brevo's wire conventions: error bodies, replies, routes, paging, query values and times.

- ``BrevoError`` — raise it from a handler; it becomes ``{"code": …, "message": …}`` (plus
  ``metadata`` when given) with its HTTP status, as Brevo answers.
- ``Reply`` — what a handler returns; ``ApiRequest`` — what it receives; ``Route`` — a
  (method, path template, handler) triple that modules export as ``routes``.
- ``paging`` — ``limit``/``offset``/``sort`` with each endpoint's default and maximum.
- ``stamp`` — ``YYYY-MM-DDTHH:mm:ss.SSSZ`` (the documented form) from epoch seconds;
  ``parse_when`` — lenient ISO-8601 parsing for ``modifiedSince`` and friends.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from campaign_bridge.sandbox._asgi import PathRoute, Reply, dumps, loads

if TYPE_CHECKING:
    from campaign_bridge.sandbox.brevo.model import BrevoSandbox

__all__ = [
    "JSON_TYPE",
    "ApiRequest",
    "BrevoError",
    "Handler",
    "Reply",
    "Route",
    "dumps",
    "invalid",
    "loads",
    "missing",
    "not_found",
    "paging",
    "parse_when",
    "qbool",
    "qint",
    "qints",
    "stamp",
]

JSON_TYPE = "application/json; charset=utf-8"


class BrevoError(Exception):
    """An error answer: ``{"code", "message"[, "metadata"]}`` with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.metadata = dict(metadata) if metadata is not None else None
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out


def not_found(message: str) -> BrevoError:
    return BrevoError(404, "document_not_found", message)


def invalid(message: str, **kwargs: Any) -> BrevoError:
    return BrevoError(400, "invalid_parameter", message, **kwargs)


def missing(message: str) -> BrevoError:
    return BrevoError(400, "missing_parameter", message)


@dataclass
class ApiRequest:
    sandbox: BrevoSandbox
    method: str
    path: str
    params: dict[str, str]
    #: query pairs in order (repeated keys kept: ``listIds=1&listIds=2``)
    pairs: list[tuple[str, str]]
    body: Any
    #: ``http://host:port`` the client used (for URLs the sandbox hands out)
    root_url: str = "http://127.0.0.1"
    #: size of the request body in bytes
    size: int = 0
    #: name of the API key that made the call ("" for control calls)
    key_name: str = ""

    @property
    def query(self) -> dict[str, str]:
        return dict(self.pairs)

    def json_object(self) -> dict[str, Any]:
        """The body as an object; 400 when it is anything else."""
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise invalid("Input must be a JSON object")
        return self.body


Handler = Callable[[ApiRequest], "Reply | Awaitable[Reply]"]


class Route(PathRoute[Handler]):
    """``Route("GET", "/contacts/{identifier}", handler)``; parameters are whole segments."""


# --- times ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def stamp(epoch: float) -> str:
    """``2026-12-07T07:35:40.123Z`` (UTC, milliseconds). Cached: an import stamps all its
    contacts with one instant, and a listing renders each contact's two stamps."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_when(value: str, name: str) -> float:
    """Epoch seconds of an ISO-8601 date-time (``Z``, offsets, or none = UTC); 400 if bad."""
    text = value.strip().replace(" ", "+")  # an unencoded "+02:00" arrives as " 02:00"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"{name} is not a valid date-time (YYYY-MM-DDTHH:mm:ss.SSSZ)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_day(value: str, name: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise invalid(f"{name} must be a date in YYYY-MM-DD format") from None


# --- query values --------------------------------------------------------------------------------


def qint(query: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise invalid(f"{name} must be an integer") from None


def qints(pairs: Sequence[tuple[str, str]], name: str) -> list[int]:
    """Integers given as repeated keys and/or comma-separated values."""
    out: list[int] = []
    for key, raw in pairs:
        if key != name:
            continue
        for part in raw.split(","):
            if part.strip():
                try:
                    out.append(int(part))
                except ValueError:
                    raise invalid(f"{name} must contain integers only") from None
    return out


def qbool(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise invalid(f"{name} must be a boolean")


def paging(
    request: ApiRequest, default: int, maximum: int, *, default_sort: str = "desc"
) -> tuple[int, int, str]:
    """``(limit, offset, sort)``; a limit over the endpoint's maximum is a 400 ``out_of_range``
    (or clamped when ``config.clamp_limits``)."""
    query = request.query
    limit = qint(query, "limit", default)
    offset = qint(query, "offset", 0)
    assert limit is not None
    assert offset is not None
    if limit < 0 or offset < 0:
        raise BrevoError(400, "out_of_range", "limit and offset must not be negative")
    if limit > maximum:
        if not request.sandbox.config.clamp_limits:
            raise BrevoError(
                400, "out_of_range", f"Limit exceeds max value. Maximum allowed limit is {maximum}"
            )
        limit = maximum
    sort = query.get("sort") or default_sort
    if sort not in ("asc", "desc"):
        raise invalid("sort must be asc or desc")
    return limit, offset, sort
