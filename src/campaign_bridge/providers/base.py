"""The small contract every provider adapter implements (Mailchimp now; Brevo and listmonk next).

Values crossing this boundary are plain, provider-neutral dataclasses. Adapters translate the
provider's wire format and errors into these, and raise only ``campaign_bridge.errors`` types:
``RetriableError`` once their own retries are exhausted, ``ProviderAuthError`` /
``ProviderError`` for fatal answers. Per-record failures are *returned* as outcomes, never raised,
so one bad record cannot stop a batch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

__all__ = [
    "TEMPORARY_REASON_CODES",
    "ActivityEvent",
    "Audience",
    "Campaign",
    "CampaignReport",
    "MemberSnapshot",
    "MemberStatus",
    "MemberUpsert",
    "MergeFieldSpec",
    "Outcome",
    "OutcomeKind",
    "Provider",
    "TagChange",
]


class MemberStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    CLEANED = "cleaned"
    PENDING = "pending"
    TRANSACTIONAL = "transactional"
    ARCHIVED = "archived"
    FORGOTTEN = "forgotten"  # permanently deleted; can never be re-imported through the API


@dataclass(frozen=True)
class MergeFieldSpec:
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


@dataclass(frozen=True)
class MemberUpsert:
    """One member to create or update. ``key`` is the caller's id, echoed back in the outcome.

    ``status_if_new`` applies only if the call creates the member. ``status`` is an explicit,
    consent-rule-approved status change for an existing member; ``None`` leaves an existing
    member's status untouched whatever happens (the adapter must never send a status for it).
    ``exists`` is the caller's hint (from its state) that the provider already has the member,
    so the adapter can pick the right endpoint first; it must stay correct when the hint is wrong.
    """

    key: str
    email: str
    status_if_new: MemberStatus
    status: MemberStatus | None = None
    exists: bool | None = None
    merge_fields: dict[str, object] = field(default_factory=dict)
    interests: dict[str, bool] = field(default_factory=dict)
    marketing_permissions: dict[str, bool] = field(default_factory=dict)
    language: str | None = None
    tags: tuple[str, ...] = ()  # applied only when the member is created (provider rule)
    # An address change: the member that has ``previous_email`` takes ``email`` (renamed in place,
    # keeping its status and history). Never creates a member; refused when ``email`` is taken.
    previous_email: str | None = None


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


# Record-level rejections that are temporary on the provider's side (e.g. Mailchimp's per-address
# signup throttle): still REJECTED within a run, but they may succeed in a later run without the
# record changing, so a caller may choose to try them again then.
TEMPORARY_REASON_CODES: frozenset[str] = frozenset({"signup_throttled"})


@dataclass(frozen=True)
class Outcome:
    key: str
    kind: OutcomeKind
    member_id: str | None = None
    status: MemberStatus | None = None
    reason_code: str | None = None
    message: str | None = None
    last_changed: datetime | None = None  # the provider's time of the change, when it says


@dataclass(frozen=True)
class MemberSnapshot:
    """A member as the provider has it now (for pull and reconciliation)."""

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
    status: str
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


class Provider(Protocol):
    """What the push, pull and webhook code needs from a provider. Keep it small."""

    name: str

    async def check(self) -> dict[str, object]:
        """Verify the credentials and reachability; return account facts for doctor."""
        ...

    async def audience(self, list_id: str) -> Audience:
        """The audience with its merge fields, interests and marketing permissions."""
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
        """Archive members given as ``(key, email)``; one outcome per member."""
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

    async def delete_member_permanently(self, list_id: str, member_id: str) -> str:
        """Erase a member at the provider for good (GDPR erasure); return ``deleted``, or
        ``not_found`` when the provider has no such member. ``member_id`` is the subscriber
        hash (md5 of the lowercased address)."""
        ...

    async def member_export(self, list_id: str, member_id: str) -> dict[str, object] | None:
        """Everything the provider holds about a member (record, tags, activity, notes), as
        plain JSON values for an access request; ``None`` when there is no such member."""
        ...

    async def register_webhook(self, list_id: str, url: str) -> str:
        """Register ``url`` for every list event; return the provider's webhook id."""
        ...

    async def webhook_urls(self, list_id: str) -> list[str]:
        """The URLs registered as webhooks on the audience (for doctor)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
