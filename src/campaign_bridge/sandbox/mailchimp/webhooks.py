"""List webhooks: registration (with the validating GET) and real form-encoded deliveries.

API: ``/lists/{list_id}/webhooks`` POST/GET and ``/lists/{list_id}/webhooks/{webhook_id}``
GET/PATCH/DELETE. Every member change the core reports (``Sandbox.listen``), every campaign
send and every finished batch (batch webhooks, see batches.py) becomes a delivery: an HTTP POST,
``application/x-www-form-urlencoded`` with PHP-style bracket keys (``data[merges][FNAME]``),
``User-Agent: MailChimp.com``, a 10 s timeout, retried at growing intervals for about 75 minutes
of sandbox time when the receiver fails. A background asyncio task delivers them; the retry
schedule can be compressed for tests.

Control API (under ``/_sandbox``):

- ``POST /webhooks/flush`` — wait until no delivery is pending (``{"timeout": seconds}``);
- ``GET /webhooks/deliveries`` — the delivery log (also in the state dump);
- ``PUT /webhooks/settings`` — ``{"retry_compression": 1000, "timeout": 10,
  "retry_delays": [...]}``.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from campaign_bridge.sandbox._control import body_of
from campaign_bridge.sandbox._deliveries import DeliveryWorker, changed_settings, settings_view
from campaign_bridge.sandbox.mailchimp.model import AudienceList, MemberEvent, Sandbox
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
    qint,
)

__all__ = [
    "EVENTS",
    "SOURCES",
    "Delivery",
    "WebhookBus",
    "bus",
    "campaign_payload",
    "control_routes",
    "fired_at",
    "form_pairs",
    "install",
    "member_payloads",
    "routes",
    "validate_url",
]

logger = logging.getLogger(__name__)

EVENTS = ("subscribe", "unsubscribe", "profile", "cleaned", "upemail", "campaign")
SOURCES = ("user", "admin", "api")
#: defaults for omitted flags (UNCONFIRMED for the API; these are the web app's defaults)
DEFAULT_EVENTS = dict.fromkeys(EVENTS, True)
DEFAULT_SOURCES = {"user": True, "admin": True, "api": False}
#: growing retry intervals, sandbox seconds; they add up to 75 minutes
RETRY_DELAYS: tuple[float, ...] = (60, 120, 300, 600, 1200, 2220)
DELIVERY_USER_AGENT = "MailChimp.com"
VALIDATOR_USER_AGENT = "MailChimp.com WebHook Validator"
_STATE = "webhooks"


# --- pure: encoding and payloads ------------------------------------------------------------


def form_pairs(payload: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested mappings/lists into PHP-style keys: ``data[merges][ADDRESS][addr1]``."""
    pairs: list[tuple[str, str]] = []
    for key, value in payload.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            pairs.extend(form_pairs(value, name))
        elif isinstance(value, list | tuple):
            pairs.extend(form_pairs({str(i): v for i, v in enumerate(value)}, name))
        elif isinstance(value, bool):
            pairs.append((name, "1" if value else "0"))
        elif value is None:
            pairs.append((name, ""))
        else:
            pairs.append((name, str(value)))
    return pairs


def encode_form(payload: Mapping[str, Any]) -> bytes:
    return urlencode(form_pairs(payload)).encode()


