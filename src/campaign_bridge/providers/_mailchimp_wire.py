"""Mailchimp wire format, both ways: request bodies from our values, our values from answers.

Pure: no I/O. The adapter (``mailchimp.py``) sends what these functions build and feeds them
what Mailchimp answered.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from campaign_bridge.errors import ConfigProblem, ConfigurationError
from campaign_bridge.providers._http import json_default
from campaign_bridge.providers._mailchimp_errors import (
    Classification,
    ErrorKind,
    Problem,
    classify,
    classify_batch_error,
    parse_problem,
)
from campaign_bridge.providers.base import (
    ActivityEvent,
    Audience,
    Campaign,
    CampaignReport,
    CampaignStatus,
    MemberSnapshot,
    MemberStatus,
    MemberUpsert,
    MergeFieldSpec,
    Outcome,
    OutcomeKind,
    activity_event,
)

__all__ = [
    "BATCH_SUBSCRIBE_MAX",
    "OpResult",
    "Operation",
    "activity_events",
    "api_base_url",
    "audience_from",
    "batch_operation",
    "batch_subscribe_body",
    "batch_subscribe_member",
    "campaign_from",
    "data_centre",
    "format_time",
    "member_key",
    "member_put_body",
    "outcome_from_error",
    "outcome_from_member",
    "parse_batch_results",
    "parse_time",
    "report_from",
    "snapshot_from",
    "subscriber_hash",
    "unsendable_field",
]

BATCH_SUBSCRIBE_MAX = 500  # members per POST /lists/{id}, Mailchimp's limit

MEMBER_FIELDS = (
    "members.id,members.contact_id,members.email_address,members.status,members.last_changed,"
    "members.unsubscribe_reason,members.merge_fields,members.tags,members.marketing_permissions,"
    "total_items"
)


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the trimmed, lowercased address."""
    data = email.strip().lower().encode("utf-8", "surrogatepass")  # bad text still hashes
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def data_centre(api_key: str) -> str:
    """The data-centre suffix of a key (``…-us6`` → ``us6``)."""
    _, sep, dc = api_key.strip().rpartition("-")
    if not sep or not dc.isalnum():
        raise ConfigurationError(
            [
                ConfigProblem(
                    "destination.api_key",
                    "the Mailchimp API key has no data-centre suffix",
                    "<32 hex characters>-<dc>, e.g. ...-us6, as shown in Mailchimp under "
                    "Profile > Extras > API keys",
                )
            ]
        )
    return dc.lower()


def api_base_url(api_key: str, base_url: str | None) -> str:
    if base_url:
        return base_url.rstrip("/")
    return f"https://{data_centre(api_key)}.api.mailchimp.com/3.0"


def format_time(moment: datetime) -> str:
    """A query-string timestamp in Mailchimp's format (UTC, ``+00:00``, no fraction)."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def parse_time(value: object) -> datetime | None:
    """Mailchimp timestamps: ISO 8601 with an offset; ``""`` means unset."""
    if not isinstance(value, str):
        return None
    return _parse_time_text(value)


@lru_cache(maxsize=1 << 16)
def _parse_time_text(value: str) -> datetime | None:
    """``parse_time`` of a string, cached (activity pages repeat many seconds) and with a fast
    path for Mailchimp's own ``+00:00`` form: parsing was a large share of reading activity."""
    if len(value) == 25 and value.endswith("+00:00"):  # Mailchimp's own form: UTC already
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    if not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")  # webhook-style, no zone
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def since_param(since: datetime) -> str:
    """``since_*`` filters are 'after', to the second: go back one second so none is missed."""
    return format_time(since - timedelta(seconds=1))


# --- requests -----------------------------------------------------------------------------


def batch_subscribe_member(member: MemberUpsert) -> dict[str, Any]:
    """One ``members[]`` item of a batch subscribe that only creates (status = status_if_new)."""
    item: dict[str, Any] = {
        "email_address": member.email.strip(),
        "status": str(member.status_if_new),
    }
    _common_fields(item, member)
    if member.tags:
        item["tags"] = list(member.tags)
    return item


