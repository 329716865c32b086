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
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import unquote

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY as pg_array
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from campaign_bridge.config import SyncConfig
from campaign_bridge.errors import ConfigurationError, StateStoreError, WebhookPayloadError
from campaign_bridge.privacy import scrub_addresses
from campaign_bridge.state import webhook_events
from campaign_bridge.status_changes import (
    StatusChange,
    apply_status_changes,
    change_from_webhook,
    email_hash,
)
from campaign_bridge.storable import column_limit, storable_json, storable_row
from campaign_bridge.webhook_deletes import confirm_archives
from campaign_bridge.webhook_parking import MAX_APPLY_ATTEMPTS, error_text, is_store_failure
from campaign_bridge.writeback import WritebackTarget

__all__ = [
    "CampaignEvent",
    "CleanedEvent",
    "EmailChangedEvent",
    "EventType",
    "InboxRow",
    "InboxStore",
    "MemberEvent",
    "ParsedDelivery",
    "ProfileEvent",
    "SubscribeEvent",
    "UnsubscribeEvent",
    "WebhookApplier",
    "WebhookEvent",
    "WebhookInbox",
    "dedupe_key",
    "event_from_payload",
    "match_token",
    "parse_delivery",
    "parse_form",
]

log = logging.getLogger(__name__)

PROVIDER = "mailchimp"
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
    pairs = _pairs(body)
    payload = _nest(pairs)
    event = event_from_payload(payload)
    return ParsedDelivery(event=event, dedupe_key=_pairs_key(pairs), payload=payload)


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
    email_hash: str | None = None  # whom the event is about (a contact's history)

    def storable(self, dialect: str) -> InboxRow:
        """This row as ``dialect`` can store it (see :mod:`campaign_bridge.storable`): text
        fields cleaned and cut to their columns, the payload's strings shortened until the
        payload fits its column (MariaDB's TEXT holds 64 KiB; a delivery may carry 1 MiB)."""
        fixed = storable_row(
            webhook_events,
            {"event_type": self.event_type, "list_id": self.list_id},
            dialect,
            clean_keys=True,
        )
        payload = self.payload
        limit = column_limit(webhook_events.c.payload.type, dialect)
        if limit.bytes is not None and len(payload) > limit.bytes:
            document, _changed = storable_json(
                webhook_events.name, "payload", json.loads(payload), limit
            )
            payload = json.dumps(document, sort_keys=True, separators=(",", ":"))
        if (fixed["event_type"], fixed["list_id"], payload) == (
            self.event_type,
            self.list_id,
            self.payload,
        ):
            return self
        return replace(
            self, event_type=fixed["event_type"], list_id=fixed["list_id"], payload=payload
        )

    @classmethod
    def from_delivery(cls, delivery: ParsedDelivery, received_at: datetime) -> InboxRow:
        event = delivery.event
        email = getattr(event, "new_email", None) or getattr(event, "email", None)
        return cls(
            provider=PROVIDER,
            dedupe_key=delivery.dedupe_key,
            event_type=str(delivery.event.type),
            list_id=delivery.event.list_id,
            fired_at=delivery.event.fired_at,
            received_at=received_at,
            payload=delivery.payload_json,
            email_hash=email_hash(email) if isinstance(email, str) and email else None,
        )


StoreBatch = Callable[[Sequence[InboxRow]], Awaitable[list[bool]]]
"""Insert rows in ONE committed transaction; per row, True if new, False if already stored."""


