"""The Brevo adapter's HTTP helpers: JSON calls with one error translation, offset paging,
background processes (imports and exports) and their files.

Processes: ``GET /processes`` sits in Brevo's "everything else" rate-limit bucket (100
requests an hour on the general tier), so the processes waited for are polled together (one
``GET /processes`` page answers for up to 50 in flight; processes started together are watched
from the start, ``watch``) with a backoff that starts at ``poll_initial`` and doubles up to
``poll_max`` (1 s and 60 s by default; back to the start whenever one finishes), never faster
than the pace that spends what is left of the hourly window evenly (``_brevo_budget``).
``notifyUrl`` would save the polls but needs an address Brevo can reach; the bridge does not
assume one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from campaign_bridge.errors import ProviderError, RetriableError
from campaign_bridge.providers._brevo_budget import HourlyBudget
from campaign_bridge.providers._brevo_errors import translate
from campaign_bridge.providers._http import ApiClient, decode_json, gather_all

__all__ = ["BrevoSession", "Process", "list_missing"]

logger = logging.getLogger(__name__)

_DONE = frozenset({"completed", "failed", "cancelled"})
PROCESS_PAGE = 50  # GET /processes: most a page
PROCESS_PAGES = 4  # pages read a poll at most, before reading the rest one by one


def list_missing(list_id: object) -> ProviderError:
    return ProviderError(
        f"Brevo has no list {list_id}: check destination.list_id (the list's number, shown in "
        "Contacts > Lists) and that the API key belongs to the account that owns it.",
        status=404,
    )


@dataclass(frozen=True)
class Process:
    id: int
    status: str
    body: Mapping[str, Any]


class BrevoSession:
    def __init__(
        self,
        http: ApiClient,
        *,
        poll_initial: float,
        poll_max: float,
        process_timeout: float,
        sleep: Callable[[float], Awaitable[None]],
        budget: HourlyBudget | None = None,
    ) -> None:
        self.http = http
        self.poll_initial = poll_initial
        self.poll_max = poll_max
        self.process_timeout = process_timeout
        self._sleep = sleep
        self._waiting: dict[int, asyncio.Future[Process]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self.budget = budget or HourlyBudget(sleep)

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: object | None = None,
    ) -> httpx.Response:
        """Send with retries (paced, under ``/contacts``: ``_brevo_pace``); any final answer
        is returned for the caller to read. The others wait rather than spend the reserve of
        the hourly window (``_brevo_budget``)."""
        if path.startswith("/contacts"):
            return await self.http.request(method, path, params=params, json=json)
        await self.budget.take()
        response = await self.http.request(method, path, params=params, json=json)
        self.budget.observe(response)
        return response

    async def json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: object | None = None,
        list_id: object = None,
        what: str = "",
    ) -> Any:
        """The decoded body of a 2xx answer; a 404 on a list's path names the list; anything
        else raises the translated error."""
        response = await self.call(method, path, params=params, json=json)
        if response.is_success:
            return decode_json(response) or {}
        if response.status_code == 404 and list_id is not None:
            raise list_missing(list_id)
        raise translate(response, what or f"{method} {_shape(path)}")

    async def pages(
        self, path: str, key: str, params: Mapping[str, str | int], page_size: int
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Items of an offset-paged listing (``limit``/``offset``, ``count`` = the total)."""
        offset = 0
        while True:
            data = await self.json(
                "GET", path, params={**params, "limit": page_size, "offset": offset}
            )
            items = list(data.get(key) or ())
            for item in items:
                yield item
            offset += len(items)
            total = data.get("count")
            if not items or len(items) < page_size or (isinstance(total, int) and offset >= total):
                return

    def watch(self, process_id: int) -> asyncio.Future[Process]:
        """Start watching a process at once (its answer comes with the next poll); ``wait``
        for it later. Processes started together should be watched together, so that one
        ``GET /processes`` answers for all of them, not one poll each as their turn comes."""
        future = self._waiting.get(process_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[process_id] = future
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch())
        return future

    async def wait(self, process_id: int, what: str) -> Process:
        """The process once it is done (completed, failed or cancelled). Every process waited
        for at once is polled by one watcher: one ``GET /processes`` (50 a page) answers for
        all of them, so many imports in flight cost one request a poll, not one each."""
        return await self.outcome(process_id, self.watch(process_id), what)

    async def outcome(self, process_id: int, future: asyncio.Future[Process], what: str) -> Process:
        """A watched process once it is done (``wait``)."""
        try:
            return await asyncio.wait_for(future, self.process_timeout)
        except TimeoutError:
            raise RetriableError(
                f"Brevo's {what} (process {process_id}) was not done after "
                f"{self.process_timeout:.0f}s; it may finish later: run again then"
            ) from None
        finally:
            self.forget(process_id)

    def forget(self, process_id: int) -> None:
        """Stop watching a process (one no longer waited for)."""
        future = self._waiting.pop(process_id, None)
        if future is None:
            return
        if future.done():
            if not future.cancelled():
                future.exception()  # a poll's failure, raised to whoever waited: retrieved
        else:
            future.cancel()

    async def _watch(self) -> None:
        delay = self.poll_initial
        try:
            while self._waiting:
                done = False
                taken = self.budget.used
                for found in await self._processes(sorted(self._waiting)):
                    future = self._waiting.pop(found.id, None)
                    if future is not None and not future.done():
                        future.set_result(found)
                        done = True
                if not self._waiting:
                    return
                delay = self.poll_initial if done else min(self.poll_max, delay * 2)
                # a poll that took several requests waits as much longer: polls keep to the
                # pace whether one page answered or each process had to be read on its own
                spacing = self.budget.poll_spacing() * max(1, self.budget.used - taken)
                await self._sleep(max(delay, spacing))
        except Exception as exc:  # handed to every waiter, which raises it
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(exc)

    async def _processes(self, ids: list[int]) -> list[Process]:
        """The finished processes among ``ids``: the newest processes, 50 a page, down to the
        oldest of ``ids`` when several are waited for; a process not found there (or the only
        one) is read on its own."""
        found: dict[int, Process] = {}
        if len(ids) > 1:
            offset = 0
            while offset < PROCESS_PAGES * PROCESS_PAGE:
                data = await self.json(
                    "GET",
                    "/processes",
                    params={"limit": PROCESS_PAGE, "sort": "desc", "offset": offset},
                    what="reading processes",
                )
                items = [_process(p) for p in data.get("processes") or ()]
                found.update((p.id, p) for p in items if p.id in self._waiting)
                offset += len(items)
                if len(items) < PROCESS_PAGE or min(p.id for p in items) <= ids[0]:
                    break
        for process_id in ids:
            if process_id not in found:
                data = await self.json("GET", f"/processes/{process_id}", what="reading a process")
                found[process_id] = _process(data)
        return [p for p in found.values() if p.status in _DONE]

    async def download(self, url: str) -> str:
        """A file Brevo links to (an import report, an export); no credentials are sent."""
        response = await self.http.download(url)
        if not response.is_success:
            raise ProviderError(
                f"Brevo's file link answered {response.status_code}; links expire, run again",
                status=response.status_code,
            )
        return response.content.decode("utf-8", errors="replace")

    async def gather_limited(
        self, jobs: list[Callable[[], Awaitable[None]]], limit: int = 64
    ) -> None:
        """Run many small jobs at once without creating them all up front."""
        queue = list(reversed(jobs))

        async def worker() -> None:
            while queue:
                await queue.pop()()

        await gather_all([worker() for _ in range(min(limit, len(jobs)))])


def _process(data: Mapping[str, Any]) -> Process:
    return Process(int(data.get("id") or 0), str(data.get("status") or ""), data)


def _shape(path: str) -> str:
    """A path without its identifiers (addresses never reach a message)."""
    parts = path.split("/")
    return "/".join("{id}" if ("@" in p or p.isdigit()) else p for p in parts)
