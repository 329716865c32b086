"""Bounces: recording them with listmonk's bounce actions (``bounce.actions``: per type a count
threshold and ``none|unsubscribe|blocklist|delete``), ``/api/bounces`` and the native bounce
webhook ``POST /webhooks/bounce`` (only when ``bounce_webhooks`` is on, as in listmonk)."""

from __future__ import annotations

from typing import Any

from campaign_bridge.sandbox.listmonk.model import Bounce, ListmonkSandbox, Subscriber
from campaign_bridge.sandbox.listmonk.subscribers import (
    blocklist,
    delete_subscribers,
    unsubscribe_lists,
)
from campaign_bridge.sandbox.listmonk.wire import (
    ApiRequest,
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

__all__ = ["BOUNCE_TYPES", "record_bounce", "render_bounce", "routes", "webhook_routes"]

BOUNCE_TYPES = ("hard", "soft", "complaint")


def record_bounce(
    sandbox: ListmonkSandbox,
    sub: Subscriber,
    kind: str,
    *,
    campaign_id: int | None = None,
    source: str = "api",
    meta: dict[str, Any] | None = None,
    at: float | None = None,
) -> Bounce | None:
    """Record a bounce and apply the action of its type once the subscriber's count of that
    type reaches the threshold. A blocklisted subscriber's bounces are not recorded."""
    if sub.status == "blocklisted":
        return None
    bounce = Bounce(
        id=sandbox.ids.next("bounce"),
        subscriber_id=sub.id,
        campaign_id=campaign_id,
        type=kind,
        source=source,
        meta=dict(meta or {}),
        created_at=sandbox.now() if at is None else at,
    )
    sandbox.bounces[bounce.id] = bounce
    rule = sandbox.config.bounce_actions.get(kind, {"count": 0, "action": "none"})
    count = sum(1 for b in sandbox.bounces.values() if b.subscriber_id == sub.id and b.type == kind)
    if int(rule.get("count", 0)) > 0 and count >= int(rule["count"]):
        action = rule.get("action", "none")
        if action == "blocklist":
            blocklist(sandbox, [sub])
        elif action == "unsubscribe":
            unsubscribe_lists(sandbox, [sub], list(sub.lists))
        elif action == "delete":
            delete_subscribers(sandbox, [sub.id])
    return bounce


def render_bounce(sandbox: ListmonkSandbox, bounce: Bounce) -> dict[str, Any]:
    sub = sandbox.subscribers[bounce.subscriber_id]
    campaign = sandbox.campaigns.get(bounce.campaign_id or 0)
    return {
        "id": bounce.id,
        "type": bounce.type,
        "source": bounce.source,
        "meta": bounce.meta,
        "created_at": stamp(bounce.created_at),
        "email": sub.email,
        "subscriber_uuid": sub.uuid,
        "subscriber_id": sub.id,
        "subscriber_status": sub.status,
        "campaign": {"id": campaign.id, "name": campaign.name} if campaign else None,
    }


def _query(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    q = request.query
    chosen = [
        b
        for b in sandbox.bounces.values()
        if (not q.get("campaign_id") or str(b.campaign_id) == q["campaign_id"])
        and (not q.get("source") or b.source == q["source"])
    ]
    chosen.sort(key=lambda b: (b.created_at, b.id), reverse=q.get("order", "desc") != "asc")
    page = paged(chosen, q)
    page["results"] = [render_bounce(sandbox, b) for b in page["results"]]
    return data(page, items=len(page["results"]))


def _get(request: ApiRequest) -> Reply:
    bounce = request.sandbox.bounces.get(path_id(request))
    if bounce is None:
        raise not_found("Bounce")
    return data(render_bounce(request.sandbox, bounce))


def _subscriber_bounces(request: ApiRequest) -> Reply:
    sub_id = path_id(request)
    sandbox = request.sandbox
    found = [b for b in sandbox.bounces.values() if b.subscriber_id == sub_id]
    return data([render_bounce(sandbox, b) for b in found])


def _delete_one(request: ApiRequest) -> Reply:
    request.sandbox.bounces.pop(path_id(request), None)
    return data(True)


def _delete_many(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    if request.query.get("all") == "true":
        sandbox.bounces.clear()
        return data(True)
    ids = ids_of(request.pairs, "id")
    if not ids:
        raise bad("Invalid ID(s)")
    for bounce_id in ids:
        sandbox.bounces.pop(bounce_id, None)
    return data(True)


def _blocklist_bounced(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    ids = {b.subscriber_id for b in sandbox.bounces.values()}
    blocklist(sandbox, [sandbox.subscribers[i] for i in sorted(ids)])
    return data(True)


def _webhook(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    body = request.json_object()
    kind = str(body.get("type") or "")
    if kind not in BOUNCE_TYPES:
        raise bad(f"Invalid bounce type: {kind}")
    email = str(body.get("email") or "").strip().lower()
    uuid = str(body.get("subscriber_uuid") or "")
    if not email and not uuid:
        raise bad("Invalid email.")
    sub = sandbox.subscriber_by(uuid) if uuid else sandbox.subscriber_by(email)
    if sub is None:
        raise not_found("Subscriber", f" (0: {uuid}{email})")
    campaign = next(
        (c for c in sandbox.campaigns.values() if c.uuid == body.get("campaign_uuid")), None
    )
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    record_bounce(
        sandbox,
        sub,
        kind,
        campaign_id=campaign.id if campaign else None,
        source=str(body.get("source") or "api"),
        meta=meta,
    )
    return data(True)


routes = [
    Route("GET", "/bounces", _query, "bounces:get"),
    Route("DELETE", "/bounces", _delete_many, "bounces:manage"),
    Route("PUT", "/bounces/blocklist", _blocklist_bounced, "bounces:manage"),
    Route("GET", "/bounces/{id}", _get, "bounces:get"),
    Route("DELETE", "/bounces/{id}", _delete_one, "bounces:manage"),
    Route("GET", "/subscribers/{id}/bounces", _subscriber_bounces, "bounces:get"),
]
webhook_routes = [Route("POST", "/bounce", _webhook, "webhooks:post_bounce")]
