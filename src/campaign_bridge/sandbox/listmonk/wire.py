"""listmonk's wire conventions: ``{"data": …}`` answers, ``{"message": …}`` errors (Echo's
default error handler), routes, paging and times.

- ``ListmonkError`` — raise it from a handler; it becomes ``{"message": …}`` with its status.
  listmonk answers *not found* with 400, a duplicate e-mail with 409, auth failures with 403.
- ``Reply`` / ``ApiRequest`` / ``Route`` — what handlers return, receive and are routed by.
- ``page_of`` — ``page``/``per_page`` (default 20, ``all``, no maximum) and the page envelope.
- ``stamp`` — Go's RFC 3339 with nanoseconds, as listmonk's JSON carries ``timestamptz``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from campaign_bridge.sandbox._asgi import PathRoute, Reply, dumps, loads

if TYPE_CHECKING:
    from campaign_bridge.sandbox.listmonk.model import ApiUser, ListmonkSandbox

__all__ = [
    "JSON_TYPE",
    "ApiRequest",
    "Handler",
    "ListmonkError",
    "Reply",
    "Route",
    "bad",
    "data",
    "dumps",
    "ids_of",
    "loads",
    "not_found",
    "page_of",
    "parse_when",
    "path_id",
    "stamp",
]

JSON_TYPE = "application/json; charset=UTF-8"


class ListmonkError(Exception):
    """An error answer ``{"message": …}`` with HTTP ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"message": self.message}


def bad(message: str) -> ListmonkError:
    return ListmonkError(400, message)


def not_found(term: str, detail: str = "") -> ListmonkError:
    """listmonk's ``globals.messages.notFound`` — a 400, not a 404."""
    return ListmonkError(400, f"{term}{detail} not found")


def data(value: Any, items: int = 0) -> Reply:
    """``{"data": value}`` — listmonk's success envelope."""
    return Reply({"data": value}, items=items)


@dataclass
class ApiRequest:
    sandbox: ListmonkSandbox
    method: str
    path: str
    params: dict[str, str]
    #: query pairs in order (repeated keys kept: ``list_id=1&list_id=2``)
    pairs: list[tuple[str, str]]
    body: Any
    #: multipart parts: name -> (filename, bytes)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    #: form fields (urlencoded or multipart text parts)
    form: dict[str, str] = field(default_factory=dict)
    user: ApiUser | None = None

    @property
    def query(self) -> dict[str, str]:
        return dict(self.pairs)

    def value(self, name: str) -> str:
        """Echo's ``FormValue``: the query string, then the form."""
        return self.query.get(name, self.form.get(name, ""))

    def json_object(self) -> dict[str, Any]:
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise bad("Invalid JSON in request body")
        return self.body

    def require(self, perms: str) -> None:
        """403 ``permission denied: …`` unless the API user holds one of ``perms`` (``a|b``);
        like listmonk's ``Perm`` middleware the message names the last one."""
        if self.user is None or not perms:
            return
        names = perms.split("|")
        if not any(self.user.can(name) for name in names):
            raise ListmonkError(403, f"permission denied: {names[-1]}")


Handler = Callable[[ApiRequest], "Reply | Awaitable[Reply]"]


class Route(PathRoute[Handler]):
    """``Route("GET", "/subscribers/{id}", handler, perm)``; parameters are whole segments."""

    def __init__(self, method: str, path: str, handler: Handler, perm: str = "") -> None:
        super().__init__(method, path, handler)
        #: the permissions listmonk's ``pm(…)`` wrapper accepts, ``a|b`` ("" for none)
        self.perm = perm


@functools.lru_cache(maxsize=16_384)  # rows written together share their times
def stamp(epoch: float) -> str:
    """``2026-12-07T08:39:33.123456Z`` (Go's RFC3339Nano: trailing zeros trimmed). Cached: an
    import writes thousands of rows with one time, and every row carries its list's times."""
    moment = datetime.fromtimestamp(epoch, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_when(value: str) -> float | None:
    """Epoch seconds of a date or date-time literal (as PostgreSQL casts it), else None."""
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def ids_of(pairs: Sequence[tuple[str, str]], name: str = "id") -> list[int]:
    """Repeated integer query values; 400 ``Invalid ID(s)`` when one is not a positive int."""
    out: list[int] = []
    for key, raw in pairs:
        if key != name:
            continue
        try:
            value = int(raw)
        except ValueError:
            raise bad("Invalid ID(s)") from None
        if value < 1:
            raise bad("Invalid ID(s)")
        out.append(value)
    return out


def path_id(request: ApiRequest) -> int:
    """The positive integer ``{id}`` of the request's path; listmonk's 400 otherwise."""
    try:
        value = int(request.params["id"])
    except ValueError:
        value = 0
    if value < 1:
        raise bad("invalid ID")
    return value


def page_of(query: Mapping[str, str]) -> tuple[int, int, int]:
    """``(page, per_page, offset)``; ``per_page=all`` gives per_page 0 (everything). Like
    listmonk's paginator, no maximum is enforced and bad values fall back to the defaults."""
    try:
        page = max(1, int(query.get("page", "1")))
    except ValueError:
        page = 1
    raw = query.get("per_page", "")
    if raw == "all":
        return 1, 0, 0
    try:
        per_page = int(raw) if raw else 20
    except ValueError:
        per_page = 20
    if per_page < 1:
        per_page = 20
    return page, per_page, (page - 1) * per_page


def paged(items: Sequence[Any], params: Mapping[str, str], **extra: Any) -> dict[str, Any]:
    """The page envelope ``{results, total, per_page, page, …}`` over ``items``."""
    page, per_page, offset = page_of(params)
    chosen = list(items) if per_page == 0 else list(items[offset : offset + per_page])
    return {"results": chosen, **extra, "total": len(items), "per_page": per_page, "page": page}
