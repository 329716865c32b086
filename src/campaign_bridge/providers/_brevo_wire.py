"""Brevo's wire format to and from the provider contract's plain values. Pure: no I/O.

Member status on one list (Brevo has contacts in an account, and lists they belong to):

- ``emailBlacklisted`` -> ``cleaned`` when Brevo recorded a hard bounce for the contact (only
  the single-contact read carries ``statistics``), else ``unsubscribed``. A blocklisting is
  account-wide and the bridge never lifts it.
- the list in ``listUnsubscribed`` -> ``unsubscribed`` (the contact left this list);
- on the list -> ``subscribed``;
- not on the list, ``DOUBLE_OPT-IN`` = 2 ("No": asked, not yet confirmed) -> ``pending``;
- otherwise (in the account, not on the list) -> ``archived``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from campaign_bridge.providers.base import (
    ActivityEvent,
    Audience,
    Campaign,
    CampaignReport,
    CampaignStatus,
    MemberSnapshot,
    MemberStatus,
    MergeFieldSpec,
    activity_event,
)

__all__ = [
    "DOI_ATTRIBUTE",
    "EXPORT_ACTIONS",
    "activity_from_export",
    "audience_from",
    "campaign_from",
    "exports_for",
    "normal_email",
    "parse_time",
    "report_from",
    "snapshot_from",
    "status_of",
    "valid_email",
]

#: Brevo's standard category attribute for double opt-in: 1 = Yes (confirmed), 2 = No (asked)
DOI_ATTRIBUTE = "DOUBLE_OPT-IN"
_DOI_ASKED = frozenset({2, "2", "No", "no"})

# The contract's field types, from Brevo's attribute types.
_TYPES = {
    "text": "text",
    "float": "number",
    "date": "date",
    "boolean": "boolean",
    "id": "text",
    "category": "dropdown",
    "multiple-choice": "dropdown",
    "user": "text",
}
_EMAIL = re.compile(
    r"^[^@\s,;<>()\[\]\\\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)

#: exportRecipients ``recipientsType`` -> (action, bounce type)
EXPORT_ACTIONS: dict[str, tuple[str, str | None]] = {
    "openers": ("open", None),
    "clickers": ("click", None),
    "hardBounces": ("bounce", "hard"),
    "softBounces": ("bounce", "soft"),
    "unsubscribed": ("unsubscribe", None),
    "all": ("sent", None),
}

#: exportRecipients ``recipientsType`` -> the ``globalStats`` counter of its rows
EXPORT_COUNTERS = {
    "openers": "uniqueViews",
    "clickers": "uniqueClicks",
    "hardBounces": "hardBounces",
    "softBounces": "softBounces",
    "unsubscribed": "unsubscriptions",
    "all": "sent",
}


def exports_for(stats: Mapping[str, Any] | None, *, include_sent: bool) -> list[str]:
    """The ``recipientsType`` exports to ask for, in ``EXPORT_ACTIONS`` order: without
    ``include_sent`` not ``all``; with the campaign's ``globalStats``, not a kind they count
    none of (unknown counters: every kind)."""
    kinds = [k for k in EXPORT_ACTIONS if include_sent or k != "all"]
    if stats is None:
        return kinds
    return [
        k
        for k in kinds
        if not isinstance(stats.get(EXPORT_COUNTERS[k]), int) or stats[EXPORT_COUNTERS[k]] > 0
    ]


def normal_email(email: str) -> str:
    return email.strip().lower()


def valid_email(normal: str) -> bool:
    """Whether an address in normal form (``normal_email``) is one Brevo takes."""
    return _EMAIL.match(normal) is not None


def parse_time(value: object) -> datetime | None:
    """Brevo's ISO-8601 times (``Z``, offsets, or a naive UTC time); ``None`` if not one."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _hard_bounced(contact: Mapping[str, Any]) -> bool:
    statistics = contact.get("statistics")
    return isinstance(statistics, Mapping) and bool(statistics.get("hardBounces"))


def status_of(contact: Mapping[str, Any], list_id: int) -> MemberStatus:
    """The contact's status on ``list_id`` (module docstring)."""
    if contact.get("emailBlacklisted"):
        return MemberStatus.CLEANED if _hard_bounced(contact) else MemberStatus.UNSUBSCRIBED
    if list_id in (contact.get("listUnsubscribed") or ()):
        return MemberStatus.UNSUBSCRIBED
    if list_id in (contact.get("listIds") or ()):
        return MemberStatus.SUBSCRIBED
    attributes = contact.get("attributes") or {}
    if attributes.get(DOI_ATTRIBUTE) in _DOI_ASKED:
        return MemberStatus.PENDING
    return MemberStatus.ARCHIVED


def snapshot_from(contact: Mapping[str, Any], list_id: int) -> MemberSnapshot | None:
    email = contact.get("email")
    if not email:
        return None  # an SMS-only contact: not a member of an e-mail audience
    attributes = dict(contact.get("attributes") or {})
    return MemberSnapshot(
        member_id=str(contact.get("id")),
        email=str(email),
        status=status_of(contact, list_id),
        last_changed=parse_time(contact.get("modifiedAt")),
        merge_fields=attributes,
    )