class WebhookInbox:
    """Group commit: concurrent deliveries are stored together, each answered after the commit.

    ``await inbox.put(row)`` returns once the row is committed (True: new, False: a duplicate of
    a stored delivery) and raises if it could not be stored; the HTTP answer is sent only then,
    so nothing acknowledged can be lost.

    Latency-aware: when no commit is in flight, a delivery is committed at once, alone if it is
    alone. While one is in flight, the next deliveries gather behind it and go in the next
    commit; a second commit starts beside the first only once ``min_parallel`` deliveries wait
    (a flood), up to ``writers`` at a time (use one writer on SQLite, which serialises writers
    anyway). So a steady trickle costs few commits and a flood is not held up by one slow disk
    flush.
    """

    def __init__(
        self,
        store_batch: StoreBatch,
        *,
        max_batch: int = 500,
        writers: int = 1,
        min_parallel: int = 8,
    ) -> None:
        self._store_batch = store_batch
        self._max_batch = max_batch
        self._writers = max(writers, 1)
        self._min_parallel = min_parallel
        self._queue: asyncio.Queue[tuple[InboxRow, asyncio.Future[bool]]] = asyncio.Queue()
        self._gathering = asyncio.Lock()  # one writer at a time collects the next batch
        self._changed = asyncio.Event()  # a delivery arrived or a commit ended
        self._in_flight = 0
        self._closed = False
        self.on_stored: Callable[[list[InboxRow], int], None] | None = None  # (new, duplicates)
        self.last_stored = 0.0  # time.monotonic() of the last commit

    def busy(self, within: float = 1.0) -> bool:
        """Whether deliveries were committed in the last ``within`` seconds."""
        return time.monotonic() - self.last_stored < within

    async def put(self, row: InboxRow) -> bool:
        if self._closed:
            raise StateStoreError("the webhook inbox is shutting down; retry the delivery")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((row, future))
        self._changed.set()
        return await future

    def close(self) -> None:
        """Refuse new deliveries; :meth:`run` stores what is queued, then returns."""
        self._closed = True
        for _ in range(self._writers):  # queued after every delivery already accepted
            self._queue.put_nowait(_SENTINEL)  # type: ignore[arg-type]
        self._changed.set()

    async def run(self) -> None:
        await asyncio.gather(*(self._writer() for _ in range(self._writers)))

    async def _writer(self) -> None:
        while True:
            async with self._gathering:
                batch = await self._next_batch()
                items = [item for item in batch if item is not _SENTINEL]
                if items:
                    self._in_flight += 1
            if items:
                try:
                    await self._commit(items)
                finally:
                    self._in_flight -= 1
                    self._changed.set()
            sentinels = len(batch) - len(items)
            if sentinels:
                for _ in range(sentinels - 1):  # leave the others' stop marks to them
                    self._queue.put_nowait(_SENTINEL)  # type: ignore[arg-type]
                return

    async def _next_batch(self) -> list[tuple[InboxRow, asyncio.Future[bool]]]:
        first = await self._queue.get()
        # a commit is in flight: let deliveries gather behind it unless a flood is waiting
        while (
            self._in_flight
            and first is not _SENTINEL
            and self._queue.qsize() + 1 < self._min_parallel
        ):
            self._changed.clear()
            await self._changed.wait()
        batch = [first]
        while len(batch) < self._max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _commit(self, items: list[tuple[InboxRow, asyncio.Future[bool]]]) -> None:
        unique: dict[str, InboxRow] = {}
        for row, _future in items:
            unique.setdefault(row.dedupe_key, row)
        rows = list(unique.values())
        try:
            results = await self._store_batch(rows)
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
        self.last_stored = time.monotonic()
        new_rows = [row for row, new in zip(rows, results, strict=True) if new]
        new_keys = {row.dedupe_key for row in new_rows}
        for row, future in items:
            is_new = row.dedupe_key in new_keys
            new_keys.discard(row.dedupe_key)  # a second copy in the same batch is a duplicate
            if not future.done():
                future.set_result(is_new)
        if self.on_stored is not None:
            self.on_stored(new_rows, len(items) - len(new_rows))


_SENTINEL = object()


def _nobodys_fault(exc: BaseException) -> bool:
    """A failure no event causes: a database is unreachable, or write-back is misconfigured.
    It counts no attempt against the events (nothing is parked for it)."""
    return is_store_failure(exc) or isinstance(exc, ConfigurationError)


