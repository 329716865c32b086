"""The small contract every provider adapter implements (Mailchimp, Brevo, listmonk).

Values crossing this boundary are plain, provider-neutral dataclasses. Adapters translate the
provider's wire format and errors into these, and raise only ``campaign_bridge.errors`` types:
``RetriableError`` once their own retries are exhausted, ``ProviderAuthError`` /
``ProviderError`` for fatal answers. Per-record failures are *returned* as outcomes, never raised,
so one bad record cannot stop a batch.

Vocabulary: an *audience* is the provider's list (a Mailchimp audience, a Brevo or listmonk list),
``list_id`` its id as text; a *member* is a contact in it. The bridge identifies a member by its
own key (the md5 of the trimmed, lowercased address, ``mapping.email_hash``) and its source key;
the provider's own member id (``member_id``) is only ever stored beside them, never used to decide
anything. What a provider can and cannot do is declared in :class:`Capabilities`, so the core asks
instead of knowing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from campaign_bridge.errors import BridgeError, RetriableError

__all__ = [
    "TEMPORARY_REASON_CODES",
    "ActivityEvent",
    "Audience",
    "Campaign",
    "CampaignReport",
    "CampaignStatus",
    "Capabilities",
    "DoctorFinding",
    "MemberRef",
    "MemberSnapshot",
    "MemberStatus",
    "MemberUpsert",
    "MergeFieldSpec",
    "Outcome",
    "OutcomeKind",
    "Provider",
    "Removal",
    "TagChange",
    "WebhookEvent",
    "WebhookKind",
    "WebhookParser",
    "WebhookRequest",
    "activity_event",
]


class MemberStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    CLEANED = "cleaned"
    PENDING = "pending"
    TRANSACTIONAL = "transactional"
    ARCHIVED = "archived"
    FORGOTTEN = "forgotten"  # permanently deleted; can never be re-imported through the API


class Removal(StrEnum):
    """What ``archive_members`` does at this provider (mirror mode's removal)."""

    ARCHIVE = "archive"  # the member leaves the audience but keeps history; it can come back
    UNLIST = "unlist"  # the contact is taken off the list; the account keeps the contact
    DELETE = "delete"  # the contact is deleted (history with it)


@dataclass(frozen=True)
class Capabilities:
    """What a provider supports and its limits; the core branches on these, never on a name.

    ``max_batch`` is the most members one bulk call takes (``upsert_members`` splits larger
    inputs itself; the core sizes its own batches by it). ``max_connections`` is the most
    requests in flight per API key the provider tolerates (the ``concurrency`` setting's ceiling).
    ``webhooks`` says the provider can call the bridge; ``webhook_member_events`` that those calls
    report subscriber changes (unsubscribes, cleaned addresses, address changes), so that
    ``serve`` can rely on them rather than on pull alone.
    """

    max_batch: int
    max_connections: int
    tags: bool = False
    interests: bool = False  # interests (Mailchimp groups) or extra lists set per member
    marketing_permissions: bool = False  # GDPR marketing permissions per member
    double_opt_in: bool = False  # a new member can be created pending, sent a confirmation
    transactional_status: bool = False  # a member can exist for transactional email only
    language: bool = False
    rename: bool = False  # an address can change in place (``MemberUpsert.previous_email``)
    removal: Removal = Removal.ARCHIVE
    webhooks: bool = False
    webhook_member_events: bool = False
    campaign_activity: bool = True  # per-recipient campaign events can be read back


@dataclass(frozen=True)
class DoctorFinding:
    """One check only the provider's adapter knows how to make (``Provider.doctor_checks``):
    ``status`` is ``ok``, ``warn`` or ``fail``; ``fix`` says what to do when it is not ok."""

    name: str
    status: Literal["ok", "warn", "fail"]
    message: str
    fix: str = ""


class CampaignStatus(StrEnum):
    """A campaign's state, whatever the provider calls it (adapters map their own words)."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    PAUSED = "paused"
    CANCELED = "canceled"
    ARCHIVED = "archived"
    UNKNOWN = "unknown"  # a status the adapter does not know; kept rather than guessed

    @property
    def finished(self) -> bool:
        """Nothing about the campaign will change any more (no new recipients or sends)."""
        return self in _FINISHED

    @property
    def has_recipients(self) -> bool:
        """The campaign has gone (or is going) to recipients, so it has activity to read."""
        return self in _HAS_RECIPIENTS


_FINISHED = frozenset({CampaignStatus.SENT, CampaignStatus.CANCELED, CampaignStatus.ARCHIVED})
_HAS_RECIPIENTS = frozenset({CampaignStatus.SENT, CampaignStatus.SENDING})


@dataclass(frozen=True)
class MergeFieldSpec:
    """A custom field of the audience (a Mailchimp merge field, a Brevo attribute, a listmonk
    attribute key): ``tag`` is the name the mapping uses."""

    tag: str
    name: str
    type: str  # text, number, address, phone, date, url, imageurl, radio, dropdown, birthday, zip
    required: bool = False
    default_value: str = ""
    choices: tuple[str, ...] = ()
    date_format: str = ""


@dataclass(frozen=True)
class Audience:
    id: str
    name: str
    merge_fields: tuple[MergeFieldSpec, ...]
    interest_ids: frozenset[str] = frozenset()
    marketing_permission_ids: frozenset[str] = frozenset()
    double_opt_in: bool = False
    # The provider takes any field name without declaring it (listmonk's ``attribs``): a
    # mapped field the audience does not list is sent as the source's value (type "json").
    free_form_fields: bool = False


@dataclass(slots=True)
class MemberUpsert:
    """One member to create or update. ``key`` is the caller's id, echoed back in the outcome.

    ``status_if_new`` applies only if the call creates the member. ``status`` is an explicit,
    consent-rule-approved status change for an existing member; ``None`` leaves an existing
    member's status untouched whatever happens (the adapter must never send a status for it).
    ``exists`` is the caller's hint (from its state) that the provider already has the member,
    so the adapter can pick the right endpoint first; it must stay correct when the hint is wrong.
    ``known_status`` is the member's status as the caller last read it (its status refresh), a
    hint of the same kind: an adapter may take a bulk way for members it names (Brevo's
    import for subscribed ones) only if it checks that the status still holds.

    Not frozen, as push builds one per contact it sends (see ``Outcome``): never change one once
    built; ``dataclasses.replace`` makes the changed copy.
    """

    key: str
    email: str
    status_if_new: MemberStatus
    status: MemberStatus | None = None
    exists: bool | None = None
    known_status: MemberStatus | None = None
    merge_fields: dict[str, object] = field(default_factory=dict)
    interests: dict[str, bool] = field(default_factory=dict)
    marketing_permissions: dict[str, bool] = field(default_factory=dict)
    language: str | None = None
    tags: tuple[str, ...] = ()  # applied only when the member is created (``update_tags`` later)
    # An address change: the member that has ``previous_email`` takes ``email`` (renamed in place,
    # keeping its status and history). Never creates a member; refused when ``email`` is taken.
    previous_email: str | None = None
    # An earlier write of this member was confirmed but a later call of it failed (its
    # ``Outcome.follow_up``): the adapter makes that call again if it is still due, e.g. asks
    # again for the confirmation of a member still pending, never of one that left meanwhile.
    finish_follow_up: bool = False


@dataclass(frozen=True)
class TagChange:
    key: str
    email: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


class OutcomeKind(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    ARCHIVED = "archived"
    REJECTED = "rejected"  # record-level: keep with reason, do not retry until it changes
    RETRY = "retry"  # transient for this record: try again in this run or the next


# Record-level rejections that are temporary on the provider's side (a per-address signup
# throttle): still REJECTED within a run, but they may succeed in a later run without the record
# changing, so a caller may choose to try them again then.
TEMPORARY_REASON_CODES: frozenset[str] = frozenset({"signup_throttled"})


@dataclass(slots=True)
class Outcome:
    """What happened to one record. ``member_id`` is the provider's id for the member, stored
    beside the bridge's key and never used as a key.

    Like ``MemberUpsert``, built once per contact a push sends, so not frozen (a frozen
    dataclass's ``__init__`` costs several times a plain one): never change one once built;
    ``dataclasses.replace`` makes the changed copy."""

    key: str
    kind: OutcomeKind
    member_id: str | None = None
    status: MemberStatus | None = None
    reason_code: str | None = None
    message: str | None = None
    last_changed: datetime | None = None  # the provider's time of the change, when it says
    # CREATED/UPDATED only: the write was made, but a later call of the same upsert failed
    # (REJECTED or RETRY; ``reason_code``/``message`` say which and why). What was made is
    # recorded; the record is sent again next run to finish it.
    follow_up: OutcomeKind | None = None

    def with_failed_follow_up(
        self, failure: BridgeError, reason_code: str, message: str
    ) -> Outcome:
        """This outcome, with a later call about the member failed: retried by the next run
        when ``failure`` was transient, kept as a rejection otherwise."""
        retry = isinstance(failure, RetriableError)
        follow_up = OutcomeKind.RETRY if retry else OutcomeKind.REJECTED
        return replace(self, follow_up=follow_up, reason_code=reason_code, message=message)


@dataclass(frozen=True)
class MemberRef:
    """A member named to the provider by what the bridge knows: its own key ``email_hash``, the
    address while the bridge still has it, and the provider's ``member_id`` as stored beside
    the key. The adapter picks what its API can find a member by; it must not assume that
    ``email_hash`` means anything to the provider."""

    email_hash: str
    email: str | None = None
    member_id: str | None = None


@dataclass(frozen=True)
class MemberSnapshot:
    """A member as the provider has it now (for pull and reconciliation). ``member_id`` is the
    provider's own id; the bridge finds its member by ``email``."""

    member_id: str
    email: str
    status: MemberStatus
    last_changed: datetime | None
    unsubscribe_reason: str | None = None
    merge_fields: dict[str, object] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    # GDPR marketing permissions as (permission id, wording, enabled), when the audience has any
    marketing_permissions: tuple[tuple[str, str, bool], ...] = ()


@dataclass(frozen=True)
class Campaign:
    id: str
    list_id: str | None
    title: str
    subject: str
    status: CampaignStatus
    created_at: datetime | None
    send_time: datetime | None
    emails_sent: int = 0


@dataclass(frozen=True)
class CampaignReport:
    campaign_id: str
    emails_sent: int
    opens_total: int
    unique_opens: int
    clicks_total: int
    unique_clicks: int
    hard_bounces: int
    soft_bounces: int
    unsubscribed: int
    abuse_reports: int
    last_open: datetime | None = None
    last_click: datetime | None = None


@dataclass(frozen=True)
class ActivityEvent:
    """One per-contact event: sent, open, click, bounce or unsubscribe."""

    campaign_id: str
    email: str
    action: str  # sent | open | click | bounce | unsubscribe
    occurred_at: datetime
    url: str | None = None
    bounce_type: str | None = None  # hard | soft
    reason: str | None = None
    ip: str | None = None


def _event_by_dict(
    campaign_id: str,
    email: str,
    action: str,
    occurred_at: datetime,
    url: str | None,
    bounce_type: str | None,
    ip: str | None,
) -> ActivityEvent:
    """``ActivityEvent(...)`` built by filling the new instance's ``__dict__`` at once: the
    frozen dataclass ``__init__`` (one ``object.__setattr__`` per field) was about a third of
    the cost of reading an activity page. Same object, same equality; used only while
    ``_EVENT_BY_DICT`` holds (plain dataclass fields, no slots, no ``__post_init__``)."""
    event = object.__new__(ActivityEvent)
    event.__dict__.update(
        {
            "campaign_id": campaign_id,
            "email": email,
            "action": action,
            "occurred_at": occurred_at,
            "url": url,
            "bounce_type": bounce_type,
            "reason": None,
            "ip": ip,
        }
    )
    return event


def _event_by_init(
    campaign_id: str,
    email: str,
    action: str,
    occurred_at: datetime,
    url: str | None,
    bounce_type: str | None,
    ip: str | None,
) -> ActivityEvent:
    return ActivityEvent(campaign_id, email, action, occurred_at, url, bounce_type, None, ip)


_EVENT_BY_DICT = (
    tuple(f.name for f in fields(ActivityEvent))
    == ("campaign_id", "email", "action", "occurred_at", "url", "bounce_type", "reason", "ip")
    and not hasattr(ActivityEvent, "__slots__")
    and not hasattr(ActivityEvent, "__post_init__")
)
activity_event = _event_by_dict if _EVENT_BY_DICT else _event_by_init
"""``ActivityEvent`` (without ``reason``), built the fastest safe way."""


class Provider(Protocol):
    """What the push, pull and webhook code needs from a provider. Keep it small."""

    name: str
    capabilities: Capabilities

    async def check(self) -> dict[str, object]:
        """Verify the credentials and reachability; return account facts for doctor."""
        ...

    async def audience(self, list_id: str) -> Audience:
        """The audience with its custom fields, interests and marketing permissions."""
        ...

    async def upsert_members(self, list_id: str, members: Sequence[MemberUpsert]) -> list[Outcome]:
        """Create or update members in the provider's bulk call; one outcome per member."""
        ...

    async def update_tags(self, list_id: str, changes: Sequence[TagChange]) -> list[Outcome]:
        """Add and remove tags on existing members; one outcome per change."""
        ...

    async def archive_members(
        self, list_id: str, emails: Sequence[tuple[str, str]]
    ) -> list[Outcome]:
        """Remove members given as ``(key, email)`` from the audience the way
        ``capabilities.removal`` says; one outcome per member."""
        ...

    async def read_members(
        self, list_id: str, emails: Sequence[tuple[str, str]]
    ) -> dict[str, MemberSnapshot | None]:
        """The present state of members given as ``(key, email)``, by key; ``None`` when the
        provider does not have the member (never added, or permanently deleted)."""
        ...

    def members_changed_since(
        self, list_id: str, since: datetime | None
    ) -> AsyncIterator[MemberSnapshot]:
        """Members whose record changed after ``since`` (all members when ``None``)."""
        ...

    def server_time(self) -> datetime | None:
        """The provider's own clock at its latest answer, or ``None`` when it is not known.

        A cursor over the provider's change times taken from its own clock needs no allowance
        for the difference between its clock and ours.
        """
        ...

    def campaigns(self, since: datetime | None) -> AsyncIterator[Campaign]:
        """Campaigns created or sent after ``since``."""
        ...

    async def campaign_report(self, campaign_id: str) -> CampaignReport:
        """Aggregate counters of one campaign."""
        ...

    def email_activity(
        self, campaign_id: str, since: datetime | None, *, include_sent: bool = False
    ) -> AsyncIterator[ActivityEvent]:
        """Per-contact events of one campaign after ``since`` (opens, clicks, bounces,
        unsubscribes; one ``sent`` per recipient too when ``include_sent``)."""
        ...

    async def contact_count(self, list_id: str) -> int | None:
        """How many members the audience holds, whatever their status (archived included;
        permanently deleted ones are gone); ``None`` when the provider does not say."""
        ...

    async def delete_member_permanently(self, list_id: str, member: MemberRef) -> str:
        """Erase a member at the provider for good (GDPR erasure); return ``deleted``, or
        ``not_found`` when the provider has no such member (or ``member`` gives the adapter
        nothing it can find a member by)."""
        ...

    async def member_export(self, list_id: str, member: MemberRef) -> dict[str, object] | None:
        """Everything the provider holds about a member (record, tags, activity, notes), as
        plain JSON values for an access request; ``None`` when there is no such member."""
        ...

    async def register_webhook(self, list_id: str, url: str) -> str:
        """Register ``url`` for the audience's member events; return the provider's webhook id
        (only called when ``capabilities.webhooks``)."""
        ...

    async def webhook_urls(self, list_id: str) -> list[str]:
        """The URLs registered as webhooks on the audience (for doctor)."""
        ...

    async def doctor_checks(
        self, audience: Audience, *, double_opt_in: bool
    ) -> list[DoctorFinding]:
        """Checks of this provider's own rules for ``doctor``, after ``check()`` and
        ``audience()`` succeeded (``double_opt_in``: the sync asks for it); empty when there
        is nothing more to check. Never raises for a failed check: it is a finding."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


# --------------------------------------------------------------------------- webhooks


class WebhookKind(StrEnum):
    """What a webhook event says happened, whatever the provider calls it."""

    SUBSCRIBE = "subscribe"  # the member is subscribed
    UNSUBSCRIBE = "unsubscribe"  # the member unsubscribed (or complained: reason says)
    ARCHIVE = "archive"  # removed from the list, history kept (may hide a permanent delete)
    DELETE = "delete"  # deleted permanently
    CLEANED = "cleaned"  # the provider stopped sending: the address bounces hard
    BOUNCE = "bounce"  # one message bounced; no status change
    PROFILE = "profile"  # fields changed; no status change
    ADDRESS_CHANGE = "address_change"  # ``previous_email`` is now ``email``
    CAMPAIGN = "campaign"  # about a campaign, not a member
    OTHER = "other"  # stored for audit, changes nothing


@dataclass(frozen=True)
class WebhookEvent:
    """One provider-neutral webhook event, as a :class:`WebhookParser` reads it.

    ``event_id`` deduplicates redeliveries (the provider's event id, or a hash of the body when
    it sends none; at most 64 characters). ``raw`` is the provider's own payload of this one
    event as JSON values: it is what the inbox stores and what :meth:`WebhookParser.load` reads
    back, so an event can be audited and re-read after a restart.
    """

    kind: WebhookKind
    event_id: str
    raw: Mapping[str, Any]
    email: str | None = None  # for ADDRESS_CHANGE, the new address
    list_id: str | None = None
    occurred_at: datetime | None = None  # the provider's time; None: when it was received
    reason: str | None = None
    campaign_id: str | None = None
    previous_email: str | None = None  # ADDRESS_CHANGE only
    member_id: str | None = None  # the provider's id for the member, when the body has one

    @property
    def member_key(self) -> str | None:
        """The bridge's key for the member: the trimmed, lowercased address."""
        return self.email.strip().lower() if self.email else None


@dataclass(frozen=True)
class WebhookRequest:
    """An HTTP request to ``/webhooks/{provider}/{token}``; header names are lowercase."""

    method: str
    token: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


class WebhookParser(Protocol):
    """A provider's webhook format, looked up by provider name (no API client needed).

    The server calls, in order: :meth:`authenticate` (before the body is read: ``body`` is
    empty), :meth:`handshake` for anything but ``POST``, then :meth:`parse` with the body. The
    applier calls :meth:`load` on what was stored. Raise ``WebhookPayloadError`` for a body that
    is not this provider's payload (answered ``400``).
    """

    provider: str
    #: an event without a list concerns every list of the account (a Brevo blocklisting): the
    #: applier applies it to each sync of the provider, with that sync's list
    account_wide: bool

    def authenticate(self, request: WebhookRequest, tokens: Sequence[str]) -> bool:
        """Whether the request proves it comes from the provider (a token in the URL, a
        bearer or basic ``authorization`` header...); compare in constant time."""
        ...

    def handshake(self, request: WebhookRequest) -> str | None:
        """The text answered (``200``) to a validating request such as Mailchimp's ``GET``;
        ``None``: the method is not allowed (``405``)."""
        ...

    def parse(self, request: WebhookRequest) -> list[WebhookEvent]:
        """The events one delivery carries (one or more)."""
        ...

    def load(self, raw: Mapping[str, Any], event_id: str) -> WebhookEvent:
        """The event again from its stored ``raw`` payload."""
        ...
