"""The control API under ``/_sandbox`` — for tests and demos, not part of listmonk's surface.

Same verbs as the Mailchimp and Brevo sandboxes': health, reset, seed, state, simulate
subscriber behaviour (unsubscribe, bounce, blocklist, spam complaint, opt-in confirm, an
address edited in the admin UI), faults,
limits, clock, keys (API users), activity rates, processes/run, save; plus ``optins`` (the
opt-in e-mails listmonk would have sent). listmonk has no outbound webhooks, so what a
subscriber does reaches the bridge only through pull.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from campaign_bridge.sandbox._control import ControlVerbs, body_of
from campaign_bridge.sandbox.listmonk import persistence
from campaign_bridge.sandbox.listmonk.bounces import BOUNCE_TYPES, record_bounce
from campaign_bridge.sandbox.listmonk.campaigns import finish_due
from campaign_bridge.sandbox.listmonk.imports import run_due
from campaign_bridge.sandbox.listmonk.lists import create_list
from campaign_bridge.sandbox.listmonk.model import ALL_PERMISSIONS, ListmonkSandbox, Subscriber
from campaign_bridge.sandbox.listmonk.subscribers import (
    blocklist,
    change_email,
    insert_subscriber,
    render_subscriber,
    sanitize_email,
    set_subscription,
    unsubscribe_lists,
)
from campaign_bridge.sandbox.listmonk.wire import ApiRequest, Reply, Route, bad, not_found, stamp

__all__ = ["confirm_optin", "control_routes", "seed", "seed_default", "seed_demo", "simulate"]


def seed_default(sandbox: ListmonkSandbox) -> tuple[str, str]:
    """A Super Admin API user and listmonk's two install-time lists; ``(user, token)``."""
    with sandbox.lock:
        user = sandbox.new_user(sandbox.config.api_user)
        sandbox.default_user = user.username
        if not sandbox.lists:
            create_list(sandbox, "Default list", "private", "single", tags=["test"])
            create_list(sandbox, "Opt-in list", "public", "double", tags=["test"])
        return user.username, user.token


def seed(sandbox: ListmonkSandbox, body: Mapping[str, Any]) -> dict[str, Any]:
    """Bulk seeding: ``users`` [{username, token, perms}], ``lists`` [{name, type, optin,
    tags}], ``subscribers`` [{email, name, status, attribs, lists, subscription_status}]."""
    with sandbox.lock:
        users = [
            sandbox.new_user(u.get("username"), u.get("token"), u.get("perms")).username
            for u in body.get("users", [])
        ]
        lists = [
            create_list(
                sandbox,
                str(spec.get("name", "List")),
                str(spec.get("type", "private")),
                str(spec.get("optin", "single")),
                tags=list(spec.get("tags", [])),
            ).id
            for spec in body.get("lists", [])
        ]
        subs = []
        for item in body.get("subscribers", []):
            email = sanitize_email(item.get("email"))
            sub = insert_subscriber(
                sandbox,
                email,
                str(item.get("name") or ""),
                "enabled",
                dict(item.get("attribs") or {}),
                [],
                False,
            )
            wanted = str(item.get("subscription_status") or "confirmed")
            for list_id in item.get("lists", []):
                set_subscription(sandbox, sub, int(list_id), wanted, now=sandbox.now())
            if item.get("status") == "blocklisted":
                blocklist(sandbox, [sub])
            elif item.get("status"):
                sub.status = str(item["status"])
            subs.append(sub.id)
        return {"users": users, "lists": lists, "subscribers": subs}


def seed_demo(sandbox: ListmonkSandbox, count: int = 25) -> dict[str, Any]:
    """``count`` demo subscribers on the default list (one in nine blocklisted) and a few on
    the opt-in list, unconfirmed."""
    if not sandbox.lists:
        seed_default(sandbox)
    first = next(iter(sandbox.lists))
    people = [
        {
            "email": f"demo{i}@demo.sandbox.invalid",
            "name": f"Demo Person {i}",
            "attribs": {"plan": ("free", "pro")[i % 2], "score": i * 1.5},
            "lists": [first],
            "status": "blocklisted" if i % 9 == 8 else "enabled",
        }
        for i in range(count)
    ]
    return seed(sandbox, {"subscribers": people})