# --------------------------------------------------------------------------- applier


APPLY_LOCK = "webhooks:apply"
APPLY_LOCK_TTL = 60.0  # seconds; renewed every third of it while chunks follow each other


class ApplierLocks(Protocol):
    """The state store's TTL locks (``cb_locks``)."""

    def try_acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool: ...

    def release_lock(self, name: str, owner: str) -> bool: ...


@dataclass
class AppliedChunk:
    seen: int = 0  # pending events read
    applied: dict[str, int] = field(default_factory=dict)  # event type -> count
    unmatched: int = 0  # no sync has the event's list
    failed: int = 0
    parked: int = 0  # failed too often: set aside with their error


class WebhookApplier:
    """Applies stored events in order, with the same code the pull uses for status changes.

    Runs in the server process. Events this process has just committed are handed over by key
    (:meth:`notify`) and read back by the unique key, so a chunk costs the same whatever the
    backlog. A scan of everything not applied yet runs at start (events a previous process
    stored but did not apply: a crash between the commit and the apply loses nothing), after a
    failure (the retry), and when nothing was handed over for ``poll_seconds`` (events another
    machine stored while this one holds the apply lock).
    """

    def __init__(
        self,
        engine: Engine,
        syncs: Mapping[str, SyncConfig],
        *,
        state_url: str | None = None,
        chunk: int = 1000,
        poll_seconds: float = 5.0,
        settle_seconds: float = 0.2,
        busy: Callable[[], bool] = lambda: False,
        busy_share: float = 0.25,
        busy_chunk: int = 100,
        max_handed_over: int = 100_000,
        locks: ApplierLocks | None = None,
        on_chunk: Callable[[AppliedChunk], None] | None = None,
        retry_pause: float = 2.0,
        max_attempts: int = MAX_APPLY_ATTEMPTS,
        log_emails: bool = False,
        confirm_deletes: bool = True,
    ) -> None:
        self.engine = engine
        # ask the provider whether an "archived" webhook was a permanent delete (see
        # webhook_deletes.py); off only for benchmarks that measure the store alone
        self.confirm_deletes = confirm_deletes
        self.retry_pause = retry_pause  # first pause after a failure; doubles, up to 60 s
        self.max_attempts = max_attempts  # an event failing this often is parked
        self.log_emails = log_emails  # stored errors keep addresses in clear only if True
        self.syncs = dict(syncs)
        self.state_url = state_url
        self.chunk = chunk
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.busy = busy
        self.busy_share = busy_share
        self.busy_chunk = busy_chunk  # short turns while deliveries arrive: the GIL is shared
        self.max_handed_over = max_handed_over
        self.locks = locks
        # per host, not per process: a restarted ``serve`` takes its crashed predecessor's lock
        # at once instead of waiting for it to expire
        self.owner = f"{socket.gethostname()}:applier"
        self.on_chunk = on_chunk
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._handed_over: collections.deque[str] = collections.deque()  # dedupe keys, in order
        self._scan_due = True  # at start: whatever a previous process left
        self._renew_lock_at = 0.0  # time.monotonic() when the held apply lock is renewed; 0: free
        self._targets: dict[str, WritebackTarget | None] = {}
        self._by_list: dict[str, list[str]] = {}
        for name, sync in self.syncs.items():
            self._by_list.setdefault(sync.destination.list_id, []).append(name)

    def notify(self, dedupe_keys: Iterable[str]) -> None:
        """Events this process has just committed: apply them next, read back by key."""
        if len(self._handed_over) >= self.max_handed_over:  # far behind: a scan finds them all
            self._handed_over.clear()
            self._scan_due = True
        else:
            self._handed_over.extend(dedupe_keys)
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if failures:
                # back off before the retry
                await self._pause(min(self.retry_pause * 2.0 ** (failures - 1), 60.0))
            elif not self._scan_due and not self._handed_over:
                await self._release_quietly()
                # nothing handed over for ``poll_seconds``: look for leftovers
                self._scan_due = not await self._idle()
            if self._stop.is_set():
                break  # what is left is applied by the next start
            self._wake.clear()
            limit = self.busy_chunk if self.busy() else self.chunk
            keys = None if self._scan_due else self._take_keys(limit)
            if keys == []:
                continue
            started = time.monotonic()
            try:
                chunk = await asyncio.to_thread(self.apply_pending_once, limit, keys)
            except Exception as exc:
                failures += 1
                self._scan_due = True  # the retry finds whatever this attempt left
                log.error(
                    "applying webhook events failed: %s",
                    exc,
                    extra={"action": "webhook", "provider": PROVIDER},
                )
                continue
            failures = failures + 1 if chunk.failed else 0
            if chunk.failed:
                self._scan_due = True  # failed events stay pending: a scan retries them
            elif keys is None:
                self._scan_due = chunk.seen >= limit  # more may be waiting
            if self.on_chunk is not None:
                self.on_chunk(chunk)
            if chunk.seen and self.busy():
                # deliveries are arriving: acknowledging them comes first, so applying takes at
                # most ``busy_share`` of the time (the backlog waits, stored)
                await self._pause((time.monotonic() - started) * (1 / self.busy_share - 1))
        await self._release_quietly()
        self.close()

    def close(self) -> None:
        """Close the write-back connections this applier opened (run() does it on its way out;
        call it after driving :meth:`apply_pending_once` by hand)."""
        targets, self._targets = self._targets, {}
        for target in targets.values():
            if target is not None:
                target.close()

    async def _release_quietly(self) -> None:
        if not self._renew_lock_at:
            return
        try:
            await asyncio.to_thread(self.release_lock)
        except Exception as exc:  # it expires on its own
            log.warning(
                "could not release the lock %s: %s",
                APPLY_LOCK,
                exc,
                extra={"action": "webhook", "provider": PROVIDER},
            )

    async def _idle(self) -> bool:
        """Wait for events to be handed over, then let a burst gather; False on a timeout."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
        except TimeoutError:
            return False
        await self._pause(self.settle_seconds)
        return True

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    def _take_keys(self, limit: int) -> list[str]:
        queue = self._handed_over
        return [queue.popleft() for _ in range(min(limit, len(queue)))]

    def apply_pending_once(
        self, limit: int | None = None, keys: Sequence[str] | None = None
    ) -> AppliedChunk:
        """Apply one chunk of pending events (synchronous: run it in a thread): those with
        ``keys`` that are still pending, or without ``keys`` the oldest ``limit`` pending ones.

        With ``locks``, one machine at a time applies (database lock ``webhooks:apply``, held
        while chunks follow each other and released by :meth:`release_lock` when idle): ``serve``
        processes on several machines do not apply the same events side by side (applying twice
        would be harmless, only wasted work: the apply is idempotent).
        """
        if self.locks is not None and not self._hold_lock():
            return AppliedChunk()
        return self._apply_chunk(limit or self.chunk, keys)

    def release_lock(self) -> None:
        """Let another machine apply (synchronous: run it in a thread)."""
        if self.locks is not None and self._renew_lock_at:
            self._renew_lock_at = 0.0
            self.locks.release_lock(APPLY_LOCK, self.owner)

    def _hold_lock(self) -> bool:
        assert self.locks is not None
        now = time.monotonic()
        if self._renew_lock_at and now < self._renew_lock_at:
            return True
        if not self.locks.try_acquire_lock(APPLY_LOCK, self.owner, APPLY_LOCK_TTL):
            self._renew_lock_at = 0.0
            return False
        self._renew_lock_at = now + APPLY_LOCK_TTL / 3
        return True

    def _apply_chunk(self, limit: int, keys: Sequence[str] | None) -> AppliedChunk:
        result = AppliedChunk()
        if keys is None:
            rows = pending_events(self.engine, limit)
        else:
            rows = pending_events_with_keys(self.engine, PROVIDER, keys)
        result.seen = len(rows)
        per_sync: dict[str, list[tuple[StoredEvent, StatusChange]]] = {}
        plain: list[StoredEvent] = []  # nothing to change (profile, campaign) or no sync
        for row in rows:
            names = self._by_list.get(row.list_id or "", [])
            change = self._change(row)
            if change is None or not names:
                plain.append(row)
                if not names and change is not None:
                    result.unmatched += 1
                continue
            for name in names:
                per_sync.setdefault(name, []).append((row, change))
        errors: dict[int, str] = {}
        for name, items in per_sync.items():
            for row, exc in self._apply_isolating(name, items):
                errors[row.id] = error_text(exc, log_emails=self.log_emails)
        failed_ids = set(errors)
        parked = {
            row.id for row in rows if row.id in errors and row.attempts + 1 >= self.max_attempts
        }
        applied: dict[int, str | None] = {}
        for row in rows:
            if row.id in failed_ids:
                result.failed += 1
                continue
            unmatched = not self._by_list.get(row.list_id or "")
            applied[row.id] = (
                f"no sync has destination list_id {row.list_id!r}" if unmatched else None
            )
            if not unmatched:
                result.applied[row.event_type] = result.applied.get(row.event_type, 0) + 1
        mark_events(
            self.engine, applied, errors, parked=parked, bodies=self._at_rest(rows, applied)
        )
        result.parked = len(parked)
        return result

    def _at_rest(
        self, rows: Sequence[StoredEvent], applied: Mapping[int, object]
    ) -> dict[int, str]:
        """Applied bodies without addresses in clear (unless log_emails): docs/privacy.md."""
        if self.log_emails:
            return {}
        bodies: dict[int, str] = {}
        for row in rows:
            if row.id in applied:
                body = scrub_addresses(row.payload) or ""
                if body != row.payload:
                    bodies[row.id] = body
        return bodies

    def _apply_isolating(
        self, name: str, items: Sequence[tuple[StoredEvent, StatusChange]]
    ) -> list[tuple[StoredEvent, Exception]]:
        """Apply ``items`` to sync ``name`` together; if that fails for a reason of the events'
        own, apply each alone, so one bad event fails alone and the others land. A database
        outage or a write-back misconfiguration is re-raised: it is no event's fault."""
        try:
            self._apply_to(name, items)
            return []
        except Exception as exc:
            if _nobodys_fault(exc) or len(items) == 1:
                self._log_failure(name, len(items), exc)
                if _nobodys_fault(exc):
                    raise
                return [(items[0][0], exc)]
        failures: list[tuple[StoredEvent, Exception]] = []
        for item in items:
            try:
                self._apply_to(name, [item])
            except Exception as exc:
                if _nobodys_fault(exc):
                    raise
                self._log_failure(name, 1, exc)
                failures.append((item[0], exc))
        return failures

    def _apply_to(self, name: str, items: Sequence[tuple[StoredEvent, StatusChange]]) -> None:
        changes = [change for _row, change in items]
        if self.confirm_deletes:
            changes = confirm_archives(self.syncs[name], changes)
        apply_status_changes(
            self.engine,
            changes,
            sync_name=name,
            writeback=self._target(name),
        )

    def _log_failure(self, name: str, count: int, exc: Exception) -> None:
        log.error(
            "applying %d webhook events to sync %s failed: %s",
            count,
            name,
            exc,
            extra={"action": "webhook", "provider": PROVIDER, "sync": name},
        )

    def _change(self, row: StoredEvent) -> StatusChange | None:
        try:
            flat = flatten_form(json.loads(row.payload))
        except (ValueError, TypeError):
            return None
        return change_from_webhook(flat, provider=PROVIDER, received_at=row.received_at)

    def _target(self, name: str) -> WritebackTarget | None:
        if name not in self._targets:
            self._targets[name] = WritebackTarget.open(
                name, self.syncs[name], state_url=self.state_url
            )
        return self._targets[name]


