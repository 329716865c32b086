"""Async batch operations (``/batches``) and batch webhooks (``/batch-webhooks``).

``POST /batches`` accepts ``{"operations": [{method, path, params, body, operation_id}]}``
(``body`` is a *string* of JSON, as on Mailchimp) and answers 200 with the batch ``pending``.
A background task then moves it ``pending → preprocessing → started → finalizing → finished``,
running every operation through the same handlers as the HTTP API (``Sandbox.dispatch``), one
batch at a time. The results are a real gzipped tar served by the sandbox at
``response_body_url``; each member file is a JSON array of
``{"status_code", "operation_id", "response": "<JSON string>"}``. A GET of a collection is
run page by page in ``preprocessing`` (one result per page, each with the operation's id, and
``total_operations`` counts the pages), as Mailchimp documents. On completion every enabled
batch webhook gets a form-encoded POST (``data[response_body_url]`` ...).

Control API: ``POST /_sandbox/batches/process`` runs every unfinished batch now and waits;
``PUT /_sandbox/batches/settings`` ``{"auto": true, "step_seconds": 0.02}``;
``GET /_sandbox/batches/{id}/results.tar.gz`` serves the archive.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from campaign_bridge.sandbox.mailchimp import webhooks
from campaign_bridge.sandbox.mailchimp.model import Sandbox
from campaign_bridge.sandbox.mailchimp.wire import (
    ApiRequest,
    Problem,
    Reply,
    Route,
    collection_links,
    invalid_resource,
    link,
    not_found,
    page,
    paging,
)

__all__ = [
    "BatchState",
    "build_archive",
    "control_routes",
    "install",
    "parse_operations",
    "read_archive",
    "routes",
    "state",
]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_PENDING = 500
MAX_BATCH_WEBHOOKS = 20
RESULTS_PER_FILE = 500
STATUSES = ("pending", "preprocessing", "started", "finalizing", "finished")
_STATE = "batches"


# --- pure -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    params: dict[str, str]
    body: str | None
    operation_id: str | None


def _field_error(name: str, message: str) -> Problem:
    return invalid_resource(errors=[{"field": name, "message": message}])


def parse_operations(body: Any) -> list[Operation]:
    """Validate a ``POST /batches`` body the way Mailchimp's schema does."""
    if not isinstance(body, Mapping):
        kind = "NULL" if body is None else type(body).__name__
        raise _field_error("", f"Schema describes object, {kind} found instead")
    raw = body.get("operations")
    if raw is None:
        raise _field_error("", "Required fields were not provided: operations")
    if not isinstance(raw, list):
        raise _field_error(
            "operations", f"Schema describes array, {type(raw).__name__} found instead"
        )
    operations = []
    for i, op in enumerate(raw):
        where = f"operations.{i}"
        if not isinstance(op, Mapping):
            raise _field_error(where, "Schema describes object")
        missing = [k for k in ("method", "path") if k not in op]
        if missing:
            raise _field_error(where, f"Required fields were not provided: {', '.join(missing)}")
        method = op["method"]
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise _field_error(f"{where}.method", "Value is not one of the enum values")
        path = op["path"]
        if not isinstance(path, str):
            raise _field_error(f"{where}.path", "Schema describes string")
        params = op.get("params") or {}
        if not isinstance(params, Mapping):
            raise _field_error(f"{where}.params", "Schema describes object")
        body_text = op.get("body")
        if body_text is not None and not isinstance(body_text, str):
            raise _field_error(
                f"{where}.body",
                f"Schema describes string, {type(body_text).__name__} found instead",
            )
        op_id = op.get("operation_id")
        operations.append(
            Operation(
                method.upper(),
                path,
                {str(k): _param(v) for k, v in params.items()},
                body_text,
                None if op_id is None else str(op_id),
            )
        )
    return operations


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def result_entry(status: int, operation_id: str | None, response: Any) -> dict[str, Any]:
    text = "" if response is None else orjson.dumps(response).decode()
    return {"status_code": status, "operation_id": operation_id, "response": text}


