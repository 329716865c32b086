"""The sandbox's in-memory state and its extension points.

``Sandbox`` holds everything one emulated Mailchimp account knows: API keys and OAuth tokens,
audiences (lists) with their merge fields, interest categories/interests, segments/tags and
members, plus a seeded id generator, an advanceable clock and the member-event bus.

Mutation discipline: every read-modify-write of the state happens while holding
``sandbox.lock`` (a ``threading.RLock``). Synchronous handlers are called with the lock held by
the app; asynchronous handlers must take it themselves (``with sandbox.lock:``) around the
synchronous parts, and must never ``await`` while holding it. Tests may read the state from
another thread under the same lock.

Extension points for the other sandbox modules (campaigns, reports, webhooks, batches):

- ``sandbox.listen(fn)`` — ``fn(MemberEvent)`` is called (lock held, synchronously) after every
  member change; queue work, do not block.
- ``sandbox.extensions[name]`` — a place for a module's own state (e.g. campaigns), with
  ``sandbox.register_state(name, dump, load, reset)`` so persistence and reset include it.
- ``await sandbox.dispatch(method, path, query, body)`` — run an API operation without HTTP
  (used by ``/batches``); same handlers, same answers.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Literal

from campaign_bridge.sandbox import _common
from campaign_bridge.sandbox._common import Observable, SandboxSettings
from campaign_bridge.sandbox.mailchimp.limits import Limits
from campaign_bridge.sandbox.mailchimp.member_index import MemberIndex
from campaign_bridge.sandbox.mailchimp.wire import ts

if TYPE_CHECKING:
    from campaign_bridge.sandbox.mailchimp.app import Dispatcher

__all__ = [
    "Account",
    "AudienceList",
    "Clock",
    "Ids",
    "Interest",
    "InterestCategory",
    "Member",
    "MemberEvent",
    "MergeField",
    "Sandbox",
    "SandboxConfig",
    "Segment",
    "subscriber_hash",
]

EventKind = Literal[
    "subscribe",  # became subscribed (created subscribed, or resubscribed)
    "unsubscribe",  # became unsubscribed (extra: reason, campaign_id)
    "cleaned",  # became cleaned (hard bounce / abuse; extra: reason, campaign_id)
    "pending",  # became pending (double opt-in email "sent")
    "transactional",  # created or set as transactional
    "profile",  # merge fields / interests / language / vip / email_type etc. changed
    "upemail",  # email address changed (extra: old_email, new_email, old_id, new_id)
    "archive",  # DELETE (archived)
    "delete",  # delete-permanent (forgotten)
]
Source = Literal["user", "admin", "api"]


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: md5 of the lower-cased address."""
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


@dataclass
class SandboxConfig(SandboxSettings):
    """Knobs of one sandbox. Everything has a default that behaves like real Mailchimp."""

    dc: str = "us6"
    #: domains whose addresses are rejected as "looks fake or invalid"
    fake_domains: frozenset[str] = frozenset({"example.com", "test.com"})
    #: per-key concurrent request limit (Mailchimp: 10)
    max_concurrent: int = 10
    #: per-address signup throttle: more than N creations within window seconds -> 400
    signup_limit: int | None = None
    signup_window: float = 3600.0


