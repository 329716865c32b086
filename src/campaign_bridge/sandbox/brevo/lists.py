"""Contact attributes (the typed custom-field registry), folders and lists, and list membership.

Routes: ``/contacts/attributes``, ``/contacts/attributes/{category}/{name}``,
``/contacts/folders``, ``/contacts/folders/{id}``, ``/contacts/folders/{id}/lists``,
``/contacts/lists``, ``/contacts/lists/{id}``, ``/contacts/lists/{id}/contacts`` and its
``/add`` and ``/remove``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from campaign_bridge.sandbox.brevo import recent
from campaign_bridge.sandbox.brevo.contacts import (
    add_to_list,
    changed_since,
    normal_email,
    remove_from_list,
    select_contacts,
)
from campaign_bridge.sandbox.brevo.model import (
    ATTRIBUTE_CATEGORIES,
    ATTRIBUTE_TYPES,
    Attribute,
    BrevoSandbox,
    Contact,
    ContactList,
    Folder,
)
from campaign_bridge.sandbox.brevo.wire import (
    ApiRequest,
    BrevoError,
    Reply,
    Route,
    invalid,
    missing,
    not_found,
    paging,
    stamp,
)

__all__ = ["create_attribute", "create_folder", "create_list", "render_attribute", "routes"]

#: list add/remove: at most this many identifiers per call
MEMBERSHIP_BATCH = 150


# --- attributes ----------------------------------------------------------------------------------


def render_attribute(attribute: Attribute) -> dict[str, Any]:
    out: dict[str, Any] = {"name": attribute.name, "category": attribute.category}
    if attribute.type:
        out["type"] = attribute.type
    if attribute.enumeration:
        out["enumeration"] = [dict(e) for e in attribute.enumeration]
    if attribute.options:
        out["multiCategoryOptions"] = list(attribute.options)
    if attribute.value:
        out["calculatedValue"] = attribute.value
    return out


def _enumeration(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise missing("enumeration is required for category attributes")
    out = []
    for item in value:
        if (
            not isinstance(item, Mapping)
            or not isinstance(item.get("value"), int)
            or not isinstance(item.get("label"), str)
        ):
            raise invalid("enumeration items need an integer value and a string label")
        out.append({"value": item["value"], "label": item["label"]})
    return out


def create_attribute(
    sandbox: BrevoSandbox, category: str, name: str, body: Mapping[str, Any]
) -> Attribute:
    if category not in ATTRIBUTE_CATEGORIES:
        raise invalid(f"attributeCategory must be one of {', '.join(ATTRIBUTE_CATEGORIES)}")
    name = name.upper()
    if name in sandbox.attributes or name in ("EMAIL", "SMS"):
        raise BrevoError(400, "duplicate_parameter", "Attribute name already exists")
    kind = body.get("type")
    if category == "category":
        kind = "category"
    elif category == "normal":
        kind = kind or "text"
        if kind not in ATTRIBUTE_TYPES or kind == "category":
            raise invalid(f"type must be one of {', '.join(t for t in ATTRIBUTE_TYPES)}")
    attribute = Attribute(name=name, category=category, type=kind)
    if kind == "category":
        attribute.enumeration = _enumeration(body.get("enumeration"))
    if kind == "multiple-choice":
        options = body.get("multiCategoryOptions")
        if not isinstance(options, list) or not options:
            raise missing("multiCategoryOptions is required for multiple-choice attributes")
        if any(not isinstance(o, str) or len(o) > 200 for o in options):
            raise invalid("multiCategoryOptions must be strings of at most 200 characters")
        attribute.options = list(options)
    if category in ("calculated", "global"):
        if not body.get("value"):
            raise missing("value is required for calculated and global attributes")
        attribute.value = str(body["value"])
    sandbox.attributes[name] = attribute
    return attribute


def _attribute(request: ApiRequest) -> Attribute:
    attribute = request.sandbox.attributes.get(request.params["name"].upper())
    if attribute is None or attribute.category != request.params["category"]:
        raise not_found("Attribute not found")
    return attribute


def get_attributes(request: ApiRequest) -> Reply:
    items = [render_attribute(a) for a in request.sandbox.attributes.values()]
    return Reply({"attributes": items}, items=len(items))


def post_attribute(request: ApiRequest) -> Reply:
    p = request.params
    create_attribute(request.sandbox, p["category"], p["name"], request.json_object())
    return Reply(status=201)


def put_attribute(request: ApiRequest) -> Reply:
    attribute = _attribute(request)
    body = request.json_object()
    if attribute.type == "category" and "enumeration" in body:
        attribute.enumeration = _enumeration(body["enumeration"])
    if attribute.type == "multiple-choice" and isinstance(body.get("multiCategoryOptions"), list):
        attribute.options = [*attribute.options, *body["multiCategoryOptions"]]
    if attribute.category in ("calculated", "global") and body.get("value"):
        attribute.value = str(body["value"])
    return Reply(status=204)


def delete_attribute(request: ApiRequest) -> Reply:
    attribute = _attribute(request)
    sandbox = request.sandbox
    del sandbox.attributes[attribute.name]
    for contact in sandbox.contacts.values():
        contact.attributes.pop(attribute.name, None)
    return Reply(status=204)


# --- folders -------------------------------------------------------------------------------------


def create_folder(sandbox: BrevoSandbox, name: str) -> Folder:
    folder = Folder(sandbox.ids.next("folder"), name)
    sandbox.folders[folder.id] = folder
    return folder


def _folder_stats(sandbox: BrevoSandbox, folder: Folder) -> dict[str, Any]:
    members: set[int] = set()
    for lst in sandbox.lists.values():
        if lst.folder_id == folder.id:
            members.update(lst.members)
    return {
        "id": folder.id,
        "name": folder.name,
        "uniqueSubscribers": len(members),
        "totalSubscribers": 0,
        "totalBlacklisted": 0,
    }


def _folder(request: ApiRequest) -> Folder:
    raw = request.params["folder_id"]
    folder = request.sandbox.folders.get(int(raw)) if raw.isdigit() else None
    if folder is None:
        raise not_found("Folder ID does not exist")
    return folder


def _name(body: Mapping[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise missing("name is missing")
    return name.strip()


def get_folders(request: ApiRequest) -> Reply:
    limit, offset, sort = paging(request, 10, 50)
    rows = sorted(request.sandbox.folders.values(), key=lambda f: f.id, reverse=sort == "desc")
    chosen = rows[offset : offset + limit]
    items = [_folder_stats(request.sandbox, f) for f in chosen]
    return Reply({"folders": items, "count": len(rows)}, items=len(items))


def post_folder(request: ApiRequest) -> Reply:
    folder = create_folder(request.sandbox, _name(request.json_object()))
    return Reply({"id": folder.id}, status=201)


def get_folder(request: ApiRequest) -> Reply:
    return Reply(_folder_stats(request.sandbox, _folder(request)))


def put_folder(request: ApiRequest) -> Reply:
    _folder(request).name = _name(request.json_object())
    return Reply(status=204)


def delete_folder(request: ApiRequest) -> Reply:
    folder = _folder(request)
    sandbox = request.sandbox
    for lst in [lst for lst in sandbox.lists.values() if lst.folder_id == folder.id]:
        _delete_list(sandbox, lst)
    del sandbox.folders[folder.id]
    return Reply(status=204)


def get_folder_lists(request: ApiRequest) -> Reply:
    folder = _folder(request)
    limit, offset, sort = paging(request, 10, 50)
    rows = [lst for lst in request.sandbox.lists.values() if lst.folder_id == folder.id]
    rows.sort(key=lambda lst: lst.id, reverse=sort == "desc")
    chosen = rows[offset : offset + limit]
    items = [_list_summary(lst) for lst in chosen]
    return Reply({"lists": items, "count": len(rows)}, items=len(items))


# --- lists ---------------------------------------------------------------------------------------


def create_list(sandbox: BrevoSandbox, name: str, folder_id: int) -> ContactList:
    if folder_id not in sandbox.folders:
        raise invalid("Folder ID does not exist")
    lst = ContactList(sandbox.ids.next("list"), name, folder_id, sandbox.now())
    sandbox.lists[lst.id] = lst
    return lst


def _delete_list(sandbox: BrevoSandbox, lst: ContactList) -> None:
    for cid in list(lst.members):
        contact = sandbox.contacts.get(cid)
        if contact is not None:
            remove_from_list(sandbox, contact, lst.id)
    for contact in sandbox.contacts.values():
        if contact.list_unsubscribed:
            contact.list_unsubscribed.pop(lst.id, None)
    del sandbox.lists[lst.id]


def _list_summary(lst: ContactList) -> dict[str, Any]:
    return {
        "id": lst.id,
        "name": lst.name,
        "folderId": lst.folder_id,
        "uniqueSubscribers": len(lst.members),
        "totalSubscribers": 0,
        "totalBlacklisted": 0,
    }


def find_list(sandbox: BrevoSandbox, raw: str) -> ContactList:
    lst = sandbox.lists.get(int(raw)) if raw.isdigit() else None
    if lst is None:
        raise not_found("List ID does not exist")
    return lst


def get_lists(request: ApiRequest) -> Reply:
    limit, offset, sort = paging(request, 10, 50)
    rows = sorted(request.sandbox.lists.values(), key=lambda lst: lst.id, reverse=sort == "desc")
    chosen = rows[offset : offset + limit]
    return Reply(
        {"lists": [_list_summary(lst) for lst in chosen], "count": len(rows)}, items=len(chosen)
    )


def post_list(request: ApiRequest) -> Reply:
    body = request.json_object()
    name = _name(body)
    folder_id = body.get("folderId")
    if not isinstance(folder_id, int) or isinstance(folder_id, bool):
        raise missing("folderId is missing")
    lst = create_list(request.sandbox, name, folder_id)
    return Reply({"id": lst.id}, status=201)


def get_list(request: ApiRequest) -> Reply:
    lst = find_list(request.sandbox, request.params["list_id"])
    out = _list_summary(lst)
    out["createdAt"] = stamp(lst.created_at)
    out["dynamicList"] = False
    stats = request.sandbox.extensions.get("list_campaign_stats")
    if callable(stats):
        out["campaignStats"] = stats(lst.id)
    return Reply(out)


def put_list(request: ApiRequest) -> Reply:
    lst = find_list(request.sandbox, request.params["list_id"])
    body = request.json_object()
    if "name" in body:
        lst.name = _name(body)
    if "folderId" in body:
        if body["folderId"] not in request.sandbox.folders:
            raise not_found("Folder ID does not exist")
        lst.folder_id = int(body["folderId"])
    return Reply(status=204)


def delete_list(request: ApiRequest) -> Reply:
    _delete_list(request.sandbox, find_list(request.sandbox, request.params["list_id"]))
    return Reply(status=204)


def list_members(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    lst = find_list(sandbox, request.params["list_id"])

    def candidates() -> list[Contact]:
        changed = changed_since(request)
        if changed is not None:  # from the index of changes, not every member
            return [c for c in changed if lst.id in c.list_ids]
        return [sandbox.contacts[cid] for cid in lst.members]

    return select_contacts(request, candidates, 50, 500)


def _targets(
    sandbox: BrevoSandbox, body: Mapping[str, Any]
) -> tuple[str, list[tuple[Any, Contact | None]]]:
    """``(key, [(given identifier, contact or None)])`` from one of emails / ids / extIds."""
    given = [k for k in ("emails", "ids", "extIds") if k in body]
    if len(given) != 1:
        raise invalid("Pass exactly one of emails, ids or extIds")
    key = given[0]
    values = body[key]
    if not isinstance(values, list) or not values:
        raise invalid(f"{key} should be a non-empty array")
    if len(values) > MEMBERSHIP_BATCH:
        raise invalid(f"A maximum of {MEMBERSHIP_BATCH} {key} can be passed per request")
    out: list[tuple[Any, Contact | None]] = []
    for value in values:
        cid: int | None = None
        if key == "emails":
            email = normal_email(value)
            cid = sandbox.by_email.get(email) if email else None
        elif key == "ids":
            cid = value if isinstance(value, int) and value in sandbox.contacts else None
        else:
            cid = sandbox.by_ext_id.get(str(value))
        out.append((value, sandbox.contacts.get(cid) if cid is not None else None))
    return key, out


def add_members(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    lst = find_list(sandbox, request.params["list_id"])
    _key, targets = _targets(sandbox, request.json_object())
    success, failure = [], []
    added: list[Contact] = []
    for value, contact in targets:
        if contact is not None and add_to_list(sandbox, contact, lst.id):
            success.append(value)
            added.append(contact)
        else:
            failure.append(value)
    if not success:
        raise invalid("Contact already in list and/or does not exist")
    now = sandbox.now()
    from campaign_bridge.sandbox.brevo.contacts import emit_change

    for contact in added:
        recent.touch(sandbox, contact, now)
        emit_change(sandbox, contact, "list_addition", list_ids=[lst.id])
    return Reply({"contacts": {"success": success, "failure": failure}}, status=201)


def remove_members(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    lst = find_list(sandbox, request.params["list_id"])
    body = request.json_object()
    if body.get("all") is True:
        from campaign_bridge.sandbox.brevo.imports import finished_process

        total = len(lst.members)
        for cid in list(lst.members):
            remove_from_list(sandbox, sandbox.contacts[cid], lst.id)
        process = finished_process(sandbox, "LIST_REMOVE")
        return Reply({"contacts": {"processId": process.id, "total": total}}, status=201)
    _key, targets = _targets(sandbox, body)
    success, failure = [], []
    now = sandbox.now()
    for value, contact in targets:
        if contact is not None and remove_from_list(sandbox, contact, lst.id):
            recent.touch(sandbox, contact, now)
            success.append(value)
        else:
            failure.append(value)
    if not success:
        raise invalid("Contact does not exist in list")
    return Reply({"contacts": {"success": success, "failure": failure}}, status=201)


_A = "/contacts/attributes/{category}/{name}"
routes = [
    Route("GET", "/contacts/attributes", get_attributes),
    Route("POST", _A, post_attribute),
    Route("PUT", _A, put_attribute),
    Route("DELETE", _A, delete_attribute),
    Route("GET", "/contacts/folders", get_folders),
    Route("POST", "/contacts/folders", post_folder),
    Route("GET", "/contacts/folders/{folder_id}", get_folder),
    Route("PUT", "/contacts/folders/{folder_id}", put_folder),
    Route("DELETE", "/contacts/folders/{folder_id}", delete_folder),
    Route("GET", "/contacts/folders/{folder_id}/lists", get_folder_lists),
    Route("GET", "/contacts/lists", get_lists),
    Route("POST", "/contacts/lists", post_list),
    Route("GET", "/contacts/lists/{list_id}", get_list),
    Route("PUT", "/contacts/lists/{list_id}", put_list),
    Route("DELETE", "/contacts/lists/{list_id}", delete_list),
    Route("GET", "/contacts/lists/{list_id}/contacts", list_members),
    Route("POST", "/contacts/lists/{list_id}/contacts/add", add_members),
    Route("POST", "/contacts/lists/{list_id}/contacts/remove", remove_members),
]
