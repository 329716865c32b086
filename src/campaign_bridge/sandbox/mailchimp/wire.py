"""Mailchimp's wire conventions: problem documents, replies, paging, partial responses, times.

Everything an endpoint handler needs to speak exactly like the real API lives here, so every
module (lists, members, campaigns, reports, webhooks, batches) answers the same way:

- ``Problem`` — raise it from a handler; it becomes an ``application/problem+json`` document with
  ``type``/``title``/``status``/``detail``/``instance`` (+ ``errors[]``).
- ``Reply`` — what a handler returns (status, JSON body or raw bytes, extra headers).
- ``ApiRequest`` — what a handler receives (the same object over HTTP and through
  ``Sandbox.dispatch`` used by ``/batches``).
- ``Route`` — a (method, path template, handler) triple that modules export as ``routes``.
- ``page`` / ``paging`` — ``count``/``offset`` rules; ``apply_fields`` — ``fields`` /
  ``exclude_fields`` with dot paths; ``ts`` / ``parse_ts`` — ``YYYY-MM-DDTHH:MM:SS+00:00``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from campaign_bridge.sandbox._asgi import Reply, path_regex

if TYPE_CHECKING:
    from campaign_bridge.sandbox.mailchimp.model import Account, Sandbox

__all__ = [
    "ERROR_TYPE",
    "JSON_TYPE",
    "PROBLEM_TYPE",
    "ApiRequest",
    "Handler",
    "Problem",
    "Reply",
    "Route",
    "answer_is_cut",
    "apply_fields",
    "collection_links",
    "dumps",
    "encoded",
    "invalid_resource",
    "kept_keys",
    "link",
    "loads",
    "not_found",
    "page",
    "paging",
    "parse_ts",
    "qbool",
    "qint",
    "ts",
]

JSON_TYPE = "application/json; charset=utf-8"
PROBLEM_TYPE = "application/problem+json; charset=utf-8"
ERROR_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"
SCHEMA_DETAIL = (
    "The resource submitted could not be validated. For field-specific details, "
    "see the 'errors' array."
)
MAX_COUNT = 1000
DEFAULT_COUNT = 10


class Problem(Exception):
    """An error answer. ``instance`` is filled in by the app (it equals ``X-Request-Id``)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = [dict(e) for e in errors] if errors is not None else None
        self.headers = dict(headers or {})

    def document(self, instance: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": ERROR_TYPE,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.errors is not None:
            doc["errors"] = self.errors
        return doc


def not_found() -> Problem:
    return Problem(404, "Resource Not Found", "The requested resource could not be found.")


def invalid_resource(
    detail: str = SCHEMA_DETAIL, errors: Sequence[Mapping[str, str]] | None = None
) -> Problem:
    return Problem(400, "Invalid Resource", detail, errors=errors)


@dataclass
class ApiRequest:
    """One API call, as handlers see it (over HTTP or via ``Sandbox.dispatch``)."""

    sandbox: Sandbox
    method: str
    path: str  # without the /3.0 prefix, e.g. "/lists/abc/members"
    params: dict[str, str]  # path parameters from the route template
    query: Mapping[str, str]
    body: Any = None  # parsed JSON (None when absent)
    account: Account | None = None
    client_ip: str = "127.0.0.1"
    api_key: str = ""
    base_url: str = "https://us6.api.mailchimp.com/3.0"

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object, or the schema-validation problem Mailchimp sends."""
        if not isinstance(self.body, dict):
            kind = "NULL" if self.body is None else type(self.body).__name__
            raise invalid_resource(
                errors=[{"field": "", "message": f"Schema describes object, {kind} found instead"}]
            )
        return self.body


Handler = Callable[[ApiRequest], "Reply | Awaitable[Reply]"]


@dataclass(frozen=True)
class Route:
    """``path`` is a template like ``/lists/{list_id}/members/{subscriber_hash}``."""

    method: str
    path: str
    handler: Handler
    regex: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", path_regex(self.path, optional_slash=True))


def dumps(body: Any) -> bytes:
    """Compact JSON (orjson: encoding 500 members must cost ~1 ms, not ~20 ms)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def encoded(value: Any) -> orjson.Fragment:
    """``value`` encoded now and embedded as is when the answer is encoded.

    For answers made of many objects (500 members): each is freed as soon as it is encoded,
    instead of all living until the end, long enough for the garbage collector to move them
    to the old generation and, in turn, to walk every object the sandbox holds. Only for
    answers that ``apply_fields`` leaves alone (see ``answer_is_cut``): it cannot cut into an
    encoded part.
    """
    return orjson.Fragment(dumps(value))


def loads(raw: bytes) -> Any:
    """Parse a JSON request body; raises ``ValueError`` when it is not JSON."""
    return orjson.loads(raw)


# --- time -----------------------------------------------------------------------------------


def ts(moment: datetime) -> str:
    """Mailchimp's timestamp: ISO 8601, seconds, UTC offset: ``2021-02-27T00:30:39+00:00``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def parse_ts(value: str, name: str) -> str:
    """Parse a query timestamp and return it normalised to ``ts`` form (so strings compare).

    A ``+`` that arrived unencoded has become a space: that is invalid, as for a real client.
    """
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or " " in value.strip():
        raise invalid_resource(
            errors=[{"field": name, "message": f"'{value}' is not a valid date-time."}]
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return ts(moment)


# --- query parameters -------------------------------------------------------------------------


def qbool(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """Booleans as sent by curl (``true``) and by the official SDK (``True``)."""
    value = query.get(name)
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise invalid_resource(
        errors=[{"field": name, "message": f"'{value}' is not a valid boolean value."}]
    )


def qint(query: Mapping[str, str], name: str, default: int) -> int:
    value = query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise invalid_resource(
            errors=[{"field": name, "message": f"'{value}' is not a valid integer."}]
        ) from None


def paging(query: Mapping[str, str]) -> tuple[int, int]:
    """``(count, offset)``; count defaults to 10, may not exceed 1000 (strict: 400 above)."""
    count = qint(query, "count", DEFAULT_COUNT)
    offset = qint(query, "offset", 0)
    if count < 0 or count > MAX_COUNT:
        raise invalid_resource(
            errors=[{"field": "count", "message": f"Count must be between 0 and {MAX_COUNT}."}]
        )
    if offset < 0:
        raise invalid_resource(errors=[{"field": "offset", "message": "Offset must be >= 0."}])
    return count, offset


def page(items: Sequence[Any], query: Mapping[str, str]) -> tuple[list[Any], int]:
    """The requested page of ``items`` and ``total_items``."""
    count, offset = paging(query)
    return list(items[offset : offset + count]), len(items)


# --- _links ---------------------------------------------------------------------------------


def link(rel: str, href: str, method: str = "GET", schema: str | None = None) -> dict[str, str]:
    out = {"rel": rel, "href": href, "method": method}
    if schema:
        out["targetSchema"] = f"https://us6.api.mailchimp.com/schema/3.0/{schema}.json"
    return out


def collection_links(base: str, path: str, parent: str | None = None) -> list[dict[str, str]]:
    """``_links`` for a collection at ``path`` (self, create, parent)."""
    links = [link("self", base + path), link("create", base + path, "POST")]
    if parent is not None:
        links.insert(0, link("parent", base + parent))
    return links


# --- fields / exclude_fields ------------------------------------------------------------------


def _split(spec: str) -> list[list[str]]:
    return [p.strip().split(".") for p in spec.split(",") if p.strip()]


_Tree = dict[str, "_Tree | None"]  # key -> what to keep below it (None: all of it)


def _tree(paths: list[list[str]]) -> _Tree | None:
    """Dot paths as a tree of keys to keep; ``None`` when a path keeps the whole value."""
    if any(len(p) == 0 for p in paths):
        return None
    heads: dict[str, list[list[str]]] = {}
    for path in paths:
        heads.setdefault(path[0], []).append(path[1:])
    return {key: _tree(rest) for key, rest in heads.items()}


def _keep(value: Any, tree: _Tree | None) -> Any:
    """Only the keys ``tree`` names, at every level (lists: each item); response order kept.
    Hot path for large pages: one dict lookup per key, no per-key path lists."""
    if tree is None:
        return value
    if isinstance(value, list):
        if all(below is None for below in tree.values()):
            # leaves only (e.g. activity items): an item naming no other key is kept as is
            names = tree.keys()
            return [
                item if type(item) is dict and item.keys() <= names else _keep(item, tree)
                for item in value
            ]
        return [_keep(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, sub in value.items():
        if key in tree:
            below = tree[key]
            out[key] = sub if below is None else _keep(sub, below)
    return out


def kept_keys(query: Mapping[str, str], name: str) -> frozenset[str] | None:
    """The keys of the items of the top-level collection ``name`` that ``fields`` keeps
    (``None``: every key). A handler may render only these: ``apply_fields`` would drop the
    others anyway, so the answer is the same, without building what nobody receives."""
    fields = query.get("fields")
    if not fields:
        return None
    tree = _tree(_split(fields))
    if tree is None:
        return None
    if name not in tree:
        return frozenset()
    below = tree[name]
    return None if below is None else frozenset(below)


def _drop(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        return [_drop(item, paths) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, sub in value.items():
        rest = [p[1:] for p in paths if p[0] == key]
        if any(len(r) == 0 for r in rest):
            continue
        out[key] = _drop(sub, rest) if rest else sub
    return out


def answer_is_cut(query: Mapping[str, str]) -> bool:
    """Whether ``apply_fields`` changes answers to this query."""
    return bool(query.get("fields") or query.get("exclude_fields"))


def apply_fields(body: Any, query: Mapping[str, str]) -> Any:
    """Honour ``fields`` (keep only these dot paths) then ``exclude_fields`` (drop these).

    As on Mailchimp, ``total_items`` is only returned when ``fields`` names it.
    """
    fields = query.get("fields")
    exclude = query.get("exclude_fields")
    if fields:
        body = _keep(body, _tree(_split(fields)))
    if exclude:
        body = _drop(body, _split(exclude))
    return body
