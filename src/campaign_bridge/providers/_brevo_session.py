"""The Brevo adapter's HTTP helpers: JSON calls with one error translation, offset paging,
background processes (imports and exports) and their files.

Processes: ``GET /processes/{id}`` sits in Brevo's "everything else" rate-limit bucket (100
requests an hour on the general tier), so a process is polled with a backoff that starts at
``poll_initial`` and doubles up to ``poll_max`` (1 s and 60 s by default: a long import costs
about one request a minute). ``notifyUrl`` would save the polls but needs an address Brevo can
reach; the bridge does not assume one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from campaign_bridge.errors import ProviderError, RetriableError
from campaign_bridge.providers._brevo_errors import translate
from campaign_bridge.providers._http import ApiClient, decode_json, gather_all

__all__ = ["BrevoSession", "Process", "list_missing"]

logger = logging.getLogger(__name__)

_DONE = frozenset({"completed", "failed", "cancelled"})


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
    ) -> None:
        self.http = http
        self.poll_initial = poll_initial
        self.poll_max = poll_max
        self.process_timeout = process_timeout
        self._sleep = sleep

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: object | None = None,
    ) -> httpx.Response:
        """Send with retries; any final answer is returned for the caller to read."""
        return await self.http.request(method, path, params=params, json=json)

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

    async def wait(self, process_id: int, what: str) -> Process:
        """Poll a process until it is done (completed, failed or cancelled)."""
        started = time.monotonic()
        delay = self.poll_initial
        while True:
            data = await self.json("GET", f"/processes/{process_id}", what=f"reading {what}")
            status = str(data.get("status") or "")
            if status in _DONE:
                return Process(process_id, status, data)
            if time.monotonic() - started > self.process_timeout:
                raise RetriableError(
                    f"Brevo's {what} (process {process_id}) was still {status or 'queued'} after "
                    f"{self.process_timeout:.0f}s; it may finish later: run again then"
                )
            await self._sleep(delay)
            delay = min(self.poll_max, delay * 2)

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


def _shape(path: str) -> str:
    """A path without its identifiers (addresses never reach a message)."""
    parts = path.split("/")
    return "/".join("{id}" if ("@" in p or p.isdigit()) else p for p in parts)
