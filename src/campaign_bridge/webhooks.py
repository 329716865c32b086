"""Mailchimp list webhooks: parse, authenticate, store durably, then apply.

Mailchimp POSTs ``application/x-www-form-urlencoded`` bodies whose keys use PHP brackets
(``data[merges][ADDRESS][city]``). It signs nothing, so the receiver authenticates a secret token
in the URL (compared in constant time; two tokens are accepted so one can be rotated). Deliveries
are at-least-once: the dedupe key is a hash of the canonical body, and the state store keeps one
row per ``(provider, dedupe_key)``, so a repeated delivery is stored and applied once.

Parsing here is pure (bytes in, typed event out). Storing and applying live in
:class:`WebhookInbox` and :class:`WebhookApplier`, which the server runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, urlencode

from campaign_bridge.errors import StateStoreError, WebhookPayloadError

__all__ = [
    "CampaignEvent",
    "CleanedEvent",
    "EmailChangedEvent",
    "EventType",
    "MemberEvent",
    "ParsedDelivery",
    "ProfileEvent",
    "SubscribeEvent",
    "UnsubscribeEvent",
    "WebhookEvent",
    "canonical_body",
    "dedupe_key",
    "event_from_payload",
    "match_token",
    "parse_delivery",
    "parse_form",
]

log = logging.getLogger(__name__)

PROVIDER = "mailchimp"
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_MAX_DEPTH = 8
_MAX_FIELDS = 2000


class EventType(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    PROFILE = "profile"
    CLEANED = "cleaned"
    UPEMAIL = "upemail"
    CAMPAIGN = "campaign"


# --------------------------------------------------------------------------- form decoding


def parse_form(body: bytes) -> dict[str, Any]:
    """Decode a form body with PHP-bracket keys into nested dicts and lists.

    ``a[b][c]=1`` becomes ``{"a": {"b": {"c": "1"}}}``; a level whose keys are exactly
    ``0..n-1`` (``GROUPINGS[0]``, ``GROUPINGS[1]``) becomes a list; ``a[]=x`` appends.
    Raises :class:`WebhookPayloadError` for bodies that are not such a form.
    """
    pairs = _pairs(body)
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
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            max_num_fields=_MAX_FIELDS,
        )
    except ValueError as exc:
        raise WebhookPayloadError("webhook body is not form-encoded (key=value&...)") from exc
    if not pairs:
        raise WebhookPayloadError("webhook body is empty")
    return pairs


def _key_path(key: str) -> list[str]:
    match = _KEY.match(key)
    if match is None:
        raise WebhookPayloadError(f"malformed form key {key[:80]!r}")
    path = [match.group(1), *_SEGMENT.findall(match.group(2))]
    if len(path) > _MAX_DEPTH:
        raise WebhookPayloadError(f"form key nested too deeply: {key[:80]!r}")
    return path


def _insert(root: dict[str, Any], path: list[str], value: str, key: str) -> None:
    node: dict[str, Any] = root
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if part == "":  # a[] = append
            part = str(sum(1 for k in node if k.isdigit()))
        if last:
            if isinstance(node.get(part), dict):
                raise WebhookPayloadError(f"form key {key[:80]!r} conflicts with a nested key")
            node[part] = value
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise WebhookPayloadError(f"form key {key[:80]!r} conflicts with a plain key")
        node = child


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        indexes = sorted(int(k) for k in converted)
        if indexes == list(range(len(indexes))):
            return [converted[str(i)] for i in indexes]
    return converted


def canonical_body(body: bytes) -> str:
    """The body's pairs, sorted and re-encoded: equal for two deliveries of one event."""
    return urlencode(sorted(_pairs(body)))


