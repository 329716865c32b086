"""Mailchimp's list webhooks, read into provider-neutral events (:class:`MailchimpWebhooks`).

Mailchimp POSTs ``application/x-www-form-urlencoded`` bodies whose keys use PHP brackets
(``data[merges][ADDRESS][city]``). It signs nothing, so the receiver authenticates a secret token
in the URL (compared in constant time; two tokens are accepted so one can be rotated), and
answers the ``GET`` Mailchimp sends to validate a URL when the webhook is registered. Deliveries
are at-least-once and carry no id: the event id is a hash of the canonical body, equal for two
deliveries of one event whatever the order of their fields.

One webhook, ``unsubscribe`` with ``data[action]=delete``, announces both an archive and a
permanent delete: it is read as an archive, which the applier confirms with the provider.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from campaign_bridge.errors import WebhookPayloadError
from campaign_bridge.providers.base import WebhookEvent, WebhookKind, WebhookRequest
from campaign_bridge.tokens import match_token

__all__ = ["MailchimpWebhooks", "dedupe_key", "event_from_payload", "parse_form"]

_MAX_DEPTH = 8
_MAX_FIELDS = 2000

_KINDS = {
    "subscribe": WebhookKind.SUBSCRIBE,
    "unsubscribe": WebhookKind.UNSUBSCRIBE,
    "profile": WebhookKind.PROFILE,
    "cleaned": WebhookKind.CLEANED,
    "upemail": WebhookKind.ADDRESS_CHANGE,
    "campaign": WebhookKind.CAMPAIGN,
}
# member fields that must be plain values when present (a nested one is a malformed body)
_PLAIN = ("id", "email_type", "web_id", "ip_opt", "ip_signup")


class MailchimpWebhooks:
    """The :class:`~campaign_bridge.providers.base.WebhookParser` of Mailchimp."""

    provider = "mailchimp"
    account_wide = False  # every Mailchimp webhook names its audience

    def authenticate(self, request: WebhookRequest, tokens: Sequence[str]) -> bool:
        return "/" not in request.token and match_token(request.token, tokens)

    def handshake(self, request: WebhookRequest) -> str | None:
        return "ok" if request.method in ("GET", "HEAD") else None

    def parse(self, request: WebhookRequest) -> list[WebhookEvent]:
        pairs = _pairs(request.body)
        return [event_from_payload(_nest(pairs), _pairs_key(pairs))]

    def load(self, raw: Mapping[str, Any], event_id: str) -> WebhookEvent:
        return event_from_payload(raw, event_id)


# --------------------------------------------------------------------------- form decoding


def parse_form(body: bytes) -> dict[str, Any]:
    """Decode a form body with PHP-bracket keys into nested dicts and lists.

    ``a[b][c]=1`` becomes ``{"a": {"b": {"c": "1"}}}``; a level whose keys are exactly
    ``0..n-1`` (``GROUPINGS[0]``, ``GROUPINGS[1]``) becomes a list; ``a[]=x`` appends.
    Raises :class:`WebhookPayloadError` for bodies that are not such a form.
    """
    return _nest(_pairs(body))


def _nest(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in pairs:
        path = _key_path(key)
        _insert(root, path, value, key)
    return _listify(root)  # type: ignore[no-any-return]


def _pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookPayloadError("webhook body is not UTF-8 text") from exc
    if not text:
        raise WebhookPayloadError("webhook body is empty")
    parts = text.split("&")
    if len(parts) > _MAX_FIELDS:
        raise WebhookPayloadError(f"webhook body has more than {_MAX_FIELDS} fields")
    pairs = []
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise WebhookPayloadError("webhook body is not form-encoded (key=value&...)")
        pairs.append((_unquote(key), _unquote(value)))
    return pairs


def _unquote(text: str) -> str:
    """Form decoding (``+`` is a space, ``%XX`` an octet), fast when there is nothing to do.
    Octets that are not UTF-8 become U+FFFD: one bad field does not cost the whole delivery."""
    if "+" in text:
        text = text.replace("+", " ")
    if "%" in text:
        text = text.replace("%5B", "[").replace("%5D", "]")  # every bracketed key has these
        if "%" in text:
            text = unquote(text, errors="replace")
    return text


def _key_path(key: str) -> list[str]:
    """``a[b][c]`` -> ``["a", "b", "c"]``; refuses unbalanced or stray brackets."""
    if "[" not in key:
        if "]" in key:
            raise WebhookPayloadError(f"malformed form key {key[:80]!r}")
        return [key]
    head, *rest = key.split("[")
    if not head or not rest[-1].endswith("]"):
        raise WebhookPayloadError(f"malformed form key {key[:80]!r}")
    path = [head]
    for part in rest:
        segment = part[:-1]
        if not part.endswith("]") or "]" in segment:
            raise WebhookPayloadError(f"malformed form key {key[:80]!r}")
        path.append(segment)
    if len(path) > _MAX_DEPTH:
        raise WebhookPayloadError(f"form key nested too deeply: {key[:80]!r}")
    return path


def _insert(root: dict[str, Any], path: list[str], value: str, key: str) -> None:
    node: dict[str, Any] = root
    for part in path[:-1]:
        if part == "":  # a[][x]: a new element
            part = str(sum(1 for k in node if k.isdigit()))
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise WebhookPayloadError(f"form key {key[:80]!r} conflicts with a plain key")
        node = child
    last = path[-1]
    if last == "":  # a[] = append
        last = str(sum(1 for k in node if k.isdigit()))
    if isinstance(node.get(last), dict):
        raise WebhookPayloadError(f"form key {key[:80]!r} conflicts with a nested key")
    node[last] = value


def _listify(node: dict[str, Any]) -> Any:
    for k, v in node.items():
        if isinstance(v, dict):
            node[k] = _listify(v)
    if node and next(iter(node)).isdigit() and all(k.isdigit() for k in node):
        indexes = sorted(int(k) for k in node)
        if indexes == list(range(len(indexes))):
            return [node[str(i)] for i in indexes]
    return node


def dedupe_key(body: bytes) -> str:
    """sha256 hex of the body's sorted key/value pairs (64 characters, the store's key width):
    equal for two deliveries of one event whatever the order of their fields."""
    return _pairs_key(_pairs(body))


def _pairs_key(pairs: Sequence[tuple[str, str]]) -> str:
    # sha256 of the sorted pairs, each part prefixed with its length: unambiguous framing.
    text = "".join(f"{len(k)}:{k}{len(v)}:{v}" for k, v in sorted(pairs))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- events


def event_from_payload(payload: Mapping[str, Any], event_id: str) -> WebhookEvent:
    """The neutral event of a decoded payload (as parsed, or as stored)."""
    raw_type = payload.get("type")
    if not isinstance(raw_type, str) or not raw_type:
        raise WebhookPayloadError("webhook body has no 'type'")
    kind = _KINDS.get(raw_type)
    if kind is None:
        raise WebhookPayloadError(f"unsupported webhook type {raw_type[:40]!r}")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise WebhookPayloadError(f"{raw_type} webhook has no data[...] fields")
    common: dict[str, Any] = {
        "event_id": event_id,
        "raw": payload,
        "list_id": _opt(data, "list_id"),
        "occurred_at": _fired_at(payload.get("fired_at")),
    }
    if kind is WebhookKind.ADDRESS_CHANGE:
        return WebhookEvent(
            kind,
            email=_required(data, "new_email", raw_type),
            previous_email=_required(data, "old_email", raw_type),
            **common,
        )
    if kind is WebhookKind.CAMPAIGN:
        return WebhookEvent(kind, campaign_id=_required(data, "id", raw_type), **common)
    email = _required(data, "email", raw_type)
    if kind is WebhookKind.CLEANED:
        return WebhookEvent(
            kind,
            email=email,
            reason=_opt(data, "reason"),
            campaign_id=_opt(data, "campaign_id"),
            **common,
        )
    if not isinstance(data.get("merges", {}), dict):
        raise WebhookPayloadError(f"{raw_type} webhook has a data[merges] that is not a group")
    for key in _PLAIN:
        _opt(data, key)
    if kind is WebhookKind.UNSUBSCRIBE:
        if _opt(data, "action") == "delete":
            kind = WebhookKind.ARCHIVE
        common["reason"] = _opt(data, "reason")
        common["campaign_id"] = _opt(data, "campaign_id")
    # ``data[id]`` (and ``upemail``'s ``data[new_id]``) is the member's ``unique_email_id``, not
    # the ``contact_id`` pull and push store beside the bridge's key: left out, so a webhook
    # never replaces the id that recognises a member under a new address.
    return WebhookEvent(kind, email=email, **common)


def _opt(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WebhookPayloadError(f"data[{key}] must be a plain value")
    return value


def _required(data: Mapping[str, Any], key: str, kind: str) -> str:
    value = _opt(data, key)
    if value is None:
        raise WebhookPayloadError(f"{kind} webhook is missing data[{key}]")
    return value


def _fired_at(value: Any) -> datetime | None:
    """``YYYY-MM-DD HH:MM:SS`` without a zone; Mailchimp sends UTC."""
    if not isinstance(value, str) or not value:
        return None
    if len(value) == 19 and value[4] == "-" and value[10] in " T" and value[13] == ":":
        with contextlib.suppress(ValueError):  # the usual shape, without strptime's cost
            return datetime(
                int(value[0:4]),
                int(value[5:7]),
                int(value[8:10]),
                int(value[11:13]),
                int(value[14:16]),
                int(value[17:19]),
                tzinfo=UTC,
            )
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise WebhookPayloadError("fired_at is not a date and time") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