class Clock:
    """UTC clock that tests can move forward. Frozen when ``start`` is given."""

    def __init__(self, start: datetime | None = None) -> None:
        self._frozen = start.astimezone(UTC) if start is not None else None
        self._offset = timedelta(0)
        #: the frozen instant plus the offset, or the offset alone, in seconds (for ``stamp``)
        self._shift = self._shift_seconds()
        self._stamp_cache: tuple[int, str] = (-1, "")
        self._http_date_cache: tuple[int, bytes] = (-1, b"")

    def now(self) -> datetime:
        base = self._frozen if self._frozen is not None else datetime.now(UTC)
        return base + self._offset

    def stamp(self) -> str:
        """``now()`` in Mailchimp's timestamp format (cached per second: it is hot)."""
        shift = self._shift
        second = int(shift if self._frozen is not None else time.time() + shift)
        cached_second, text = self._stamp_cache
        if second != cached_second:
            text = ts(datetime.fromtimestamp(second, UTC))
            self._stamp_cache = (second, text)  # one assignment: safe across threads
        return text

    def http_date(self) -> bytes:
        """``now()`` as an HTTP ``Date`` header value (cached per second)."""
        shift = self._shift
        second = int(shift if self._frozen is not None else time.time() + shift)
        cached_second, value = self._http_date_cache
        if second != cached_second:
            value = formatdate(second, usegmt=True).encode("latin-1")
            self._http_date_cache = (second, value)
        return value

    def advance(self, seconds: float) -> datetime:
        self._offset += timedelta(seconds=seconds)
        self._shift = self._shift_seconds()
        return self.now()

    def _shift_seconds(self) -> float:
        base = self._frozen.timestamp() if self._frozen is not None else 0.0
        return base + self._offset.total_seconds()

    @property
    def offset_seconds(self) -> float:
        return self._offset.total_seconds()


class Ids(_common.Ids):
    """Deterministic (seeded) identifiers (``_common.Ids``) in Mailchimp's shapes: 10-hex ids,
    web ids, request UUIDs."""

    def hex10(self) -> str:
        return self.hex(10)

    def hex32(self) -> str:
        return self.hex(32)

    def web_id(self) -> int:
        return self._rng.randrange(10_000_000, 999_999_999)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


@dataclass
class Account:
    account_id: str
    account_name: str = "Sandbox Inc."
    email: str = "owner@sandbox.invalid"
    first_name: str = "Sandy"
    last_name: str = "Box"
    member_since: str = ""


@dataclass
class MergeField:
    merge_id: int
    tag: str
    name: str
    type: str
    required: bool = False
    default_value: str = ""
    public: bool = True
    display_order: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    help_text: str = ""


@dataclass
class InterestCategory:
    id: str
    title: str
    type: str
    display_order: int = 0


@dataclass
class Interest:
    id: str
    category_id: str
    name: str
    display_order: int = 0


@dataclass
class Segment:
    """A saved/static segment. Tags are static segments (``type == "static"``)."""

    id: int
    name: str
    type: str = "static"
    created_at: str = ""
    updated_at: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    #: subscriber hash -> date added (for static segments / tags)
    members: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Member:
    id: str  # subscriber hash
    email_address: str
    unique_email_id: str
    web_id: int
    contact_id: str
    status: str
    email_type: str = "html"
    #: who caused the current unsubscribed/cleaned status: "user", "admin", "api", "bounce"
    unsubscribe_origin: str = ""
    unsubscribe_reason: str = ""
    merge_fields: dict[str, Any] = field(default_factory=dict)
    interests: dict[str, bool] = field(default_factory=dict)
    language: str = ""
    vip: bool = False
    latitude: float = 0
    longitude: float = 0
    marketing_permissions: dict[str, bool] = field(default_factory=dict)
    ip_signup: str = ""
    timestamp_signup: str = ""
    ip_opt: str = ""
    timestamp_opt: str = ""
    member_rating: int = 2
    last_changed: str = ""
    created_at: str = ""
    source: str = "API - Generic"
    #: tag (static segment) id -> date_added
    tags: dict[int, str] = field(default_factory=dict)
    avg_open_rate: float = 0
    avg_click_rate: float = 0
    email_client: str = ""
    #: compliance flag carried through archive: once self-unsubscribed/cleaned, stays so
    compliance: bool = False
    #: position in the audience's insertion order, kept by ``MemberIndex`` (not persisted)
    seq: int = field(default=0, repr=False, compare=False)


