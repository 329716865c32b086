"""Bulk writes and background processes: ``POST /contacts/import``, ``GET /processes[/{id}]``,
``POST /contacts/batch`` and the double opt-in ``POST /contacts/doubleOptinConfirmation``.

An import is validated when it arrives (one source, target lists, the 10 MB cap) and answered
``202 {"processId"}``; it is *applied* later, when the sandbox clock has passed its queue and
processing times (``config.import_queue_seconds`` / ``import_process_seconds``, 0 by default):
before the next API call is handled (``run_due``), in arrival order. Its status moves
``queued`` → ``in_process`` → ``completed``. Rows Brevo would reject are reported the way Brevo
reports them: ``info.import`` on the process holds a URL per kind of problem
(``invalid_emails``, ``duplicate_email_id``, ``duplicate_ext_id``, ``duplicate_phone_id``,
``duplicate_contact_id``), served by the sandbox under ``/_files/`` as ``;``-separated CSV
(``LINE;IDENTIFIER;REASON``), or ``null`` when there is nothing to report.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from campaign_bridge.sandbox.brevo import recent
from campaign_bridge.sandbox.brevo.contacts import (
    add_to_list,
    coerce_attributes,
    coerce_value,
    emit_change,
    normal_email,
    normal_sms,
    update_contact,
)
from campaign_bridge.sandbox.brevo.lists import create_list
from campaign_bridge.sandbox.brevo.model import BrevoSandbox, Contact
from campaign_bridge.sandbox.brevo.wire import (
    ApiRequest,
    BrevoError,
    Reply,
    Route,
    invalid,
    missing,
    paging,
)

__all__ = [
    "REPORT_KINDS",
    "Process",
    "finished_process",
    "install",
    "processes",
    "queue_export",
    "routes",
    "run_due",
]

logger = logging.getLogger(__name__)

REPORT_KINDS = (
    "invalid_emails",
    "duplicate_contact_id",
    "duplicate_ext_id",
    "duplicate_email_id",
    "duplicate_phone_id",
    "duplicate_whatsapp_id",
    "duplicate_landline_number_id",
)
#: ``/contacts/batch``: most contacts per call (UNCONFIRMED; 100 is the figure usually quoted)
BATCH_MAX = 100
_STATE = "processes"


@dataclass
class Process:
    id: int
    name: str
    created_at: float
    starts_at: float
    completes_at: float
    #: the import to apply (dropped once applied)
    job: dict[str, Any] | None = None
    done: bool = False
    failed: bool = False
    #: report kind -> CSV text (only kinds with rows)
    reports: dict[str, str] = field(default_factory=dict)
    token: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    def status(self, now: float) -> str:
        if self.done:
            return "failed" if self.failed else "completed"
        if now < self.starts_at:
            return "queued"
        return "in_process"


@dataclass
class ProcessTable:
    items: dict[int, Process] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)


def processes(sandbox: BrevoSandbox) -> ProcessTable:
    table = sandbox.extensions.get(_STATE)
    if table is None:
        table = sandbox.extensions[_STATE] = ProcessTable()
    assert isinstance(table, ProcessTable)
    return table


def _new_process(sandbox: BrevoSandbox, name: str, job: dict[str, Any] | None) -> Process:
    config = sandbox.config
    now = sandbox.now()
    starts = now + config.import_queue_seconds
    process = Process(
        id=sandbox.ids.next("process"),
        name=name,
        created_at=now,
        starts_at=starts,
        completes_at=starts + config.import_process_seconds,
        job=job,
        token=sandbox.ids.hex(24),
    )
    processes(sandbox).items[process.id] = process
    return process


def queue_export(
    sandbox: BrevoSandbox, name: str, csv_text: str, notify_url: str | None
) -> Process:
    """An export process: its file (made now, a snapshot) is published when it completes."""
    process = _new_process(sandbox, name, {"kind": "export", "notify_url": notify_url})
    process.reports = {"export": csv_text}
    processes(sandbox).pending.append(process.id)
    return process


def _finish_export(sandbox: BrevoSandbox, process: Process) -> None:
    notify = (process.job or {}).get("notify_url")
    process.done, process.job = True, None
    hook = sandbox.extensions.get("notify")
    if notify and callable(hook):
        hook(notify, {"processId": process.id, "name": process.name, "status": "completed"})


def finished_process(sandbox: BrevoSandbox, name: str) -> Process:
    """A process that did its work synchronously (e.g. removing every contact from a list)."""
    process = _new_process(sandbox, name, None)
    process.done = True
    return process


def render_process(process: Process, now: float, root_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": process.id, "name": process.name, "status": process.status(now)}
    if process.done and "export" in process.reports:
        out["export_url"] = f"{root_url}/_files/exports/{process.id}/{process.token}/export.csv"
    if process.done and process.name == "IMPORTUSER":
        out["info"] = {
            "import": {
                kind: (
                    f"{root_url}/_files/imports/{process.id}/{process.token}/{kind}.csv"
                    if kind in process.reports
                    else None
                )
                for kind in REPORT_KINDS
            }
        }
    return out


# --- applying imports ----------------------------------------------------------------------------


def run_due(sandbox: BrevoSandbox) -> None:
    """Apply every import whose time has come, oldest first (called before each API call)."""
    table = processes(sandbox)
    if not table.pending:
        return
    now = sandbox.now()
    while table.pending:
        process = table.items.get(table.pending[0])
        if process is not None and process.completes_at > now:
            return
        table.pending.pop(0)
        if process is not None and process.job is not None:
            try:
                if process.job.get("kind") == "export":
                    _finish_export(sandbox, process)
                else:
                    _apply(sandbox, process)
            except Exception:  # a sandbox bug must not take the caller's request down
                logger.exception("brevo sandbox process %s failed", process.id)
                process.done, process.failed, process.job = True, True, None
            sandbox.write_seq += 1


class _Report:
    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[int, str, str]]] = {}

    def add(self, kind: str, line: int, identifier: str, reason: str) -> None:
        self.rows.setdefault(kind, []).append((line, identifier, reason))

    def texts(self) -> dict[str, str]:
        out = {}
        for kind, rows in self.rows.items():
            buffer = io.StringIO()
            writer = csv.writer(buffer, delimiter=";", lineterminator="\n")
            writer.writerow(["LINE", "IDENTIFIER", "REASON"])
            writer.writerows(rows)
            out[kind] = buffer.getvalue()
        return out


def _apply(sandbox: BrevoSandbox, process: Process) -> None:
    job = process.job or {}
    acting, sandbox.acting_key_name = sandbox.acting_key_name, str(job.get("key_name", ""))
    try:
        _apply_job(sandbox, process, job)
    finally:
        sandbox.acting_key_name = acting


def _apply_job(sandbox: BrevoSandbox, process: Process, job: dict[str, Any]) -> None:
    report = _Report()
    lists = list(job.get("list_ids", []))
    if job.get("new_list"):
        spec = job["new_list"]
        try:
            lists.append(create_list(sandbox, spec["listName"], spec["folderId"]).id)
        except BrevoError:
            process.done, process.failed, process.job = True, True, None
            return
    lists = [i for i in lists if i in sandbox.lists]
    update_existing = job.get("update_existing", True)
    empty_erases = job.get("empty_erases", False)
    blacklist = job.get("email_blacklist", False)
    sms_blacklist = job.get("sms_blacklist", False)
    seen: dict[str, dict[Any, int]] = {"email": {}, "ext_id": {}, "sms": {}}
    created = updated = skipped = 0
    now = sandbox.now()
    for line, row in enumerate(job.get("rows", []), start=2 if job.get("csv") else 1):
        outcome = _import_row(
            sandbox,
            row,
            line,
            report,
            seen,
            lists=lists,
            update_existing=update_existing,
            empty_erases=empty_erases,
            blacklist=blacklist,
            sms_blacklist=sms_blacklist,
            now=now,
        )
        if outcome == "created":
            created += 1
        elif outcome == "updated":
            updated += 1
        else:
            skipped += 1
    process.reports = report.texts()
    process.counts = {"created": created, "updated": updated, "skipped": skipped}
    process.done, process.job = True, None
    notify = job.get("notify_url")
    hook = sandbox.extensions.get("notify")
    if notify and callable(hook):
        hook(notify, {"processId": process.id, "name": process.name, "status": "completed"})


def _values(sandbox: BrevoSandbox, raw: Mapping[str, Any], empty_erases: bool) -> dict[str, Any]:
    """An import row's attribute values: unknown names ignored (documented for imports),
    values that do not fit their type dropped; ``None`` = erase (``emptyContactsAttributes``).
    The common case, text for a text attribute, is taken without a call."""
    attributes = sandbox.attributes
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.upper()
        attribute = attributes.get(name)
        if attribute is None or attribute.category in ("calculated", "global"):
            continue
        if value is None or value == "":
            if empty_erases:
                out[name] = None
            continue
        if attribute.type == "text" and value.__class__ is str:
            out[name] = value
            continue
        fits, coerced = coerce_value(attribute, value)
        if fits:
            out[name] = coerced
    return out


def _import_row(
    sandbox: BrevoSandbox,
    row: Mapping[str, Any],
    line: int,
    report: _Report,
    seen: dict[str, dict[Any, int]],
    *,
    lists: list[int],
    update_existing: bool,
    empty_erases: bool,
    blacklist: bool,
    sms_blacklist: bool,
    now: float,
) -> str:
    raw_email = row.get("email")
    email = normal_email(raw_email) if raw_email not in (None, "") else None
    if raw_email not in (None, "") and email is None:
        report.add("invalid_emails", line, str(raw_email), "invalid email address")
        return "skipped"
    attrs = row.get("attributes") or {}
    if not isinstance(attrs, Mapping):
        report.add("invalid_emails", line, str(raw_email or ""), "attributes is not an object")
        return "skipped"
    sms = ext_id = None
    if "SMS" in attrs or "EXT_ID" in attrs:
        attrs = dict(attrs)
        raw_sms = attrs.pop("SMS", None)
        sms = normal_sms(raw_sms) if raw_sms not in (None, "") else None
        if raw_sms not in (None, "") and sms is None:
            report.add("invalid_emails", line, str(raw_sms), "invalid phone number")
            return "skipped"
        ext_id = attrs.pop("EXT_ID", None) or None
    ext_id = row.get("ext_id") or ext_id
    if email is None and sms is None and ext_id is None:
        report.add("invalid_emails", line, "", "no email, SMS or EXT_ID")
        return "skipped"
    owners: set[int] = set()
    for kind, value, index, report_kind in (
        ("email", email, sandbox.by_email, "duplicate_email_id"),
        ("ext_id", ext_id, sandbox.by_ext_id, "duplicate_ext_id"),
        ("sms", sms, sandbox.by_sms, "duplicate_phone_id"),
    ):
        if value is None:
            continue
        key = str(value)
        first = seen[kind].get(key)
        if first is not None:
            report.add(report_kind, line, key, f"duplicate of line {first}")
            return "skipped"
        seen[kind][key] = line
        owner = index.get(key)
        if owner is not None:
            owners.add(owner)
    if len(owners) > 1:
        identifier = email or str(ext_id or sms)
        report.add("duplicate_contact_id", line, identifier, "identifiers of two contacts")
        return "skipped"
    values = _values(sandbox, attrs, empty_erases)
    if owners:
        if not update_existing:
            return "skipped"
        contact = sandbox.contacts[owners.pop()]
        body: dict[str, Any] = {"attributes": values, "listIds": lists}
        if blacklist:
            body["emailBlacklisted"] = True
        if sms_blacklist:
            body["smsBlacklisted"] = True
        if sms is not None:
            values["SMS"] = sms
        if ext_id is not None:
            body["ext_id"] = ext_id
        update_contact(sandbox, contact, body, strict=False, empty_erases=empty_erases)
        return "updated"
    _create_imported(sandbox, email, ext_id, sms, values, lists, blacklist, sms_blacklist, now)
    return "created"


def _create_imported(
    sandbox: BrevoSandbox,
    email: str | None,
    ext_id: Any,
    sms: str | None,
    values: Mapping[str, Any],
    lists: Iterable[int],
    blacklist: bool,
    sms_blacklist: bool,
    now: float,
) -> None:
    """The fast path of an import: a new contact (no checks left to make)."""
    contact = Contact(
        id=sandbox.ids.next("contact"),
        email=email,
        ext_id=str(ext_id) if ext_id is not None else None,
        created_at=now,
        modified_at=now,
        attributes={k: v for k, v in values.items() if v is not None},
        email_blacklisted=blacklist,
        sms_blacklisted=sms_blacklist,
        blacklist_reason="api" if blacklist else "",
    )
    sandbox.contacts[contact.id] = contact
    recent.note(sandbox, contact)
    if email:
        sandbox.by_email[email] = contact.id
    if contact.ext_id:
        sandbox.by_ext_id[contact.ext_id] = contact.id
    if sms:
        contact.attributes["SMS"] = sms
        sandbox.by_sms[sms] = contact.id
    for list_id in lists:
        add_to_list(sandbox, contact, list_id)
    if sandbox.has_listeners:
        emit_change(sandbox, contact, "created", list_ids=list(contact.list_ids))
        if contact.list_ids:
            emit_change(sandbox, contact, "list_addition", list_ids=list(contact.list_ids))


# --- parsing an import request -------------------------------------------------------------------


def _csv_rows(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    if not lines:
        raise invalid("fileBody is empty")
    delimiter = ";" if ";" in lines[0] else ","
    reader = csv.reader(lines, delimiter=delimiter)
    header = [h.strip().upper() for h in next(reader)]
    if not {"EMAIL", "SMS", "EXT_ID"} & set(header):
        raise invalid("fileBody needs an EMAIL, SMS or EXT_ID column in its header row")
    rows = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        values = dict(zip(header, cells, strict=False))
        email = values.pop("EMAIL", None)
        rows.append({"email": email, "attributes": values})
    return rows


def _job(request: ApiRequest) -> dict[str, Any]:
    sandbox = request.sandbox
    if request.size > sandbox.config.import_max_bytes:
        raise invalid("Request body is too large. The maximum allowed size is 10 MB")
    body = request.json_object()
    sources = [k for k in ("jsonBody", "fileBody", "fileUrl") if body.get(k) not in (None, "")]
    if len(sources) != 1:
        raise missing("Please provide exactly one of fileUrl, fileBody or jsonBody")
    list_ids = body.get("listIds")
    new_list = body.get("newList")
    if not list_ids and not new_list:
        raise missing("Please provide either listIds or newList")
    if list_ids:
        if not isinstance(list_ids, list) or not all(isinstance(i, int) for i in list_ids):
            raise invalid("listIds should be an array of integers")
        for list_id in list_ids:
            if list_id not in sandbox.lists:
                raise invalid("List ID does not exist")
    if new_list and (
        not isinstance(new_list, Mapping)
        or not new_list.get("listName")
        or new_list.get("folderId") not in sandbox.folders
    ):
        raise invalid("newList needs a listName and the folderId of an existing folder")
    if "emptyContactsAttributes" in body and body.get("updateExistingContacts") is False:
        raise invalid("emptyContactsAttributes is only available with updateExistingContacts")
    source = sources[0]
    if source == "fileUrl":
        raise invalid("fileUrl imports are not emulated; send jsonBody or fileBody")
    if source == "jsonBody":
        rows = body["jsonBody"]
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            raise invalid("jsonBody should be an array of objects")
    else:
        if not isinstance(body["fileBody"], str):
            raise invalid("fileBody should be a string")
        rows = _csv_rows(body["fileBody"])
    return {
        "rows": rows,
        "csv": source == "fileBody",
        "list_ids": list(list_ids or []),
        "new_list": dict(new_list) if new_list else None,
        "update_existing": body.get("updateExistingContacts", True) is not False,
        "empty_erases": body.get("emptyContactsAttributes") is True,
        "email_blacklist": body.get("emailBlacklist") is True,
        "sms_blacklist": body.get("smsBlacklist") is True,
        "notify_url": body.get("notifyUrl") or None,
    }


# --- handlers ------------------------------------------------------------------------------------


def import_contacts(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    job = _job(request)
    job["key_name"] = request.key_name
    process = _new_process(sandbox, "IMPORTUSER", job)
    processes(sandbox).pending.append(process.id)
    return Reply({"processId": process.id}, status=202, items=len(process.job["rows"]))  # type: ignore[index]


def get_processes(request: ApiRequest) -> Reply:
    limit, offset, sort = paging(request, 10, 50)
    table = processes(request.sandbox)
    rows = sorted(table.items.values(), key=lambda p: p.id, reverse=sort == "desc")
    now = request.sandbox.now()
    chosen = rows[offset : offset + limit]
    items = [render_process(p, now, request.root_url) for p in chosen]
    return Reply({"processes": items, "count": len(rows)}, items=len(items))


def get_process(request: ApiRequest) -> Reply:
    raw = request.params["process_id"]
    process = processes(request.sandbox).items.get(int(raw)) if raw.isdigit() else None
    if process is None:
        raise BrevoError(404, "invalid_parameter", "processId is invalid")
    return Reply(render_process(process, request.sandbox.now(), request.root_url))


def batch_update(request: ApiRequest) -> Reply:
    """``POST /contacts/batch``: every item is checked first; one bad item fails the call and
    nothing is applied."""
    sandbox = request.sandbox
    items = request.json_object().get("contacts")
    if not isinstance(items, list) or not items:
        raise missing("contacts is missing")
    if len(items) > BATCH_MAX:
        raise invalid(f"A maximum of {BATCH_MAX} contacts can be updated per request")
    targets: list[tuple[Contact, Mapping[str, Any]]] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise invalid(f"contacts[{index}] should be an object")
        keys = [k for k in ("email", "id", "sms") if item.get(k) not in (None, "")]
        if len(keys) != 1:
            raise invalid(f"contacts[{index}]: pass exactly one of email, id or sms")
        key = keys[0]
        cid: int | None
        if key == "email":
            email = normal_email(item["email"])
            cid = sandbox.by_email.get(email) if email else None
        elif key == "id":
            cid = item["id"] if item["id"] in sandbox.contacts else None
        else:
            sms = normal_sms(item["sms"])
            cid = sandbox.by_sms.get(sms) if sms else None
        if cid is None:
            raise BrevoError(
                400, "document_not_found", f"Contact does not exist: contacts[{index}]"
            )
        targets.append((sandbox.contacts[cid], item))
    for contact, item in targets:
        update_contact(sandbox, contact, item)
    return Reply(status=204, items=len(targets))


def double_optin(request: ApiRequest) -> Reply:
    """Record a pending double opt-in; the contact joins ``includeListIds`` when they confirm
    (control API ``POST /_sandbox/contacts/{email}/confirm``)."""
    sandbox = request.sandbox
    body = request.json_object()
    email = normal_email(body.get("email"))
    if email is None:
        raise invalid("Invalid email address")
    include = body.get("includeListIds")
    if not isinstance(include, list) or not include:
        raise missing("includeListIds is missing")
    for list_id in [*include, *(body.get("excludeListIds") or [])]:
        if list_id not in sandbox.lists:
            raise invalid("List ID does not exist")
    if not isinstance(body.get("templateId"), int):
        raise missing("templateId is missing")
    if not isinstance(body.get("redirectionUrl"), str) or not body["redirectionUrl"]:
        raise missing("redirectionUrl is missing")
    attributes = coerce_attributes(
        sandbox, body.get("attributes"), strict=sandbox.config.reject_unknown_attributes
    )
    pending = sandbox.extensions.setdefault("doi_pending", {})
    pending[email] = {
        "includeListIds": list(include),
        "excludeListIds": list(body.get("excludeListIds") or []),
        "attributes": {k: v for k, v in attributes.items() if v is not None},
        "templateId": body["templateId"],
        "redirectionUrl": body["redirectionUrl"],
    }
    return Reply(status=204 if email in sandbox.by_email else 201)


routes = [
    Route("POST", "/contacts/import", import_contacts),
    Route("POST", "/contacts/batch", batch_update),
    Route("POST", "/contacts/doubleOptinConfirmation", double_optin),
    Route("GET", "/processes", get_processes),
    Route("GET", "/processes/{process_id}", get_process),
]


# --- state ---------------------------------------------------------------------------------------


def install(sandbox: BrevoSandbox) -> None:
    def dump() -> Any:
        table = processes(sandbox)
        return {
            "items": [asdict(p) for p in table.items.values()],
            "pending": list(table.pending),
            "doi_pending": dict(sandbox.extensions.get("doi_pending", {})),
        }

    def load(data: Any) -> None:
        table = processes(sandbox)
        table.items = {p["id"]: Process(**p) for p in data.get("items", [])}
        table.pending = [int(i) for i in data.get("pending", [])]
        sandbox.extensions["doi_pending"] = dict(data.get("doi_pending", {}))

    def reset() -> None:
        sandbox.extensions[_STATE] = ProcessTable()
        sandbox.extensions["doi_pending"] = {}

    sandbox.register_state(_STATE, dump, load, reset)
