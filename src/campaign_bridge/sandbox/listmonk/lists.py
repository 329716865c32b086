"""Lists: ``/api/lists`` CRUD with ``type`` (public/private/temporary), ``optin``
(single/double), ``status`` (active/archived), tags, and subscriber counts per status."""

from __future__ import annotations

from typing import Any

from campaign_bridge.sandbox.listmonk.model import ListmonkSandbox, MailingList
from campaign_bridge.sandbox.listmonk.subscribers import render_list
from campaign_bridge.sandbox.listmonk.wire import (
    ApiRequest,
    ListmonkError,
    Reply,
    Route,
    bad,
    data,
    ids_of,
    not_found,
    paged,
    path_id,
)

__all__ = ["create_list", "routes"]

LIST_TYPES = ("public", "private", "temporary")
OPTINS = ("single", "double")
LIST_STATUSES = ("active", "archived")
_ORDER_FIELDS = ("name", "status", "created_at", "updated_at", "subscriber_count")


def _enum(value: str, allowed: tuple[str, ...], enum: str, verb: str) -> str:
    # listmonk passes these straight to PostgreSQL enums: a bad value is a 500
    if value not in allowed:
        raise ListmonkError(
            500, f'Error {verb} List: invalid input value for enum {enum}: "{value}"'
        )
    return value


def create_list(
    sandbox: ListmonkSandbox,
    name: str,
    type_: str = "private",
    optin: str = "single",
    *,
    tags: list[str] | None = None,
    description: str = "",
    status: str = "active",
) -> MailingList:
    now = sandbox.now()
    lst = MailingList(
        id=sandbox.ids.next("list"),
        uuid=sandbox.new_uuid(),
        name=name,
        type=type_,
        optin=optin,
        status=status,
        tags=list(tags or []),
        description=description,
        created_at=now,
        updated_at=now,
    )
    sandbox.lists[lst.id] = lst
    return lst


def _fields(body: dict[str, Any], verb: str, current: MailingList | None) -> dict[str, Any]:
    name = str(body.get("name") or "").strip()
    if not name or len(name) > 200:
        raise bad("Invalid name")
    tags = body.get("tags") or []
    if not isinstance(tags, list):
        raise bad("Invalid data")
    return {
        "name": name,
        "type_": _enum(
            str(body.get("type") or (current.type if current else "")),
            LIST_TYPES,
            "list_type",
            verb,
        ),
        "optin": _enum(
            str(body.get("optin") or (current.optin if current else "")), OPTINS, "list_optin", verb
        ),
        "status": _enum(
            str(body.get("status") or (current.status if current else "active")),
            LIST_STATUSES,
            "list_status",
            verb,
        ),
        "tags": [str(t) for t in tags],
        "description": str(body.get("description") or ""),
    }


def _create(request: ApiRequest) -> Reply:
    fields = _fields(request.json_object(), "creating", None)
    name = fields.pop("name")
    lst = create_list(request.sandbox, name, **fields)
    return data(render_list(request.sandbox, lst.id))


def _get(request: ApiRequest) -> Reply:
    list_id = path_id(request)
    if list_id not in request.sandbox.lists:
        raise not_found("List")
    return data(render_list(request.sandbox, list_id))


def _query(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    q = request.query
    search = q.get("query", "").strip().lower()
    tags = [v for k, v in request.pairs if k == "tag"]
    chosen = [
        lst
        for lst in sandbox.lists.values()
        if (not search or search in lst.name.lower())
        and (not q.get("status") or lst.status == q["status"])
        and (not q.get("type") or lst.type == q["type"])
        and (not q.get("optin") or lst.optin == q["optin"])
        and (not tags or any(t in lst.tags for t in tags))
    ]
    order_by = q.get("order_by", "")
    if order_by == "subscriber_count":
        chosen.sort(key=lambda lst: (len(lst.members), lst.id))
    elif order_by in _ORDER_FIELDS:
        chosen.sort(key=lambda lst: (getattr(lst, order_by), lst.id))
    if q.get("order", "asc") == "desc":
        chosen.reverse()
    if q.get("minimal") == "true":
        return data([render_list(sandbox, lst.id, counts=False) for lst in chosen])
    page = paged(chosen, q, query=q.get("query", ""))
    page["results"] = [render_list(sandbox, lst.id) for lst in page["results"]]
    return data(page)


def _update(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    list_id = path_id(request)
    lst = sandbox.lists.get(list_id)
    if lst is None:
        raise not_found("List")
    fields = _fields(request.json_object(), "updating", lst)
    lst.name, lst.type, lst.optin = fields["name"], fields["type_"], fields["optin"]
    lst.status, lst.tags, lst.description = fields["status"], fields["tags"], fields["description"]
    lst.updated_at = sandbox.now()
    return data(render_list(sandbox, list_id))


def delete_lists(sandbox: ListmonkSandbox, ids: list[int]) -> None:
    for list_id in ids:
        lst = sandbox.lists.pop(list_id, None)
        if lst is None:
            continue
        for sub_id in lst.members:
            sandbox.subscribers[sub_id].lists.pop(list_id, None)


def _delete_one(request: ApiRequest) -> Reply:
    delete_lists(request.sandbox, [path_id(request)])
    return data(True)


def _delete_many(request: ApiRequest) -> Reply:
    ids = ids_of(request.pairs, "id")
    if not ids:
        raise bad("Invalid ID(s)")
    delete_lists(request.sandbox, ids)
    return data(True)


routes = [
    Route("GET", "/lists", _query, "lists:get_all"),
    Route("POST", "/lists", _create, "lists:manage_all"),
    Route("DELETE", "/lists", _delete_many, "lists:manage_all"),
    Route("GET", "/lists/{id}", _get, "lists:get_all"),
    Route("PUT", "/lists/{id}", _update, "lists:manage_all"),
    Route("DELETE", "/lists/{id}", _delete_one, "lists:manage_all"),
]
