"""Source rows -> provider members: validation, normalisation and content hashing. Pure.

:func:`compile_plan` checks the sync's mapping against the audience fetched from the provider and
raises one :class:`ConfigurationError` carrying every problem, before any data moves.
:func:`map_row` turns one row into a :class:`MappedContact`, or raises :class:`RecordError` with a
reason code for the rejected-records table. :func:`tag_delta` computes the tag changes limited to
the tags this bridge manages.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import orjson

from campaign_bridge.config import SyncConfig
from campaign_bridge.consent import parse_consent
from campaign_bridge.errors import ConfigProblem, ConfigurationError, RecordError
from campaign_bridge.providers.base import Audience, MergeFieldSpec

__all__ = [
    "MappedContact",
    "MappingPlan",
    "compile_plan",
    "consent_of",
    "content_hash",
    "email_hash",
    "map_row",
    "normalize_email",
    "required_columns",
    "tag_delta",
]

TEXT_MAX = 255
EMAIL_MAX = 254
TAG_MAX = 100  # Mailchimp's limit on a tag name, in characters

# Reason codes written to cb_rejected_records (documented in docs/push.md).
INVALID_EMAIL = "invalid_email"
DUPLICATE_EMAIL = "duplicate_email"
DUPLICATE_KEY = "duplicate_key"
MISSING_REQUIRED = "missing_required_field"
INVALID_TYPE = "invalid_type"
INVALID_CHOICE = "invalid_choice"
VALUE_TOO_LONG = "value_too_long"
INVALID_ENCODING = "invalid_encoding"
TAG_TOO_LONG = "tag_too_long"

_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_TLD = re.compile(r"^(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$")
# The common shape, checked in one step; anything else takes the label-by-label path below.
_EMAIL_FAST = re.compile(
    r"^[A-Za-z0-9_%+'-]+(?:\.[A-Za-z0-9_%+'-]+)*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_PHONE = re.compile(r"^\+?[0-9 ().\-/]{6,40}(?:\s*(?:x|ext\.?)\s*[0-9]{1,6})?$")
_ZIP = re.compile(r"^[0-9]{5}(?:-[0-9]{4})?$")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_ADDRESS_REQUIRED = ("addr1", "city", "state", "zip")
_ADDRESS_KEYS = frozenset({"addr1", "addr2", "city", "state", "zip", "country"})


@dataclass(frozen=True)
class MappingPlan:
    """The sync's mapping, checked against the audience. Built once per run."""

    key_column: str
    email_column: str
    consent_column: str | None
    fields: tuple[tuple[str, str, MergeFieldSpec], ...]  # (merge tag, column, spec)
    tags: tuple[tuple[str, str], ...]  # (tag name, boolean column)
    tags_column: str | None
    interests: tuple[tuple[str, str], ...]  # (interest id, boolean column)
    marketing_permissions: tuple[tuple[str, str], ...]
    language_column: str | None
    updated_at_column: str | None = None
    #: what could not be checked against the audience: the run goes on, and says so
    warnings: tuple[str, ...] = ()

    @property
    def static_tags(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.tags)


@dataclass(slots=True)
class MappedContact:
    """One source row as the bridge would send it. Not frozen, and never changed once built:
    a frozen dataclass's ``__init__`` (one ``object.__setattr__`` a field) cost several times a
    plain one, and push builds one per contact it reads (docs/push.md, "Performance")."""

    key: str
    email: str  # trimmed, case kept
    email_hash: str  # md5 of the lowercased trimmed email (the provider's subscriber hash)
    consent: bool | None
    content_hash: str
    merge_fields: dict[str, object] = field(default_factory=dict)
    interests: dict[str, bool] = field(default_factory=dict)
    marketing_permissions: dict[str, bool] = field(default_factory=dict)
    language: str | None = None
    tags: frozenset[str] = frozenset()