def build_archive(batch_id: str, results: Sequence[Mapping[str, Any]], mtime: int) -> bytes:
    """A gzipped tar of JSON arrays (``<batch id>/<n>.json``, 500 results per file)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directory = tarfile.TarInfo(batch_id)
        directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, 0o755, mtime
        tar.addfile(directory)
        chunks = [
            results[i : i + RESULTS_PER_FILE] for i in range(0, len(results), RESULTS_PER_FILE)
        ]
        for n, chunk in enumerate(chunks or [[]]):
            data = orjson.dumps(list(chunk))
            info = tarfile.TarInfo(f"{batch_id}/{n}.json")
            info.size, info.mode, info.mtime = len(data), 0o644, mtime
            tar.addfile(info, io.BytesIO(data))
    # Level 1: a real gzip, without spending the batch's time on squeezing it (level 9 took
    # longer than running the operations).
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=mtime)


def read_archive(data: bytes) -> list[dict[str, Any]]:
    """Every result of an archive, files in name order (what a client does with it)."""
    out: list[dict[str, Any]] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile() and m.name.endswith(".json")),
            key=lambda m: (len(m.name), m.name),
        )
        for member in members:
            handle = tar.extractfile(member)
            if handle is not None:
                out.extend(json.loads(handle.read()))
    return out


# --- state -------------------------------------------------------------------------------------


@dataclass
class Batch:
    id: str
    operations: list[Operation]
    submitted_at: str
    base: str  # scheme://host of the sandbox that accepted it (for response_body_url)
    status: str = "pending"
    finished_operations: int = 0
    errored_operations: int = 0
    completed_at: str = ""
    archive: bytes | None = None
    history: list[str] = field(default_factory=lambda: ["pending"])

    def move(self, status: str) -> None:
        self.status = status
        self.history.append(status)

    @property
    def response_body_url(self) -> str:
        if self.archive is None:
            return ""
        return f"{self.base}/_sandbox/batches/{self.id}/results.tar.gz"


@dataclass
class BatchHook:
    id: str
    url: str
    enabled: bool = True


@dataclass
class BatchState:
    batches: dict[str, Batch] = field(default_factory=dict)
    hooks: dict[str, BatchHook] = field(default_factory=dict)
    auto: bool = True
    step_seconds: float = 0.02
    runner: asyncio.Lock | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        self.batches.clear()
        self.hooks.clear()
        self.auto, self.step_seconds = True, 0.02

    def dump(self) -> dict[str, Any]:
        return {
            "batches": [
                {
                    "id": b.id,
                    "status": b.status,
                    "total_operations": len(b.operations),
                    "finished_operations": b.finished_operations,
                    "errored_operations": b.errored_operations,
                    "submitted_at": b.submitted_at,
                    "completed_at": b.completed_at,
                    "history": list(b.history),
                }
                for b in self.batches.values()
            ],
            "batch_webhooks": [vars(h) for h in self.hooks.values()],
        }

    def load(self, data: Any) -> None:
        self.hooks = {h["id"]: BatchHook(**h) for h in (data or {}).get("batch_webhooks", [])}


def state(sandbox: Sandbox) -> BatchState:
    found = sandbox.extensions.get(_STATE)
    if found is None:
        found = BatchState()
        sandbox.extensions[_STATE] = found
    assert isinstance(found, BatchState)
    return found


def install(sandbox: Sandbox) -> None:
    st = state(sandbox)
    sandbox.register_state(_STATE, st.dump, st.load, st.reset)


# --- processing -------------------------------------------------------------------------------


async def _execute(sandbox: Sandbox, op: Operation) -> tuple[int, Any]:
    path = op.path
    if path.startswith("/3.0/") or path == "/3.0":
        path = path[len("/3.0") :] or "/"
    body: Any = None
    if op.body is not None and op.body.strip():
        try:
            body = json.loads(op.body)
        except ValueError:
            with sandbox.lock:
                instance = sandbox.ids.uuid()
            problem = Problem(
                400, "JSON Parse Error", "We encountered an unspecified JSON parsing error."
            )
            return 400, problem.document(instance)
    return await sandbox.dispatch(op.method, path, op.params, body)


async def _pages(sandbox: Sandbox, op: Operation) -> list[Operation]:
    """The operations a GET stands for: one per page when it reads a collection.

    Mailchimp: "For GET requests requiring pagination, each page counts as a separate
    operation" — a batch returns the whole collection, one result per page (each with the
    operation's ``operation_id``), paged by the operation's own ``count`` (default 10) from its
    ``offset``. A probe asks for ``total_items`` alone; anything that is not a collection (no
    integer ``total_items``, an error, bad paging) stays one operation and answers as it would.
    """
    if op.method != "GET":
        return [op]
    try:
        count, offset = paging(op.params)
    except Problem:
        return [op]
    if count == 0:
        return [op]
    probe = {k: v for k, v in op.params.items() if k not in ("fields", "exclude_fields")}
    probe.update(count="0", fields="total_items")
    status, body = await _execute(sandbox, replace(op, params=probe))
    total = body.get("total_items") if status == 200 and isinstance(body, dict) else None
    if not isinstance(total, int) or isinstance(total, bool) or total <= offset + count:
        return [op]
    pages = -(-(total - offset) // count)
    return [
        replace(op, params={**op.params, "offset": str(offset + n * count)}) for n in range(pages)
    ]


async def process(sandbox: Sandbox, batch_id: str) -> None:
    """Run one batch to ``finished`` (one batch at a time per sandbox)."""
    st = state(sandbox)
    if st.runner is None:
        st.runner = asyncio.Lock()
    async with st.runner:
        with sandbox.lock:
            batch = st.batches.get(batch_id)
            if batch is None or batch.status == "finished":
                return
            batch.move("preprocessing")
            operations = list(batch.operations)
        await asyncio.sleep(st.step_seconds)
        expanded = [page_op for op in operations for page_op in await _pages(sandbox, op)]
        with sandbox.lock:
            if st.batches.get(batch_id) is not batch:
                return  # deleted meanwhile
            batch.operations = expanded  # total_operations counts pages from here on
            batch.move("started")
        await asyncio.sleep(st.step_seconds)
        results = []
        for op in batch.operations:
            status, response = await _execute(sandbox, op)
            results.append(result_entry(status, op.operation_id, response))
            with sandbox.lock:
                if st.batches.get(batch_id) is not batch:
                    return
                batch.finished_operations += 1
                batch.errored_operations += status >= 400
        with sandbox.lock:
            batch.move("finalizing")
            mtime = int(sandbox.clock.now().timestamp())
        archive = build_archive(batch.id, results, mtime)
        await asyncio.sleep(st.step_seconds)
        with sandbox.lock:
            if st.batches.get(batch_id) is not batch:
                return
            batch.archive = archive
            batch.completed_at = sandbox.clock.stamp()
            batch.move("finished")
            _notify(sandbox, st, batch)


def _notify(sandbox: Sandbox, st: BatchState, batch: Batch) -> None:
    data = {
        "id": batch.id,
        "status": batch.status,
        "total_operations": len(batch.operations),
        "finished_operations": batch.finished_operations,
        "errored_operations": batch.errored_operations,
        "submitted_at": batch.submitted_at,
        "completed_at": batch.completed_at,
        "response_body_url": batch.response_body_url,
    }
    deliveries = webhooks.bus(sandbox)
    for hook in st.hooks.values():
        if hook.enabled:
            deliveries.enqueue(
                kind="batch",
                hook_id=hook.id,
                url=hook.url,
                event_type="batch_operation_completed",
                source=None,
                data=data,
            )


def _schedule(sandbox: Sandbox, st: BatchState, batch_id: str) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop (direct use): the control endpoint processes it
    task = loop.create_task(process(sandbox, batch_id), name=f"sandbox-batch-{batch_id}")
    st.tasks.add(task)
    task.add_done_callback(st.tasks.discard)


async def process_all(sandbox: Sandbox) -> int:
    st = state(sandbox)
    with sandbox.lock:
        waiting = [b.id for b in st.batches.values() if b.status != "finished"]
    for batch_id in waiting:
        await process(sandbox, batch_id)
    return len(waiting)


# --- API --------------------------------------------------------------------------------------


def _origin(base_url: str) -> str:
    return base_url[: -len("/3.0")] if base_url.endswith("/3.0") else base_url.rstrip("/")


def _view(batch: Batch, base: str) -> dict[str, Any]:
    path = f"/batches/{batch.id}"
    return {
        "id": batch.id,
        "status": batch.status,
        "total_operations": len(batch.operations),
        "finished_operations": batch.finished_operations,
        "errored_operations": batch.errored_operations,
        "submitted_at": batch.submitted_at,
        "completed_at": batch.completed_at,
        "response_body_url": batch.response_body_url,
        "_links": [
            link("parent", base + "/batches", schema="Batches/CollectionResponse"),
            link("self", base + path, schema="Batches/Response"),
            link("delete", base + path, "DELETE"),
        ],
    }


def start_batch(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    operations = parse_operations(request.body)
    st = state(sandbox)
    unfinished = sum(b.status != "finished" for b in st.batches.values())
    if unfinished >= MAX_PENDING:
        raise Problem(
            429,
            "Too Many Requests",
            f"You have more than {MAX_PENDING} pending batches. Wait for some to finish "
            "before submitting more.",
        )
    batch = Batch(sandbox.ids.hex10(), operations, sandbox.clock.stamp(), _origin(request.base_url))
    st.batches[batch.id] = batch
    if st.auto:
        _schedule(sandbox, st, batch.id)
    return Reply(_view(batch, request.base_url), items=len(operations))


def list_batches(request: ApiRequest) -> Reply:
    views = [_view(b, request.base_url) for b in state(request.sandbox).batches.values()]
    items, total = page(views, request.query)
    return Reply(
        {
            "batches": items,
            "total_items": total,
            "_links": collection_links(request.base_url, "/batches"),
        },
        items=len(items),
    )


def _batch(request: ApiRequest) -> Batch:
    found = state(request.sandbox).batches.get(request.params["batch_id"])
    if found is None:
        raise not_found()
    return found


def get_batch(request: ApiRequest) -> Reply:
    return Reply(_view(_batch(request), request.base_url))


def delete_batch(request: ApiRequest) -> Reply:
    batch = _batch(request)
    del state(request.sandbox).batches[batch.id]
    return Reply(status=204)


# --- batch webhooks ---------------------------------------------------------------------------


def _hook_view(hook: BatchHook, base: str) -> dict[str, Any]:
    path = f"/batch-webhooks/{hook.id}"
    return {
        "id": hook.id,
        "url": hook.url,
        "enabled": hook.enabled,
        "_links": [
            link("self", base + path, schema="BatchWebhooks/Response"),
            link("parent", base + "/batch-webhooks"),
            link("update", base + path, "PATCH"),
            link("delete", base + path, "DELETE"),
        ],
    }


def _hook_body(request: ApiRequest, require_url: bool) -> tuple[str | None, bool | None]:
    body = request.json_object()
    url = body.get("url")
    if url is None and require_url:
        raise _field_error("", "Required fields were not provided: url")
    if url is not None and (not isinstance(url, str) or not url.strip()):
        raise _field_error("url", "This value should not be blank.")
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise _field_error("enabled", "Schema describes boolean")
    return (url.strip() if isinstance(url, str) else None), enabled


def _duplicate(st: BatchState, url: str, keep: str | None) -> None:
    if any(h.url == url and h.id != keep for h in st.hooks.values()):
        raise _field_error("url", "A batch webhook with this URL already exists.")


async def create_batch_webhook(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    with sandbox.lock:
        url, enabled = _hook_body(request, require_url=True)
        assert url is not None
        st = state(sandbox)
        if len(st.hooks) >= MAX_BATCH_WEBHOOKS:
            raise invalid_resource(
                f"You have reached the maximum number of batch webhooks ({MAX_BATCH_WEBHOOKS})."
                " Delete one before creating another."
            )
        _duplicate(st, url, None)
        settings = webhooks.bus(sandbox).settings
    if settings.validate:
        await webhooks.validate_url(url, settings.timeout)
    with sandbox.lock:
        _duplicate(st, url, None)
        hook = BatchHook(sandbox.ids.hex10(), url, True if enabled is None else enabled)
        st.hooks[hook.id] = hook
        return Reply(_hook_view(hook, request.base_url))


def list_batch_webhooks(request: ApiRequest) -> Reply:
    views = [_hook_view(h, request.base_url) for h in state(request.sandbox).hooks.values()]
    items, total = page(views, request.query)
    return Reply(
        {
            "webhooks": items,
            "total_items": total,
            "_links": collection_links(request.base_url, "/batch-webhooks"),
        }
    )


def _batch_hook(request: ApiRequest) -> BatchHook:
    found = state(request.sandbox).hooks.get(request.params["batch_webhook_id"])
    if found is None:
        raise not_found()
    return found


def get_batch_webhook(request: ApiRequest) -> Reply:
    return Reply(_hook_view(_batch_hook(request), request.base_url))


async def update_batch_webhook(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    with sandbox.lock:
        hook = _batch_hook(request)
        url, enabled = _hook_body(request, require_url=False)
        st = state(sandbox)
        if url is not None:
            _duplicate(st, url, hook.id)
        settings = webhooks.bus(sandbox).settings
    if url is not None and url != hook.url and settings.validate:
        await webhooks.validate_url(url, settings.timeout)
    with sandbox.lock:
        hook = _batch_hook(request)
        if url is not None:
            hook.url = url
        if enabled is not None:
            hook.enabled = enabled
        return Reply(_hook_view(hook, request.base_url))


def delete_batch_webhook(request: ApiRequest) -> Reply:
    hook = _batch_hook(request)
    del state(request.sandbox).hooks[hook.id]
    return Reply(status=204)


routes = [
    Route("POST", "/batches", start_batch),
    Route("GET", "/batches", list_batches),
    Route("GET", "/batches/{batch_id}", get_batch),
    Route("DELETE", "/batches/{batch_id}", delete_batch),
    Route("POST", "/batch-webhooks", create_batch_webhook),
    Route("GET", "/batch-webhooks", list_batch_webhooks),
    Route("GET", "/batch-webhooks/{batch_webhook_id}", get_batch_webhook),
    Route("PATCH", "/batch-webhooks/{batch_webhook_id}", update_batch_webhook),
    Route("DELETE", "/batch-webhooks/{batch_webhook_id}", delete_batch_webhook),
]


# --- control API ----------------------------------------------------------------------------


async def process_control(request: ApiRequest) -> Reply:
    count = await process_all(request.sandbox)
    with request.sandbox.lock:
        views = [_view(b, request.base_url) for b in state(request.sandbox).batches.values()]
    return Reply({"processed": count, "batches": views})


def settings_control(request: ApiRequest) -> Reply:
    st = state(request.sandbox)
    body = request.json_object()
    if "auto" in body:
        st.auto = bool(body["auto"])
    if "step_seconds" in body:
        st.step_seconds = max(0.0, float(body["step_seconds"]))
    return Reply({"auto": st.auto, "step_seconds": st.step_seconds})


def results_control(request: ApiRequest) -> Reply:
    batch = _batch(request)
    if batch.archive is None:
        raise not_found()
    return Reply(raw=batch.archive, media_type="application/x-gzip")


def _ids(items: Iterable[Batch]) -> list[str]:
    return [b.id for b in items]


control_routes = [
    Route("POST", "/batches/process", process_control),
    Route("PUT", "/batches/settings", settings_control),
    Route("GET", "/batches/{batch_id}/results.tar.gz", results_control),
]
