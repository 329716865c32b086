"""Subscribers: the store operations listmonk's queries perform, and the ``/api/subscribers``
handlers (create, get, query, update, delete, blocklist, per-list management, opt-in mail).

Rules from listmonk's ``queries/subscribers.sql`` and ``cmd/subscribers.go`` (v6.2.0):

- e-mails are sanitised and lower-cased; a blank name is made from the local part;
- a duplicate e-mail on create is 409 ``E-mail already exists.``; there is no upsert;
- a blocklisted subscriber's subscriptions are all ``unsubscribed``; PUT keeps an existing
  ``confirmed`` or ``unsubscribed`` status, so re-enabling never re-subscribes;
- ``PUT /api/subscribers/lists`` ``add`` with a ``status`` overwrites existing subscriptions.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable
from typing import Any

from campaign_bridge.sandbox.listmonk.model import ListmonkSandbox, Subscriber, Subscription
from campaign_bridge.sandbox.listmonk.query import compile_query
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
    stamp,
)

__all__ = [
    "blocklist",
    "delete_subscribers",
    "derive_name",
    "get_subscriber",
    "insert_subscriber",
    "render_list",
    "render_subscriber",
    "routes",
    "sanitize_email",
    "set_subscription",
    "unsubscribe_lists",
]

_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+$")
SUB_STATUSES = ("enabled", "disabled", "blocklisted")
SUBSCRIPTION_STATUSES = ("unconfirmed", "confirmed", "unsubscribed")
_ORDER_FIELDS = ("email", "name", "status", "created_at", "updated_at")


def sanitize_email(raw: Any) -> str:
    """Lower-cased address or 400 ``Invalid email.`` (listmonk: over 1000 chars or unparsable)."""
    email = str(raw or "").strip()
    if not email or len(email) > 1000 or not _EMAIL.match(email):
        raise bad("Invalid email.")
    return email.lower()


def derive_name(email: str) -> str:
    """``ann.lee@x`` → ``Ann Lee`` (listmonk's ``ValidateFields``)."""
    local = email.split("@")[0].lower().replace(".", " ")
    return " ".join(part[:1].upper() + part[1:] for part in local.split())


# --- rendering -----------------------------------------------------------------------------------


def render_list(sandbox: ListmonkSandbox, list_id: int, *, counts: bool = True) -> dict[str, Any]:
    lst = sandbox.lists[list_id]
    out: dict[str, Any] = {
        "id": lst.id,
        "created_at": stamp(lst.created_at),
        "updated_at": stamp(lst.updated_at),
        "uuid": lst.uuid,
        "name": lst.name,
        "type": lst.type,
        "optin": lst.optin,
        "status": lst.status,
        "tags": list(lst.tags),
        "description": lst.description,
    }
    if counts:
        statuses: dict[str, int] = {}
        for sub_id in lst.members:
            status = sandbox.subscribers[sub_id].lists[list_id].status
            statuses[status] = statuses.get(status, 0) + 1
        out["subscriber_count"] = len(lst.members)
        out["subscriber_statuses"] = statuses
    return out


def render_subscriber(
    sandbox: ListmonkSandbox, sub: Subscriber, lists: dict[int, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The subscriber as listmonk's JSON has it, each list with its subscription. ``lists``
    holds lists already rendered for the same answer (a page of subscribers shares them, as
    listmonk loads a page's lists in one query); each entry gets its own copy."""
    known = {} if lists is None else lists
    entries = []
    for list_id, subscription in sub.lists.items():
        base = known.get(list_id)
        if base is None:
            base = known[list_id] = render_list(sandbox, list_id, counts=False)
        item = base.copy()
        item["tags"] = list(base["tags"])
        item["subscription_status"] = subscription.status
        item["subscription_created_at"] = stamp(subscription.created_at)
        item["subscription_updated_at"] = stamp(subscription.updated_at)
        item["subscription_meta"] = dict(subscription.meta)
        entries.append(item)
    return {
        "id": sub.id,
        "created_at": stamp(sub.created_at),
        "updated_at": stamp(sub.updated_at),
        "uuid": sub.uuid,
        "email": sub.email,
        "name": sub.name,
        "attribs": sub.attribs,
        "status": sub.status,
        "lists": entries,
    }


# --- store operations ----------------------------------------------------------------------------


def get_subscriber(sandbox: ListmonkSandbox, sub_id: int, email: str = "") -> Subscriber:
    sub = sandbox.subscribers.get(sub_id) or (
        sandbox.subscribers.get(sandbox.by_email.get(email, 0)) if email else None
    )
    if sub is None:
        raise not_found("Subscriber", f" ({sub_id}: {email})")
    return sub


def set_subscription(
    sandbox: ListmonkSandbox, sub: Subscriber, list_id: int, status: str, *, now: float
) -> None:
    """Create or overwrite one subscription (a blocklisted subscriber's is ``unsubscribed``)."""
    if sub.status == "blocklisted":
        status = "unsubscribed"
    current = sub.lists.get(list_id)
    if current is None:
        sub.lists[list_id] = Subscription(status, now, now)
        sandbox.lists[list_id].members[sub.id] = None
    elif current.status != status:
        current.status = status
        current.updated_at = now


def _existing_lists(sandbox: ListmonkSandbox, list_ids: Iterable[Any]) -> list[int]:
    """Known list ids in order (unknown ids are skipped, as listmonk's ``id=ANY($6)``)."""
    out: list[int] = []
    for raw in list_ids:
        try:
            list_id = int(raw)
        except (TypeError, ValueError):
            raise bad("Invalid ID(s)") from None
        if list_id in sandbox.lists and list_id not in out:
            out.append(list_id)
    return out


def send_optin(sandbox: ListmonkSandbox, sub: Subscriber, list_ids: Iterable[int]) -> int:
    """Record the opt-in e-mail for ``sub``'s unconfirmed double opt-in lists; their count."""
    pending = [
        i
        for i in list_ids
        if i in sub.lists
        and sandbox.lists[i].optin == "double"
        and sub.lists[i].status == "unconfirmed"
    ]
    if pending and sub.status != "blocklisted":
        sandbox.optin_mails.append(
            {"subscriber_id": sub.id, "email": sub.email, "list_ids": pending, "at": sandbox.now()}
        )
    return len(pending)


def insert_subscriber(
    sandbox: ListmonkSandbox,
    email: str,
    name: str,
    status: str,
    attribs: dict[str, Any],
    list_ids: Iterable[Any],
    preconfirm: bool,
) -> Subscriber:
    if email in sandbox.by_email:
        raise ListmonkError(409, "E-mail already exists.")
    if status not in SUB_STATUSES:
        raise ListmonkError(
            500,
            "Error creating Subscriber: invalid input value for enum subscriber_status: "
            f'"{status}"',
        )
    now = sandbox.now()
    sub = Subscriber(
        id=sandbox.ids.next("subscriber"),
        uuid=sandbox.new_uuid(),
        email=email,
        name=name or derive_name(email),
        attribs=attribs,
        status=status,
        created_at=now,
        updated_at=now,
    )
    sandbox.subscribers[sub.id] = sub
    sandbox.by_email[email] = sub.id
    sandbox.by_uuid[sub.uuid] = sub.id
    targets = _existing_lists(sandbox, list_ids)
    for list_id in targets:
        set_subscription(
            sandbox, sub, list_id, "confirmed" if preconfirm else "unconfirmed", now=now
        )
    if not preconfirm and sandbox.config.send_optin_confirmation:
        send_optin(sandbox, sub, targets)
    return sub


def blocklist(sandbox: ListmonkSandbox, subs: Iterable[Subscriber]) -> None:
    """``status=blocklisted`` and every subscription ``unsubscribed``."""
    now = sandbox.now()
    for sub in subs:
        sub.status = "blocklisted"
        sub.updated_at = now
        for subscription in sub.lists.values():
            if subscription.status != "unsubscribed":
                subscription.status = "unsubscribed"
                subscription.updated_at = now


def unsubscribe_lists(
    sandbox: ListmonkSandbox, subs: Iterable[Subscriber], list_ids: Iterable[int]
) -> None:
    """Existing subscriptions on ``list_ids`` become ``unsubscribed`` (``subscriber_lists``'s
    ``updated_at`` moves; the subscriber's does not)."""
    now = sandbox.now()
    targets = list(list_ids)
    for sub in subs:
        for list_id in targets:
            subscription = sub.lists.get(list_id)
            if subscription is not None and subscription.status != "unsubscribed":
                subscription.status = "unsubscribed"
                subscription.updated_at = now


def remove_lists(sandbox: ListmonkSandbox, sub: Subscriber, list_ids: Iterable[int]) -> None:
    for list_id in list(list_ids):
        if sub.lists.pop(list_id, None) is not None:
            sandbox.lists[list_id].members.pop(sub.id, None)


def delete_subscribers(sandbox: ListmonkSandbox, ids: Iterable[int]) -> int:
    """Delete (cascading to subscriptions and bounces); unknown ids are not an error."""
    gone = 0
    for sub_id in ids:
        sub = sandbox.subscribers.pop(sub_id, None)
        if sub is None:
            continue
        gone += 1
        sandbox.by_email.pop(sub.email, None)
        sandbox.by_uuid.pop(sub.uuid, None)
        for list_id in sub.lists:
            sandbox.lists[list_id].members.pop(sub_id, None)
        for bounce_id in [b.id for b in sandbox.bounces.values() if b.subscriber_id == sub_id]:
            del sandbox.bounces[bounce_id]
    return gone


# --- handlers ------------------------------------------------------------------------------------


def _attribs(body: dict[str, Any]) -> dict[str, Any]:
    attribs = body.get("attribs")
    if attribs is None:
        return {}
    if not isinstance(attribs, dict):
        raise bad("Invalid JSON in attributes.")
    return attribs


def _create(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    body = request.json_object()
    email = sanitize_email(body.get("email"))
    name = str(body.get("name") or "").strip()
    lists = body.get("lists") or []
    if not isinstance(lists, list):
        raise bad("Invalid ID(s)")
    sub = insert_subscriber(
        sandbox,
        email,
        name,
        str(body.get("status") or "enabled"),
        _attribs(body),
        lists,
        bool(body.get("preconfirm_subscriptions")),
    )
    return data(render_subscriber(sandbox, sub))


def _get(request: ApiRequest) -> Reply:
    sub_id = path_id(request)
    return data(render_subscriber(request.sandbox, get_subscriber(request.sandbox, sub_id)))


def sql_expression(raw: str) -> str:
    """listmonk's ``formatSQLExp``: trimmed, one trailing semicolon dropped."""
    text = raw.strip()
    return text[:-1] if text.endswith(";") else text


def matching(
    request: ApiRequest, query: str, search: str, list_ids: list[int], sub_status: str
) -> list[Subscriber]:
    """Subscribers matching listmonk's query template: ``query`` (needs
    ``subscribers:sql_query``), ``search`` (a case-insensitive regular expression on name or
    e-mail), ``list_ids`` and, with them, ``sub_status``; in id order."""
    sandbox = request.sandbox
    if query and request.user is not None and not request.user.can("subscribers:sql_query"):
        raise ListmonkError(403, "Permission denied: subscribers:sql_query")
    predicate = compile_query(query) if query else None
    bounds = _id_bounds(query)
    if bounds is not None and bounds[2]:
        predicate = None  # the query is only the id range, which the pool already is
    try:
        pattern = re.compile(search, re.IGNORECASE) if search else None
    except re.error as exc:
        raise bad(f"Error preparing subscriber query: invalid regular expression: {exc}") from None
    by_email = _email_lookup(sandbox, query)
    if by_email is not None:  # PostgreSQL answers this from the e-mail index, not a scan
        wanted = [sandbox.lists[i].members for i in list_ids if i in sandbox.lists]
        pool: Iterable[int] = [
            i for i in by_email if not list_ids or any(i in members for members in wanted)
        ]
    elif list_ids:
        pool = _list_members(sandbox, list_ids)
    else:
        pool = sandbox.subscribers
    if bounds is not None:  # keyset paging: PostgreSQL reads the primary key's index
        after, upto, _whole = bounds
        if pool is sandbox.subscribers:
            pool = _ids_between(sandbox, after, upto)
        else:
            ordered = pool if isinstance(pool, list) else sorted(pool)
            low = bisect.bisect_right(ordered, after)
            high = len(ordered) if upto is None else bisect.bisect_right(ordered, upto)
            pool = itertools.islice(ordered, low, high)
    out = []
    for sub_id in pool:
        sub = sandbox.subscribers[sub_id]
        if (
            list_ids
            and sub_status
            and not any(sub.lists[i].status == sub_status for i in list_ids if i in sub.lists)
        ):
            continue
        if pattern is not None and not (pattern.search(sub.name) or pattern.search(sub.email)):
            continue
        if predicate is not None and not predicate(sub):
            continue
        out.append(sub)
    return out


def _list_members(sandbox: ListmonkSandbox, list_ids: list[int]) -> list[int]:
    """The ids of the lists' subscribers, ascending (one list: its kept order, not a sort)."""
    known = [sandbox.lists[i].members for i in dict.fromkeys(list_ids) if i in sandbox.lists]
    if len(known) == 1:
        return known[0].ordered()
    return sorted({sub_id for members in known for sub_id in members})


def _ids_between(sandbox: ListmonkSandbox, after: int, upto: int | None) -> list[int]:
    """Every subscriber id above ``after`` (up to ``upto``), ascending. A short range is read
    id by id; otherwise from the newest end: the store keeps subscribers in id order (ids
    only grow, and each is stored once, when made)."""
    subscribers = sandbox.subscribers
    if upto is not None and upto - after <= 4 * 1024:
        return [i for i in range(after + 1, upto + 1) if i in subscribers]
    found: list[int] = []
    for sub_id in reversed(subscribers):
        if sub_id <= after:
            break
        if upto is None or sub_id <= upto:
            found.append(sub_id)
    found.reverse()
    return found


_EMAIL_IN = re.compile(
    r"^\s*(?:subscribers\.)?email\s+IN\s*\(\s*"
    r"('(?:[^']|'')*'(?:\s*,\s*'(?:[^']|'')*')*)\s*\)\s*$",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


_ID_BOUNDS = re.compile(
    r"^\s*(?:subscribers\.)?id\s*>\s*(\d+)"
    r"(?:\s+AND\s+(?:subscribers\.)?id\s*(<=|<)\s*(\d+))?\s*(AND\b|$)",
    re.IGNORECASE,
)


def _id_bounds(query: str) -> tuple[int, int | None, bool] | None:
    """``(N, M, whole)`` of a query that starts ``subscribers.id > N`` (optionally ``AND
    subscribers.id <= M`` or ``< M + 1``) with no top-level ``OR``, so every match has an id
    in that range; ``whole`` when nothing else follows. Else None."""
    found = _ID_BOUNDS.match(query) if query else None
    if found is None:
        return None
    depth = 0
    for word in re.findall(r"\(|\)|'(?:[^']|'')*'|\w+", query):
        depth += {"(": 1, ")": -1}.get(word, 0)
        if depth == 0 and word.upper() == "OR":
            return None
    upto = None
    if found.group(3) is not None:
        upto = int(found.group(3)) - (1 if found.group(2) == "<" else 0)
    return int(found.group(1)), upto, not found.group(4)


def _email_lookup(sandbox: ListmonkSandbox, query: str) -> list[int] | None:
    """The ids a ``subscribers.email IN ('…', …)`` query can match, in id order (``None`` for
    any other query)."""
    found = _EMAIL_IN.match(query) if query else None
    if found is None:
        return None
    emails = (m.replace("''", "'") for m in _QUOTED.findall(found.group(1)))
    return sorted({i for e in emails if (i := sandbox.by_email.get(e)) is not None})


def select(request: ApiRequest) -> list[Subscriber]:
    """``GET /api/subscribers``'s selection in ``order_by``/``order`` order (listmonk: unknown
    fields → id; only lower-case ``asc``)."""
    out = matching(
        request,
        sql_expression(request.value("query")),
        request.value("search").strip(),
        ids_of(request.pairs, "list_id"),
        request.value("subscription_status"),
    )
    order_by = request.value("order_by")
    key = order_by if order_by in _ORDER_FIELDS else "id"
    descending = request.value("order") != "asc"
    if key == "id":  # ``matching`` answers in id order
        return out[::-1] if descending else out
    out.sort(key=lambda s: (getattr(s, key), s.id), reverse=descending)
    return out


def _query(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    chosen = select(request)
    query = sql_expression(request.value("query"))
    page = paged(chosen, request.query, query=query, search=request.value("search").strip())
    lists: dict[int, dict[str, Any]] = {}
    page["results"] = [render_subscriber(sandbox, s, lists) for s in page["results"]]
    return data(page, items=len(page["results"]))


def _update(request: ApiRequest) -> Reply:
    """PUT: full replacement (attribs replaced, ``lists`` is the whole set)."""
    return _write(request, patch=False)


def _patch(request: ApiRequest) -> Reply:
    """PATCH (v6.1.0+): the body is decoded over the stored subscriber, so only sent fields
    change, ``attribs`` merge at the top level, and ``lists`` replaces subscriptions only when
    present."""
    return _write(request, patch=True)


def _write(request: ApiRequest, *, patch: bool) -> Reply:
    sandbox = request.sandbox
    sub_id = path_id(request)
    body = request.json_object()
    sub = sandbox.subscribers.get(sub_id)
    if patch and sub is None:
        raise not_found("Subscriber", f" ({sub_id}: )")
    email = sanitize_email(body.get("email", sub.email if patch and sub else None))
    name = str(body.get("name") or "").strip()
    if len(name) > 200:
        raise bad("Invalid name.")
    if sub is None:
        raise not_found("Subscriber", f" (0: {email})")
    _refuse_taken(sandbox, sub, email)
    status = str(body.get("status") or (sub.status if patch else ""))
    if status and status not in SUB_STATUSES:
        raise ListmonkError(
            500,
            "Error updating Subscriber: invalid input value for enum subscriber_status: "
            f'"{status}"',
        )
    attribs = _attribs(body)
    if patch:
        attribs = {**sub.attribs, **attribs} if "attribs" in body else sub.attribs
    replace = not patch or body.get("lists") is not None
    preconfirm = bool(body.get("preconfirm_subscriptions"))
    now = sandbox.now()
    change_email(sandbox, sub, email)
    sub.name = name or sub.name
    sub.status = status or sub.status
    sub.attribs = attribs
    sub.updated_at = now
    targets = _existing_lists(sandbox, body.get("lists") or []) if replace else []
    if replace:
        remove_lists(sandbox, sub, [i for i in sub.lists if i not in targets])
    fresh = "confirmed" if preconfirm else "unconfirmed"
    for list_id in targets:
        current = sub.lists.get(list_id)
        if status == "blocklisted":
            wanted = "unsubscribed"
        elif current is not None and current.status in ("confirmed", "unsubscribed"):
            wanted = current.status
        else:
            wanted = fresh
        if current is None:
            sub.lists[list_id] = Subscription(wanted, now, now)
            sandbox.lists[list_id].members[sub.id] = None
        elif current.status != wanted:
            current.status, current.updated_at = wanted, now
    if status == "blocklisted" and replace:
        blocklist(sandbox, [sub])
    if not preconfirm and sandbox.config.send_optin_confirmation:
        send_optin(sandbox, sub, targets)
    return data(render_subscriber(sandbox, sub))


def _refuse_taken(sandbox: ListmonkSandbox, sub: Subscriber, email: str) -> None:
    owner = sandbox.by_email.get(email)
    if owner is not None and owner != sub.id:
        raise ListmonkError(
            500,
            "Error updating Subscriber: duplicate key value violates unique constraint "
            '"idx_subs_email"',
        )


def change_email(sandbox: ListmonkSandbox, sub: Subscriber, email: str) -> None:
    """The subscriber's address becomes ``email`` (sanitised); the id, subscriptions and
    history stay. An address another subscriber has is listmonk's unique-index error."""
    _refuse_taken(sandbox, sub, email)
    sandbox.by_email.pop(sub.email, None)
    sub.email = email
    sandbox.by_email[email] = sub.id


def _ids_body(request: ApiRequest) -> list[int]:
    raw = request.json_object().get("ids")
    if not isinstance(raw, list) or not all(isinstance(i, int) and i > 0 for i in raw):
        raise bad("One or more IDs are invalid: ids")
    if not raw:
        raise bad("One or more IDs are invalid: ids")
    return [int(i) for i in raw]


def _blocklist_one(request: ApiRequest) -> Reply:
    sub_id = path_id(request)
    sub = request.sandbox.subscribers.get(sub_id)
    blocklist(request.sandbox, [sub] if sub else [])
    return data(True)


def _blocklist_many(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    ids = _ids_body(request)
    blocklist(sandbox, [sandbox.subscribers[i] for i in ids if i in sandbox.subscribers])
    return data(True, items=len(ids))


def _manage_lists(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    body = request.json_object()
    sub_ids: list[int] = []
    if "id" in request.params:
        sub_ids = [path_id(request)]
    raw_ids = body.get("ids")
    if not isinstance(raw_ids, list) or not raw_ids:
        raise bad("No IDs given.")
    if not all(isinstance(i, int) for i in raw_ids):
        raise bad("One or more IDs are invalid: ids must be integers")
    sub_ids = sub_ids or [int(i) for i in raw_ids]
    targets = body.get("target_list_ids")
    if not isinstance(targets, list) or not targets:
        raise bad("No lists given.")
    list_ids = _existing_lists(sandbox, targets)
    subs = [sandbox.subscribers[i] for i in sub_ids if i in sandbox.subscribers]
    action = body.get("action")
    status = str(body.get("status") or "")
    now = sandbox.now()
    if action == "add":
        if status and status not in SUBSCRIPTION_STATUSES:
            raise ListmonkError(
                500,
                "Error updating Subscriber: invalid input value for enum subscription_status: "
                f'"{status}"',
            )
        for sub in subs:
            for list_id in list_ids:
                # add-subscribers-to-lists: new rows get status or unconfirmed, existing
                # rows are overwritten only when a status is given
                if list_id not in sub.lists:
                    sub.lists[list_id] = Subscription(status or "unconfirmed", now, now)
                    sandbox.lists[list_id].members[sub.id] = None
                elif status and sub.lists[list_id].status != status:
                    sub.lists[list_id].status = status
                    sub.lists[list_id].updated_at = now
    elif action == "remove":
        for sub in subs:
            remove_lists(sandbox, sub, list_ids)
    elif action == "unsubscribe":
        unsubscribe_lists(sandbox, subs, list_ids)
    else:
        raise bad("Invalid action.")
    return data(True, items=len(subs))


def _delete_one(request: ApiRequest) -> Reply:
    delete_subscribers(request.sandbox, [path_id(request)])
    return data(True)


def _delete_many(request: ApiRequest) -> Reply:
    ids = ids_of(request.pairs, "id")
    if not ids:
        raise bad("One or more IDs are invalid: ids")
    delete_subscribers(request.sandbox, ids)
    return data(True, items=len(ids))


def _send_optin(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    sub = get_subscriber(sandbox, path_id(request))
    send_optin(sandbox, sub, list(sub.lists))
    return data(True)


routes = [
    Route("GET", "/subscribers", _query, "subscribers:get_all|subscribers:get"),
    Route("POST", "/subscribers", _create, "subscribers:manage"),
    Route("DELETE", "/subscribers", _delete_many, "subscribers:manage"),
    Route("PUT", "/subscribers/blocklist", _blocklist_many, "subscribers:manage"),
    Route("PUT", "/subscribers/lists", _manage_lists, "subscribers:manage"),
    Route("PUT", "/subscribers/lists/{id}", _manage_lists, "subscribers:manage"),
    Route("GET", "/subscribers/{id}", _get, "subscribers:get_all|subscribers:get"),
    Route("PUT", "/subscribers/{id}", _update, "subscribers:manage"),
    Route("PATCH", "/subscribers/{id}", _patch, "subscribers:manage"),
    Route("DELETE", "/subscribers/{id}", _delete_one, "subscribers:manage"),
    Route("PUT", "/subscribers/{id}/blocklist", _blocklist_one, "subscribers:manage"),
    Route("POST", "/subscribers/{id}/optin", _send_optin, "subscribers:manage"),
]
