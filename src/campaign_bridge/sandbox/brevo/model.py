"""The Brevo sandbox's in-memory state: one emulated Brevo account.

Mutation discipline (as in the Mailchimp sandbox): every read-modify-write happens while holding
``sandbox.lock``; synchronous handlers are called with it held, coroutine handlers take it
themselves and never await while holding it.

Extension points: ``sandbox.listen(fn)`` — ``fn(ContactEvent)`` after every contact change
(webhooks use it); ``sandbox.register_state(name, dump, load, reset)`` — a module's own state
in persistence and reset.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from campaign_bridge.sandbox._common import (
    Clock,
    FaultBox,
    Ids,
    Latency,
    Observable,
    SandboxSettings,
)

__all__ = [
    "ATTRIBUTE_TYPES",
    "FAULT_KINDS",
    "Attribute",
    "BrevoConfig",
    "BrevoSandbox",
    "Contact",
    "ContactEvent",
    "ContactList",
    "Folder",
]

ATTRIBUTE_TYPES = ("text", "date", "float", "boolean", "id", "category", "multiple-choice")
ATTRIBUTE_CATEGORIES = ("normal", "transactional", "category", "calculated", "global")
FAULT_KINDS = ("400", "425", "429", "500", "502", "503", "timeout", "drop")


@dataclass
class BrevoConfig(SandboxSettings):
    """Knobs of one Brevo sandbox; every default behaves like Brevo (general-tier limits)."""

    #: rate limits: off by default (turn on with ``rate_limits=True`` or the control API)
    rate_limits: bool = False
    contacts_rps: int = 10
    contacts_rph: int = 36_000
    other_rph: int = 100
    #: send ``Retry-After`` on 429 (Brevo does not; the SDK's backoff reads it when present)
    retry_after: bool = False
    #: limit over an endpoint's maximum: 400 out_of_range (False) or clamp (True)
    clamp_limits: bool = False
    #: attribute names the account does not have, on create/update: 400 (True) or ignored
    reject_unknown_attributes: bool = True
    #: with ``updateEnabled``, ``listIds`` replaces the contact's lists instead of adding
    upsert_replaces_lists: bool = False
    #: import processes: sandbox seconds queued, then in process, before completing
    import_queue_seconds: float = 0.0
    import_process_seconds: float = 0.0
    #: request body cap for /contacts/import (Brevo: 10 MB)
    import_max_bytes: int = 10 * 1024 * 1024


@dataclass
class Attribute:
    name: str
    category: str
    type: str | None
    #: category attributes: [{"value": int, "label": str}]
    enumeration: list[dict[str, Any]] = field(default_factory=list)
    #: multiple-choice attributes: option labels
    options: list[str] = field(default_factory=list)
    #: calculated/global attributes
    value: str = ""


@dataclass(slots=True)
class Contact:
    id: int
    email: str | None
    ext_id: str | None
    created_at: float
    #: changed only through ``recent.touch``, which keeps the index ``modifiedSince`` reads
    modified_at: float
    attributes: dict[str, Any] = field(default_factory=dict)
    email_blacklisted: bool = False
    sms_blacklisted: bool = False
    #: list id -> None (insertion order)
    list_ids: dict[int, None] = field(default_factory=dict)
    #: lists the contact unsubscribed from (None: none; allocated on first use, as most
    #: contacts have none and a million empty dicts cost 64 MB)
    list_unsubscribed: dict[int, None] | None = None
    smtp_blacklist_sender: tuple[str, ...] = ()
    #: why the contact is blocklisted: "", "api", "unsubscribe", "hard_bounce", "spam", "admin"
    blacklist_reason: str = ""


@dataclass
class ContactList:
    id: int
    name: str
    folder_id: int
    created_at: float
    #: contact id -> None (insertion order)
    members: dict[int, None] = field(default_factory=dict)


@dataclass
class Folder:
    id: int
    name: str


@dataclass
class ContactEvent:
    """A contact change: ``kind`` is ``created``, ``updated``, ``deleted``, ``list_addition``,
    ``unsubscribed`` or ``blocklisted``; ``changed`` names what changed (attribute names,
    ``emailBlacklisted``…); ``list_ids`` the lists concerned; ``source`` ``api``, ``user``
    (the contact, e.g. an unsubscribe link) or ``admin`` (the web app; control API)."""

    kind: str
    contact_id: int
    email: str | None
    at: float
    source: str = "api"
    changed: dict[str, Any] = field(default_factory=dict)
    list_ids: list[int] = field(default_factory=list)
    api_key_name: str = ""


Listener = Callable[[ContactEvent], None]


class BrevoSandbox(Observable[ContactEvent]):
    """The state of one emulated Brevo account, shared by every request to an app."""

    def __init__(self, config: BrevoConfig | None = None) -> None:
        super().__init__()
        self.config = config or BrevoConfig()
        self.lock = threading.RLock()
        self.clock = Clock(self.config.start_time)
        self.ids = Ids(self.config.seed)
        self.faults = FaultBox(FAULT_KINDS, self.config.seed)
        self.latency = Latency(self.config.latency, self.config.latency_per_item)
        #: API key -> {"name": …}
        self.api_keys: dict[str, dict[str, Any]] = {}
        self.default_api_key = ""
        self.contacts: dict[int, Contact] = {}
        self.by_email: dict[str, int] = {}
        self.by_ext_id: dict[str, int] = {}
        self.by_sms: dict[str, int] = {}
        #: contact ids, the least recently changed first (``recent``: ``modifiedSince`` answered
        #: from it); ``changed_in_order`` while their ``modified_at`` never go down along it
        self.changed: dict[int, None] = {}
        self.changed_in_order = True
        self.changed_last = -math.inf
        self.attributes: dict[str, Attribute] = {}
        self.lists: dict[int, ContactList] = {}
        self.folders: dict[int, Folder] = {}
        self.extensions: dict[str, Any] = {}
        #: bumped by every call that may write (non-GET, control, applied imports): cached
        #: listings (``contacts.select_contacts``) are valid while it is unchanged
        self.write_seq = 0
        #: name of the API key whose call is being handled ("" outside API calls)
        self.acting_key_name = ""

    # --- time -------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.timestamp()

    # --- keys ---------------------------------------------------------------------------------

    def new_api_key(self, key: str | None = None, name: str = "sandbox") -> str:
        """Create (or register) an API key ``xkeysib-<64 hex>-<16 alnum>``."""
        with self.lock:
            key = key or f"xkeysib-{self.ids.hex(64)}-{self.ids.hex(16)}"
            self.api_keys[key] = {"name": name, "created_at": self.now()}
            return key