def audience_from(lst: Mapping[str, Any], attributes: Sequence[Mapping[str, Any]]) -> Audience:
    """The list and the account's writable attributes as merge fields."""
    fields = []
    for item in attributes:
        if item.get("category") not in ("normal", "category"):
            continue  # transactional, calculated and global attributes are not contact data
        kind = str(item.get("type") or ("category" if item.get("enumeration") else "text"))
        choices = tuple(str(e.get("label")) for e in item.get("enumeration") or ())
        name = str(item.get("name"))
        fields.append(
            MergeFieldSpec(tag=name, name=name, type=_TYPES.get(kind, kind), choices=choices)
        )
    return Audience(
        id=str(lst.get("id")), name=str(lst.get("name") or ""), merge_fields=tuple(fields)
    )


# Brevo's campaign statuses in the contract's words.
CAMPAIGN_STATUS = {
    "draft": CampaignStatus.DRAFT,
    "queued": CampaignStatus.SCHEDULED,
    "in_process": CampaignStatus.SENDING,
    "inProcess": CampaignStatus.SENDING,
    "sent": CampaignStatus.SENT,
    "suspended": CampaignStatus.PAUSED,
    "archive": CampaignStatus.ARCHIVED,
}


def campaign_from(item: Mapping[str, Any]) -> Campaign:
    recipients = item.get("recipients") or {}
    lists = recipients.get("lists") or ()
    stats = (item.get("statistics") or {}).get("globalStats") or {}
    return Campaign(
        id=str(item.get("id")),
        list_id=str(lists[0]) if lists else None,
        title=str(item.get("name") or ""),
        subject=str(item.get("subject") or ""),
        status=CAMPAIGN_STATUS.get(str(item.get("status") or ""), CampaignStatus.UNKNOWN),
        created_at=parse_time(item.get("createdAt")),
        send_time=parse_time(item.get("sentDate")),
        emails_sent=int(stats.get("sent") or 0),
    )


def report_from(campaign_id: str, statistics: Mapping[str, Any]) -> CampaignReport:
    """``globalStats`` as the contract's counters; total clicks are the sum of ``linksStats``
    (Brevo's global stats count unique clickers only)."""
    stats = statistics.get("globalStats") or {}
    links = statistics.get("linksStats") or {}
    clicks_total = sum(int(v) for v in links.values() if isinstance(v, int | float))
    return CampaignReport(
        campaign_id=campaign_id,
        emails_sent=int(stats.get("sent") or 0),
        opens_total=int(stats.get("viewed") or 0),
        unique_opens=int(stats.get("uniqueViews") or 0),
        clicks_total=max(clicks_total, int(stats.get("uniqueClicks") or 0)),
        unique_clicks=int(stats.get("uniqueClicks") or 0),
        hard_bounces=int(stats.get("hardBounces") or 0),
        soft_bounces=int(stats.get("softBounces") or 0),
        unsubscribed=int(stats.get("unsubscriptions") or 0),
        abuse_reports=int(stats.get("complaints") or 0),
    )


def activity_from_export(
    campaign_id: str, recipients_type: str, text: str, since: datetime | None
) -> Iterator[ActivityEvent]:
    """Events of one ``exportRecipients`` file: one row per recipient (``EMAIL`` and
    ``EVENT_TIME`` (or ``DATE``) columns, ``;``- or ``,``-separated, quoted as CSV; rows
    without a time are skipped). Hot path (one call per row of every export): the C CSV
    reader, each distinct time parsed once."""
    action, bounce = EXPORT_ACTIONS[recipients_type]
    head, _, _ = text.partition("\n")
    if not head.strip():
        return
    reader = csv.reader(io.StringIO(text), delimiter=";" if ";" in head else ",")
    columns = [str(name).strip().upper() for name in next(reader)]
    if "EMAIL" not in columns:
        return
    at_email = columns.index("EMAIL")
    found = [columns.index(n) for n in ("EVENT_TIME", "DATE") if n in columns]
    if not found:
        return
    at_time, at_date = found[0], found[-1]  # the time, else the date (the same if one)
    width = max(at_email, *found) + 1
    times: dict[str, datetime | None] = {}
    for row in reader:
        if len(row) < width:
            continue
        email = row[at_email].strip()
        stamp = row[at_time] or row[at_date]
        when = times.get(stamp, _UNSEEN)
        if when is _UNSEEN:
            if len(times) >= _TIMES_KEPT:  # times to the millisecond: keep the cache bounded
                times.clear()
            when = times[stamp] = parse_time(stamp)
        if not email or when is None or (since is not None and when < since):
            continue
        yield activity_event(campaign_id, email, action, when, None, bounce, None)


_UNSEEN = datetime.min
_TIMES_KEPT = 20_000
