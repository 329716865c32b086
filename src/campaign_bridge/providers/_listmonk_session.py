"""Talking to listmonk: JSON calls with typed errors (the one translation point), paging,
lookups by address, and the importer (one import at a time per instance).

The adapter (``listmonk.py``) speaks the provider contract on top of this.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import httpx
import orjson

from campaign_bridge.errors import ProviderAuthError, ProviderError
from campaign_bridge.providers._http import ApiClient, decode_json, gather_all, latest
from campaign_bridge.providers._listmonk_listing import (
    Made,
    Page,
    existing_page,
    made_page,
    made_rows,
)
from campaign_bridge.providers._listmonk_wire import (
    Existing,
    csv_upload,
    email_query,
    existing_from,
    message_of,
    multipart,
)

__all__ = ["Imported", "ListmonkSession", "listmonk_retriable"]

logger = logging.getLogger(__name__)

# Addresses per lookup query: keeps the request line well under 16 KiB (common server limit).
LOOKUP_CHUNK = 200
# Read-back pages in flight at once (each up to page_size subscribers' JSON)
READ_BACK_PAGES = 4
# listmonk's own deterministic database errors come back as 500 too: retrying cannot help.
_PERMANENT_500 = ("invalid input value", "duplicate key", "Error preparing", "violates")

Params = Sequence[tuple[str, str | int]]
Row = tuple[str, str, Mapping[str, object]]  # (email, name, attribs) of one import row


@dataclass(frozen=True)
class Imported:
    """What one upload did: ``complete`` when listmonk applied every row of it; with
    ``read_back``, ``created`` holds every subscriber made while it ran (ids above the newest id
    before the upload, up to the newest once it finished), by address: the upload's new rows,
    and whatever anyone else created meanwhile."""

    complete: bool
    created: dict[str, Made] = field(default_factory=dict)


def listmonk_retriable(response: httpx.Response) -> str | None:
    """429 (a proxy in front of listmonk; listmonk itself has no limiter), 502-504, and 500s
    that are not listmonk reporting a bad value."""
    if response.status_code == 429:
        return "too_many_requests"
    if response.status_code in (502, 503, 504):
        return f"server_error_{response.status_code}"
    if response.status_code == 500:
        try:
            text = message_of(decode_json(response))
        except ValueError:
            text = ""
        if any(marker in text for marker in _PERMANENT_500):
            return None
        return "server_error_500"
    return None


class ListmonkSession:
    """One API user's conversation with one listmonk instance."""

    def __init__(
        self,
        http: ApiClient,
        *,
        page_size: int,
        import_poll: float,
        import_timeout: float,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.http = http
        self.page_size = page_size
        self.import_poll = import_poll
        self.import_timeout = import_timeout
        self._sleep = sleep
        self._import_lock = asyncio.Lock()
        self._waiting: dict[tuple[int, str, bool, bool], list[_Upload]] = defaultdict(list)
        self._floor: int | None = None
        self.newest_write: datetime | None = None

    # --- calls -------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Params | Mapping[str, str | int] | None = None,
        json: object | None = None,
        body: tuple[bytes, str] | None = None,
    ) -> Any:
        """``data`` of a 2xx answer; raise the typed error of any other."""
        response = await self._answer(method, path, params=params, json=json, body=body)
        return self._data(response, method, path)

    async def _answer(
        self,
        method: str,
        path: str,
        *,
        params: Params | Mapping[str, str | int] | None = None,
        json: object | None = None,
        body: tuple[bytes, str] | None = None,
    ) -> httpx.Response:
        """A 2xx answer, its body not yet read as JSON; raise the typed error of any other."""
        response = await self.http.request(
            method, "/api" + path, params=params, json=json, body=body
        )
        if response.status_code < 300:
            return response
        raise self.error(response, method, path)

    def _data(self, response: httpx.Response, method: str, path: str) -> Any:
        """``data`` of a 2xx answer's JSON body."""
        try:
            payload = decode_json(response)
        except ValueError as exc:
            raise ProviderError(
                f"listmonk sent a body that is not JSON for {method} {path}"
            ) from exc
        return payload.get("data") if isinstance(payload, Mapping) else payload

    def error(self, response: httpx.Response, method: str, path: str) -> ProviderError:
        try:
            text = message_of(decode_json(response))
        except ValueError:
            text = ""
        status = response.status_code
        if status == 403:
            return ProviderAuthError(
                f"listmonk refused {method} {path}: {text or 'forbidden'}; check the API key "
                "(destination.api_user and api_token, or username and password) and that the "
                "user's role grants the permission named (listmonk: Admin → Users → User roles)."
            )
        return ProviderError(
            f"listmonk answered {status} to {method} {path}: {text or response.reason_phrase}",
            status=status,
            detail=text,
        )

    async def pages(
        self, path: str, params: Params, *, page_size: int | None = None
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Every result of a paged listing (``page``/``per_page``)."""
        size = page_size or self.page_size
        page = 1
        while True:
            data = await self.call(
                "GET", path, params=[*params, ("page", page), ("per_page", size)]
            )
            results = [r for r in (data or {}).get("results") or () if isinstance(r, Mapping)]
            for item in results:
                yield item
            total = (data or {}).get("total")
            if len(results) < size or (isinstance(total, int) and page * size >= total):
                return
            page += 1

    # --- subscribers -------------------------------------------------------------------------

    async def subscribers(self, params: Params, list_id: int) -> list[Existing]:
        """The subscribers a ``GET /api/subscribers`` listing answers, as seen from ``list_id``
        (the typed decoder for the usual body, plain JSON values for any other)."""
        response = await self._answer("GET", "/subscribers", params=params)
        found = existing_page(response.content, list_id)
        if found is None:
            data = self._data(response, "GET", "/subscribers")
            found = [existing_from(r, list_id) for r in (data or {}).get("results") or ()]
        return found

    async def lookup(self, emails: Sequence[str], list_id: int) -> dict[str, Existing]:
        """The subscribers among ``emails`` (lower-cased) that exist, by address."""
        chunks = [emails[i : i + LOOKUP_CHUNK] for i in range(0, len(emails), LOOKUP_CHUNK)]

        async def one(chunk: Sequence[str]) -> list[Existing]:
            params = [("query", email_query(chunk)), ("per_page", "all")]
            return await self.subscribers(params, list_id)

        found: dict[str, Existing] = {}
        for part in await gather_all([one(c) for c in chunks]):
            for item in part:
                found[item.email] = item
        return found

    async def bounced(self, subscriber_id: int) -> bool:
        data = await self.call("GET", f"/subscribers/{subscriber_id}/bounces")
        return bool(data)

    # --- importer ----------------------------------------------------------------------------

    async def import_rows(
        self,
        list_id: int,
        status: str,
        rows: Sequence[Row],
        *,
        profiles: bool = False,
        read_back: bool = False,
    ) -> Imported:
        """Import ``rows`` (email, name, attribs) onto ``list_id`` with subscription ``status``,
        never overwriting an existing subscription's status, nor (unless ``profiles``) an
        existing subscriber's name and attributes (``overwrite_userinfo``, listmonk 6.2+).

        listmonk runs one import at a time per instance, so callers queue: whoever holds the
        lock imports every row waiting for the same list, status and options in one upload.
        With ``read_back`` the subscribers the upload created are read back by id: listmonk's
        ids come from one sequence, so they lie between the newest id before the upload and
        the newest once it finished, and pages of id ranges (``subscribers.id > A AND
        subscribers.id <= B``) read them concurrently, after the lock is released, while the
        next upload runs."""
        upload = _Upload(rows, asyncio.get_running_loop().create_future())
        key = (list_id, status, profiles, read_back)
        self._waiting[key].append(upload)
        batch: list[_Upload] = []
        stage: _Stage | None = None
        async with self._import_lock:
            if not upload.taken:
                batch = self._waiting.pop(key, [])
                for taken in batch:
                    taken.taken = True
                try:
                    every = [r for u in batch for r in u.rows]
                    stage = await self._import(every, list_id, status, profiles, read_back)
                except BaseException as exc:
                    _fail(batch, upload, exc)
                    raise
        if stage is not None:  # this call led the upload: read back what it made, for all
            try:
                result = Imported(stage.complete)
                if stage.ids is not None:
                    result = Imported(stage.complete, await self._created_in(*stage.ids, list_id))
            except BaseException as exc:
                _fail(batch, upload, exc)
                raise
            for other in batch:
                if not other.done.done():
                    other.done.set_result(result)
        return await upload.done

    async def _import(
        self,
        rows: Sequence[Row],
        list_id: int,
        status: str,
        profiles: bool,
        read_back: bool,
    ) -> _Stage:
        """Upload ``rows`` and wait until listmonk applied them (with the import lock held).
        With ``read_back``, the stage names the id range the upload's subscribers are in."""
        params = {
            "mode": "subscribe",
            "delim": ",",
            "lists": [list_id],
            "subscription_status": status,
            "overwrite": False,
            # listmonk 6.2+; older versions ignore them (the caller checks what landed)
            "overwrite_userinfo": profiles,
            "overwrite_subscription_status": False,
        }
        body = multipart({"params": orjson.dumps(params).decode()}, "bridge.csv", csv_upload(rows))
        # ids come from one sequence: whatever the upload creates gets an id above the newest
        # one before it (read once; after that, the newest one after the previous upload)
        floor = 0
        if read_back:
            floor = self._floor if self._floor is not None else await self._newest_id(0)
        started = await self._start_import(body)
        total = int((started or {}).get("total") or 0)
        final = await self._wait_idle()
        if final.get("status") == "failed":
            logs = await self.call("GET", "/import/subscribers/logs")
            raise ProviderError(
                f"listmonk's import of {len(rows)} subscribers failed; its log ends: "
                f"{str(logs or '')[-300:]}"
            )
        if int(final.get("imported") or 0) < total:
            raise ProviderError(
                f"listmonk's import was stopped after {final.get('imported')} of {total} rows "
                "(someone stopped it in the admin UI?); run the push again"
            )
        complete = int(final.get("imported") or 0) == len(rows)
        if not read_back:
            return _Stage(complete, None)
        top = await self._newest_id(floor)
        self._floor = top
        return _Stage(complete, (floor, top))

    async def _start_import(self, body: tuple[bytes, str]) -> Any:
        """POST the upload. The importer is normally idle here (this session's last import
        finished, and it holds the lock); if another one runs (someone else's), wait for it."""
        while True:
            try:
                return await self.call("POST", "/import/subscribers", body=body)
            except ProviderError as exc:
                if exc.status != 400 or "already running" not in (exc.detail or ""):
                    raise
            await self._wait_idle()

    def saw_write(self, moment: datetime | None) -> None:
        """Note the time (listmonk's database clock) a subscriber changed by this session's
        writes says: ``newest_write`` is the latest."""
        self.newest_write = latest(self.newest_write, moment)

    async def _newest_id(self, above: int) -> int:
        """The highest subscriber id, known to be at least ``above`` (0: none yet).

        Asked as a query, ``subscribers.id > above``: listmonk then counts only the ids above
        (its primary key's index), where a listing with no query would refresh its
        ``mat_list_subscriber_stats`` view, a count of every subscriber and subscription, for
        its ``total`` (or, with ``app.cache_slow_queries``, read a total that may be stale and
        answer nothing while it says 0)."""
        params: Params = [
            ("query", f"subscribers.id > {above}"),
            ("order_by", "id"),
            ("order", "desc"),
            ("page", 1),
            ("per_page", 1),
        ]
        data = await self.call("GET", "/subscribers", params=params) or {}
        results = data.get("results") or []
        return max(above, int(results[0]["id"])) if results else above

    async def _created_in(self, floor: int, top: int, list_id: int) -> dict[str, Made]:
        """Every subscriber with an id in ``(floor, top]``, by address: pages of id ranges of
        ``page_size`` (a range holds at most that many subscribers), ``READ_BACK_PAGES`` at a
        time, each reduced to what the caller checks as it arrives. The change time of the
        newest one is noted as a time of this session's writes."""
        size = self.page_size
        bounds = [(low, min(low + size, top)) for low in range(floor, top, size)]
        gate = asyncio.Semaphore(READ_BACK_PAGES)

        async def page(low: int, high: int) -> Page:
            async with gate:
                return await self._id_range(low, high, list_id)

        found: dict[str, Made] = {}
        newest: Existing | None = None
        for made, last in await gather_all([page(low, high) for low, high in bounds]):
            found.update(made)
            newest = last or newest
        if newest is not None:  # made by the upload, or while it ran
            self.saw_write(newest.changed)
        return found

    async def _id_range(self, low: int, high: int, list_id: int) -> Page:
        """The subscribers with an id in ``(low, high]``, by address, and the last of them."""
        params: list[tuple[str, str | int]] = [
            ("query", f"subscribers.id > {low} AND subscribers.id <= {high}"),
            ("order_by", "id"),
            ("order", "asc"),
            ("page", 1),
            ("per_page", high - low),
        ]
        response = await self._answer("GET", "/subscribers", params=params)
        page = made_page(response.content, list_id)
        if page is None:
            data = self._data(response, "GET", "/subscribers") or {}
            page = made_rows([r for r in data.get("results") or () if isinstance(r, dict)], list_id)
        return page

    async def _wait_idle(self) -> Mapping[str, Any]:
        """Wait until no import is running; return the importer's last status."""
        delay = self.import_poll
        waited = 0.0
        while True:
            state = await self.call("GET", "/import/subscribers") or {}
            if state.get("status") not in ("importing", "stopping"):
                return dict(state)
            if waited >= self.import_timeout:
                raise ProviderError(
                    f"listmonk's importer stayed busy for {waited:.0f}s (another import running?);"
                    " wait for it to finish in listmonk's admin UI (Subscribers → Import)"
                )
            await self._sleep(delay)
            waited += delay
            delay = min(delay * 2, 1.0)


class _Upload:
    __slots__ = ("done", "rows", "taken")

    def __init__(self, rows: Sequence[Row], done: asyncio.Future[Imported]) -> None:
        self.rows = rows
        self.done = done
        self.taken = False  # in an upload (someone's): its result comes through ``done``


class _Stage(NamedTuple):
    """An upload listmonk applied: whether it applied every row, and (to read back) the range
    of ids ``(floor, top]`` its new subscribers are in."""

    complete: bool
    ids: tuple[int, int] | None


def _fail(batch: Sequence[_Upload], mine: _Upload, exc: BaseException) -> None:
    """Hand an upload's failure to every other caller whose rows were in it."""
    for other in batch:
        if other is not mine and not other.done.done():
            other.done.set_exception(exc)