# One statement with one array per column: no per-row SQL to build, parse or plan. Binary
# parameters (``%b``): text arrays need no escaping (JSON payloads are full of quotes).
_PG_INSERT = """
INSERT INTO cb_webhook_events
    (provider, dedupe_key, event_type, list_id, fired_at, received_at, payload, email_hash)
SELECT * FROM unnest(
    %(provider)b::varchar[], %(dedupe_key)b::varchar[], %(event_type)b::varchar[],
    %(list_id)b::varchar[], %(fired_at)b::timestamptz[], %(received_at)b::timestamptz[],
    %(payload)b::text[], %(email_hash)b::varchar[])
ON CONFLICT (provider, dedupe_key) DO NOTHING
RETURNING provider, dedupe_key
"""


class InboxStore:
    """Stores batches of deliveries in ``cb_webhook_events`` (a :data:`StoreBatch`).

    It commits through a few long-lived connections of its own, so a commit pays no pool
    checkout and no liveness ping. On PostgreSQL the insert is one statement in autocommit
    mode (durable when it returns, no BEGIN/COMMIT round trips) sent from the event loop itself
    by psycopg's asyncio connection: no thread hand-off per commit. Other databases commit on a
    worker thread. A connection that fails is dropped and the next batch opens a new one, so a
    database restart costs one batch a ``503``, which the provider retries.

    Race-safe dedupe on ``(provider, dedupe_key)``: PostgreSQL and SQLite use
    ``ON CONFLICT DO NOTHING RETURNING``; MySQL/MariaDB ``INSERT IGNORE`` after reading which keys
    exist (a concurrent twin may then be reported new twice, but is stored once).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # psycopg's asyncio connections need a selector event loop (not Windows' proactor)
        self._on_loop = engine.dialect.name == "postgresql" and sys.platform != "win32"
        self._idle_async: list[psycopg.AsyncCursor[Any]] = []  # one cursor per connection
        self._idle: list[sa.Connection] = []
        self._lock = threading.Lock()
        self._errors = (sa.exc.SQLAlchemyError, engine.dialect.loaded_dbapi.Error)

    async def __call__(self, rows: Sequence[InboxRow]) -> list[bool]:
        """Insert ``rows`` in one committed transaction; per row, whether it was new."""
        if not rows:
            return []
        rows = [row.storable(self.engine.dialect.name) for row in rows]
        try:
            if self._on_loop:
                created = await self._insert_on_loop(rows)
            else:
                created = await asyncio.to_thread(self._insert_in_thread, rows)
        except self._errors as exc:
            raise StateStoreError(
                f"could not store webhook events ({type(exc).__name__}); "
                "check that the state store is reachable"
            ) from exc
        return [(r.provider, r.dedupe_key) in created for r in rows]

    async def aclose(self) -> None:
        """Close the idle connections (call once no batch is being stored)."""
        idle_async, self._idle_async = self._idle_async, []
        for cursor in idle_async:
            with contextlib.suppress(Exception):
                await cursor.connection.close()
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()

    async def _insert_on_loop(self, rows: Sequence[InboxRow]) -> set[tuple[str, str]]:
        cursor = self._idle_async.pop() if self._idle_async else await self._connect()
        try:
            await cursor.execute(_PG_INSERT, _columns(rows))
            created = {(p, k) for p, k in await cursor.fetchall()}
        except BaseException:
            with contextlib.suppress(Exception):
                await cursor.connection.close()
            raise
        self._idle_async.append(cursor)
        return created

    async def _connect(self) -> psycopg.AsyncCursor[Any]:
        """A new autocommit connection's cursor, kept with it (a cursor per commit costs CPU)."""
        args, options = self.engine.dialect.create_connect_args(self.engine.url)
        options.setdefault("connect_timeout", 10)
        aconn = await psycopg.AsyncConnection.connect(*args, autocommit=True, **options)
        return aconn.cursor()

    def _insert_in_thread(self, rows: Sequence[InboxRow]) -> set[tuple[str, str]]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        try:
            conn = conn or self._connect_pooled()
            created = _insert_rows(conn, rows)
        except BaseException:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.invalidate()
                    conn.close()
            raise
        with self._lock:
            self._idle.append(conn)
        return created

    def _connect_pooled(self) -> sa.Connection:
        conn = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn


