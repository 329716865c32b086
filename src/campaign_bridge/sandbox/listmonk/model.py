"""The state of one emulated listmonk instance (v6.2.0): API users, subscribers with per-list
subscriptions, lists, campaigns with their generated activity, bounces and the importer.

Everything is in memory behind one re-entrant lock; ``persistence`` snapshots it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from campaign_bridge.sandbox._common import Clock, FaultBox, Ids, Latency, SandboxSettings

__all__ = [
    "ALL_PERMISSIONS",
    "FAULT_KINDS",
    "ApiUser",
    "Bounce",
    "Campaign",
    "ListmonkConfig",
    "ListmonkSandbox",
    "MailingList",
    "Subscriber",
    "Subscription",
]

FAULT_KINDS = ("429", "500", "502", "503", "timeout", "drop")

#: the permissions of listmonk's user roles a sync uses (``internal/auth/models.go``)
ALL_PERMISSIONS = frozenset(
    {
        "subscribers:get",
        "subscribers:get_all",
        "subscribers:manage",
        "subscribers:import",
        "subscribers:sql_query",
        "lists:get_all",
        "lists:manage_all",
        "campaigns:get",
        "campaigns:get_all",
        "campaigns:manage",
        "campaigns:manage_all",
        "campaigns:send",
        "campaigns:get_analytics",
        "bounces:get",
        "bounces:manage",
        "webhooks:post_bounce",
    }
)


def _default_bounce_actions() -> dict[str, dict[str, Any]]:
    # listmonk's defaults (settings → bounces)
    return {
        "soft": {"count": 2, "action": "none"},
        "hard": {"count": 1, "action": "blocklist"},
        "complaint": {"count": 1, "action": "blocklist"},
    }


@dataclass
class ListmonkConfig(SandboxSettings):
    """Knobs of one listmonk sandbox; every default behaves like a fresh listmonk install."""

    #: name of the seeded API user
    api_user: str = "bridge"
    #: ``app.send_optin_confirmation``: e-mail double opt-in lists' new unconfirmed members
    send_optin_confirmation: bool = True
    #: ``privacy.individual_tracking``: views/clicks tied to subscribers
    individual_tracking: bool = False
    #: ``bounce.actions``: per type a count threshold and ``none|unsubscribe|blocklist|delete``
    bounce_actions: dict[str, dict[str, Any]] = field(default_factory=_default_bounce_actions)
    #: ``bounce.webhooks_enabled`` (``POST /webhooks/bounce``; 404 when off, as the route is
    #: not registered)
    bounce_webhooks: bool = False
    #: sandbox seconds an import takes per 10,000 rows (0: done by the next request)
    import_seconds_per_10k: float = 0.0
    #: sandbox seconds a running campaign takes before it is finished (0: the next request)
    campaign_send_seconds: float = 0.0
    #: seconds after a campaign finishes over which its views and clicks are spread
    activity_spread_seconds: float = 6 * 3600


@dataclass
class ApiUser:
    """An API user (Admin → Users, type ``api``); ``perms`` None is the Super Admin role."""

    username: str
    token: str
    perms: frozenset[str] | None = None

    def can(self, perm: str) -> bool:
        return self.perms is None or perm in self.perms


@dataclass(slots=True)
class Subscription:
    status: str
    created_at: float
    updated_at: float
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Subscriber:
    id: int
    uuid: str
    email: str
    name: str
    attribs: dict[str, Any]
    status: str
    created_at: float
    updated_at: float
    #: list id -> subscription
    lists: dict[int, Subscription] = field(default_factory=dict)


#: a hex digit with its two high bits set to the RFC 4122 variant (10)
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


class Members(dict[int, None]):
    """A list's subscriber ids (insertion order, as a dict), with their id order kept for
    paging (as PostgreSQL reads ``subscriber_lists`` by index): an id above every other is
    appended, the usual case as ids only grow; any other change re-sorts on the next read."""

    __slots__ = ("_ordered",)

    def __init__(self, pairs: Iterable[tuple[int, None]] = ()) -> None:
        super().__init__(pairs)
        self._ordered: list[int] | None = sorted(self)

    def __setitem__(self, key: int, value: None) -> None:
        ordered = self._ordered
        if ordered is not None and key not in self:
            if not ordered or key > ordered[-1]:
                ordered.append(key)
            else:
                self._ordered = None
        super().__setitem__(key, value)

    def __delitem__(self, key: int) -> None:
        super().__delitem__(key)
        self._ordered = None

    def pop(self, key: int, default: Any = None) -> Any:
        if key in self:
            self._ordered = None
        return super().pop(key, default)

    def ordered(self) -> list[int]:
        """The ids in ascending order (the caller must not change the list)."""
        if self._ordered is None:
            self._ordered = sorted(self)
        return self._ordered


@dataclass
class MailingList:
    id: int
    uuid: str
    name: str
    type: str
    optin: str
    status: str
    tags: list[str]
    description: str
    created_at: float
    updated_at: float
    #: subscriber id -> None (insertion order), with the ids' order kept
    members: Members = field(default_factory=Members)


@dataclass
class Campaign:
    id: int
    uuid: str
    name: str
    subject: str
    from_email: str
    type: str
    status: str
    content_type: str
    body: str
    altbody: str | None
    send_at: float | None
    list_ids: list[int]
    tags: list[str]
    template_id: int
    messenger: str
    headers: list[dict[str, Any]]
    created_at: float
    updated_at: float
    started_at: float | None = None
    to_send: int = 0
    sent: int = 0
    #: (epoch, subscriber id)
    views: list[tuple[float, int]] = field(default_factory=list)
    #: (epoch, subscriber id, url)
    clicks: list[tuple[float, int, str]] = field(default_factory=list)
    #: when the running campaign finishes (sandbox time)
    finish_at: float | None = None


@dataclass
class Bounce:
    id: int
    subscriber_id: int
    campaign_id: int | None
    type: str
    source: str
    meta: dict[str, Any]
    created_at: float


class ListmonkSandbox:
    """The state of one emulated listmonk instance, shared by every request to an app."""

    def __init__(self, config: ListmonkConfig | None = None) -> None:
        self.config = config or ListmonkConfig()
        self.lock = threading.RLock()
        self.clock = Clock(self.config.start_time)
        self.ids = Ids(self.config.seed)
        self.faults = FaultBox(FAULT_KINDS, self.config.seed)
        self.latency = Latency(self.config.latency, self.config.latency_per_item)
        self.users: dict[str, ApiUser] = {}
        self.default_user = ""
        #: by id, in id order (ids only grow; a subscriber is stored once, when made)
        self.subscribers: dict[int, Subscriber] = {}
        self.by_email: dict[str, int] = {}
        self.by_uuid: dict[str, int] = {}
        self.lists: dict[int, MailingList] = {}
        self.campaigns: dict[int, Campaign] = {}
        self.bounces: dict[int, Bounce] = {}
        #: opt-in e-mails "sent": {"subscriber_id", "email", "list_ids", "at"}
        self.optin_mails: list[dict[str, Any]] = []
        #: per-outcome probabilities of generated campaign activity
        self.rates: dict[str, float] = {"view": 0.45, "click": 0.12, "bounce": 0.03, "hard": 0.5}
        self.extensions: dict[str, Any] = {}

    def now(self) -> float:
        """Epoch seconds to the microsecond, as PostgreSQL's ``timestamptz`` keeps them (so a
        time read back from a response compares equal to the stored one)."""
        return round(self.clock.timestamp(), 6)

    def new_uuid(self) -> str:
        """A seeded (deterministic) version-4 UUID: ``uuid.UUID(hex, version=4)``'s text,
        written directly (the version nibble 4, the variant bits 10)."""
        h = self.ids.hex(32)
        variant = _VARIANT[h[16]]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"

    @property
    def default_token(self) -> str:
        user = self.users.get(self.default_user)
        return user.token if user else ""

    def new_user(
        self, username: str | None = None, token: str | None = None, perms: Any = None
    ) -> ApiUser:
        """Create (or replace) an API user; ``perms`` None is Super Admin."""
        with self.lock:
            name = username or f"api-{self.ids.next('user')}"
            user = ApiUser(
                name, token or self.ids.hex(32), frozenset(perms) if perms is not None else None
            )
            self.users[name] = user
            return user

    def subscriber_by(self, identifier: str) -> Subscriber | None:
        """By id, uuid or e-mail."""
        text = identifier.strip()
        if text.isdigit():
            return self.subscribers.get(int(text))
        sub_id = self.by_uuid.get(text) or self.by_email.get(text.lower())
        return self.subscribers.get(sub_id) if sub_id else None