def batch_subscribe_body(members: Sequence[MemberUpsert]) -> dict[str, Any]:
    if len(members) > BATCH_SUBSCRIBE_MAX:
        raise ValueError(f"batch subscribe takes at most {BATCH_SUBSCRIBE_MAX} members")
    return {
        "members": [batch_subscribe_member(m) for m in members],
        "update_existing": False,
    }


def member_put_body(member: MemberUpsert) -> dict[str, Any]:
    """Body of ``PUT /lists/{id}/members/{hash}``.

    Carries ``status`` only when the caller asked for an explicit (consent-approved) change;
    with ``status=None`` an existing member's status is never touched, and ``status_if_new``
    applies only if the PUT creates the member. Tags ride along for the creation case only.
    """
    body: dict[str, Any] = {
        "email_address": member.email.strip(),
        "status_if_new": str(member.status_if_new),
    }
    if member.status is not None:
        body["status"] = str(member.status)
    _common_fields(body, member)
    if member.marketing_permissions:
        body["marketing_permissions"] = [
            {"marketing_permission_id": pid, "enabled": bool(enabled)}
            for pid, enabled in member.marketing_permissions.items()
        ]
    if member.tags:
        body["tags"] = list(member.tags)
    return body


def _common_fields(body: dict[str, Any], member: MemberUpsert) -> None:
    if member.merge_fields:
        body["merge_fields"] = dict(member.merge_fields)
    if member.interests:
        body["interests"] = {k: bool(v) for k, v in member.interests.items()}
    if member.language:
        body["language"] = member.language


def unsendable_field(member: MemberUpsert) -> str | None:
    """The first field of ``member`` holding text that cannot be sent as UTF-8 (lone
    surrogates, e.g. from undecodable bytes in the source), or ``None`` if all is well."""
    try:  # one C call in the common case
        orjson.dumps(
            (
                member.email,
                member.merge_fields,
                member.tags,
                list(member.interests),
                list(member.marketing_permissions),
                member.language,
            ),
            default=json_default,
        )
        return None
    except TypeError:
        pass
    candidates: list[tuple[str, object]] = [("email", member.email)]
    candidates += [(f"merge_fields.{k}", v) for k, v in member.merge_fields.items()]
    candidates += [("tags", t) for t in member.tags]
    candidates += [("interests", k) for k in member.interests]
    candidates += [("marketing_permissions", k) for k in member.marketing_permissions]
    candidates.append(("language", member.language or ""))
    for name, value in candidates:
        for text in _texts(value):
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    return name
    return None


def _texts(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [t for k, v in value.items() for t in (*_texts(k), *_texts(v))]
    return []


@dataclass(frozen=True)
class Operation:
    """One member-level API call, executed directly or inside a ``/batches`` job."""

    key: str
    method: str
    path: str  # relative to /3.0, e.g. /lists/abc/members/<hash>
    body: Mapping[str, Any] | None = None
    emails: tuple[str, ...] = ()  # to scrub from error messages


@dataclass(frozen=True)
class OpResult:
    status: int | None  # None: no answer (transient failure, or missing from batch results)
    body: Any = None  # parsed JSON of a success
    problem: Problem | None = None


def batch_operation(op: Operation) -> dict[str, Any]:
    """An ``operations[]`` item for ``POST /batches`` (``body`` is a JSON *string*)."""
    item: dict[str, Any] = {"method": op.method, "path": op.path, "operation_id": op.key}
    if op.body is not None:
        item["body"] = orjson.dumps(op.body, default=json_default).decode("utf-8")
    return item


# --- answers ------------------------------------------------------------------------------


def _status(value: object) -> MemberStatus | None:
    try:
        return MemberStatus(str(value))
    except ValueError:
        return None


def outcome_from_member(key: str, kind: OutcomeKind, member: Mapping[str, Any]) -> Outcome:
    return Outcome(
        key=key,
        kind=kind,
        member_id=member_key(member),
        status=_status(member.get("status")),
        last_changed=parse_time(member.get("last_changed")),
    )


def outcome_from_error(key: str, member_id: str | None, found: Classification) -> Outcome:
    kind = OutcomeKind.RETRY if found.kind is ErrorKind.RETRIABLE else OutcomeKind.REJECTED
    return Outcome(key, kind, member_id, reason_code=found.reason_code, message=found.message)


def batch_subscribe_error(entry: Mapping[str, Any], email: str) -> Classification:
    return classify_batch_error(
        str(entry.get("error") or ""),
        error_code=str(entry.get("error_code") or ""),
        field=str(entry.get("field") or ""),
        field_message=str(entry.get("field_message") or ""),
        emails=(email, str(entry.get("email_address") or "")),
    )


def parse_batch_results(archive: bytes) -> dict[str, OpResult]:
    """Per-``operation_id`` results from a ``/batches`` result archive (a gzipped tar of JSON
    arrays of ``{status_code, operation_id, response}``, ``response`` being a JSON string)."""
    import tarfile  # only a batch's results come as an archive

    results: dict[str, OpResult] = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
        for info in tar:
            if not info.isfile():
                continue
            handle = tar.extractfile(info)
            if handle is None:
                continue
            try:
                items = orjson.loads(handle.read())
            except orjson.JSONDecodeError:
                continue
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, Mapping) and item.get("operation_id") is not None:
                    results[str(item["operation_id"])] = _op_result(item)
    return results