def fired_at(moment: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC, as Mailchimp stamps deliveries."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _merges(member: Mapping[str, Any], audience: AudienceList | None) -> dict[str, Any]:
    merges: dict[str, Any] = {"EMAIL": member.get("email_address", "")}
    for tag, value in (member.get("merge_fields") or {}).items():
        merges[tag] = value if isinstance(value, Mapping) else ("" if value is None else value)
    chosen = [i for i, on in (member.get("interests") or {}).items() if on]
    if audience is not None and chosen:
        groupings = []
        names = []
        for category in audience.categories.values():
            groups = [
                audience.interests[i].name
                for i in chosen
                if i in audience.interests and audience.interests[i].category_id == category.id
            ]
            if groups:
                names.extend(groups)
                groupings.append(
                    {"id": category.id, "name": category.title, "groups": ", ".join(groups)}
                )
        merges["INTERESTS"] = ", ".join(names)
        merges["GROUPINGS"] = groupings
    return merges


def _member_data(event: MemberEvent, audience: AudienceList | None) -> dict[str, Any]:
    member = event.member
    return {
        "id": member.get("unique_email_id", ""),
        "email": member.get("email_address", ""),
        "email_type": member.get("email_type", "html"),
        "ip_opt": member.get("ip_opt", ""),
        "ip_signup": member.get("ip_signup", ""),
        "web_id": member.get("web_id", ""),
        "merges": _merges(member, audience),
        "list_id": event.list_id,
    }


def member_payloads(
    event: MemberEvent, audience: AudienceList | None
) -> list[tuple[str, dict[str, Any]]]:
    """The webhook deliveries (type, data) a member change produces, in order.

    An email change is an ``upemail`` event (the core also emits ``profile`` for it); an
    archive or permanent delete gives
    ``unsubscribe`` with ``action=delete``; ``pending``/``transactional`` give nothing.
    """
    kind = event.kind
    if kind == "subscribe":
        return [("subscribe", _member_data(event, audience))]
    if kind == "profile":
        return [("profile", _member_data(event, audience))]
    if kind in ("unsubscribe", "archive", "delete"):
        data = _member_data(event, audience)
        data["action"] = "unsub" if kind == "unsubscribe" else "delete"
        data["reason"] = "abuse" if event.extra.get("reason") == "abuse" else "manual"
        if event.extra.get("campaign_id"):
            data["campaign_id"] = event.extra["campaign_id"]
        return [("unsubscribe", data)]
    if kind == "cleaned":
        data = {
            "list_id": event.list_id,
            "campaign_id": event.extra.get("campaign_id", ""),
            "reason": event.extra.get("reason") or "hard",
            "email": event.member.get("email_address", ""),
        }
        return [("cleaned", data)]
    if kind == "upemail":
        old_email = event.extra.get("old_email", "")
        new_email = event.extra.get("new_email", event.member.get("email_address", ""))
        upemail = {
            "list_id": event.list_id,
            "new_id": event.member.get("unique_email_id", ""),
            "new_email": new_email,
            "old_email": old_email,
        }
        return [("upemail", upemail)]  # the core emits the accompanying ``profile`` itself
    return []


def campaign_payload(
    campaign_id: str, subject: str, list_id: str, status: str = "sent", reason: str = ""
) -> dict[str, Any]:
    return {
        "id": campaign_id,
        "subject": subject,
        "status": status,
        "reason": reason,
        "list_id": list_id,
    }


@dataclass
class Hook:
    id: str
    list_id: str
    url: str
    events: dict[str, bool]
    sources: dict[str, bool]

    def wants(self, event_type: str, source: str | None) -> bool:
        """Events filter, then sources filter; ``campaign`` ignores sources (all-or-nothing)."""
        if not self.events.get(event_type, False):
            return False
        return event_type == "campaign" or source is None or self.sources.get(source, False)


def _flags(
    value: Any,
    names: Iterable[str],
    defaults: Mapping[str, bool],
    field_name: str,
    *,
    create: bool = False,
) -> dict[str, bool]:
    if value is None:
        return dict(defaults)
    if not isinstance(value, Mapping):
        raise invalid_resource(errors=[{"field": field_name, "message": "Schema describes object"}])
    if create:
        defaults = dict.fromkeys(defaults, False)
    out = dict(defaults)
    for name in names:
        if name in value:
            flag = value[name]
            if not isinstance(flag, bool):
                raise invalid_resource(
                    errors=[
                        {
                            "field": f"{field_name}.{name}",
                            "message": f"Schema describes boolean, {type(flag).__name__} found"
                            " instead",
                        }
                    ]
                )
            out[name] = flag
    return out


def _same_target(a: str, b: str) -> bool:
    """Mailchimp rejects a second webhook whose URL differs only by its query string."""
    sa, sb = urlsplit(a), urlsplit(b)
    return (sa.scheme, sa.netloc.lower(), sa.path.rstrip("/")) == (
        sb.scheme,
        sb.netloc.lower(),
        sb.path.rstrip("/"),
    )


# --- deliveries -----------------------------------------------------------------------------


@dataclass
class Attempt:
    at: str  # sandbox time, Mailchimp timestamp format
    status: int | None
    error: str = ""


@dataclass
class Delivery:
    id: int
    kind: str  # "list" or "batch"
    hook_id: str
    url: str
    type: str
    source: str | None
    fired_at: str
    body: str  # the form-encoded body
    state: str = "pending"  # pending | delivered | failed
    attempts: list[Attempt] = field(default_factory=list)
    next_real: float = 0.0  # loop.time() when due
    next_sandbox: str = ""  # sandbox time when due (advancing the clock also makes it due)


@dataclass
class Settings:
    timeout: float = 10.0
    retry_compression: float = 1.0
    retry_delays: tuple[float, ...] = RETRY_DELAYS
    validate: bool = True


class WebhookBus(DeliveryWorker[Delivery]):
    """Registered list webhooks plus the delivery queue and its worker (``_deliveries``)."""

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(sandbox.lock, task_name="sandbox-webhook-deliveries")
        self.sandbox = sandbox
        self.hooks: dict[str, Hook] = {}
        self.settings = Settings()
        self._seq = 0
        self._unlisten: Callable[[], None] | None = None

    def sync_listener(self) -> None:
        """Listen to member events only while a list webhook exists: the core renders a member
        snapshot for every change when anyone listens, which bulk calls should not pay for."""
        if self.hooks and self._unlisten is None:
            self._unlisten = self.sandbox.listen(self.on_member_event)
        elif not self.hooks and self._unlisten is not None:
            self._unlisten()
            self._unlisten = None

    # -- state --------------------------------------------------------------------------
    def reset(self) -> None:
        self.hooks.clear()
        self.log.clear()
        self._pending.clear()
        self.settings = Settings()
        self.sync_listener()

    def dump(self) -> dict[str, Any]:
        return {
            "hooks": [asdict(h) for h in self.hooks.values()],
            "deliveries": [self._delivery_view(d) for d in self.log],
        }

    def load(self, data: Any) -> None:
        self.hooks = {h["id"]: Hook(**h) for h in (data or {}).get("hooks", [])}
        self.sync_listener()

    @staticmethod
    def _delivery_view(d: Delivery) -> dict[str, Any]:
        view = asdict(d)
        view.pop("next_real")
        return view

    # -- queueing (called with the sandbox lock held) -----------------------------------
    def enqueue(
        self,
        *,
        kind: str,
        hook_id: str,
        url: str,
        event_type: str,
        source: str | None,
        data: Mapping[str, Any],
    ) -> Delivery:
        moment = self.sandbox.clock.now()
        stamp = fired_at(moment)
        body = encode_form({"type": event_type, "fired_at": stamp, "data": data}).decode()
        self._seq += 1
        delivery = Delivery(self._seq, kind, hook_id, url, event_type, source, stamp, body)
        self.queue(delivery)
        return delivery

    def on_member_event(self, event: MemberEvent) -> None:
        hooks = [h for h in self.hooks.values() if h.list_id == event.list_id]
        if not hooks:
            return
        audience = self.sandbox.lists.get(event.list_id)
        for event_type, data in member_payloads(event, audience):
            for hook in hooks:
                if hook.wants(event_type, event.source):
                    self.enqueue(
                        kind="list",
                        hook_id=hook.id,
                        url=hook.url,
                        event_type=event_type,
                        source=event.source,
                        data=data,
                    )

    def campaign_event(self, list_id: str, data: Mapping[str, Any]) -> None:
        for hook in list(self.hooks.values()):
            if hook.list_id == list_id and hook.wants("campaign", None):
                self.enqueue(
                    kind="list",
                    hook_id=hook.id,
                    url=hook.url,
                    event_type="campaign",
                    source=None,
                    data=data,
                )

    def _due(self, now_real: float) -> list[Delivery]:
        with self.sandbox.lock:
            now_sandbox = self.sandbox.clock.now()
            return [
                d
                for d in self._pending
                if d.next_real <= now_real
                or (d.next_sandbox and _parse(d.next_sandbox) <= now_sandbox)
            ]

    def _due_real(self, delivery: Delivery) -> float:
        return delivery.next_real

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers={"User-Agent": DELIVERY_USER_AGENT}, verify=_tls())

    async def _attempt(self, client: httpx.AsyncClient, d: Delivery, now_real: float) -> None:
        status: int | None = None
        error = ""
        try:
            response = await client.post(
                d.url,
                content=d.body.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self.settings.timeout,
            )
            status = response.status_code
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        with self.sandbox.lock:
            moment = self.sandbox.clock.now()
            d.attempts.append(Attempt(_stamp(moment), status, error))
            if status is not None and 200 <= status < 300:
                d.state = "delivered"
                self._pending.remove(d)
                return
            retries = self.settings.retry_delays
            if len(d.attempts) > len(retries):
                d.state = "failed"
                self._pending.remove(d)
                logger.info(
                    "sandbox webhook delivery %s gave up after %s attempts", d.id, len(d.attempts)
                )
                return
            delay = retries[len(d.attempts) - 1]
            d.next_real = now_real + delay / max(self.settings.retry_compression, 1e-9)
            d.next_sandbox = _stamp(moment + timedelta(seconds=delay))


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every outgoing call (building one per client costs ~30 ms)."""
    return ssl.create_default_context()


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def bus(sandbox: Sandbox) -> WebhookBus:
    found = sandbox.extensions.get(_STATE)
    if found is None:
        found = WebhookBus(sandbox)
        sandbox.extensions[_STATE] = found
    assert isinstance(found, WebhookBus)
    return found


def install(sandbox: Sandbox) -> None:
    hooks = bus(sandbox)
    hooks.sync_listener()
    sandbox.register_state(_STATE, hooks.dump, hooks.load, hooks.reset)


# --- URL validation ---------------------------------------------------------------------------


def _unverified(code: int | str) -> Problem:
    return invalid_resource(
        "We couldn't verify the URL is working. Please double check and try again. "
        f"HTTP Code: {code}",
    )


async def validate_url(url: str, wait: float = 10.0) -> None:
    """Mailchimp's creation-time check: GET the URL, expect a 2xx."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_resource(
            "The resource submitted could not be validated. For field-specific details, "
            "see the 'errors' array.",
            errors=[{"field": "url", "message": "Invalid URL"}],
        )
    try:
        async with httpx.AsyncClient(
            headers={"User-Agent": VALIDATOR_USER_AGENT}, timeout=wait, verify=_tls()
        ) as client:
            response = await client.get(url)
    except httpx.HTTPError:
        raise _unverified(0) from None
    if not 200 <= response.status_code < 300:
        raise _unverified(response.status_code)