@dataclass
class AudienceList:
    id: str
    web_id: int
    name: str
    date_created: str
    contact: dict[str, Any]
    permission_reminder: str
    campaign_defaults: dict[str, Any]
    email_type_option: bool = False
    double_optin: bool = False
    marketing_permissions: bool = False
    #: marketing permission id -> text (GDPR fields)
    permissions: dict[str, str] = field(default_factory=dict)
    visibility: str = "pub"
    merge_fields: dict[int, MergeField] = field(default_factory=dict)
    categories: dict[str, InterestCategory] = field(default_factory=dict)
    interests: dict[str, Interest] = field(default_factory=dict)
    segments: dict[int, Segment] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    #: hashes of permanently deleted addresses
    forgotten: set[str] = field(default_factory=set)
    _merge_index: dict[str, MergeField] | None = field(default=None, repr=False, compare=False)
    _tag_index: dict[str, int] | None = field(default=None, repr=False, compare=False)
    _merge_required: list[str] = field(default_factory=list, repr=False, compare=False)
    _merge_defaults: list[tuple[str, str]] = field(default_factory=list, repr=False, compare=False)
    _member_index: MemberIndex | None = field(default=None, repr=False, compare=False)

    def merge_tags(self) -> list[str]:
        return list(self.merge_index())

    def merge_index(self) -> dict[str, MergeField]:
        """Merge fields by tag, cached; call ``merge_fields_changed`` after any change."""
        cached = self._merge_index
        if cached is None or len(cached) != len(self.merge_fields):
            cached = self._merge_index = self.merge_by_tag()
            self._merge_required = [f.tag for f in cached.values() if f.required]
            self._merge_defaults = [
                (f.tag, f.default_value) for f in cached.values() if f.default_value
            ]
        return cached

    def merge_required(self) -> list[str]:
        self.merge_index()
        return self._merge_required

    def merge_defaults(self) -> list[tuple[str, str]]:
        self.merge_index()
        return self._merge_defaults

    def merge_fields_changed(self) -> None:
        self._merge_index = None

    def merge_by_tag(self) -> dict[str, MergeField]:
        return {f.tag: f for f in self.merge_fields.values()}

    def tag_named(self, name: str) -> Segment | None:
        """The static segment (tag) with this name, case-insensitively (indexed)."""
        index = self._tag_index
        if index is None:
            index = self._tag_index = {
                seg.name.lower(): seg.id for seg in self.segments.values() if seg.type == "static"
            }
        sid = index.get(name.lower())
        return self.segments.get(sid) if sid is not None else None

    def segments_changed(self) -> None:
        """Call after adding, renaming or deleting a segment."""
        self._tag_index = None

    def member_index(self) -> MemberIndex:
        """The members' status and change-log index, built on first use, then kept up to date
        by the ``member_*`` hooks (rebuilt if ``members`` was changed without them)."""
        index = self._member_index
        if index is None or not index.in_step(self.members):
            index = self._member_index = MemberIndex(self.members)
        return index

    # hooks for the write functions (members.py, lists.py): cheap no-ops until a filtered
    # listing has built the index

    def member_added(self, member: Member) -> None:
        """Call right after inserting ``member`` into ``members``."""
        if self._member_index is not None:
            self._member_index.added(member)

    def member_removed(self, member: Member) -> None:
        """Call right after deleting ``member`` from ``members``."""
        if self._member_index is not None:
            self._member_index.removed(member)

    def member_status_changed(self, member: Member, previous: str) -> None:
        """Call after changing ``member.status`` (and its ``last_changed``)."""
        if self._member_index is not None:
            self._member_index.status_changed(member, previous)

    def member_touched(self, member: Member) -> None:
        """Call after any other change of ``member.last_changed``."""
        if self._member_index is not None:
            self._member_index.touched(member)