def _op_result(item: Mapping[str, Any]) -> OpResult:
    status = item.get("status_code")
    code = status if isinstance(status, int) else 0
    raw = item.get("response")
    text = raw.encode("utf-8") if isinstance(raw, str) else json.dumps(raw).encode("utf-8")
    if 200 <= code < 300:
        try:
            body = orjson.loads(text) if text.strip() else None
        except orjson.JSONDecodeError:
            body = None
        return OpResult(code, body)
    return OpResult(code, None, parse_problem(code, text, "application/json"))


def classify_op(result: OpResult, emails: Sequence[str]) -> Classification:
    problem = result.problem or Problem(status=result.status or 0, is_json=False)
    return classify(problem, emails=emails)


def member_key(member: Mapping[str, Any]) -> str:
    """The member's own id as the bridge stores it beside its key: ``contact_id``, which stays
    the same when the member's address changes (``id``, the subscriber hash, changes with the
    address); the subscriber hash for an answer without one."""
    contact = member.get("contact_id")
    if contact:
        return str(contact)
    return str(member.get("id") or subscriber_hash(str(member.get("email_address", ""))))


def snapshot_from(member: Mapping[str, Any]) -> MemberSnapshot | None:
    status = _status(member.get("status"))
    if status is None:
        return None
    merge = member.get("merge_fields")
    tags = member.get("tags")
    return MemberSnapshot(
        member_id=member_key(member),
        email=str(member.get("email_address") or ""),
        status=status,
        last_changed=parse_time(member.get("last_changed")),
        unsubscribe_reason=str(member.get("unsubscribe_reason") or "") or None,
        merge_fields=dict(merge) if isinstance(merge, Mapping) else {},
        tags=tuple(str(t.get("name")) for t in tags if isinstance(t, Mapping) and t.get("name"))
        if isinstance(tags, list)
        else (),
        marketing_permissions=_permissions(member.get("marketing_permissions")),
    )


def _permissions(value: object) -> tuple[tuple[str, str, bool], ...]:
    """A member's GDPR permissions as (id, wording, enabled)."""
    if not isinstance(value, list):
        return ()
    return tuple(
        (str(p["marketing_permission_id"]), str(p.get("text") or ""), bool(p.get("enabled")))
        for p in value
        if isinstance(p, Mapping) and p.get("marketing_permission_id")
    )


def merge_field_from(item: Mapping[str, Any]) -> MergeFieldSpec:
    options = item.get("options")
    options = options if isinstance(options, Mapping) else {}
    choices = options.get("choices")
    return MergeFieldSpec(
        tag=str(item.get("tag") or ""),
        name=str(item.get("name") or ""),
        type=str(item.get("type") or "text"),
        required=bool(item.get("required")),
        default_value=str(item.get("default_value") or ""),
        choices=tuple(str(c) for c in choices) if isinstance(choices, list) else (),
        date_format=str(options.get("date_format") or ""),
    )


