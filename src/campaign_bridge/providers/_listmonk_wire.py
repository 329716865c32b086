"""listmonk's wire format as plain values: statuses, subscribers, campaigns, queries, uploads.

Pure functions only (no I/O), so the rules are tested without a server. The status mapping:

- a ``blocklisted`` subscriber is never emailed: ``cleaned`` when listmonk recorded a bounce for
  them (its bounce actions blocklist on hard bounces and complaints), else ``unsubscribed``
  (reason ``blocklisted``); a per-list ``confirmed`` of a blocklisted subscriber (listmonk's
  ``PUT /api/subscribers/lists`` does not check) is never read as consent;
- per list: ``unsubscribed`` → ``unsubscribed``; ``confirmed`` → ``subscribed``; ``unconfirmed``
  → ``pending`` on a double opt-in list (campaigns skip them) and ``subscribed`` on a single
  opt-in list (campaigns reach them);
- a subscriber who exists but is not on the list → ``archived`` (as a Mailchimp archived member:
  off the audience, history kept, may be added back).

The member id the bridge stores beside its own key is the subscriber's numeric ``id``
(:func:`member_key`): listmonk keeps it when the address is edited, so a member found under a new
address is recognised, and a new subscriber at an address someone left is another member.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from campaign_bridge.providers._http import json_default
from campaign_bridge.providers.base import (
    Campaign,
    CampaignReport,
    CampaignStatus,
    MemberSnapshot,
    MemberStatus,
)

__all__ = [
    "CAMPAIGN_STATUS",
    "Existing",
    "auth_header",
    "campaign_from",
    "csv_upload",
    "email_hash",
    "email_query",
    "list_state",
    "member_key",
    "message_of",
    "multipart",
    "normalize_email",
    "parse_time",
    "quote",
    "report_from",
    "snapshot_from",
    "sql_time",
    "subscription_for",
]

# listmonk campaign statuses in the vocabulary pull stores (Mailchimp's, shared by providers)
CAMPAIGN_STATUS = {
    "draft": CampaignStatus.DRAFT,
    "scheduled": CampaignStatus.SCHEDULED,
    "running": CampaignStatus.SENDING,
    "paused": CampaignStatus.PAUSED,
    "cancelled": CampaignStatus.CANCELED,
    "finished": CampaignStatus.SENT,
}
# listmonk's own check is Go's mail.ParseAddress; this catches what it would refuse for sure
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+$")
_MAX_EMAIL = 1000


def auth_header(user: str, token: str, scheme: str = "token") -> str:
    """listmonk v4+: ``token user:token``; ``basic`` sends the same pair as HTTP Basic."""
    if scheme == "basic":
        return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode("ascii")
    return f"token {user}:{token}"


def email_hash(email: str) -> str:
    """The bridge's own key for a member: md5 of the trimmed, lower-cased address (as for every
    provider). Never listmonk's id for it (:func:`member_key`)."""
    return hashlib.md5(email.strip().lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def member_key(subscriber_id: int) -> str:
    """listmonk's id for a subscriber as the bridge stores it beside its key: the numeric
    ``id``, which an address change keeps (the address's hash does not)."""
    return str(subscriber_id)


def normalize_email(email: str) -> str | None:
    """The address as listmonk stores it (lower-cased), or ``None`` if listmonk would refuse it."""
    text = email.strip().lower()
    if not text or len(text) > _MAX_EMAIL or not _EMAIL.match(text):
        return None
    if not text.isascii():  # ASCII, the usual case, always encodes
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return text


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def sql_time(moment: datetime) -> str:
    """A timestamp literal for a ``query`` expression (UTC, with offset)."""
    return quote(moment.astimezone(UTC).isoformat())


def quote(text: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def email_query(emails: Iterable[str]) -> str:
    return "subscribers.email IN (" + ",".join(quote(e) for e in emails) + ")"


def message_of(body: object) -> str:
    """listmonk's error text (``{"message": …}``)."""
    if isinstance(body, Mapping):
        return str(body.get("message") or "")
    return ""


# --- subscribers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Existing:
    """A subscriber as read, reduced to what the adapter decides on."""

    id: int
    email: str
    name: str
    attribs: dict[str, Any]
    blocklisted: bool
    subscription: str | None  # the status on the synced list; None: not on it
    double_opt_in: bool
    changed: datetime | None


def subscription_for(item: Mapping[str, Any], list_id: int) -> Mapping[str, Any] | None:
    # JSON objects decode to dicts: a dict check is far cheaper than the Mapping ABC's
    for entry in item.get("lists") or ():
        if isinstance(entry, dict) and entry.get("id") == list_id:
            return entry
    return None


def existing_from(item: Mapping[str, Any], list_id: int) -> Existing:
    entry = subscription_for(item, list_id)
    changed = parse_time(item.get("updated_at"))
    if entry is not None:
        sub_changed = parse_time(entry.get("subscription_updated_at"))
        if sub_changed is not None and (changed is None or sub_changed > changed):
            changed = sub_changed
    attribs = item.get("attribs")
    return Existing(
        id=int(item["id"]),
        email=str(item.get("email") or ""),
        name=str(item.get("name") or ""),
        attribs=dict(attribs) if isinstance(attribs, Mapping) else {},
        blocklisted=item.get("status") == "blocklisted",
        subscription=str(entry.get("subscription_status")) if entry is not None else None,
        double_opt_in=entry is not None and entry.get("optin") == "double",
        changed=changed,
    )


def list_state(found: Existing, *, bounced: bool = False) -> MemberStatus:
    """The subscriber's status on the synced list in the bridge's terms (module docstring)."""
    if found.blocklisted:
        return MemberStatus.CLEANED if bounced else MemberStatus.UNSUBSCRIBED
    if found.subscription is None:
        return MemberStatus.ARCHIVED
    if found.subscription == "unsubscribed":
        return MemberStatus.UNSUBSCRIBED
    if found.subscription == "unconfirmed" and found.double_opt_in:
        return MemberStatus.PENDING
    return MemberStatus.SUBSCRIBED


def snapshot_from(found: Existing, *, bounced: bool = False) -> MemberSnapshot:
    status = list_state(found, bounced=bounced)
    reason = None
    if found.blocklisted:
        reason = "bounced (blocklisted by listmonk)" if bounced else "blocklisted"
    fields: dict[str, object] = {"name": found.name, **found.attribs}
    return MemberSnapshot(
        member_id=member_key(found.id),
        email=found.email,
        status=status,
        last_changed=found.changed,
        unsubscribe_reason=reason,
        merge_fields=fields,
    )


# --- uploads -------------------------------------------------------------------------------------


def csv_upload(rows: Sequence[tuple[str, str, Mapping[str, object]]]) -> bytes:
    """The import CSV: ``email,name,attributes`` (attributes as JSON text), RFC 4180 quoting
    (a field holding a comma, a quote or a line break is quoted, quotes doubled), written by
    the C ``csv`` writer."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("email", "name", "attributes"))
    dumps = orjson.dumps
    writer.writerows(
        (email, name, dumps(attribs, default=json_default).decode() if attribs else "{}")
        for email, name, attribs in rows
    )
    return out.getvalue().encode()


def multipart(fields: Mapping[str, str], filename: str, payload: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with text ``fields`` and one ``file``."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\n".encode()
    )
    parts.append(payload)
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# --- campaigns -----------------------------------------------------------------------------------


def campaign_from(item: Mapping[str, Any]) -> Campaign:
    lists = [x for x in item.get("lists") or () if isinstance(x, Mapping)]
    status = str(item.get("status") or "")
    return Campaign(
        id=str(item.get("id")),
        list_id=str(lists[0].get("id")) if lists else None,
        title=str(item.get("name") or ""),
        subject=str(item.get("subject") or ""),
        status=CAMPAIGN_STATUS.get(status, CampaignStatus.UNKNOWN),
        created_at=parse_time(item.get("created_at")),
        send_time=parse_time(item.get("started_at")) or parse_time(item.get("send_at")),
        emails_sent=int(item.get("sent") or 0),
    )


def report_from(item: Mapping[str, Any], bounces: Mapping[str, int]) -> CampaignReport:
    """Counters of one campaign: listmonk's ``views``/``clicks`` are raw counts (unique only
    with ``privacy.individual_tracking``, which the API does not tell), so the unique fields
    carry the same numbers; bounces by type come from ``/api/bounces``."""
    views = int(item.get("views") or 0)
    clicks = int(item.get("clicks") or 0)
    return CampaignReport(
        campaign_id=str(item.get("id")),
        emails_sent=int(item.get("sent") or 0),
        opens_total=views,
        unique_opens=views,
        clicks_total=clicks,
        unique_clicks=clicks,
        hard_bounces=bounces.get("hard", 0),
        soft_bounces=bounces.get("soft", 0),
        unsubscribed=0,
        abuse_reports=bounces.get("complaint", 0),
    )