class MemberEvent:
    """A member change, delivered to listeners registered with ``Sandbox.listen``.

    ``member`` is a snapshot in the API's member shape (as ``GET .../members/{hash}`` returns it,
    after the change). It is rendered on first access (most events have no interested
    listener), so read it inside the listener, not later. ``source`` is who made the change:
    ``api`` (an API call), ``admin`` (the web app; control API), ``user`` (the subscriber: form
    signup, unsubscribe link; bounce processing counts as ``user`` for unsubscribe/cleaned).
    ``extra`` carries kind-specific data: ``previous_status``, ``created``, ``reason``,
    ``campaign_id``, ``old_email``, ``new_email``, ``old_id``, ``new_id``, ``changed``
    (profile field names).
    """

    __slots__ = ("_member", "_render", "at", "extra", "kind", "list_id", "source")

    def __init__(
        self,
        kind: EventKind,
        list_id: str,
        member: Mapping[str, Any] | Callable[[], dict[str, Any]],
        source: Source,
        at: datetime,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self.list_id = list_id
        self.source = source
        self.at = at
        self.extra = extra if extra is not None else {}
        self._member: dict[str, Any] | None = None
        self._render: Callable[[], dict[str, Any]] | None = None
        if callable(member):
            self._render = member
        else:
            self._member = dict(member)

    @property
    def member(self) -> dict[str, Any]:
        if self._member is None:
            assert self._render is not None
            self._member = self._render()
        return self._member

    def __repr__(self) -> str:
        return f"MemberEvent({self.kind!r}, {self.list_id!r}, source={self.source!r})"


Listener = Callable[[MemberEvent], None]


class Sandbox(Observable[MemberEvent]):
    """The state of one emulated Mailchimp account, shared by every request to an app."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        super().__init__()
        self.config = config or SandboxConfig()
        self.lock = threading.RLock()
        self.clock = Clock(self.config.start_time)
        self.ids = Ids(self.config.seed)
        self.account = Account(account_id=self.ids.hex10(), member_since=self.clock.stamp())
        #: API key -> key info; OAuth token -> key info
        self.api_keys: dict[str, dict[str, Any]] = {}
        self.oauth_tokens: dict[str, dict[str, Any]] = {}
        self.lists: dict[str, AudienceList] = {}
        #: the key and audience seeded by ``control.seed_default`` ("" when not seeded)
        self.default_api_key = ""
        self.default_list_id = ""
        #: emails (lower) blocked by the signup throttle, and creation times per address
        self.throttled: set[str] = set()
        self.signups: dict[str, list[float]] = {}
        self.extensions: dict[str, Any] = {}
        #: bumped after every write (non-GET call, member event): invalidates ``query_cache``
        self.write_seq = 0
        self.query_cache: dict[Any, tuple[int, Any]] = {}
        self.dispatcher: Dispatcher | None = None
        #: concurrency, latency and fault knobs (see limits.py)
        self.limits = Limits(
            max_concurrent=self.config.max_concurrent,
            latency=self.config.latency,
            latency_per_item=self.config.latency_per_item,
            seed=self.config.seed,
        )

    # --- keys --------------------------------------------------------------------------------

    def new_api_key(self, key: str | None = None, label: str = "sandbox") -> str:
        """Create (or register) an API key ``<32hex>-<dc>`` for this account."""
        with self.lock:
            key = key or f"{self.ids.hex32()}-{self.config.dc}"
            self.api_keys[key] = {"label": label, "created_at": self.clock.stamp()}
            return key

    def new_oauth_token(self, token: str | None = None) -> str:
        with self.lock:
            token = token or self.ids.hex32()
            self.oauth_tokens[token] = {"created_at": self.clock.stamp()}
            return token

    # --- lookups ------------------------------------------------------------------------------

    def get_list(self, list_id: str) -> AudienceList:
        from campaign_bridge.sandbox.mailchimp.wire import not_found

        found = self.lists.get(list_id)
        if found is None:
            raise not_found()
        return found

    # --- dispatch -------------------------------------------------------------------------

    async def dispatch(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        *,
        api_key: str | None = None,
    ) -> tuple[int, Any]:
        """Run one API operation without HTTP: ``(status, JSON body or None)``.

        ``path`` is relative to ``/3.0`` (``/lists/abc/members``). No auth, limits or faults
        apply (the caller, e.g. ``/batches``, was already authenticated). Errors come back as
        problem documents with their status, exactly as over HTTP. Big answers may hold parts
        already encoded (``orjson.Fragment``, see ``wire.encoded``): encode the body with
        ``wire.dumps`` (or orjson) rather than reading into it.
        """
        if self.dispatcher is None:
            raise RuntimeError("this Sandbox is not attached to an app; call create_app first")
        reply = await self.dispatcher.execute(
            method.upper(), path, dict(query or {}), body, api_key=api_key or ""
        )
        return reply.status, reply.body