def dedupe_key(body: bytes) -> str:
    """sha256 hex of the canonical body (64 characters, the state store's key width)."""
    return hashlib.sha256(canonical_body(body).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- typed events


@dataclass(frozen=True)
class _Event:
    list_id: str | None
    fired_at: datetime | None


@dataclass(frozen=True)
class MemberEvent(_Event):
    """Fields shared by subscribe, unsubscribe and profile."""

    email: str
    unique_email_id: str | None = None  # data[id]: Mailchimp's unique email id, not the hash
    email_type: str | None = None
    web_id: str | None = None
    ip_opt: str | None = None
    ip_signup: str | None = None
    merges: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> dict[str, str] | None:
        """The ADDRESS merge (``addr1, addr2, city, state, zip, country``) if sent nested."""
        value = self.merges.get("ADDRESS")
        return value if isinstance(value, dict) else None

    @property
    def groupings(self) -> tuple[dict[str, Any], ...]:
        """Interest groups: ``merges[GROUPINGS][n][id|unique_id|name|groups]``."""
        value = self.merges.get("GROUPINGS")
        if isinstance(value, dict):  # keys not 0..n-1: keep the order they came in
            value = list(value.values())
        if not isinstance(value, list):
            return ()
        return tuple(g for g in value if isinstance(g, dict))

    @property
    def interest_names(self) -> tuple[str, ...]:
        """Group names from ``INTERESTS`` (comma separated) or every grouping's ``groups``."""
        names: list[str] = []
        raw = self.merges.get("INTERESTS")
        if isinstance(raw, str):
            names += [n.strip() for n in raw.split(",") if n.strip()]
        for grouping in self.groupings:
            groups = grouping.get("groups")
            if isinstance(groups, str):
                names += [n.strip() for n in groups.split(",") if n.strip()]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class SubscribeEvent(MemberEvent):
    type: EventType = EventType.SUBSCRIBE


@dataclass(frozen=True)
class UnsubscribeEvent(MemberEvent):
    action: str = "unsub"  # unsub | delete
    reason: str | None = None  # manual | abuse
    campaign_id: str | None = None
    type: EventType = EventType.UNSUBSCRIBE


@dataclass(frozen=True)
class ProfileEvent(MemberEvent):
    type: EventType = EventType.PROFILE


@dataclass(frozen=True)
class CleanedEvent(_Event):
    email: str
    reason: str | None = None  # hard | abuse
    campaign_id: str | None = None
    type: EventType = EventType.CLEANED


@dataclass(frozen=True)
class EmailChangedEvent(_Event):
    old_email: str
    new_email: str
    new_id: str | None = None
    type: EventType = EventType.UPEMAIL


@dataclass(frozen=True)
class CampaignEvent(_Event):
    campaign_id: str
    subject: str = ""
    status: str = ""  # sent | cancelled
    reason: str = ""
    type: EventType = EventType.CAMPAIGN


WebhookEvent = (
    SubscribeEvent
    | UnsubscribeEvent
    | ProfileEvent
    | CleanedEvent
    | EmailChangedEvent
    | CampaignEvent
)


@dataclass(frozen=True)
class ParsedDelivery:
    """One accepted delivery: the typed event plus what the state store keeps."""

    event: WebhookEvent
    dedupe_key: str
    payload: dict[str, Any]

    @property
    def payload_json(self) -> str:
        return json.dumps(self.payload, sort_keys=True, separators=(",", ":"))


def parse_delivery(body: bytes) -> ParsedDelivery:
    """Parse a raw delivery body; raises :class:`WebhookPayloadError` if it is malformed."""
    payload = parse_form(body)
    event = event_from_payload(payload)
    return ParsedDelivery(event=event, dedupe_key=dedupe_key(body), payload=payload)


def event_from_payload(payload: Mapping[str, Any]) -> WebhookEvent:
    """Build the typed event from a decoded payload (as parsed, or as stored)."""
    raw_type = payload.get("type")
    if not isinstance(raw_type, str) or not raw_type:
        raise WebhookPayloadError("webhook body has no 'type'")
    try:
        kind = EventType(raw_type)
    except ValueError as exc:
        raise WebhookPayloadError(f"unsupported webhook type {raw_type[:40]!r}") from exc
    data = payload.get("data")
    if not isinstance(data, dict):
        raise WebhookPayloadError(f"{kind} webhook has no data[...] fields")
    list_id = _opt(data, "list_id")
    fired_at = _fired_at(payload.get("fired_at"))
    if kind is EventType.UPEMAIL:
        return EmailChangedEvent(
            list_id=list_id,
            fired_at=fired_at,
            old_email=_required(data, "old_email", kind),
            new_email=_required(data, "new_email", kind),
            new_id=_opt(data, "new_id"),
        )
    if kind is EventType.CAMPAIGN:
        return CampaignEvent(
            list_id=list_id,
            fired_at=fired_at,
            campaign_id=_required(data, "id", kind),
            subject=_opt(data, "subject") or "",
            status=_opt(data, "status") or "",
            reason=_opt(data, "reason") or "",
        )
    email = _required(data, "email", kind)
    if kind is EventType.CLEANED:
        return CleanedEvent(
            list_id=list_id,
            fired_at=fired_at,
            email=email,
            reason=_opt(data, "reason"),
            campaign_id=_opt(data, "campaign_id"),
        )
    merges = data.get("merges", {})
    if not isinstance(merges, dict):
        raise WebhookPayloadError(f"{kind} webhook has a data[merges] that is not a group")
    cls: type[SubscribeEvent | ProfileEvent | UnsubscribeEvent] = {
        EventType.SUBSCRIBE: SubscribeEvent,
        EventType.PROFILE: ProfileEvent,
        EventType.UNSUBSCRIBE: UnsubscribeEvent,
    }[kind]
    member = cls(
        list_id=list_id,
        fired_at=fired_at,
        email=email,
        unique_email_id=_opt(data, "id"),
        email_type=_opt(data, "email_type"),
        web_id=_opt(data, "web_id"),
        ip_opt=_opt(data, "ip_opt"),
        ip_signup=_opt(data, "ip_signup"),
        merges=merges,
    )
    if isinstance(member, UnsubscribeEvent):
        return replace(
            member,
            action=_opt(data, "action") or "unsub",
            reason=_opt(data, "reason"),
            campaign_id=_opt(data, "campaign_id"),
        )
    return member


def _opt(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WebhookPayloadError(f"data[{key}] must be a plain value")
    return value


def _required(data: Mapping[str, Any], key: str, kind: EventType) -> str:
    value = _opt(data, key)
    if value is None:
        raise WebhookPayloadError(f"{kind} webhook is missing data[{key}]")
    return value


def _fired_at(value: Any) -> datetime | None:
    """``YYYY-MM-DD HH:MM:SS`` without a zone; Mailchimp sends UTC."""
    if not isinstance(value, str) or not value:
        return None
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


# --------------------------------------------------------------------------- authentication


def match_token(candidate: str, tokens: Sequence[str] | Iterable[str]) -> bool:
    """Whether ``candidate`` equals one of ``tokens``, compared in constant time.

    Every token is compared (no early exit), so timing does not reveal which one matched.
    """
    given = candidate.encode("utf-8")
    matched = False
    for token in tokens:
        if token and hmac.compare_digest(given, token.encode("utf-8")):
            matched = True
    return matched


def flatten_form(payload: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The inverse of :func:`parse_form`: nested values back to PHP-bracket keys."""
    flat: dict[str, str] = {}
    items: Iterable[tuple[Any, Any]] = payload.items()
    for key, value in items:
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_form(value, name))
        elif isinstance(value, list):
            flat.update(flatten_form({str(i): v for i, v in enumerate(value)}, name))
        else:
            flat[name] = "" if value is None else str(value)
    return flat


# --------------------------------------------------------------------------- durable inbox


@dataclass(frozen=True)
class InboxRow:
    """One delivery as the state store keeps it (``cb_webhook_events``)."""

    provider: str
    dedupe_key: str
    event_type: str
    list_id: str | None
    fired_at: datetime | None
    received_at: datetime
    payload: str

    @classmethod
    def from_delivery(cls, delivery: ParsedDelivery, received_at: datetime) -> InboxRow:
        return cls(
            provider=PROVIDER,
            dedupe_key=delivery.dedupe_key,
            event_type=str(delivery.event.type),
            list_id=delivery.event.list_id,
            fired_at=delivery.event.fired_at,
            received_at=received_at,
            payload=delivery.payload_json,
        )


StoreBatch = Callable[[Sequence[InboxRow]], list[bool]]
"""Insert rows in ONE committed transaction; per row, True if new, False if already stored."""


class WebhookInbox:
    """Group commit: concurrent deliveries are stored together, each answered after the commit.

    ``await inbox.put(row)`` returns once the row is committed (True: new, False: a duplicate of
    a stored delivery) and raises if it could not be stored; the HTTP answer is sent only then,
    so nothing acknowledged can be lost. One writer drains the queue: while a batch is being
    committed the next one gathers, which is what lets one worker keep up with thousands of
    deliveries a second on a database that needs a few milliseconds per commit.
    """

    def __init__(self, store_batch: StoreBatch, *, max_batch: int = 500) -> None:
        self._store_batch = store_batch
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[InboxRow, asyncio.Future[bool]]] = asyncio.Queue()
        self._closed = False
        self.on_stored: Callable[[int, int], None] | None = None  # (new, duplicates)

    async def put(self, row: InboxRow) -> bool:
        if self._closed:
            raise StateStoreError("the webhook inbox is shutting down; retry the delivery")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self._queue.put((row, future))
        return await future

    def close(self) -> None:
        """Refuse new deliveries; :meth:`run` stores what is queued, then returns."""
        self._closed = True
        self._queue.put_nowait(_SENTINEL)  # type: ignore[arg-type]

    async def run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            items = [item for item in batch if item is not _SENTINEL]
            if items:
                await self._commit(items)
            if any(item is _SENTINEL for item in batch) and self._queue.empty():
                return

    async def _commit(self, items: list[tuple[InboxRow, asyncio.Future[bool]]]) -> None:
        unique: dict[str, InboxRow] = {}
        for row, _future in items:
            unique.setdefault(row.dedupe_key, row)
        rows = list(unique.values())
        try:
            results = await asyncio.to_thread(self._store_batch, rows)
        except Exception as exc:
            log.error(
                "could not store %d webhook deliveries: %s",
                len(items),
                exc,
                extra={"action": "webhook", "provider": PROVIDER},
            )
            for _row, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        new_keys = {row.dedupe_key for row, new in zip(rows, results, strict=True) if new}
        new = duplicates = 0
        for row, future in items:
            is_new = row.dedupe_key in new_keys
            new_keys.discard(row.dedupe_key)  # a second copy in the same batch is a duplicate
            new += is_new
            duplicates += not is_new
            if not future.done():
                future.set_result(is_new)
        if self.on_stored is not None:
            self.on_stored(new, duplicates)


_SENTINEL = object()