def compile_plan(sync: SyncConfig, audience: Audience, *, sync_name: str = "") -> MappingPlan:
    """Check the mapping against the audience; raise every problem at once."""
    where = f"syncs.{sync_name}" if sync_name else "sync"
    specs = {spec.tag.upper(): spec for spec in audience.merge_fields}
    problems: list[ConfigProblem] = []
    fields: list[tuple[str, str, MergeFieldSpec]] = []
    for tag, column in sync.fields.items():
        spec = specs.get(tag.upper())
        if spec is None and audience.free_form_fields:
            spec = MergeFieldSpec(tag, tag, "json")
        if spec is None:
            problems.append(
                ConfigProblem(
                    f"{where}.fields.{tag}",
                    f"merge field {tag!r} does not exist in audience {audience.id}",
                    "one of " + (", ".join(sorted(specs)) or "(the audience has none)"),
                )
            )
            continue
        fields.append((spec.tag, column, spec))
    mapped = {tag.upper() for tag in sync.fields}
    for tag, spec in sorted(specs.items()):
        if spec.required and tag not in mapped:
            problems.append(
                ConfigProblem(
                    f"{where}.fields",
                    f"required merge field {spec.tag!r} ({spec.name}) is not mapped",
                    f"a source column mapped to {spec.tag}",
                )
            )
    for interest_id in sync.interests:
        if interest_id not in audience.interest_ids:
            problems.append(
                ConfigProblem(
                    f"{where}.interests.{interest_id}",
                    f"interest {interest_id!r} does not exist in audience {audience.id}",
                    "an interest id of the audience",
                )
            )
    warnings: list[str] = []
    if sync.marketing_permissions and not audience.marketing_permission_ids:
        # Mailchimp lists an audience's permissions only on its members: an audience without a
        # member (or without GDPR fields) shows none, and the mapping cannot be checked yet.
        warnings.append(
            f"{len(sync.marketing_permissions)} marketing permission(s) mapped but audience "
            f"{audience.id} shows none (GDPR fields off, or no member yet to read them from): "
            "not checked; enable GDPR fields on the audience and run `campaign-bridge doctor` "
            "once it has a member"
        )
    for permission_id in sync.marketing_permissions if audience.marketing_permission_ids else ():
        if permission_id not in audience.marketing_permission_ids:
            problems.append(
                ConfigProblem(
                    f"{where}.marketing_permissions.{permission_id}",
                    f"marketing permission {permission_id!r} does not exist in audience "
                    f"{audience.id} (GDPR fields must be enabled on the audience)",
                    "a marketing permission id of the audience",
                )
            )
    for name in sync.tags:
        if not name.strip() or len(name) > TAG_MAX:
            problems.append(
                ConfigProblem(f"{where}.tags", f"tag name {name!r} is empty or too long")
            )
    if problems:
        raise ConfigurationError(problems)
    source = sync.source
    return MappingPlan(
        key_column=source.key_column,
        email_column=source.email_column,
        consent_column=source.consent_column,
        fields=tuple(fields),
        tags=tuple((name.strip(), column) for name, column in sync.tags.items()),
        tags_column=sync.tags_column,
        interests=tuple(sync.interests.items()),
        marketing_permissions=tuple(sync.marketing_permissions.items()),
        language_column=sync.language_column,
        updated_at_column=source.updated_at_column,
        warnings=tuple(warnings),
    )


def required_columns(plan: MappingPlan) -> list[str]:
    """Every source column the plan reads, for checking the source before data moves."""
    columns = [plan.key_column, plan.email_column]
    columns += [column for _, column, _ in plan.fields]
    columns += [column for _, column in plan.tags]
    columns += [column for _, column in plan.interests]
    columns += [column for _, column in plan.marketing_permissions]
    for optional in (plan.consent_column, plan.tags_column, plan.language_column):
        if optional:
            columns.append(optional)
    if plan.updated_at_column:
        columns.append(plan.updated_at_column)
    return list(dict.fromkeys(columns))


def normalize_email(value: object) -> str:
    """The trimmed address, or RecordError(invalid_email) if it is not a plausible address."""
    if not isinstance(value, str):
        raise RecordError(INVALID_EMAIL, "the email column is empty or not text", field="email")
    email = value.strip()
    if not email:
        raise RecordError(INVALID_EMAIL, "the email address is empty", field="email")
    if len(email) > EMAIL_MAX or email.count("@") != 1:
        raise RecordError(INVALID_EMAIL, "the email address is not valid", field="email")
    if email.index("@") <= 64 and _EMAIL_FAST.match(email):
        return email
    local, domain = email.split("@")
    labels = domain.split(".")
    ok = (
        0 < len(local) <= 64
        and _LOCAL.match(local) is not None
        and not local.startswith(".")
        and not local.endswith(".")
        and ".." not in local
        and len(labels) >= 2
        and all(_LABEL.match(label) for label in labels[:-1])
        and _TLD.match(labels[-1]) is not None
    )
    if not ok:
        raise RecordError(INVALID_EMAIL, "the email address is not valid", field="email")
    return email


