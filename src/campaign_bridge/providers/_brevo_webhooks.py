"""Brevo's marketing webhooks, read into provider-neutral events (:class:`BrevoWebhooks`).

Brevo POSTs JSON: one event per request, or an array of them when the webhook is ``batched``.
It signs nothing; the bridge registers its webhook URL (with the secret token as its last path
segment) and the same token as the webhook's bearer ``auth``, so a delivery must carry the token
in its path and, when it sends an ``Authorization`` header, there too (compared in constant
time). Events carry no id: the event id is the sha256 of the canonical JSON of the event.

What a Brevo event means for a member (docs/providers.md):

- ``unsubscribed``, ``spam`` -> unsubscribe (Brevo blocklists the contact for all marketing
  e-mail); ``hard_bounce`` -> cleaned; ``soft_bounce`` -> bounce (no status change);
- ``contact_updated`` with ``emailBlacklisted: true`` -> unsubscribe; other updates -> profile;
- ``contact_deleted`` -> delete; ``list_addition`` -> other (a list addition says nothing about
  consent: a blocklisted contact added to a list stays blocklisted; pull reads the status);
- ``opened``, ``click``, ``delivered``… -> campaign.

A blocklisting is account-wide, so those events carry no list (``list_id`` None): they concern
every sync on the account's lists. ``unsubscribed`` names the campaign's lists; one event is
made per list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from campaign_bridge.errors import WebhookPayloadError
from campaign_bridge.providers.base import WebhookEvent, WebhookKind, WebhookRequest
from campaign_bridge.tokens import match_token

__all__ = ["BrevoWebhooks", "events_from_payload"]

_MAX_EVENTS = 1000  # Brevo batches at most 500 events a request
_CAMPAIGN = frozenset({"opened", "click", "delivered", "proxy_open", "unique_opened", "deferred"})
_CLEANED = frozenset({"hard_bounce", "hard_bounced", "hardBounce"})
_BOUNCE = frozenset({"soft_bounce", "soft_bounced", "softBounce"})


class BrevoWebhooks:
    """The :class:`~campaign_bridge.providers.base.WebhookParser` of Brevo."""

    provider = "brevo"
    account_wide = True

    def authenticate(self, request: WebhookRequest, tokens: Sequence[str]) -> bool:
        if "/" in request.token or not match_token(request.token, tokens):
            return False
        header = request.headers.get("authorization")
        if header is None:
            return True
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and match_token(given.strip(), tokens)

    def handshake(self, request: WebhookRequest) -> str | None:
        return None  # Brevo does not validate a URL with a GET

    def parse(self, request: WebhookRequest) -> list[WebhookEvent]:
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise WebhookPayloadError("Brevo webhook body is not JSON") from exc
        items = body if isinstance(body, list) else [body]
        if len(items) > _MAX_EVENTS:
            raise WebhookPayloadError(f"Brevo webhook body has more than {_MAX_EVENTS} events")
        events: list[WebhookEvent] = []
        for item in items:
            if not isinstance(item, dict):
                raise WebhookPayloadError("a Brevo webhook event is not a JSON object")
            events += events_from_payload(item)
        return events

    def load(self, raw: Mapping[str, Any], event_id: str) -> WebhookEvent:
        for event in events_from_payload(raw):
            if event.event_id == event_id:
                return event
        return events_from_payload(raw)[0]


def _event_id(payload: Mapping[str, Any], list_id: str | None) -> str:
    canonical = orjson.dumps(dict(payload), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical + f"|{list_id or ''}".encode()).hexdigest()


def _when(payload: Mapping[str, Any]) -> datetime | None:
    for name in ("ts_event", "ts"):
        value = payload.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
    return None


def _lists(payload: Mapping[str, Any]) -> list[str | None]:
    raw = payload.get("list_id")
    if isinstance(raw, list) and raw:
        return [str(i) for i in raw]
    if isinstance(raw, int | str) and str(raw):
        return [str(raw)]
    return [None]


def _kind(name: str, payload: Mapping[str, Any]) -> tuple[WebhookKind, str | None]:
    """The neutral kind of one Brevo event, and its reason."""
    if name == "unsubscribed":
        return WebhookKind.UNSUBSCRIBE, "unsubscribed"
    if name == "spam":
        return WebhookKind.UNSUBSCRIBE, "spam complaint"
    if name in _CLEANED:
        return WebhookKind.CLEANED, str(payload.get("reason") or "hard bounce")
    if name in _BOUNCE:
        return WebhookKind.BOUNCE, str(payload.get("reason") or "soft bounce")
    if name == "contact_deleted":
        return WebhookKind.DELETE, None
    if name == "contact_updated":
        content = payload.get("content")
        changes = content if isinstance(content, list) else [content]
        if any(isinstance(c, Mapping) and c.get("emailBlacklisted") is True for c in changes):
            return WebhookKind.UNSUBSCRIBE, "blocklisted"
        return WebhookKind.PROFILE, None
    if name in _CAMPAIGN:
        return WebhookKind.CAMPAIGN, None
    return WebhookKind.OTHER, None


def events_from_payload(payload: Mapping[str, Any]) -> list[WebhookEvent]:
    """The neutral events of one Brevo event (one per list it names)."""
    name = payload.get("event")
    if not isinstance(name, str) or not name:
        raise WebhookPayloadError("Brevo webhook event has no 'event'")
    email = payload.get("email")
    if email is not None and not isinstance(email, str):
        raise WebhookPayloadError("Brevo webhook event has a non-text 'email'")
    kind, reason = _kind(name, payload)
    campaign = payload.get("camp_id")
    # a blocklisting or a bounce is account-wide; an unsubscribe names the campaign's lists
    lists = _lists(payload) if kind in (WebhookKind.UNSUBSCRIBE, WebhookKind.DELETE) else [None]
    if kind is WebhookKind.UNSUBSCRIBE and name != "unsubscribed":
        lists = [None]
    return [
        WebhookEvent(
            kind,
            event_id=_event_id(payload, list_id),
            raw=dict(payload),
            email=email or None,
            list_id=list_id,
            occurred_at=_when(payload),
            reason=reason,
            campaign_id=str(campaign) if campaign is not None else None,
        )
        for list_id in lists
    ]
