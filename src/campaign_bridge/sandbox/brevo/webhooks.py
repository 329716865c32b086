"""Webhooks: the ``/webhooks`` registry and real JSON deliveries of marketing events.

Campaign activity (campaigns.py) and contact changes (``sandbox.listen``) become deliveries:
HTTP POST, ``Content-Type: application/json``, one event object per request, or — for a
webhook created with ``batched: true`` — a JSON array of up to 500 events. Authentication as
Brevo offers it: ``auth: {"type": "bearer", "token": …}`` is sent as ``Authorization: Bearer``;
credentials in the URL (``https://user:pass@host/…``) as HTTP Basic; ``headers: [{key, value}]``
as extra request headers. No payload signature (Brevo documents none).

Failed deliveries (network error, 429 or 5xx) are retried 10 min, 1 h, 2 h and 8 h later
(sandbox time; ``retry_compression`` shortens the real wait); any other 4xx drops the event.

Control API: ``POST /_sandbox/webhooks/flush``, ``GET /_sandbox/webhooks/deliveries``,
``PUT /_sandbox/webhooks/settings`` (``retry_compression``, ``timeout``, ``retry_delays``).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import httpx
import orjson

from campaign_bridge.sandbox._control import body_of
from campaign_bridge.sandbox._deliveries import DeliveryWorker, changed_settings, settings_view
from campaign_bridge.sandbox.brevo.campaigns import Activity, Campaign
from campaign_bridge.sandbox.brevo.model import BrevoSandbox, ContactEvent
from campaign_bridge.sandbox.brevo.wire import (
    ApiRequest,
    BrevoError,
    Reply,
    Route,
    invalid,
    missing,
    not_found,
    stamp,
)

__all__ = ["MARKETING_EVENTS", "WebhookBus", "bus", "control_routes", "install", "routes"]

logger = logging.getLogger(__name__)

MARKETING_EVENTS = (
    "spam",
    "opened",
    "click",
    "hardBounce",
    "softBounce",
    "unsubscribed",
    "listAddition",
    "delivered",
    "contactUpdated",
    "contactDeleted",
    "proxyOpen",
)
TRANSACTIONAL_EVENTS = (
    "sent",
    "request",
    "delivered",
    "hardBounce",
    "softBounce",
    "blocked",
    "spam",
    "invalid",
    "deferred",
    "click",
    "opened",
    "uniqueOpened",
    "unsubscribed",
)
INBOUND_EVENTS = ("inboundEmailProcessed",)
TYPES = {
    "marketing": MARKETING_EVENTS,
    "transactional": TRANSACTIONAL_EVENTS,
    "inbound": INBOUND_EVENTS,
}
#: activity kind -> (subscription name, payload ``event``)
CAMPAIGN_EVENTS = {
    "delivered": ("delivered", "delivered"),
    "opened": ("opened", "opened"),
    "clicked": ("click", "click"),
    "hard_bounce": ("hardBounce", "hard_bounce"),
    "soft_bounce": ("softBounce", "soft_bounce"),
    "unsubscribed": ("unsubscribed", "unsubscribed"),
    "spam": ("spam", "spam"),
}
RETRY_DELAYS = (600.0, 3600.0, 7200.0, 28800.0)
BATCH_SIZE = 500
_CET = ZoneInfo("Europe/Paris")
_STATE = "webhooks"


@dataclass
class Webhook:
    id: int
    url: str
    events: list[str]
    type: str = "transactional"
    description: str = ""
    auth: dict[str, str] | None = None
    headers: list[dict[str, str]] = field(default_factory=list)
    batched: bool = False
    channel: str = "email"
    domain: str = ""
    key: str = ""
    created_at: float = 0.0
    modified_at: float = 0.0


@dataclass
class Delivery:
    id: int
    hook_id: int
    url: str
    events: list[dict[str, Any]]
    batched: bool
    state: str = "pending"  # pending | delivered | failed | dropped
    attempts: list[dict[str, Any]] = field(default_factory=list)
    due_real: float = 0.0
    due_sandbox: float = 0.0


@dataclass
class Settings:
    timeout: float = 10.0
    retry_compression: float = 1.0
    retry_delays: tuple[float, ...] = RETRY_DELAYS


# --- payloads (pure) --------------------------------------------------------------------------- -


def _local(epoch: float, zone: Any = UTC) -> str:
    return datetime.fromtimestamp(epoch, zone).strftime("%Y-%m-%d %H:%M:%S")


def campaign_payload(
    hook: Webhook, event: Activity, campaign: Campaign | None, name: str
) -> dict[str, Any]:
    sent = campaign.sent_at if campaign and campaign.sent_at else event.at
    out: dict[str, Any] = {
        "id": hook.id,
        "camp_id": event.campaign_id,
        "email": event.email,
        "campaign name": campaign.name if campaign else "",
        "date_sent": _local(sent),
        "date_event": _local(event.at),
        "ts_sent": int(sent),
        "ts_event": int(event.at),
        "ts": int(event.at),
        "event": name,
        "tag": campaign.tag if campaign else "",
    }
    if event.kind in ("delivered", "hard_bounce", "soft_bounce", "unsubscribed"):
        out["sending_ip"] = "185.41.28.109"
    if event.reason:
        out["reason"] = event.reason
    if event.kind == "clicked":
        out["URL"] = event.url
    if event.kind == "unsubscribed":
        out["list_id"] = list(event.list_ids)
    return out


def contact_payload(hook: Webhook, event: ContactEvent) -> tuple[str, dict[str, Any]] | None:
    """``(subscription name, payload)`` for a contact change, or None."""
    base: dict[str, Any] = {
        "id": hook.id,
        "email": event.email or "",
        "key": hook.key,
        "date": _local(event.at, _CET),
        "ts": int(event.at),
    }
    if event.kind in ("updated", "blocklisted"):
        content = [{k: v} for k, v in event.changed.items()]
        return "contactUpdated", {
            **base,
            "event": "contact_updated",
            "content": content,
            "api_key_name": event.api_key_name,
        }
    if event.kind == "list_addition":
        return "listAddition", {
            **base,
            "event": "list_addition",
            "list_id": list(event.list_ids),
            "api_key_name": event.api_key_name,
        }
    if event.kind == "deleted":
        return "contactDeleted", {
            **base,
            "event": "contact_deleted",
            "list_id": list(event.list_ids),
        }
    return None


def request_parts(hook_url: str, hook: Webhook | None) -> tuple[str, dict[str, str]]:
    """The URL to POST to (credentials removed) and the headers Brevo would send."""
    headers = {"Content-Type": "application/json"}
    parts = urlsplit(hook_url)
    url = hook_url
    if parts.username is not None:
        user, password = unquote(parts.username), unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    if hook is not None:
        if hook.auth and hook.auth.get("type") == "bearer":
            headers["Authorization"] = f"Bearer {hook.auth.get('token', '')}"
        for item in hook.headers:
            headers[item["key"]] = item["value"]
    return url, headers


# --- the bus -------------------------------------------------------------------------------------


class WebhookBus(DeliveryWorker[Delivery]):
    """Registered webhooks plus the delivery queue and its worker (``_deliveries``)."""

    def __init__(self, sandbox: BrevoSandbox) -> None:
        super().__init__(sandbox.lock, task_name="brevo-sandbox-webhooks")
        self.sandbox = sandbox
        self.hooks: dict[int, Webhook] = {}
        self.settings = Settings()
        self._open_batch: dict[int, Delivery] = {}
        self._seq = 0
        self._unlisten: Callable[[], None] | None = None

    def sync_listener(self) -> None:
        """Listen to contact changes only while a marketing webhook exists: bulk writes then
        pay nothing for events nobody receives."""
        wanted = any(h.type == "marketing" for h in self.hooks.values())
        if wanted and self._unlisten is None:
            self._unlisten = self.sandbox.listen(self.on_contact)
        elif not wanted and self._unlisten is not None:
            self._unlisten()
            self._unlisten = None

    # -- state
    def reset(self) -> None:
        self.hooks.clear()
        self.log.clear()
        self._pending.clear()
        self._open_batch.clear()
        self.settings = Settings()
        self.sync_listener()

    def dump(self) -> dict[str, Any]:
        return {
            "hooks": [asdict(h) for h in self.hooks.values()],
            "deliveries": [asdict(d) for d in self.log],
        }

    def load(self, data: Any) -> None:
        self.hooks = {h["id"]: Webhook(**h) for h in (data or {}).get("hooks", [])}
        self.sync_listener()

    # -- queueing (sandbox lock held)
    def enqueue(self, hook: Webhook | None, url: str, payload: dict[str, Any]) -> None:
        if hook is not None and hook.batched:
            open_batch = self._open_batch.get(hook.id)
            if (
                open_batch is not None
                and open_batch.state == "pending"
                and not open_batch.attempts
                and len(open_batch.events) < BATCH_SIZE
            ):
                open_batch.events.append(payload)
                return
        self._seq += 1
        delivery = Delivery(
            self._seq, hook.id if hook else 0, url, [payload], bool(hook and hook.batched)
        )
        if hook is not None and hook.batched:
            self._open_batch[hook.id] = delivery
        self.queue(delivery)

    def on_activity(self, event: Activity, campaign: Campaign | None) -> None:
        names = CAMPAIGN_EVENTS.get(event.kind)
        if names is None or campaign is None:
            return  # outside a campaign only the contact change is delivered
        for hook in self.hooks.values():
            if hook.type == "marketing" and names[0] in hook.events:
                self.enqueue(hook, hook.url, campaign_payload(hook, event, campaign, names[1]))

    def on_contact(self, event: ContactEvent) -> None:
        for hook in self.hooks.values():
            if hook.type != "marketing":
                continue
            found = contact_payload(hook, event)
            if found is not None and found[0] in hook.events:
                self.enqueue(hook, hook.url, found[1])

    def notify(self, url: str, payload: dict[str, Any]) -> None:
        self.enqueue(None, url, payload)

    def _due(self, now_real: float) -> list[Delivery]:
        with self.sandbox.lock:
            now = self.sandbox.now()
            due = [
                d
                for d in self._pending
                if d.due_real <= now_real or (d.due_sandbox and d.due_sandbox <= now)
            ]
            for d in due:
                if self._open_batch.get(d.hook_id) is d:
                    del self._open_batch[d.hook_id]
            return due

    def _due_real(self, delivery: Delivery) -> float:
        return delivery.due_real

    async def _attempt(self, client: httpx.AsyncClient, d: Delivery, now_real: float) -> None:
        with self.sandbox.lock:
            hook = self.hooks.get(d.hook_id)
            body = orjson.dumps(d.events if d.batched else d.events[0])
        url, headers = request_parts(d.url, hook)
        status: int | None = None
        error = ""
        try:
            response = await client.post(
                url, content=body, headers=headers, timeout=self.settings.timeout
            )
            status = response.status_code
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        with self.sandbox.lock:
            now = self.sandbox.now()
            d.attempts.append({"at": stamp(now), "status": status, "error": error})
            if status is not None and 200 <= status < 300:
                d.state = "delivered"
            elif status is not None and 400 <= status < 500 and status != 429:
                d.state = "dropped"
            elif len(d.attempts) > len(self.settings.retry_delays):
                d.state = "failed"
            else:
                delay = self.settings.retry_delays[len(d.attempts) - 1]
                d.due_real = now_real + delay / max(self.settings.retry_compression, 1e-9)
                d.due_sandbox = now + delay
                return
            self._pending.remove(d)


def bus(sandbox: BrevoSandbox) -> WebhookBus:
    found = sandbox.extensions.get(_STATE)
    if found is None:
        found = sandbox.extensions[_STATE] = WebhookBus(sandbox)
    assert isinstance(found, WebhookBus)
    return found


def install(sandbox: BrevoSandbox) -> None:
    hooks = bus(sandbox)
    sandbox.extensions["marketing_event"] = hooks.on_activity
    sandbox.extensions["notify"] = hooks.notify
    hooks.sync_listener()
    sandbox.register_state(_STATE, hooks.dump, hooks.load, hooks.reset)


# --- API --------------------------------------------------------------------------------------- -


def render_webhook(hook: Webhook) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": hook.id,
        "url": hook.url,
        "description": hook.description,
        "events": list(hook.events),
        "type": hook.type,
        "batched": hook.batched,
        "createdAt": stamp(hook.created_at),
        "modifiedAt": stamp(hook.modified_at),
    }
    if hook.auth:
        out["auth"] = {"type": hook.auth.get("type", "bearer")}
    if hook.headers:
        out["headers"] = [{"key": h["key"], "value": h["value"]} for h in hook.headers]
    if hook.type != "inbound":
        out["channel"] = hook.channel
    return out


def _validate(body: Mapping[str, Any], kind: str, *, partial: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "url" in body or not partial:
        url = body.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid("url is not valid" if url else "url is missing")
        out["url"] = url
    if "events" in body or not partial:
        events = body.get("events")
        if not isinstance(events, list) or not events:
            raise missing("events is missing")
        bad = [e for e in events if e not in TYPES[kind]]
        if bad:
            raise invalid(f"Invalid events for a {kind} webhook: {', '.join(map(str, bad))}")
        out["events"] = list(dict.fromkeys(events))
    if "auth" in body and body["auth"] is not None:
        auth = body["auth"]
        if not isinstance(auth, Mapping) or auth.get("type") != "bearer" or not auth.get("token"):
            raise invalid('auth must be {"type": "bearer", "token": "…"}')
        out["auth"] = {"type": "bearer", "token": str(auth["token"])}
    if "headers" in body and body["headers"] is not None:
        headers = body["headers"]
        if not isinstance(headers, list) or not all(
            isinstance(h, Mapping)
            and isinstance(h.get("key"), str)
            and isinstance(h.get("value"), str)
            for h in headers
        ):
            raise invalid("headers must be a list of {key, value} strings")
        out["headers"] = [{"key": h["key"], "value": h["value"]} for h in headers]
    for name in ("description", "domain"):
        if name in body:
            out[name] = str(body[name] or "")
    if "batched" in body:
        out["batched"] = body["batched"] is True
    if "channel" in body:
        if body["channel"] not in ("email", "sms"):
            raise invalid("channel must be email or sms")
        out["channel"] = body["channel"]
    return out


def _hook(request: ApiRequest) -> Webhook:
    raw = request.params["webhook_id"]
    hook = bus(request.sandbox).hooks.get(int(raw)) if raw.isdigit() else None
    if hook is None:
        raise not_found("Webhook not found")
    return hook


def create_webhook(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    body = request.json_object()
    kind = body.get("type", "transactional")
    if kind not in TYPES:
        raise invalid("type must be transactional, marketing or inbound")
    fields = _validate(body, kind, partial=False)
    hooks = bus(sandbox)
    if any(h.url == fields["url"] and h.type == kind for h in hooks.hooks.values()):
        raise BrevoError(400, "duplicate_parameter", "Webhook with this URL already exists")
    now = sandbox.now()
    hook = Webhook(
        id=sandbox.ids.next("webhook"),
        type=kind,
        key=sandbox.ids.hex(16),
        created_at=now,
        modified_at=now,
        **fields,
    )
    hooks.hooks[hook.id] = hook
    hooks.sync_listener()
    return Reply({"id": hook.id}, status=201)


def list_webhooks(request: ApiRequest) -> Reply:
    query = request.query
    kind = query.get("type", "transactional")
    if kind not in TYPES:
        raise invalid("type must be transactional, marketing or inbound")
    sort = query.get("sort", "desc")
    if sort not in ("asc", "desc"):
        raise invalid("sort must be asc or desc")
    rows = [h for h in bus(request.sandbox).hooks.values() if h.type == kind]
    rows.sort(key=lambda h: (h.created_at, h.id), reverse=sort == "desc")
    return Reply({"webhooks": [render_webhook(h) for h in rows]}, items=len(rows))


def get_webhook(request: ApiRequest) -> Reply:
    return Reply(render_webhook(_hook(request)))


def update_webhook(request: ApiRequest) -> Reply:
    hook = _hook(request)
    for name, value in _validate(request.json_object(), hook.type, partial=True).items():
        setattr(hook, name, value)
    hook.modified_at = request.sandbox.now()
    return Reply(status=204)


def delete_webhook(request: ApiRequest) -> Reply:
    hook = _hook(request)
    hooks = bus(request.sandbox)
    del hooks.hooks[hook.id]
    hooks.sync_listener()
    return Reply(status=204)


routes = [
    Route("GET", "/webhooks", list_webhooks),
    Route("POST", "/webhooks", create_webhook),
    Route("GET", "/webhooks/{webhook_id}", get_webhook),
    Route("PUT", "/webhooks/{webhook_id}", update_webhook),
    Route("DELETE", "/webhooks/{webhook_id}", delete_webhook),
]


# --- control -------------------------------------------------------------------------------------


async def flush_control(request: ApiRequest) -> Reply:
    body = body_of(request)
    hooks = bus(request.sandbox)
    timeout = float(body.get("timeout", 30))
    summary = await hooks.flush_report(timeout, failed=("failed", "dropped"))
    if not summary["flushed"]:
        raise BrevoError(504, "timeout", f"{hooks.pending} webhook deliveries still pending")
    return Reply(summary)


def deliveries_control(request: ApiRequest) -> Reply:
    hooks = bus(request.sandbox)
    state = request.query.get("state")
    views = [asdict(d) for d in hooks.log if not state or d.state == state]
    return Reply({"deliveries": views, "count": len(views)})


def settings_control(request: ApiRequest) -> Reply:
    hooks = bus(request.sandbox)
    body = request.json_object()
    try:
        hooks.settings = changed_settings(hooks.settings, body)
    except (TypeError, ValueError) as exc:
        raise invalid(f"Bad webhook settings: {exc}") from None
    return Reply(settings_view(hooks.settings))


control_routes = [
    Route("POST", "/webhooks/flush", flush_control),
    Route("GET", "/webhooks/deliveries", deliveries_control),
    Route("PUT", "/webhooks/settings", settings_control),
]