def email_hash(email: str) -> str:
    """The bridge's key for a member: md5 of the trimmed, lowercased address. Computed by the
    bridge for every provider; that it equals Mailchimp's subscriber hash is Mailchimp's affair,
    and nothing outside providers/ relies on it."""
    return hashlib.md5(email.strip().lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def _hash_of_trimmed(email: str) -> str:
    """:func:`email_hash` of an address :func:`normalize_email` has trimmed already."""
    return hashlib.md5(email.lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def map_row(plan: MappingPlan, row: Mapping[str, object]) -> MappedContact:
    """One source row as a member, or RecordError naming what is wrong (all fields at once)."""
    key = str(row[plan.key_column])
    email = normalize_email(row.get(plan.email_column))
    problems: list[tuple[str, str, str]] = []  # (reason, field, message)
    merge_fields: dict[str, object] = {}
    for tag, column, spec in plan.fields:
        value = row.get(column)
        if type(value) is str and spec.type == "text":
            text = value.strip()  # the common case, what _merge_value makes of it
            if text and len(text) <= TEXT_MAX:
                merge_fields[tag] = text
                continue
        try:
            merge_fields[tag] = _merge_value(spec, value)
        except RecordError as exc:
            problems.append((exc.reason_code, tag, exc.message))
    if problems:
        reason = problems[0][0]
        text = "; ".join(f"{tag}: {message}" for _, tag, message in problems)
        raise RecordError(reason, text, field=problems[0][1])
    tags: set[str] = set()
    if plan.tags:
        tags = {name for name, column in plan.tags if parse_consent(row.get(column))}
    if plan.tags_column:
        tags |= _split_tags(row.get(plan.tags_column))
    interests = _flags(plan.interests, row) if plan.interests else {}
    permissions = _flags(plan.marketing_permissions, row) if plan.marketing_permissions else {}
    language = None
    if plan.language_column:
        raw = row.get(plan.language_column)
        language = (str(raw).strip() or None) if raw is not None else None
    consent = parse_consent(row.get(plan.consent_column)) if plan.consent_column else None
    digest = content_hash(email, merge_fields, interests, permissions, language, tags, consent)
    return MappedContact(
        key=key,
        email=email,
        email_hash=_hash_of_trimmed(email),
        consent=consent,
        content_hash=digest,
        merge_fields=merge_fields,
        interests=interests,
        marketing_permissions=permissions,
        language=language,
        tags=frozenset(tags) if tags else _NO_TAGS,
    )


_NO_TAGS: frozenset[str] = frozenset()


def row_hash(row: Mapping[str, object]) -> str:
    """sha256 of a raw source row (every column, whatever its type): a rejected row's version,
    so an unchanged invalid row is counted as rejected once, not on every run that reads it."""
    text = repr(sorted(row.items(), key=lambda item: item[0]))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def content_hash(
    email: str,
    merge_fields: Mapping[str, object],
    interests: Mapping[str, bool],
    permissions: Mapping[str, bool],
    language: str | None,
    tags: Iterable[str],
    consent: bool | None,
) -> str:
    """A stable, order-independent hash of everything the bridge would send for a contact."""
    payload = {
        "email": email,
        "merge_fields": merge_fields,
        "interests": interests,
        "marketing_permissions": permissions,
        "language": language,
        "tags": sorted(tags),
        "consent": consent,
    }
    text = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS, default=str)
    digest = hashlib.blake2b(text, digest_size=16).hexdigest()
    # One more character records the consent value itself, so the next run can tell a change
    # of consent (true -> false, false -> true) from a standing value: see consent_of().
    return digest + _CONSENT_MARK[consent]


_CONSENT_MARK = {True: "t", False: "f", None: "n"}


def consent_of(content_hash: str | None) -> bool | None:
    """The consent value recorded in a content hash made by :func:`content_hash`."""
    if not content_hash:
        return None
    return {"t": True, "f": False}.get(content_hash[-1])


def tag_delta(
    desired: frozenset[str], managed_before: Iterable[str] | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(add, remove) so the member carries ``desired``; only tags the bridge set are removed."""
    before = frozenset(managed_before or ())
    return tuple(sorted(desired - before)), tuple(sorted(before - desired))


def _flags(mapping: tuple[tuple[str, str], ...], row: Mapping[str, object]) -> dict[str, bool]:
    flags: dict[str, bool] = {}
    for provider_id, column in mapping:
        value = parse_consent(row.get(column))
        if value is not None:  # NULL leaves the provider's value alone
            flags[provider_id] = value
    return flags


def _split_tags(value: object) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, list | tuple | set | frozenset):
        parts: Iterable[object] = value
    else:
        parts = str(value).split(",")
    names = {name for name in (str(part).strip() for part in parts) if name}
    too_long = sorted(name for name in names if len(name) > TAG_MAX)
    if too_long:
        # Never dropped quietly: a tag the provider cannot hold rejects the record, which keeps
        # its reason in cb_rejected_records until the source is fixed.
        shown = ", ".join(f"{name[:30]!r}... ({len(name)} characters)" for name in too_long[:3])
        raise RecordError(
            TAG_TOO_LONG,
            f"tag name longer than {TAG_MAX} characters: {shown}; shorten it in the source",
            field="tags",
        )
    return names


def _merge_value(spec: MergeFieldSpec, value: object) -> object:
    if value is None or (isinstance(value, str) and not value.strip()):
        if spec.required and not spec.default_value:
            raise RecordError(MISSING_REQUIRED, "a value is required", field=spec.tag)
        return ""
    kind = spec.type
    if kind == "json":  # a free-form field: the source's value, as JSON can hold it
        return _json_value(value)
    if kind == "number":
        return _number(value)
    if kind == "date":
        return _format_date(_date(value), spec.date_format or "YYYY-MM-DD")
    if kind == "birthday":
        return _birthday(value, spec.date_format or "MM/DD")
    if kind == "address":
        return _address(value)
    if kind in ("radio", "dropdown"):
        text = _text(value)
        if spec.choices and text not in spec.choices:
            raise RecordError(INVALID_CHOICE, "not one of the field's choices", field=spec.tag)
        return text
    text = _text(value)
    if kind == "phone" and not _PHONE.match(text):
        raise RecordError(INVALID_TYPE, "not a phone number", field=spec.tag)
    if kind in ("url", "imageurl") and not _URL.match(text):
        raise RecordError(INVALID_TYPE, "not an http(s) URL", field=spec.tag)
    if kind == "zip" and not _ZIP.match(text):
        raise RecordError(INVALID_TYPE, "not a US ZIP code", field=spec.tag)
    return text


def _json_value(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _text(value: object) -> str:
    if isinstance(value, dict | list):
        raise RecordError(INVALID_TYPE, "expected text, got a structured value")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = value.isoformat() if isinstance(value, dt.date) else str(value).strip()
    if len(text) > TEXT_MAX:
        raise RecordError(VALUE_TOO_LONG, f"longer than {TEXT_MAX} characters ({len(text)})")
    return text


def _number(value: object) -> int | float:
    if isinstance(value, bool):
        raise RecordError(INVALID_TYPE, "expected a number, got a boolean")
    if isinstance(value, int):
        return value
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError):
        raise RecordError(INVALID_TYPE, "expected a number") from None
    if not number.is_finite():
        raise RecordError(INVALID_TYPE, "expected a finite number")
    if number == number.to_integral_value() and abs(number) < 2**53:
        return int(number)
    result = float(number)
    if math.isinf(result):
        raise RecordError(INVALID_TYPE, "number out of range")
    return result


_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")


def _date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.date.fromisoformat(text[:10])
        except ValueError:
            pass
        for layout in ("%m/%d/%Y", "%d.%m.%Y"):
            try:
                return dt.datetime.strptime(text, layout).date()
            except ValueError:
                continue
    raise RecordError(INVALID_TYPE, "expected a date (YYYY-MM-DD)")


def _format_date(value: dt.date, layout: str) -> str:
    layout = layout.upper()
    if layout.startswith("DD/MM"):
        return value.strftime("%d/%m/%Y")
    if layout.startswith("MM/DD"):
        return value.strftime("%m/%d/%Y")
    return value.isoformat()


def _birthday(value: object, layout: str) -> str:
    month_first = not layout.upper().startswith("DD")
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}/\d{1,2}", value.strip()):
        first, second = (int(part) for part in value.strip().split("/"))
        month, day = (first, second) if month_first else (second, first)
    else:
        parsed = _date(value)
        month, day = parsed.month, parsed.day
    try:
        dt.date(2000, month, day)  # a leap year accepts 02/29
    except ValueError:
        raise RecordError(INVALID_TYPE, "not a valid birthday") from None
    return f"{month:02d}/{day:02d}" if month_first else f"{day:02d}/{month:02d}"


def _address(value: object) -> dict[str, str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RecordError(INVALID_TYPE, "expected an address object (JSON)") from None
    if not isinstance(value, dict):
        raise RecordError(INVALID_TYPE, "expected an address object")
    unknown = set(value) - _ADDRESS_KEYS
    if unknown:
        raise RecordError(INVALID_TYPE, "unknown address keys: " + ", ".join(sorted(unknown)))
    address = {k: str(v).strip() for k, v in value.items() if v is not None}
    missing = [k for k in _ADDRESS_REQUIRED if not address.get(k)]
    if missing:
        raise RecordError(INVALID_TYPE, "incomplete address, missing " + ", ".join(missing))
    for part in address.values():
        if len(part) > TEXT_MAX:
            raise RecordError(VALUE_TOO_LONG, f"address part longer than {TEXT_MAX} characters")
    return address