# --- API handlers ----------------------------------------------------------------------------


def _view(hook: Hook, base: str) -> dict[str, Any]:
    path = f"/lists/{hook.list_id}/webhooks/{hook.id}"
    return {
        "id": hook.id,
        "url": hook.url,
        "events": dict(hook.events),
        "sources": dict(hook.sources),
        "list_id": hook.list_id,
        "_links": [
            link("self", base + path, schema="Lists/Webhooks/Response"),
            link("parent", base + f"/lists/{hook.list_id}/webhooks"),
            link("update", base + path, "PATCH"),
            link("delete", base + path, "DELETE"),
        ],
    }


def _hook(request: ApiRequest) -> Hook:
    sandbox = request.sandbox
    sandbox.get_list(request.params["list_id"])
    found = bus(sandbox).hooks.get(request.params["webhook_id"])
    if found is None or found.list_id != request.params["list_id"]:
        raise not_found()
    return found


async def create_webhook(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    list_id = request.params["list_id"]
    with sandbox.lock:
        sandbox.get_list(list_id)
        body = request.json_object()
        url = body.get("url")
        if not isinstance(url, str) or not url.strip():
            raise invalid_resource(
                errors=[{"field": "url", "message": "This value should not be blank."}]
            )
        url = url.strip()
        # an omitted object takes the defaults; inside a given object, omitted flags are off
        events = _flags(body.get("events"), EVENTS, DEFAULT_EVENTS, "events", create=True)
        sources = _flags(body.get("sources"), SOURCES, DEFAULT_SOURCES, "sources", create=True)
        hooks = bus(sandbox)
        _reject_duplicate(hooks, list_id, url, None)
        settings = hooks.settings
    if settings.validate:
        await validate_url(url, settings.timeout)
    with sandbox.lock:
        _reject_duplicate(hooks, list_id, url, None)
        hook = Hook(sandbox.ids.hex10(), list_id, url, events, sources)
        hooks.hooks[hook.id] = hook
        hooks.sync_listener()
        return Reply(_view(hook, request.base_url))


def _reject_duplicate(hooks: WebhookBus, list_id: str, url: str, keep: str | None) -> None:
    for other in hooks.hooks.values():
        if other.list_id == list_id and other.id != keep and _same_target(other.url, url):
            raise invalid_resource(
                "The resource submitted could not be validated. For field-specific details, "
                "see the 'errors' array.",
                errors=[{"field": "url", "message": "A webhook with this URL already exists."}],
            )


def list_webhooks(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    list_id = request.params["list_id"]
    sandbox.get_list(list_id)
    hooks = [h for h in bus(sandbox).hooks.values() if h.list_id == list_id]
    views = [_view(h, request.base_url) for h in hooks]
    path = f"/lists/{list_id}/webhooks"
    return Reply(
        {
            "webhooks": views,
            "list_id": list_id,
            "total_items": len(views),
            "_links": collection_links(request.base_url, path, f"/lists/{list_id}"),
        },
        items=len(views),
    )


def get_webhook(request: ApiRequest) -> Reply:
    return Reply(_view(_hook(request), request.base_url))


async def update_webhook(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    with sandbox.lock:
        hook = _hook(request)
        body = request.json_object()
        url = body.get("url", hook.url)
        if not isinstance(url, str) or not url.strip():
            raise invalid_resource(
                errors=[{"field": "url", "message": "This value should not be blank."}]
            )
        url = url.strip()
        events = _flags(body.get("events"), EVENTS, hook.events, "events")
        sources = _flags(body.get("sources"), SOURCES, hook.sources, "sources")
        hooks = bus(sandbox)
        _reject_duplicate(hooks, hook.list_id, url, hook.id)
        must_validate = url != hook.url and hooks.settings.validate
        timeout = hooks.settings.timeout
    if must_validate:
        await validate_url(url, timeout)
    with sandbox.lock:
        hook = _hook(request)
        hook.url, hook.events, hook.sources = url, events, sources
        return Reply(_view(hook, request.base_url))


def delete_webhook(request: ApiRequest) -> Reply:
    hook = _hook(request)
    hooks = bus(request.sandbox)
    del hooks.hooks[hook.id]
    hooks.sync_listener()
    return Reply(status=204)


routes = [
    Route("POST", "/lists/{list_id}/webhooks", create_webhook),
    Route("GET", "/lists/{list_id}/webhooks", list_webhooks),
    Route("GET", "/lists/{list_id}/webhooks/{webhook_id}", get_webhook),
    Route("PATCH", "/lists/{list_id}/webhooks/{webhook_id}", update_webhook),
    Route("DELETE", "/lists/{list_id}/webhooks/{webhook_id}", delete_webhook),
]


# --- control API -------------------------------------------------------------------------------


async def flush_control(request: ApiRequest) -> Reply:
    body = body_of(request)
    timeout = float(body.get("timeout", request.query.get("timeout", 30)))
    hooks = bus(request.sandbox)
    summary = await hooks.flush_report(timeout)
    if not summary["flushed"]:
        raise Problem(504, "Flush Timeout", f"{hooks.pending} webhook deliveries still pending.")
    return Reply(summary)


def deliveries_control(request: ApiRequest) -> Reply:
    hooks = bus(request.sandbox)
    views = [hooks._delivery_view(d) for d in hooks.log]
    state = request.query.get("state")
    if state:
        views = [v for v in views if v["state"] == state]
    items, total = page(
        views,
        {
            "count": str(qint(request.query, "count", 1000)),
            **{k: v for k, v in request.query.items() if k == "offset"},
        },
    )
    return Reply({"deliveries": items, "total_items": total})


def settings_control(request: ApiRequest) -> Reply:
    hooks = bus(request.sandbox)
    body = request.json_object()
    try:
        hooks.settings = changed_settings(hooks.settings, body, flags=("validate",))
    except (TypeError, ValueError) as exc:
        raise invalid_resource(f"Bad webhook settings: {exc}") from None
    return Reply(settings_view(hooks.settings))


control_routes = [
    Route("POST", "/webhooks/flush", flush_control),
    Route("GET", "/webhooks/deliveries", deliveries_control),
    Route("PUT", "/webhooks/settings", settings_control),
]