def _columns(rows: Sequence[InboxRow]) -> dict[str, list[Any]]:
    """One list per column: the parameters of :data:`_PG_INSERT`."""
    return {
        "provider": [r.provider for r in rows],
        "dedupe_key": [r.dedupe_key for r in rows],
        "event_type": [r.event_type for r in rows],
        "list_id": [r.list_id for r in rows],
        "fired_at": [r.fired_at for r in rows],
        "received_at": [r.received_at for r in rows],
        "payload": [r.payload for r in rows],
        "email_hash": [r.email_hash for r in rows],
    }


def _insert_rows(conn: sa.Connection, rows: Sequence[InboxRow]) -> set[tuple[str, str]]:
    """Insert ``rows``, committed; the ``(provider, dedupe_key)`` pairs that were new."""
    table = webhook_events
    dialect = conn.dialect.name
    if dialect == "postgresql":  # autocommit: the statement is its own transaction
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(_PG_INSERT, _columns(rows))
            return {(p, k) for p, k in cursor.fetchall()}
        finally:
            cursor.close()
    values = [
        {
            "provider": r.provider,
            "dedupe_key": r.dedupe_key,
            "event_type": r.event_type,
            "list_id": r.list_id,
            "fired_at": r.fired_at,
            "received_at": r.received_at,
            "payload": r.payload,
            "email_hash": r.email_hash,
        }
        for r in rows
    ]
    with conn.begin():
        if dialect == "sqlite":
            stmt = (
                sqlite_insert(table)
                .on_conflict_do_nothing(index_elements=["provider", "dedupe_key"])
                .returning(table.c.provider, table.c.dedupe_key)
            )
            return {(p, k) for p, k in conn.execute(stmt, values).all()}
        keys = sorted({r.dedupe_key for r in rows})
        existing = {
            (p, k)
            for p, k in conn.execute(
                sa.select(table.c.provider, table.c.dedupe_key).where(table.c.dedupe_key.in_(keys))
            )
        }
        conn.execute(table.insert().prefix_with("IGNORE"), values)
        return {(r.provider, r.dedupe_key) for r in rows} - existing


