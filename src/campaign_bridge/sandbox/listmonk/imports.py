"""The subscriber importer: ``POST/GET/DELETE /api/import/subscribers`` and ``…/logs``.

As listmonk's ``subimporter``: one import at a time for the whole instance; the upload is a
multipart form with ``params`` (a JSON string) and ``file`` (a CSV, or a ZIP whose first CSV
is used); columns ``email`` (required), ``name``, ``attributes`` (JSON text), others ignored;
bad rows are skipped and logged. ``subscribe`` mode upserts (name/attribs overwritten only
with ``overwrite``/``overwrite_userinfo``; existing subscriptions change status only with
``overwrite``/``overwrite_subscription_status``); ``blocklist`` mode blocklists.

The import is asynchronous: POST answers ``importing`` with ``imported: 0``; rows are applied
as sandbox time passes (``import_seconds_per_10k``; 0: all of them by the next request).
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from campaign_bridge.sandbox.listmonk.model import ListmonkSandbox, Subscriber, Subscription
from campaign_bridge.sandbox.listmonk.subscribers import derive_name
from campaign_bridge.sandbox.listmonk.wire import ApiRequest, ListmonkError, Reply, Route, bad, data

__all__ = ["Importer", "importer", "routes", "run_due"]

_EMAIL_OK = frozenset("@.")


@dataclass
class Importer:
    name: str = ""
    total: int = 0
    imported: int = 0
    status: str = "none"
    log: list[str] = field(default_factory=list)
    #: rows still to apply: (line, email, name, attribs)
    rows: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)
    opt: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    stop_requested: bool = False

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "total": self.total,
            "imported": self.imported,
            "status": self.status,
        }


def importer(sandbox: ListmonkSandbox) -> Importer:
    found = sandbox.extensions.get("importer")
    if not isinstance(found, Importer):
        found = Importer()
        sandbox.extensions["importer"] = found
    return found


def _say(sandbox: ListmonkSandbox, imp: Importer, line: str, where: int) -> None:
    moment = datetime.fromtimestamp(sandbox.now(), UTC)
    imp.log.append(f"{moment.strftime('%Y/%m/%d %H:%M:%S.%f')} importer.go:{where}: {line}")


def _csv_text(filename: str, payload: bytes, sandbox: ListmonkSandbox, imp: Importer) -> str:
    if filename.lower().endswith(".csv"):
        return payload.decode("utf-8-sig", errors="replace")
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except zipfile.BadZipFile as exc:
        raise ListmonkError(500, f"Error processing ZIP file: {exc}") from None
    names = [n for n in archive.namelist() if n.lower().endswith(".csv") and not n.endswith("/")]
    if not names:
        raise ListmonkError(500, "Error processing ZIP file: no CSV files found in the ZIP")
    _say(sandbox, imp, f"extracting '{names[0]}'", 418)
    return archive.read(names[0]).decode("utf-8-sig", errors="replace")


def _parse(sandbox: ListmonkSandbox, imp: Importer, text: str, delim: str) -> None:
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        _say(sandbox, imp, "error reading header: empty file", 501)
        imp.status = "failed"
        return
    if "email" not in header:
        _say(sandbox, imp, f"'email' column not found in '{imp.name}'", 508)
        imp.status = "failed"
        return
    for name in header:
        if name not in ("email", "name", "attributes"):
            _say(sandbox, imp, f"ignoring unknown header '{name}'", 705)
    at_email = header.index("email")
    at_name = header.index("name") if "name" in header else -1
    at_attr = header.index("attributes") if "attributes" in header else -1
    width = len(header)
    rows = imp.rows
    for number, cols in enumerate(reader, start=1):
        if len(cols) < width:
            _say(
                sandbox,
                imp,
                f"skipping line {number}. column count ({len(cols)}) does not "
                f"match minimum header count ({width})",
                544,
            )
            continue
        email = cols[at_email].strip().lower()
        if "@" not in email or len(email) > 1000 or " " in email:
            _say(sandbox, imp, f"skipping line {number}: invalid email: {cols}", 564)
            continue
        attribs: dict[str, Any] = {}
        if at_attr >= 0 and cols[at_attr].strip():
            try:
                parsed = orjson.loads(cols[at_attr])
            except orjson.JSONDecodeError as exc:
                parsed = exc
            if not isinstance(parsed, dict):
                _say(
                    sandbox,
                    imp,
                    f"skipping invalid attributes JSON on line {number} for '{email}': {parsed}",
                    575,
                )
                continue
            attribs = parsed
        name = cols[at_name].strip() if at_name >= 0 else ""
        rows.append((number, email, name or derive_name(email), attribs))
    imp.total = len(rows)


def _apply(sandbox: ListmonkSandbox, imp: Importer, count: int) -> None:
    opt = imp.opt
    now = sandbox.now()
    lists = [i for i in opt["lists"] if i in sandbox.lists]
    blocklist_mode = opt["mode"] == "blocklist"
    status = opt["subscription_status"]
    userinfo, substatus = opt["overwrite_userinfo"], opt["overwrite_subscription_status"]
    batch, imp.rows = imp.rows[:count], imp.rows[count:]
    subscribers, by_email, by_uuid = sandbox.subscribers, sandbox.by_email, sandbox.by_uuid
    next_id, new_uuid = sandbox.ids.next, sandbox.new_uuid
    made_status = "blocklisted" if blocklist_mode else "enabled"
    members = {list_id: sandbox.lists[list_id].members for list_id in lists}
    for _line, email, name, attribs in batch:
        sub_id = by_email.get(email)
        sub = subscribers[sub_id] if sub_id is not None else None
        if sub is None:
            sub = Subscriber(
                next_id("subscriber"), new_uuid(), email, name, attribs, made_status, now, now
            )
            subscribers[sub.id] = sub
            by_email[email] = sub.id
            by_uuid[sub.uuid] = sub.id
        elif blocklist_mode:
            sub.status = "blocklisted"
            sub.updated_at = now
        else:
            if userinfo:
                sub.name, sub.attribs = name, attribs
            sub.updated_at = now
        if blocklist_mode:
            for subscription in sub.lists.values():
                subscription.status, subscription.updated_at = "unsubscribed", now
            imp.imported += 1
            continue
        wanted = "unsubscribed" if sub.status == "blocklisted" else status
        for list_id in lists:
            current = sub.lists.get(list_id)
            if current is None:
                sub.lists[list_id] = Subscription(wanted, now, now)
                members[list_id][sub.id] = None
            else:
                current.updated_at = now
                if substatus:
                    current.status = wanted
        imp.imported += 1


def run_due(sandbox: ListmonkSandbox) -> None:
    """Apply the rows whose time has come (call with the lock held)."""
    imp = importer(sandbox)
    if imp.status not in ("importing", "stopping"):
        return
    per_10k = sandbox.config.import_seconds_per_10k
    if imp.status == "stopping":
        due = 0
        imp.rows.clear()
        _say(sandbox, imp, "stop request received", 524)
    elif per_10k <= 0:
        due = len(imp.rows)
    else:
        elapsed = sandbox.now() - imp.started
        due = max(0, int(elapsed / per_10k * 10_000) - imp.imported)
    if due:
        _apply(sandbox, imp, due)
        _say(sandbox, imp, f"imported {imp.imported}", 329)
    if not imp.rows:
        imp.status = "finished"
        _say(sandbox, imp, "imported finished", 339)


def _start(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    imp = importer(sandbox)
    if imp.status == "importing":
        raise bad(
            "An import is already running. Wait for it to finish or stop it before trying again."
        )
    try:
        opt = orjson.loads(request.form.get("params", "")) if request.form.get("params") else None
    except orjson.JSONDecodeError as exc:
        raise bad(f"Invalid params: {exc}") from None
    if not isinstance(opt, dict):
        raise bad("Invalid params: unexpected end of JSON input")
    lists = [int(i) for i in opt.get("lists") or [] if isinstance(i, int)]
    mode = opt.get("mode", "")
    if not lists and mode != "blocklist":
        raise ListmonkError(403, "Permission denied: lists")
    if mode not in ("subscribe", "blocklist"):
        raise bad("Invalid mode")
    status = opt.get("subscription_status") or (
        "unconfirmed" if mode == "subscribe" else "unsubscribed"
    )
    if status not in ("unconfirmed", "confirmed", "unsubscribed"):
        raise bad("Invalid subscription status")
    delim = opt.get("delim", "")
    if not isinstance(delim, str) or len(delim) != 1:
        raise bad("Delimiter should be a single character.")
    if "file" not in request.files:
        raise bad("Invalid file: http: no such file")
    filename, payload = request.files["file"]
    overwrite = bool(opt.get("overwrite"))
    fresh = Importer(
        name=filename,
        status="importing",
        started=sandbox.now(),
        opt={
            "mode": mode,
            "lists": lists,
            "subscription_status": status,
            "overwrite_userinfo": overwrite or bool(opt.get("overwrite_userinfo")),
            "overwrite_subscription_status": overwrite
            or bool(opt.get("overwrite_subscription_status")),
        },
    )
    sandbox.extensions["importer"] = fresh
    _say(sandbox, fresh, f"processing '{filename}'", 193)
    _parse(sandbox, fresh, _csv_text(filename, payload, sandbox, fresh), delim)
    return data(fresh.stats())


def _stats(request: ApiRequest) -> Reply:
    return data(importer(request.sandbox).stats())


def _logs(request: ApiRequest) -> Reply:
    imp = importer(request.sandbox)
    return data("".join(line + "\n" for line in imp.log))


def _stop(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    imp = importer(sandbox)
    if imp.status != "importing":
        sandbox.extensions["importer"] = imp = Importer()
    else:
        imp.status = "stopping"
    return data(imp.stats())


routes = [
    Route("GET", "/import/subscribers", _stats, "subscribers:import"),
    Route("POST", "/import/subscribers", _start, "subscribers:import"),
    Route("DELETE", "/import/subscribers", _stop, "subscribers:import"),
    Route("GET", "/import/subscribers/logs", _logs, "subscribers:import"),
]