# --- simulated subscriber behaviour --------------------------------------------------------------

ACTIONS = ("unsubscribe", "bounce", "blocklist", "spam", "confirm", "change-email")


def confirm_optin(sandbox: ListmonkSandbox, sub: Subscriber, list_uuids: list[str]) -> int:
    """The subscriber confirms (``/subscription/optin/{uuid}``): their unconfirmed double
    opt-in subscriptions (only those named, when ``list_uuids`` is given) become confirmed."""
    now = sandbox.now()
    confirmed = 0
    for list_id, subscription in sub.lists.items():
        lst = sandbox.lists[list_id]
        if list_uuids and lst.uuid not in list_uuids:
            continue
        if lst.optin == "double" and subscription.status == "unconfirmed":
            subscription.status, subscription.updated_at = "confirmed", now
            confirmed += 1
    return confirmed


def simulate(
    sandbox: ListmonkSandbox, identifier: str, action: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    """What a subscriber (or the instance's admin) does, with listmonk's effects:

    - ``unsubscribe``: the campaign unsubscribe page. With ``campaign_id``, from that
      campaign's lists; else from ``list_id``/``list_ids``, else from every list; with
      ``blocklist: true`` (the page's tick box, ``privacy.allow_blocklist``) blocklisted too;
    - ``bounce``: ``type`` hard|soft|complaint (``campaign_id`` optional), with the bounce
      actions; ``spam`` is a ``complaint`` bounce;
    - ``blocklist``: the admin blocklists the subscriber;
    - ``confirm``: the subscriber clicks the opt-in link (``list_ids`` optional);
    - ``change-email``: an admin edits the subscriber's address to ``email`` (listmonk has no
      self-service address change; the admin UI saves it as ``PUT /api/subscribers/{id}``
      does): same id, subscriptions and history, ``updated_at`` now.
    """
    with sandbox.lock:
        run_due(sandbox)
        finish_due(sandbox)
        sub = sandbox.subscriber_by(identifier)
        if sub is None:
            raise not_found("Subscriber", f" (0: {identifier})")
        campaign_id = int(body.get("campaign_id") or 0) or None
        if campaign_id is not None and campaign_id not in sandbox.campaigns:
            raise not_found("Campaign")
        if action == "unsubscribe":
            if campaign_id is not None:
                targets = list(sandbox.campaigns[campaign_id].list_ids)
            elif body.get("list_id") or body.get("list_ids"):
                targets = [int(i) for i in body.get("list_ids") or [body["list_id"]]]
            else:
                targets = list(sub.lists)
            if body.get("blocklist"):
                blocklist(sandbox, [sub])
            else:
                unsubscribe_lists(sandbox, [sub], targets)
        elif action in ("bounce", "spam"):
            kind = "complaint" if action == "spam" else str(body.get("type", "hard"))
            if kind not in BOUNCE_TYPES:
                raise bad(f"type must be one of {', '.join(BOUNCE_TYPES)}")
            record_bounce(
                sandbox,
                sub,
                kind,
                campaign_id=campaign_id,
                source=str(body.get("source") or "api"),
                meta=dict(body.get("meta") or {}),
            )
            if sub.id not in sandbox.subscribers:  # the "delete" bounce action
                return {"id": sub.id, "deleted": True}
        elif action == "blocklist":
            blocklist(sandbox, [sub])
        elif action == "confirm":
            uuids = [
                sandbox.lists[int(i)].uuid
                for i in body.get("list_ids", [])
                if int(i) in sandbox.lists
            ]
            if not confirm_optin(sandbox, sub, uuids):
                raise bad("No unconfirmed double opt-in subscriptions to confirm")
        elif action == "change-email":
            change_email(sandbox, sub, sanitize_email(body.get("email")))
            sub.updated_at = sandbox.now()
        else:
            raise bad(f"Unknown action; use one of {', '.join(ACTIONS)}")
        return render_subscriber(sandbox, sub)


# --- handlers ------------------------------------------------------------------------------------


def _health(sandbox: ListmonkSandbox) -> dict[str, Any]:
    return {
        "ok": True,
        "api_user": sandbox.default_user,
        "api_token": sandbox.default_token,
        "list_id": next(iter(sandbox.lists), None),
        "now": stamp(sandbox.now()),
    }


def _subscriber_state(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    run_due(sandbox)
    finish_due(sandbox)
    sub = sandbox.subscriber_by(unquote(request.params["identifier"]))
    if sub is None:
        raise not_found("Subscriber")
    return Reply(render_subscriber(sandbox, sub))


def _simulate(request: ApiRequest) -> Reply:
    identifier = unquote(request.params["identifier"])
    return Reply(simulate(request.sandbox, identifier, request.params["action"], body_of(request)))


_LIMIT_KNOBS = {
    "send_optin_confirmation": bool,
    "individual_tracking": bool,
    "bounce_webhooks": bool,
    "import_seconds_per_10k": float,
    "campaign_send_seconds": float,
    "activity_spread_seconds": float,
}


def _bounce_actions(sandbox: ListmonkSandbox) -> dict[str, Any]:
    return {"bounce_actions": sandbox.config.bounce_actions}


def _set_bounce_actions(sandbox: ListmonkSandbox, body: Mapping[str, Any]) -> None:
    for kind_name, rule in (body.get("bounce_actions") or {}).items():
        if kind_name not in BOUNCE_TYPES or rule.get("action") not in (
            "none",
            "unsubscribe",
            "blocklist",
            "delete",
        ):
            raise ValueError(f"bounce_actions.{kind_name}: {rule}")
        sandbox.config.bounce_actions[kind_name] = {
            "count": int(rule.get("count", 1)),
            "action": rule["action"],
        }


def _keys(request: ApiRequest) -> Reply:
    body = body_of(request)
    perms = body.get("perms")
    if perms is not None:
        unknown = sorted(set(perms) - ALL_PERMISSIONS)
        if unknown:
            raise bad(f"unknown permissions {unknown}; use {sorted(ALL_PERMISSIONS)}")
    user = request.sandbox.new_user(body.get("username"), body.get("token"), perms)
    return Reply({"username": user.username, "token": user.token})


def _activity(request: ApiRequest) -> Reply:
    rates = request.sandbox.rates
    for name, value in (body_of(request).get("rates") or {}).items():
        if name not in rates or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise bad(f"rates: {name} must be one of {sorted(rates)} with a value in [0, 1]")
        rates[name] = float(value)
    return Reply({"rates": dict(rates)})


def _run_processes(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    run_due(sandbox)
    finish_due(sandbox)
    running = [c.id for c in sandbox.campaigns.values() if c.status == "running"]
    imp = sandbox.extensions.get("importer")
    return Reply({"import": imp.stats() if imp else None, "running_campaigns": running})


def _optins(request: ApiRequest) -> Reply:
    return Reply({"optins": list(request.sandbox.optin_mails)})


verbs = ControlVerbs(
    bad=bad,
    now_text=lambda sandbox: stamp(sandbox.now()),
    save_state=persistence.save,
    dump_state=persistence.dump_state,
    reset_state=persistence.reset_state,
    seed=seed,
    seed_default=seed_default,
    health=_health,
    knobs=_LIMIT_KNOBS,
    more_limits=_bounce_actions,
    set_more_limits=_set_bounce_actions,
)

control_routes = [
    *verbs.routes(Route),
    Route("GET", "/subscribers/{identifier}", _subscriber_state),
    Route("POST", "/subscribers/{identifier}/{action}", _simulate),
    Route("POST", "/keys", _keys),
    Route("GET", "/activity", _activity),
    Route("PUT", "/activity", _activity),
    Route("POST", "/processes/run", _run_processes),
    Route("GET", "/optins", _optins),
]