@dataclass(frozen=True)
class StoredEvent:
    id: int
    event_type: str
    list_id: str | None
    payload: str
    received_at: datetime
    attempts: int = 0  # failed applies so far


def pending_events(engine: Engine, limit: int) -> list[StoredEvent]:
    """Stored events not applied yet, oldest first."""
    t = webhook_events
    query = (
        sa.select(t.c.id, t.c.event_type, t.c.list_id, t.c.payload, t.c.received_at, t.c.attempts)
        .where(t.c.applied_at.is_(None), t.c.parked_at.is_(None))
        .order_by(t.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [StoredEvent(*row) for row in conn.execute(query)]


def pending_events_with_keys(
    engine: Engine, provider: str, dedupe_keys: Sequence[str]
) -> list[StoredEvent]:
    """The events among ``dedupe_keys`` not applied yet, oldest first (read by the unique key)."""
    t = webhook_events
    if not dedupe_keys:
        return []
    keys: sa.ColumnElement[bool]
    if engine.dialect.name == "postgresql":  # one array parameter, whatever the chunk size
        keys = t.c.dedupe_key == sa.any_(
            sa.bindparam("keys", list(dedupe_keys), type_=pg_array(sa.String))
        )
    else:
        keys = t.c.dedupe_key.in_(list(dedupe_keys))
    query = (
        sa.select(t.c.id, t.c.event_type, t.c.list_id, t.c.payload, t.c.received_at, t.c.attempts)
        .where(t.c.provider == provider, keys, t.c.applied_at.is_(None), t.c.parked_at.is_(None))
        .order_by(t.c.id)
    )
    with engine.connect() as conn:
        return [StoredEvent(*row) for row in conn.execute(query)]


def mark_events(
    engine: Engine,
    applied: Mapping[int, str | None],
    failed: Mapping[int, str],
    *,
    parked: Iterable[int] = (),
    bodies: Mapping[int, str] | None = None,
) -> None:
    """Mark events applied (with an optional note); record errors on failed ones, counting the
    attempt; park the ``parked`` ones (failed too often: the applier leaves them alone);
    ``bodies`` replaces the stored body of those events (addresses removed once applied)."""
    t = webhook_events
    now = datetime.now(UTC)
    plain = sorted(i for i, note in applied.items() if note is None)
    noted = {i: note for i, note in applied.items() if note is not None}
    with engine.begin() as conn:
        if plain and conn.dialect.name == "postgresql":  # one array parameter
            ids = sa.bindparam("ids", plain, type_=pg_array(sa.BigInteger))
            conn.execute(
                t.update().where(t.c.id == sa.any_(ids)).values(applied_at=now, error=None)
            )
        else:
            for start in range(0, len(plain), 1000):  # one statement per 1,000
                conn.execute(
                    t.update()
                    .where(t.c.id.in_(plain[start : start + 1000]))
                    .values(applied_at=now, error=None)
                )
        if noted:
            conn.execute(
                t.update()
                .where(t.c.id == sa.bindparam("b_id"))
                .values(applied_at=now, error=sa.bindparam("b_error")),
                [{"b_id": i, "b_error": note} for i, note in noted.items()],
            )
        if failed:
            conn.execute(
                t.update()
                .where(t.c.id == sa.bindparam("b_id"))
                .values(error=sa.bindparam("b_error"), attempts=t.c.attempts + 1),
                [{"b_id": i, "b_error": error} for i, error in failed.items()],
            )
        to_park = sorted(set(parked))
        if to_park:
            conn.execute(t.update().where(t.c.id.in_(to_park)).values(parked_at=now))
        if bodies:
            conn.execute(
                t.update()
                .where(t.c.id == sa.bindparam("b_id"))
                .values(payload=sa.bindparam("b_payload")),
                [{"b_id": i, "b_payload": body} for i, body in bodies.items()],
            )


def backlog(engine: Engine) -> tuple[int, int]:
    """(events waiting to be applied, of which carry an error from a failed attempt); parked
    events are not waiting (see :mod:`campaign_bridge.webhook_parking`)."""
    t = webhook_events
    query = sa.select(
        sa.func.count(),
        sa.func.count(t.c.error),
    ).where(t.c.applied_at.is_(None), t.c.parked_at.is_(None))
    with engine.connect() as conn:
        pending, failing = conn.execute(query).one()
    return int(pending), int(failing)


def events_per_hour(engine: Engine, since: datetime) -> dict[datetime, int]:
    """Events received per UTC hour since ``since`` (hours with none are absent)."""
    t = webhook_events
    dialect = engine.dialect.name
    bucket: sa.ColumnElement[Any]
    if dialect == "postgresql":
        bucket = sa.func.to_char(sa.func.timezone("UTC", t.c.received_at), "YYYY-MM-DD HH24:00:00")
    elif dialect == "mysql":
        bucket = sa.func.date_format(t.c.received_at, "%Y-%m-%d %H:00:00")
    else:
        bucket = sa.func.strftime("%Y-%m-%d %H:00:00", t.c.received_at)
    query = (
        sa.select(bucket.label("hour"), sa.func.count())
        .where(t.c.received_at >= since)
        .group_by(bucket)
    )
    counts: dict[datetime, int] = {}
    with engine.connect() as conn:
        for hour, count in conn.execute(query):
            counts[datetime.fromisoformat(str(hour)).replace(tzinfo=UTC)] = int(count)
    return counts
