"""Talking to Mailchimp: JSON calls with typed errors, paging, and member operations run
directly or through async ``/batches``. The adapter (``mailchimp.py``) speaks the provider
contract on top of this; the HTTP machinery underneath (budget, retries) is ``_http.py``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

from campaign_bridge.errors import BridgeError, ProviderAuthError, ProviderError, RetriableError
from campaign_bridge.providers._http import ApiClient, decode_json, gather_all
from campaign_bridge.providers._mailchimp_errors import ErrorKind, classify, parse_problem, scrub
from campaign_bridge.providers._mailchimp_wire import (
    Operation,
    OpResult,
    batch_operation,
    classify_op,
    parse_batch_results,
)

__all__ = [
    "MailchimpSession",
    "basic_auth",
    "list_missing",
    "mailchimp_retriable",
    "op_result",
]

logger = logging.getLogger(__name__)

MEMBER_RESULT_FIELDS = "id,contact_id,email_address,status,last_changed"
BATCH_FIELDS = "id,status,total_operations,finished_operations,errored_operations,response_body_url"


def mailchimp_retriable(response: httpx.Response) -> str | None:
    """429, 5xx, and a bare (non-JSON) 403, which Mailchimp uses to throttle high volume."""
    if response.status_code == 429:
        return "too_many_requests"
    if response.status_code >= 500:
        return f"server_error_{response.status_code}"
    if response.status_code == 403:
        problem = parse_problem(403, response.content, response.headers.get("content-type", ""))
        if not problem.is_json:
            return "throttled_403"
    return None


class MailchimpSession:
    """One API key's conversation with Mailchimp."""

    def __init__(
        self,
        http: ApiClient,
        *,
        provider: str,
        data_centre: str | None,
        page_size: int,
        batch_threshold: int,
        batch_max_operations: int,
        batch_poll_initial: float,
        batch_poll_max: float,
        batch_timeout: float,
        sleep: Callable[[float], Awaitable[None]],
        batch_linger: float = 0.05,
    ) -> None:
        self.http = http
        self.provider = provider
        self.base_url = http.base_url
        self.data_centre = data_centre
        self.page_size = page_size
        self.batch_threshold = batch_threshold
        self.batch_max_operations = batch_max_operations
        self.batch_poll_initial = batch_poll_initial
        self.batch_poll_max = batch_poll_max
        self.batch_timeout = batch_timeout
        self.batch_linger = batch_linger
        self.sleep = sleep
        # Operations of concurrent run() calls waiting to share one /batches job.
        self._waiting: list[tuple[Sequence[Operation], asyncio.Future[dict[str, OpResult]]]] = []
        self._waiting_ops = 0
        self._flusher: asyncio.TimerHandle | None = None
        self._submitting: set[asyncio.Task[None]] = set()

    async def get_json(
        self,
        path: str,
        params: Mapping[str, str | int] | None = None,
        *,
        list_id: str | None = None,
    ) -> Mapping[str, Any]:
        return await self.request_json("GET", path, params=params, list_id=list_id)

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: object | None = None,
        list_id: str | None = None,
    ) -> Mapping[str, Any]:
        response = await self.http.request(method, path, params=params, json=json)
        if response.status_code >= 300:
            raise self.error(response, method, path, list_id=list_id)
        return self.json_object(response, method, path)

    @staticmethod
    def json_object(response: httpx.Response, method: str, path: str) -> Mapping[str, Any]:
        """A successful answer's JSON object (``{}`` for an empty body or a non-object)."""
        try:
            data = decode_json(response) or {}
        except ValueError as exc:
            raise RetriableError(
                f"Mailchimp answered {method} {path} with a body that is not JSON; try again"
            ) from exc
        return data if isinstance(data, Mapping) else {}

    async def pages(
        self, path: str, key: str, params: Mapping[str, str | int] | None = None
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Every item of a collection, paged with ``count``/``offset`` up to ``total_items``.

        Once ``total_items`` says there is more, the next page is requested before this one's
        items are handed out, so the provider prepares it while the caller works."""
        offset = 0
        ahead: asyncio.Future[Mapping[str, Any]] | None = None
        try:
            data = await self.get_json(path, self._page(params, offset))
            while True:
                items = [i for i in data.get(key) or () if isinstance(i, Mapping)]
                offset += len(items)
                total = data.get("total_items")
                if not items or (isinstance(total, int) and offset >= total):
                    for item in items:
                        yield item
                    return
                if isinstance(total, int):
                    ahead = asyncio.ensure_future(self.get_json(path, self._page(params, offset)))
                for item in items:
                    yield item
                if ahead is None:
                    data = await self.get_json(path, self._page(params, offset))
                else:
                    data, ahead = await ahead, None
        finally:
            if ahead is not None:
                _discard(ahead)

    def _page(self, params: Mapping[str, str | int] | None, offset: int) -> dict[str, str | int]:
        page = {**(params or {}), "count": self.page_size, "offset": offset}
        fields = page.get("fields")
        if isinstance(fields, str) and "total_items" not in fields.split(","):
            page["fields"] = fields + ",total_items"
        return page

    def error(
        self, response: httpx.Response, method: str, path: str, *, list_id: str | None
    ) -> BridgeError:
        problem = parse_problem(
            response.status_code, response.content, response.headers.get("content-type", "")
        )
        found = classify(problem)
        if found.kind is ErrorKind.AUTH:
            return self.auth_error(found.message)
        if response.status_code == 404 and list_id is not None:
            return list_missing(list_id)
        if found.kind is ErrorKind.RETRIABLE:
            return RetriableError(f"Mailchimp {method} {path}: {found.message}")
        return ProviderError(
            f"Mailchimp refused {method} {path}: {found.message}",
            status=response.status_code,
            title=problem.title,
            detail=scrub(problem.detail),
        )

    def auth_error(self, said: str) -> ProviderAuthError:
        host = httpx.URL(self.base_url).host
        suffix = f"ends in '-{self.data_centre}', so " if self.data_centre else ""
        return ProviderAuthError(
            f"Mailchimp rejected the API key ({said.split(' — ')[0]}): check the API key and "
            f"that its data centre suffix matches the account's data centre (the key {suffix}"
            f"requests go to {host}); a disabled key must be replaced under "
            "Profile > Extras > API keys in Mailchimp.",
            status=401,
            title="API Key Invalid",
        )

    async def run(self, ops: Sequence[Operation], list_id: str) -> dict[str, OpResult]:
        """Execute operations directly, or through ``/batches`` when there are many."""
        if not ops:
            return {}
        if len(ops) < self.batch_threshold:
            return await self.run_direct(ops)
        results = await self._pooled(ops)
        # Operations the batch could not do (throttled, server error, no result): do them
        # directly, where the retry policy applies.
        again = [op for op in ops if _redo(results.get(op.key), op)]
        if again:
            logger.info(
                "mailchimp: %d of %d batch operations redone directly",
                len(again),
                len(ops),
                extra={"action": "batch_redo", "provider": self.provider},
            )
            results.update(await self.run_direct(again))
        return results

    async def _pooled(self, ops: Sequence[Operation]) -> dict[str, OpResult]:
        """Run operations through ``/batches``, sharing jobs with concurrent calls.

        Mailchimp works through an account's batches one at a time, each with a fixed start-up
        cost, so one job per 500-member slice is slow: the operations of calls made within
        ``batch_linger`` seconds of each other are submitted together (up to
        ``batch_max_operations`` per job; a larger gathering is split into several jobs
        submitted at once). Each caller gets the results of its own operations."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, OpResult]] = loop.create_future()
        self._waiting.append((ops, future))
        self._waiting_ops += len(ops)
        if self._waiting_ops >= self.batch_max_operations:
            self._flush()
        elif self._flusher is None:
            self._flusher = loop.call_later(self.batch_linger, self._flush)
        return await future

    def _flush(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        entries, self._waiting, self._waiting_ops = self._waiting, [], 0
        if entries:
            task = asyncio.ensure_future(self._submit(entries))
            self._submitting.add(task)
            task.add_done_callback(self._submitting.discard)

    async def _submit(
        self, entries: list[tuple[Sequence[Operation], asyncio.Future[dict[str, OpResult]]]]
    ) -> None:
        # Keys are unique within one call only: the operation ids say which call's it is.
        tagged = [
            dataclasses.replace(op, key=f"{n}.{op.key}")
            for n, (ops, _) in enumerate(entries)
            for op in ops
        ]
        size = self.batch_max_operations
        merged: dict[str, OpResult] = {}
        try:
            chunks = [tagged[i : i + size] for i in range(0, len(tagged), size)]
            for part in await gather_all([self.run_batch(chunk) for chunk in chunks]):
                merged.update(part)
        except BaseException as exc:
            for _, future in entries:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for n, (ops, future) in enumerate(entries):
            if not future.done():
                mine = ((op.key, merged.get(f"{n}.{op.key}")) for op in ops)
                future.set_result({key: result for key, result in mine if result is not None})

    async def run_direct(self, ops: Sequence[Operation]) -> dict[str, OpResult]:
        async def one(op: Operation) -> tuple[str, OpResult]:
            params = {"fields": MEMBER_RESULT_FIELDS} if op.method == "PUT" else None
            response = await self.http.request(op.method, op.path, params=params, json=op.body)
            return op.key, op_result(response)

        return dict(await gather_all([one(op) for op in ops]))

    async def run_batch(self, ops: Sequence[Operation]) -> dict[str, OpResult]:
        body = {"operations": [batch_operation(op) for op in ops]}
        batch = await self.request_json("POST", "/batches", json=body)
        batch_id = str(batch.get("id"))
        delay = self.batch_poll_initial
        waited = 0.0
        while batch.get("status") != "finished":
            if waited > self.batch_timeout:
                raise RetriableError(
                    f"Mailchimp batch {batch_id} did not finish within {self.batch_timeout:.0f}s; "
                    "its operations will be sent again in the next run"
                )
            await self.sleep(delay)
            waited += delay
            delay = min(self.batch_poll_max, delay * 1.5)
            try:
                batch = await self.get_json(f"/batches/{batch_id}", {"fields": BATCH_FIELDS})
            except ProviderError as exc:
                if exc.status != 404:
                    raise
                # The batch is gone (deleted, expired): its operations are redone directly.
                logger.warning(
                    "mailchimp: batch %s disappeared while polling; redoing it directly",
                    batch_id,
                    extra={"action": "batch_lost", "provider": self.provider},
                )
                return {}
        url = str(batch.get("response_body_url") or "")
        if not url:
            return {}
        response = await self.http.download(url)
        if response.status_code != 200:
            raise RetriableError(
                f"could not download the results of Mailchimp batch {batch_id} "
                f"(HTTP {response.status_code}); its operations will be sent again"
            )
        try:
            return parse_batch_results(response.content)
        except (OSError, EOFError, ValueError) as exc:  # tarfile/gzip errors
            raise RetriableError(
                f"the results of Mailchimp batch {batch_id} are not a readable tar.gz archive; "
                "its operations will be sent again"
            ) from exc


def _discard(future: asyncio.Future[Any]) -> None:
    """Drop a page requested ahead that is no longer wanted (the caller stopped early)."""
    if future.done():
        if not future.cancelled():
            future.exception()  # retrieved: no "exception was never retrieved" warning
        return
    future.cancel()


def _redo(result: OpResult | None, op: Operation) -> bool:
    """Whether a batch operation must be done again directly (no result, or a transient one)."""
    if result is None or result.status is None:
        return True
    if 200 <= result.status < 300:
        return False
    return classify_op(result, op.emails).kind is ErrorKind.RETRIABLE


def list_missing(list_id: str) -> ProviderError:
    return ProviderError(
        f"Mailchimp has no audience (list) with id '{list_id}': check destination.list_id "
        "(Audience > Settings > Audience name and defaults shows the id) and that the API key "
        "belongs to the account that owns it",
        status=404,
        title="Resource Not Found",
    )


def op_result(response: httpx.Response) -> OpResult:
    if 200 <= response.status_code < 300:
        try:
            body = decode_json(response)
        except ValueError:
            body = None
        return OpResult(response.status_code, body)
    problem = parse_problem(
        response.status_code, response.content, response.headers.get("content-type", "")
    )
    return OpResult(response.status_code, None, problem)


def basic_auth(key: str) -> str:
    return "Basic " + base64.b64encode(f"campaign-bridge:{key}".encode()).decode("ascii")
