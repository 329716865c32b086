"""Bulk changes by query: ``POST /api/subscribers/query/delete``,
``PUT /api/subscribers/query/blocklist`` and ``PUT /api/subscribers/query/lists``.

The body is listmonk's ``subQueryReq``: ``query`` and/or ``search`` select subscribers
(optionally within ``list_ids`` and their ``subscription_status``); delete and blocklist need
one of them unless ``all`` is true (400 ``Invalid fields: query``). ``query/lists`` ``add``
inserts with ``ON CONFLICT DO NOTHING``: unlike ``PUT /api/subscribers/lists`` it never
changes an existing subscription (so never re-subscribes).
"""

from __future__ import annotations

from typing import Any

from campaign_bridge.sandbox.listmonk.model import Subscription
from campaign_bridge.sandbox.listmonk.subscribers import (
    SUBSCRIPTION_STATUSES,
    blocklist,
    delete_subscribers,
    matching,
    remove_lists,
    sql_expression,
    unsubscribe_lists,
)
from campaign_bridge.sandbox.listmonk.wire import (
    ApiRequest,
    ListmonkError,
    Reply,
    Route,
    bad,
    data,
)

__all__ = ["routes"]


def _int_list(body: dict[str, Any], name: str) -> list[int]:
    raw = body.get(name) or []
    if not isinstance(raw, list) or not all(isinstance(i, int) for i in raw):
        raise bad(f"One or more IDs are invalid: {name}")
    return [int(i) for i in raw]


def _selection(request: ApiRequest, *, need_filter: bool) -> tuple[dict[str, Any], list[Any]]:
    body = request.json_object()
    query = sql_expression(str(body.get("query") or ""))
    search = str(body.get("search") or "").strip()
    if need_filter:
        if body.get("all") is True:
            query = search = ""
        elif not query and not search:
            raise bad("Invalid fields: query")
    subs = matching(
        request,
        query,
        search,
        _int_list(body, "list_ids"),
        str(body.get("subscription_status") or ""),
    )
    return body, subs


def _delete(request: ApiRequest) -> Reply:
    _body, subs = _selection(request, need_filter=True)
    delete_subscribers(request.sandbox, [s.id for s in subs])
    return data(True, items=len(subs))


def _blocklist(request: ApiRequest) -> Reply:
    _body, subs = _selection(request, need_filter=True)
    blocklist(request.sandbox, subs)
    return data(True, items=len(subs))


def _lists(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    body = request.json_object()
    targets = [i for i in _int_list(body, "target_list_ids") if i in sandbox.lists]
    if not body.get("target_list_ids"):
        raise bad("No lists given.")
    action = body.get("action")
    if action not in ("add", "remove", "unsubscribe"):
        raise bad("Invalid action.")
    _body, subs = _selection(request, need_filter=False)
    if action == "add":
        status = str(body.get("status") or "unconfirmed")
        if status not in SUBSCRIPTION_STATUSES:
            raise ListmonkError(
                500,
                "Error updating Subscribers: invalid input value for enum subscription_status: "
                f'"{status}"',
            )
        now = sandbox.now()
        for sub in subs:
            for list_id in targets:
                if list_id not in sub.lists:  # ON CONFLICT DO NOTHING
                    sub.lists[list_id] = Subscription(status, now, now)
                    sandbox.lists[list_id].members[sub.id] = None
    elif action == "remove":
        for sub in subs:
            remove_lists(sandbox, sub, targets)
    else:
        unsubscribe_lists(sandbox, subs, targets)
    return data(True, items=len(subs))


routes = [
    Route("POST", "/subscribers/query/delete", _delete, "subscribers:manage"),
    Route("PUT", "/subscribers/query/blocklist", _blocklist, "subscribers:manage"),
    Route("PUT", "/subscribers/query/lists", _lists, "subscribers:manage"),
]