def audience_from(
    lst: Mapping[str, Any],
    merge_fields: Sequence[Mapping[str, Any]],
    interest_ids: Sequence[str],
    permission_ids: Sequence[str],
) -> Audience:
    return Audience(
        id=str(lst.get("id") or ""),
        name=str(lst.get("name") or ""),
        merge_fields=tuple(merge_field_from(m) for m in merge_fields),
        interest_ids=frozenset(interest_ids),
        marketing_permission_ids=frozenset(permission_ids),
        double_opt_in=bool(lst.get("double_optin")),
    )


CAMPAIGN_STATUSES = {
    "save": CampaignStatus.DRAFT,
    "schedule": CampaignStatus.SCHEDULED,
    "sending": CampaignStatus.SENDING,
    "sent": CampaignStatus.SENT,
    "paused": CampaignStatus.PAUSED,
    "canceling": CampaignStatus.CANCELED,
    "canceled": CampaignStatus.CANCELED,
    "archived": CampaignStatus.ARCHIVED,
}


def campaign_from(item: Mapping[str, Any]) -> Campaign:
    recipients = item.get("recipients")
    settings = item.get("settings")
    recipients = recipients if isinstance(recipients, Mapping) else {}
    settings = settings if isinstance(settings, Mapping) else {}
    return Campaign(
        id=str(item.get("id") or ""),
        list_id=str(recipients.get("list_id") or "") or None,
        title=str(settings.get("title") or ""),
        subject=str(settings.get("subject_line") or ""),
        status=CAMPAIGN_STATUSES.get(str(item.get("status") or ""), CampaignStatus.UNKNOWN),
        created_at=parse_time(item.get("create_time")),
        send_time=parse_time(item.get("send_time")),
        emails_sent=_int(item.get("emails_sent")),
    )


def _int(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | str):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    return value if isinstance(value, Mapping) else {}


def report_from(data: Mapping[str, Any]) -> CampaignReport:
    opens, clicks = _section(data, "opens"), _section(data, "clicks")
    bounces = _section(data, "bounces")
    return CampaignReport(
        campaign_id=str(data.get("id") or ""),
        emails_sent=_int(data.get("emails_sent")),
        opens_total=_int(opens.get("opens_total")),
        unique_opens=_int(opens.get("unique_opens")),
        clicks_total=_int(clicks.get("clicks_total")),
        unique_clicks=_int(clicks.get("unique_clicks")),
        hard_bounces=_int(bounces.get("hard_bounces")),
        soft_bounces=_int(bounces.get("soft_bounces")),
        unsubscribed=_int(data.get("unsubscribed")),
        abuse_reports=_int(data.get("abuse_reports")),
        last_open=parse_time(opens.get("last_open")),
        last_click=parse_time(clicks.get("last_click")),
    )


def activity_events(
    campaign_id: str, entry: Mapping[str, Any], since: datetime | None
) -> list[ActivityEvent]:
    """The events of one ``email-activity`` entry (one email, its ``activity[]``). Hot path (one
    call per recipient): plain dicts and strings are taken as they are, timestamps parsed once
    each (``parse_time`` is cached)."""
    email = str(entry.get("email_address") or "")
    events: list[ActivityEvent] = []
    activity = entry.get("activity")
    if not isinstance(activity, list):
        return events
    append = events.append
    for item in activity:
        if type(item) is not dict and not isinstance(item, Mapping):
            continue
        stamp = item.get("timestamp")
        when = _parse_time_text(stamp) if type(stamp) is str else None
        if when is None or (since is not None and when < since):
            continue
        action = item.get("action")
        if type(action) is not str:
            action = _text(action) or ""
        url = item.get("url") or None
        if url is not None and type(url) is not str:
            url = _text(url)
        ip = item.get("ip") or None
        if ip is not None and type(ip) is not str:
            ip = _text(ip)
        bounce = _text(item.get("type")) if action == "bounce" else None
        append(activity_event(campaign_id, email, action, when, url, bounce, ip))
    return events


def _text(value: object) -> str | None:
    """A string field as the adapter keeps it: ``None`` when absent or empty."""
    if type(value) is str:
        return value or None
    return str(value or "") or None
