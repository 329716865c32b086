"""List members: the member endpoints, the status state machine, batch subscribe, member tags.

The write functions (``create_member``, ``update_member``, ``set_status``, ``change_email``,
``archive_member``, ``forget_member``) are the only places a member changes; they validate
everything first, then apply, bump ``last_changed`` and emit ``MemberEvent``s. The control API
and the campaign simulation call them with ``source="user"``/``"admin"``. Callers hold
``sandbox.lock``.

Activity feed: a module may set ``sandbox.extensions["activity_feed"]`` to a callable
``(list_id, subscriber_hash) -> list[dict]`` (newest first, API activity-feed item shape); the
endpoints page over it. Without it the feed is empty.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any

from campaign_bridge.sandbox.mailchimp.lists import get_or_create_tag
from campaign_bridge.sandbox.mailchimp.model import (
    AudienceList,
    EventKind,
    Member,
    MemberEvent,
    MergeField,
    Sandbox,
    Source,
    subscriber_hash,
)
from campaign_bridge.sandbox.mailchimp.wire import (
    ApiRequest,
    Problem,
    Reply,
    Route,
    answer_is_cut,
    collection_links,
    encoded,
    invalid_resource,
    kept_keys,
    link,
    not_found,
    page,
    paging,
    parse_ts,
    qbool,
)

__all__ = [
    "STATUSES",
    "archive_member",
    "change_email",
    "create_member",
    "find_member",
    "forget_member",
    "member_renderer",
    "render_member",
    "routes",
    "set_status",
    "set_tags",
    "update_member",
]

STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
ADDRESS_KEYS = ("addr1", "addr2", "city", "state", "zip", "country")
MAX_BATCH = 500


# --- problems with the real texts ---------------------------------------------------------------


def member_exists(email: str) -> Problem:
    return Problem(
        400,
        "Member Exists",
        f"{email} is already a list member. Use PUT to insert or update list members.",
    )


def compliance_state(email: str) -> Problem:
    return Problem(
        400,
        "Member In Compliance State",
        f"{email} is in a compliance state due to unsubscribe, bounce, or compliance review "
        "and cannot be subscribed.",
    )


def forgotten(email: str) -> Problem:
    return Problem(
        400,
        "Forgotten Email Not Subscribed",
        f"{email} was permanently deleted and cannot be re-imported. The contact must "
        "re-subscribe to get back on the list.",
    )


def cannot_archive() -> Problem:
    return Problem(
        405,
        "Method Not Allowed",
        "This list member cannot be removed.  Please contact support.",
        headers={"Allow": "GET, PUT"},
    )


def _schema_error(field: str, message: str) -> Problem:
    return invalid_resource(errors=[{"field": field, "message": message}])


# --- request schema (JSON types, checked before anything else, as Mailchimp's validator does) ---


def _json_type(value: Any) -> str:
    """The JSON type name Mailchimp's schema errors use for ``value``."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_error(field: str, expected: str, value: Any) -> dict[str, str]:
    return {
        "field": field,
        "message": f"Schema describes {expected}, {_json_type(value)} found instead",
    }


_ANY_OF = "Data did not match any of the schemas described in anyOf."
_NOT_ACCEPTED = "Data presented is not one of the accepted values."
EMAIL_TYPES = ("html", "text")


_SCALARS = (str, int, float, type(None))


def _schema_errors(lst: AudienceList, body: Mapping[str, Any]) -> list[dict[str, str]]:
    """JSON-type errors in a member body; the merge-field value schema depends on the
    audience's fields. ``null`` counts as not given."""
    errors: list[dict[str, str]] = []
    get = body.get
    email_type = get("email_type")
    if email_type is not None and email_type not in EMAIL_TYPES:
        errors.append({"field": "email_type", "message": _NOT_ACCEPTED})
    vip = get("vip")
    if vip is not None and vip.__class__ is not bool:
        errors.append(_type_error("vip", "boolean", vip))
    location = get("location")
    if location is not None:
        errors += _location_errors(location)
    merge = get("merge_fields")
    if merge is not None:
        if merge.__class__ is not dict:
            errors.append(_type_error("merge_fields", "object", merge))
        else:
            for value in merge.values():
                if value.__class__ not in _SCALARS:
                    errors += _merge_schema_errors(lst, merge)
                    break
    interests = get("interests")
    if interests is not None:
        errors += _interests_schema_errors(interests)
    return errors


def _merge_schema_errors(lst: AudienceList, merge: dict[str, Any]) -> list[dict[str, str]]:
    """A merge value is text or a number (``null`` clears it); an object only for an address
    field (whose parts are checked later: "Please enter a complete address")."""
    fields = lst.merge_index()
    return [
        {"field": f"merge_fields.{tag}", "message": _ANY_OF}
        for tag, value in merge.items()
        if value.__class__ not in _SCALARS and not _is_address_object(value, fields.get(tag))
    ]


def _is_address_object(value: Any, field: MergeField | None) -> bool:
    return isinstance(value, dict) and (field is None or field.type == "address")


def _location_errors(location: Any) -> list[dict[str, str]]:
    if not isinstance(location, dict):
        return [_type_error("location", "object", location)]
    return [
        _type_error(f"location.{key}", "number", location[key])
        for key in ("latitude", "longitude")
        if location.get(key) is not None
        and (isinstance(location[key], bool) or not isinstance(location[key], int | float))
    ]


def _interests_schema_errors(interests: Any) -> list[dict[str, str]]:
    if not isinstance(interests, dict):
        return [_type_error("interests", "object", interests)]
    return [
        _type_error(f"interests.{iid}", "boolean", flag)
        for iid, flag in interests.items()
        if not isinstance(flag, bool)
    ]


def check_member_schema(lst: AudienceList, body: Mapping[str, Any]) -> None:
    """400 ``Invalid Resource`` listing every JSON-type error of a member body."""
    errors = _schema_errors(lst, body)
    if errors:
        raise invalid_resource(errors=errors)


# --- rendering ---------------------------------------------------------------------------------


def _member_links(base: str, list_id: str, h: str) -> list[dict[str, str]]:
    parent = f"{base}/lists/{list_id}/members"
    href = f"{parent}/{h}"
    return [
        {"rel": "self", "href": href, "method": "GET"},
        {"rel": "parent", "href": parent, "method": "GET"},
        {"rel": "update", "href": href, "method": "PATCH"},
        {"rel": "upsert", "href": href, "method": "PUT"},
        {"rel": "delete", "href": href, "method": "DELETE"},
        {"rel": "activity", "href": href + "/activity", "method": "GET"},
        {"rel": "goals", "href": href + "/goals", "method": "GET"},
        {"rel": "notes", "href": href + "/notes", "method": "GET"},
        {"rel": "events", "href": href + "/events", "method": "POST"},
        {"rel": "delete_permanent", "href": href + "/actions/delete-permanent", "method": "POST"},
    ]


def _merge_of(lst: AudienceList, m: Member) -> dict[str, Any]:
    values = m.merge_fields
    return {tag: values.get(tag, "") for tag in lst.merge_index()}


def _interests_of(lst: AudienceList, m: Member) -> dict[str, bool]:
    chosen = m.interests
    return {iid: chosen.get(iid, False) for iid in lst.interests}


def _tags_of(lst: AudienceList, m: Member) -> list[dict[str, Any]]:
    if not m.tags:
        return []
    segments = lst.segments
    return [{"id": sid, "name": segments[sid].name} for sid in m.tags if sid in segments][:50]


def _permissions_of(lst: AudienceList, m: Member) -> list[dict[str, Any]]:
    if not lst.permissions:
        return []
    granted = m.marketing_permissions
    return [
        {"marketing_permission_id": pid, "text": text, "enabled": granted.get(pid, False)}
        for pid, text in lst.permissions.items()
    ]


def _full_name(m: Member) -> str:
    first, last = m.merge_fields.get("FNAME", ""), m.merge_fields.get("LNAME", "")
    return f"{first} {last}".strip() if (first or last) else ""


def _location_of(m: Member) -> dict[str, Any]:
    return {
        "latitude": m.latitude,
        "longitude": m.longitude,
        "gmtoff": 0,
        "dstoff": 0,
        "country_code": "",
        "timezone": "",
        "region": "",
    }


def render_member(lst: AudienceList, m: Member, base: str) -> dict[str, Any]:
    """The member in the API's response shape (every merge field and interest present)."""
    return {
        "id": m.id,
        "email_address": m.email_address,
        "unique_email_id": m.unique_email_id,
        "contact_id": m.contact_id,
        "full_name": _full_name(m),
        "web_id": m.web_id,
        "email_type": m.email_type,
        "status": m.status,
        "unsubscribe_reason": m.unsubscribe_reason,
        "consents_to_one_to_one_messaging": True,
        "merge_fields": _merge_of(lst, m),
        "interests": _interests_of(lst, m),
        "stats": {"avg_open_rate": m.avg_open_rate, "avg_click_rate": m.avg_click_rate},
        "ip_signup": m.ip_signup,
        "timestamp_signup": m.timestamp_signup,
        "ip_opt": m.ip_opt,
        "timestamp_opt": m.timestamp_opt,
        "member_rating": m.member_rating,
        "last_changed": m.last_changed,
        "language": m.language,
        "vip": m.vip,
        "email_client": m.email_client,
        "location": _location_of(m),
        "marketing_permissions": _permissions_of(lst, m),
        "source": m.source,
        "tags_count": len(m.tags),
        "tags": _tags_of(lst, m),
        "list_id": lst.id,
        "_links": _member_links(base, lst.id, m.id),
    }


#: the member keys whose value is the ``Member`` attribute of that name, in response order
_ATTRIBUTE_KEYS = (
    "id",
    "email_address",
    "unique_email_id",
    "contact_id",
    "web_id",
    "email_type",
    "status",
    "unsubscribe_reason",
    "ip_signup",
    "timestamp_signup",
    "ip_opt",
    "timestamp_opt",
    "member_rating",
    "last_changed",
    "language",
    "vip",
    "email_client",
    "source",
)
_ATTRIBUTE_KEY_SET = frozenset(_ATTRIBUTE_KEYS)


def _computed_keys(lst: AudienceList, base: str) -> dict[str, Callable[[Member], Any]]:
    """How ``render_member`` computes its other keys, one function per key."""
    return {
        "full_name": _full_name,
        "consents_to_one_to_one_messaging": lambda m: True,
        "merge_fields": lambda m: _merge_of(lst, m),
        "interests": lambda m: _interests_of(lst, m),
        "stats": lambda m: {"avg_open_rate": m.avg_open_rate, "avg_click_rate": m.avg_click_rate},
        "location": _location_of,
        "marketing_permissions": lambda m: _permissions_of(lst, m),
        "tags_count": lambda m: len(m.tags),
        "tags": lambda m: _tags_of(lst, m),
        "list_id": lambda m: lst.id,
        "_links": lambda m: _member_links(base, lst.id, m.id),
    }


#: every key of ``render_member``, in response order
_MEMBER_KEYS = (
    *_ATTRIBUTE_KEYS[:4],
    "full_name",
    *_ATTRIBUTE_KEYS[4:8],
    "consents_to_one_to_one_messaging",
    "merge_fields",
    "interests",
    "stats",
    *_ATTRIBUTE_KEYS[8:17],
    "location",
    "marketing_permissions",
    "source",
    "tags_count",
    "tags",
    "list_id",
    "_links",
)


def member_renderer(
    lst: AudienceList, base: str, keys: frozenset[str] | None
) -> Callable[[Member], dict[str, Any]]:
    """``render_member`` restricted to ``keys`` (``None``: all; see ``wire.kept_keys``).

    A response filtered with ``fields=new_members.id,new_members.status`` then costs one small
    dict per member instead of the whole member shape that ``apply_fields`` would cut down.
    """
    if keys is None:
        return lambda m: render_member(lst, m, base)
    names = tuple(k for k in _MEMBER_KEYS if k in keys)
    if keys <= _ATTRIBUTE_KEY_SET:
        return lambda m: {k: getattr(m, k) for k in names}
    computed = _computed_keys(lst, base)
    parts = tuple((k, computed.get(k) or attrgetter(k)) for k in names)
    return lambda m: {k: part(m) for k, part in parts}


def _emit(
    sandbox: Sandbox,
    kind: EventKind,
    lst: AudienceList,
    member: Member,
    source: Source,
    extra: dict[str, Any],
) -> None:
    sandbox.write_seq += 1
    if sandbox.has_listeners:
        base = f"https://{sandbox.config.dc}.api.mailchimp.com/3.0"
        sandbox.emit(
            MemberEvent(
                kind,
                lst.id,
                lambda: render_member(lst, member, base),
                source,
                sandbox.clock.now(),
                extra,
            )
        )


# --- validation ----------------------------------------------------------------------------------


def check_email(sandbox: Sandbox, email: Any) -> str:
    address = email.strip() if isinstance(email, str) else ""
    if not address:
        raise _schema_error("email_address", "This value should not be blank.")
    if not EMAIL_RE.match(address):
        raise invalid_resource("Please provide a valid email address.")
    domain = address[address.index("@") + 1 :].lower()  # the pattern allows one "@"
    if domain in sandbox.config.fake_domains:
        raise invalid_resource(
            f"{address} looks fake or invalid, please enter a real email address."
        )
    return address


def _check_throttle(sandbox: Sandbox, email: str) -> None:
    limit = sandbox.config.signup_limit
    if limit is None and not sandbox.throttled:
        return
    lowered = email.lower()
    blocked = lowered in sandbox.throttled
    if not blocked and limit is not None:
        now = sandbox.clock.now().timestamp()
        recent = [
            t for t in sandbox.signups.get(lowered, []) if now - t < sandbox.config.signup_window
        ]
        sandbox.signups[lowered] = recent
        blocked = len(recent) >= limit
    if blocked:
        raise invalid_resource(
            f"{email} has signed up to a lot of lists very recently; "
            "we're not allowing more signups for now"
        )


def _check_status(value: Any, field: str = "status") -> str:
    if value not in STATUSES:
        raise _schema_error(field, f"Value must be one of: {', '.join(STATUSES)} (got {value!r})")
    return str(value)


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int | float):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def _address(value: Any) -> Any:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split("  ")]
        if len(parts) < 4 or not all(parts[:4]):
            raise ValueError
        keys = ("addr1", "city", "state", "zip", "country") if len(parts) <= 5 else ADDRESS_KEYS
        value = dict(zip(keys, parts, strict=False))
    if not isinstance(value, dict):
        raise ValueError
    out = {k: str(value.get(k) or "") for k in ADDRESS_KEYS}
    if not all(out[k] for k in ("addr1", "city", "state", "zip")):
        raise ValueError
    out["country"] = out["country"] or "US"
    return out


_TYPE_MESSAGES = {
    "number": "Please enter a number",
    "address": "Please enter a complete address",
    "dropdown": "Please choose a value from the list",
    "radio": "Please choose a value from the list",
}


_PLAIN_TYPES = frozenset({"text", "phone", "date", "url", "imageurl", "birthday", "zip"})


def _merge_values(
    lst: AudienceList,
    current: Mapping[str, Any],
    given: Any,
    *,
    creating: bool,
    skip_validation: bool,
) -> dict[str, Any]:
    """New merge values: unknown keys dropped, types checked, required enforced."""
    if given is not None and not isinstance(given, dict):
        raise invalid_resource(errors=[_type_error("merge_fields", "object", given)])
    fields = lst.merge_index()
    values = dict(current)
    errors: list[dict[str, str]] = []
    if given:
        for tag, raw in given.items():
            field = fields.get(tag)
            if field is None:
                continue  # Mailchimp silently drops unknown merge keys
            if raw is None or raw == "":
                values[tag] = ""
                continue
            kind = field.type
            if kind in _PLAIN_TYPES:
                values[tag] = raw if raw.__class__ is str else str(raw)
                continue
            try:
                if kind == "number":
                    values[tag] = _number(raw)
                elif kind == "address":
                    values[tag] = _address(raw)
                else:  # dropdown, radio
                    choices = field.options.get("choices") or []
                    if choices and str(raw) not in choices:
                        raise ValueError
                    values[tag] = str(raw)
            except (ValueError, TypeError):
                errors.append({"field": tag, "message": _TYPE_MESSAGES.get(kind, "Invalid value")})
    if creating:
        for tag, default in lst.merge_defaults():
            if values.get(tag, "") == "":
                values[tag] = default
    if not skip_validation:
        for tag in lst.merge_required():
            if values.get(tag, "") == "" and not any(e["field"] == tag for e in errors):
                errors.append({"field": tag, "message": "Please enter a value"})
    if errors:
        raise Problem(400, "Invalid Resource", "Your merge fields were invalid.", errors=errors)
    return values


def _interests(lst: AudienceList, current: dict[str, bool], given: Any) -> dict[str, bool]:
    """The interests after applying ``given``; ``current`` itself (not a copy) when no change
    is asked, so an update that does not name interests allocates nothing."""
    if given is None:
        return current
    if not isinstance(given, dict):
        raise invalid_resource(errors=[_type_error("interests", "object", given)])
    out = dict(current)
    for iid, flag in given.items():
        if iid not in lst.interests:
            raise invalid_resource(f"Invalid interest ID: '{iid}'.")
        out[iid] = bool(flag)
    return out


def _permissions(lst: AudienceList, current: dict[str, bool], given: Any) -> dict[str, bool]:
    """Like ``_interests``: ``current`` itself when ``given`` is empty."""
    if not given:
        return current
    if not isinstance(given, list):
        raise invalid_resource(errors=[_type_error("marketing_permissions", "array", given)])
    out = dict(current)
    for item in given:
        if not isinstance(item, dict):
            raise _schema_error("marketing_permissions", "Schema describes object")
        pid = str(item.get("marketing_permission_id", ""))
        if pid not in lst.permissions:
            raise invalid_resource(f"Invalid marketing permission ID: '{pid}'.")
        out[pid] = bool(item.get("enabled", False))
    return out


def _tag_names(given: Any) -> list[str]:
    names: list[str] = []
    for tag in given or []:
        name = tag.get("name") if isinstance(tag, dict) else tag
        if isinstance(name, str) and name.strip():
            names.append(name.strip())
    return names


# --- writes ---------------------------------------------------------------------------------------


_PROFILE_KEYS = ("email_type", "language", "vip")
_STATUS_EVENT: dict[str, EventKind] = {
    "subscribed": "subscribe",
    "unsubscribed": "unsubscribe",
    "cleaned": "cleaned",
    "pending": "pending",
    "transactional": "transactional",
    "archived": "archive",
}
_SOURCE_LABEL = {"api": "API - Generic", "admin": "Admin Add", "user": "Hosted Signup Form"}


#: text fields a new member takes from the body when given ("" otherwise)
_SIGNUP_TEXT = ("language", "ip_signup", "timestamp_signup", "ip_opt", "timestamp_opt")


def _apply_signup_fields(member: Member, body: Mapping[str, Any]) -> None:
    """``email_type``, ``vip`` and ``_SIGNUP_TEXT`` from the body; most bodies have none of
    them, so the member keeps its defaults ("html", False, "")."""
    email_type = body.get("email_type")
    if email_type:
        member.email_type = str(email_type)
    if "vip" in body:
        member.vip = bool(body["vip"])
    for key in _SIGNUP_TEXT:
        value = body.get(key)
        if value:
            setattr(member, key, str(value))


def create_member(
    sandbox: Sandbox,
    lst: AudienceList,
    email: Any,
    status: Any,
    body: Mapping[str, Any],
    *,
    source: Source = "api",
    client_ip: str = "",
    skip_merge_validation: bool = False,
    tags: Any = None,
    trusted: bool = False,
    checked_hash: str | None = None,
    schema_checked: bool = False,
) -> Member:
    """Add a new member (validates everything; raises ``Problem``).

    ``trusted`` (control-API seeding) skips the fake-address, throttle and merge checks.
    ``checked_hash``: the caller already ran ``check_email`` and hashed the address.
    ``schema_checked``: the caller already ran the JSON-type checks on ``body``.
    """
    if not schema_checked:
        check_member_schema(lst, body)
    if checked_hash is not None:
        h = checked_hash
    else:
        if trusted:
            if not isinstance(email, str) or not EMAIL_RE.match(email.strip()):
                raise invalid_resource("Please provide a valid email address.")
            email = email.strip()
        else:
            email = check_email(sandbox, email)
        h = subscriber_hash(email)
    if trusted:
        skip_merge_validation = True
    if h in lst.forgotten:
        raise forgotten(email)
    if h in lst.members:
        raise member_exists(email)
    status = _check_status(status)
    if not trusted:
        _check_throttle(sandbox, email)
    merge = _merge_values(
        lst, {}, body.get("merge_fields"), creating=True, skip_validation=skip_merge_validation
    )
    given = body.get("interests")
    interests = _interests(lst, {}, given) if given is not None else {}
    given = body.get("marketing_permissions")
    permissions = _permissions(lst, {}, given) if given else {}
    now = sandbox.clock.stamp()
    ids = sandbox.ids
    member = Member(
        id=h,
        email_address=email,
        unique_email_id=ids.hex10(),
        web_id=ids.web_id(),
        contact_id=ids.hex32(),
        status=status,
        merge_fields=merge,
        interests=interests,
        marketing_permissions=permissions,
        last_changed=now,
        created_at=now,
        source=_SOURCE_LABEL[source],
    )
    _apply_signup_fields(member, body)
    location = body.get("location")
    if location:
        member.latitude = float(location.get("latitude") or 0)
        member.longitude = float(location.get("longitude") or 0)
    if status == "subscribed":
        member.timestamp_opt = member.timestamp_opt or now
        member.ip_opt = member.ip_opt or client_ip
    elif status == "pending":
        member.timestamp_signup = member.timestamp_signup or now
        member.ip_signup = member.ip_signup or client_ip
    elif status in ("unsubscribed", "cleaned"):
        member.unsubscribe_origin = source
        member.compliance = status == "cleaned" or source == "user"
    lst.members[h] = member
    lst.member_added(member)
    if sandbox.config.signup_limit is not None:
        sandbox.signups.setdefault(email.lower(), []).append(sandbox.clock.now().timestamp())
    if tags:
        for name in _tag_names(tags):
            seg = get_or_create_tag(sandbox, lst, name)
            seg.members[h] = now
            member.tags[seg.id] = now
    if sandbox.has_listeners:
        extra = {"previous_status": "", "created": True}
        _emit(sandbox, _STATUS_EVENT[status], lst, member, source, extra)
    return member


def _check_transition(member: Member, target: str) -> None:
    if (
        target == "subscribed"
        and member.status != "subscribed"
        and (member.compliance or member.status == "cleaned")
    ):
        raise compliance_state(member.email_address)


def set_status(
    sandbox: Sandbox,
    lst: AudienceList,
    member: Member,
    status: str,
    *,
    source: Source = "api",
    client_ip: str = "",
    reason: str = "",
    campaign_id: str = "",
    emit: bool = True,
) -> bool:
    """Move a member to ``status`` following the compliance rules; True if it changed."""
    _check_transition(member, status)
    if status == member.status:
        return False
    previous = member.status
    now = sandbox.clock.stamp()
    member.status = status
    member.last_changed = now
    lst.member_status_changed(member, previous)
    if status == "subscribed":
        member.timestamp_opt = now
        member.ip_opt = client_ip or member.ip_opt
        member.unsubscribe_origin = ""
        member.unsubscribe_reason = ""
    elif status == "pending":
        member.timestamp_signup = now
    elif status == "unsubscribed":
        member.unsubscribe_origin = source
        member.unsubscribe_reason = reason or (
            "N/A (Unsubscribed by an admin)" if source == "admin" else ""
        )
        if source == "user":
            member.compliance = True
    elif status == "cleaned":
        member.unsubscribe_origin = source
        member.compliance = True
    if emit:
        kind = _STATUS_EVENT[status]
        extra: dict[str, Any] = {"previous_status": previous, "created": False}
        if reason:
            extra["reason"] = reason
        if campaign_id:
            extra["campaign_id"] = campaign_id
        _emit(sandbox, kind, lst, member, source, extra)
    return True


def change_email(
    sandbox: Sandbox, lst: AudienceList, member: Member, new_email: Any, *, source: Source = "api"
) -> bool:
    """Change the address (the member's id changes with it); emits ``upemail`` + ``profile``."""
    email = check_email(sandbox, new_email)
    if email == member.email_address:
        return False
    new_hash = subscriber_hash(email)
    if new_hash != member.id:
        if new_hash in lst.members:
            raise member_exists(email)
        if new_hash in lst.forgotten:
            raise forgotten(email)
    old_email, old_id = member.email_address, member.id
    del lst.members[old_id]
    lst.member_removed(member)
    member.id = new_hash
    member.email_address = email
    member.last_changed = sandbox.clock.stamp()
    lst.members[new_hash] = member
    lst.member_added(member)
    for sid in member.tags:
        seg = lst.segments.get(sid)
        if seg is not None and old_id in seg.members:
            seg.members[new_hash] = seg.members.pop(old_id)
    extra = {"old_email": old_email, "new_email": email, "old_id": old_id, "new_id": new_hash}
    _emit(sandbox, "upemail", lst, member, source, extra)
    _emit(sandbox, "profile", lst, member, source, {"changed": ["email_address"]})
    return True


def update_member(
    sandbox: Sandbox,
    lst: AudienceList,
    member: Member,
    body: Mapping[str, Any],
    *,
    status: str | None = None,
    source: Source = "api",
    client_ip: str = "",
    skip_merge_validation: bool = False,
    keep_address: bool = False,
    schema_checked: bool = False,
) -> Member:
    """Apply an update (PUT/PATCH/batch). Everything is validated before anything changes.

    ``keep_address``: the body's ``email_address`` names the member (batch subscribe), it is
    not a new address. ``schema_checked``: the caller already ran the JSON-type checks."""
    if not schema_checked:
        check_member_schema(lst, body)
    if status is not None:
        if status == "archived":
            raise _schema_error("status", "Value must be one of: " + ", ".join(STATUSES))
        _check_status(status)
        _check_transition(member, status)
    new_email = None if keep_address else body.get("email_address")
    if new_email is not None and new_email != member.email_address:
        check_email(sandbox, new_email)
        new_hash = subscriber_hash(str(new_email).strip())
        if new_hash != member.id and new_hash in lst.members:
            raise member_exists(str(new_email).strip())
        if new_hash != member.id and new_hash in lst.forgotten:
            raise forgotten(str(new_email).strip())
    merge = _merge_values(
        lst,
        member.merge_fields,
        body.get("merge_fields"),
        creating=False,
        skip_validation=skip_merge_validation,
    )
    interests = _interests(lst, member.interests, body.get("interests"))
    permissions = _permissions(lst, member.marketing_permissions, body.get("marketing_permissions"))
    changed: list[str] = []
    if merge != member.merge_fields:
        member.merge_fields = merge
        changed.append("merge_fields")
    if interests != member.interests:
        member.interests = interests
        changed.append("interests")
    if permissions != member.marketing_permissions:
        member.marketing_permissions = permissions
        changed.append("marketing_permissions")
    for key in _PROFILE_KEYS:
        if key in body and body[key] is not None:
            value = bool(body[key]) if key == "vip" else str(body[key])
            if getattr(member, key) != value:
                setattr(member, key, value)
                changed.append(key)
    location = body.get("location")
    if location is not None:
        lat = float(location.get("latitude") or 0)
        lon = float(location.get("longitude") or 0)
        if (lat, lon) != (member.latitude, member.longitude):
            member.latitude, member.longitude = lat, lon
            changed.append("location")
    if changed:
        member.last_changed = sandbox.clock.stamp()
        lst.member_touched(member)
        _emit(sandbox, "profile", lst, member, source, {"changed": changed})
    if new_email is not None:
        change_email(sandbox, lst, member, new_email, source=source)
    if status is not None:
        set_status(sandbox, lst, member, status, source=source, client_ip=client_ip)
    return member


def set_tags(
    sandbox: Sandbox,
    lst: AudienceList,
    member: Member,
    changes: list[tuple[str, bool]],
    *,
    bump: bool = True,
) -> None:
    """Activate (True) or deactivate (False) tags by name; tags are created on first use."""
    now = sandbox.clock.stamp()
    touched = False
    for name, active in changes:
        if active:
            seg = get_or_create_tag(sandbox, lst, name)
            if member.id not in seg.members:
                seg.members[member.id] = now
                member.tags[seg.id] = now
                touched = True
        else:
            found = lst.tag_named(name)
            if found is not None and found.members.pop(member.id, None) is not None:
                member.tags.pop(found.id, None)
                touched = True
    if touched and bump:
        member.last_changed = now
        lst.member_touched(member)


def archive_member(
    sandbox: Sandbox, lst: AudienceList, member: Member | None, *, source: Source = "api"
) -> None:
    if member is None or member.status in ("archived", "cleaned", "pending"):
        raise cannot_archive()
    set_status(sandbox, lst, member, "archived", source=source)


def forget_member(
    sandbox: Sandbox, lst: AudienceList, member: Member, *, source: Source = "api"
) -> None:
    """``delete-permanent``: the address is erased and can never be re-imported via the API."""
    snapshot_member = member
    del lst.members[member.id]
    lst.member_removed(member)
    for sid in member.tags:
        seg = lst.segments.get(sid)
        if seg is not None:
            seg.members.pop(member.id, None)
    lst.forgotten.add(member.id)
    _emit(sandbox, "delete", lst, snapshot_member, source, {"previous_status": member.status})


# --- lookups ----------------------------------------------------------------------------------


def member_key(raw: str) -> str:
    """Path ids: the subscriber hash, or (as the current API allows) the email address."""
    return subscriber_hash(raw) if "@" in raw else raw.lower()


def find_member(lst: AudienceList, raw: str) -> Member:
    member = lst.members.get(member_key(raw))
    if member is None:
        raise not_found()
    return member


def _list_and_member(req: ApiRequest) -> tuple[AudienceList, Member]:
    lst = req.sandbox.get_list(req.params["list_id"])
    return lst, find_member(lst, req.params["subscriber_hash"])


# --- handlers -----------------------------------------------------------------------------------


_SORT_FIELDS = {"timestamp_opt", "timestamp_signup", "last_changed"}


_PAGE_KEYS = frozenset({"count", "offset", "fields", "exclude_fields"})


def _get_members(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    q = req.query
    count, offset = paging(q)
    members = _filtered_members(req.sandbox, lst, q)
    chunk = members[offset : offset + count]
    render = _answer_members(lst, req.base_url, q, "members")
    return Reply(
        {
            "members": [render(m) for m in chunk],
            "list_id": lst.id,
            "total_items": len(members),
            "_links": collection_links(
                req.base_url, f"/lists/{lst.id}/members", f"/lists/{lst.id}"
            ),
        },
        items=len(chunk),
    )


def _filtered_members(sandbox: Sandbox, lst: AudienceList, q: Mapping[str, str]) -> list[Member]:
    """The filtered, sorted member list; cached until the next write, so paging through a big
    audience costs one pass, not one per page."""
    key = (lst.id, tuple(sorted((k, v) for k, v in q.items() if k not in _PAGE_KEYS)))
    cached = sandbox.query_cache.get(key)
    if cached is not None and cached[0] == sandbox.write_seq:
        return cached[1]  # type: ignore[no-any-return]
    members = _filter_members(lst, q, sandbox.clock.stamp())
    if len(sandbox.query_cache) >= 16:
        sandbox.query_cache.clear()
    sandbox.query_cache[key] = (sandbox.write_seq, members)
    return members


def _filter_members(
    lst: AudienceList, q: Mapping[str, str], now: str | None = None
) -> list[Member]:
    """The members matching ``q``, sorted as asked. With ``now`` (the clock's stamp), the
    filters run over the member index's pool of candidates when it has one (same answer,
    cost proportional to the pool); without, over every member."""
    status = q.get("status")
    if status and status not in (*STATUSES, "archived"):
        raise _schema_error("status", f"Invalid status '{status}'.")
    pool = _indexed_pool(lst, q, now) if now is not None else None
    members: list[Member] = list(lst.members.values()) if pool is None else pool
    if status:
        members = [m for m in members if m.status == status]
    if q.get("unsubscribed_since"):
        if status != "unsubscribed":
            raise invalid_resource(
                "The unsubscribed_since filter can only be used with status=unsubscribed."
            )
        bound = parse_ts(q["unsubscribed_since"], "unsubscribed_since")
        members = [m for m in members if m.last_changed > bound]
    if q.get("email_type"):
        members = [m for m in members if m.email_type == q["email_type"]]
    for name, attr, after in (
        ("since_last_changed", "last_changed", True),
        ("before_last_changed", "last_changed", False),
        ("since_timestamp_opt", "timestamp_opt", True),
        ("before_timestamp_opt", "timestamp_opt", False),
    ):
        if q.get(name):
            bound = parse_ts(q[name], name)
            if after:
                members = [m for m in members if getattr(m, attr) > bound]
            else:
                members = [m for m in members if getattr(m, attr) and getattr(m, attr) < bound]
    if q.get("unique_email_id"):
        members = [m for m in members if m.unique_email_id == q["unique_email_id"]]
    if qbool(q, "vip_only"):
        members = [m for m in members if m.vip]
    if q.get("interest_ids"):
        wanted = {i for i in q["interest_ids"].split(",") if i}
        match = q.get("interest_match", "any")
        if match == "all":
            members = [m for m in members if all(m.interests.get(i) for i in wanted)]
        elif match == "none":
            members = [m for m in members if not any(m.interests.get(i) for i in wanted)]
        else:
            members = [m for m in members if any(m.interests.get(i) for i in wanted)]
    sort_field = q.get("sort_field")
    if sort_field:
        if sort_field not in _SORT_FIELDS:
            raise _schema_error("sort_field", f"Invalid sort field '{sort_field}'.")
        direction = q.get("sort_dir", "ASC").upper()
        members.sort(key=lambda m: getattr(m, sort_field), reverse=direction == "DESC")
    return members


def _indexed_pool(lst: AudienceList, q: Mapping[str, str], now: str) -> list[Member] | None:
    """``MemberIndex.pool`` for ``q``'s status and ``since_last_changed`` (``None`` when the
    bound is malformed: the filters then report it as usual)."""
    since = None
    if q.get("since_last_changed"):
        try:
            since = parse_ts(q["since_last_changed"], "since_last_changed")
        except Problem:
            return None
    return lst.member_index().pool(q.get("status") or None, since, now)


def _get_member(req: ApiRequest) -> Reply:
    lst, member = _list_and_member(req)
    return Reply(render_member(lst, member, req.base_url))


def _post_member(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    body = req.json_object()
    missing = [k for k in ("email_address", "status") if k not in body]
    if missing:
        raise _schema_error("", f"Required fields were not provided: {', '.join(missing)}")
    member = create_member(
        req.sandbox,
        lst,
        body["email_address"],
        body["status"],
        body,
        client_ip=req.client_ip,
        skip_merge_validation=qbool(req.query, "skip_merge_validation"),
        tags=body.get("tags"),
    )
    return Reply(render_member(lst, member, req.base_url))


def _put_member(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    body = req.json_object()
    if "email_address" not in body:
        raise _schema_error("", "Required fields were not provided: email_address")
    email = check_email(req.sandbox, body["email_address"])
    key = member_key(req.params["subscriber_hash"])
    email_hash = subscriber_hash(email)
    skip = qbool(req.query, "skip_merge_validation")
    if key != email_hash and email_hash in lst.members:
        # a change of address onto an address that is already on the list
        raise member_exists(email)
    member = lst.members.get(key) or lst.members.get(email_hash)
    if member is None:
        if email_hash in lst.forgotten or key in lst.forgotten:
            raise forgotten(email)
        if "status_if_new" not in body:
            raise _schema_error("", "Required fields were not provided: status_if_new")
        member = create_member(
            req.sandbox,
            lst,
            email,
            body["status_if_new"],
            body,
            client_ip=req.client_ip,
            skip_merge_validation=skip,
            tags=body.get("tags"),
        )
    else:
        update_member(
            req.sandbox,
            lst,
            member,
            body,
            status=body.get("status"),
            client_ip=req.client_ip,
            skip_merge_validation=skip,
        )
    return Reply(render_member(lst, member, req.base_url))


def _patch_member(req: ApiRequest) -> Reply:
    lst, member = _list_and_member(req)
    body = req.json_object()
    update_member(
        req.sandbox,
        lst,
        member,
        body,
        status=body.get("status"),
        client_ip=req.client_ip,
        skip_merge_validation=qbool(req.query, "skip_merge_validation"),
    )
    return Reply(render_member(lst, member, req.base_url))


def _delete_member(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    member = lst.members.get(member_key(req.params["subscriber_hash"]))
    archive_member(req.sandbox, lst, member)
    return Reply(status=204)


def _delete_permanent(req: ApiRequest) -> Reply:
    lst, member = _list_and_member(req)
    forget_member(req.sandbox, lst, member)
    return Reply(status=204)


def _get_tags(req: ApiRequest) -> Reply:
    lst, member = _list_and_member(req)
    tags = [
        {"id": sid, "name": lst.segments[sid].name, "date_added": added}
        for sid, added in member.tags.items()
        if sid in lst.segments
    ]
    items, total = page(tags, req.query)
    href = f"{req.base_url}/lists/{lst.id}/members/{member.id}/tags"
    return Reply(
        {
            "tags": items,
            "total_items": total,
            "_links": [link("self", href), link("create", href, "POST")],
        },
        items=len(items),
    )


def _post_tags(req: ApiRequest) -> Reply:
    lst, member = _list_and_member(req)
    body = req.json_object()
    tags = body.get("tags")
    if tags is None:
        return Reply(status=204)  # as observed: a body without the "tags" wrapper does nothing
    if not isinstance(tags, list):
        raise _schema_error("tags", "Schema describes array, other type found instead")
    changes: list[tuple[str, bool]] = []
    for item in tags:
        if not isinstance(item, dict) or not str(item.get("name") or "").strip():
            raise _schema_error("tags", "Each tag needs a name.")
        state = item.get("status", "active")
        if state not in ("active", "inactive"):
            raise _schema_error("status", "Value must be one of: active, inactive")
        changes.append((str(item["name"]).strip(), state == "active"))
    set_tags(req.sandbox, lst, member, changes)
    return Reply(status=204, items=len(changes))


def _activity(req: ApiRequest, key: str, limit: int | None) -> Reply:
    lst, member = _list_and_member(req)
    feed = req.sandbox.extensions.get("activity_feed")
    if key == "activity":  # the older endpoint has its own item shape (action, timestamp, ...)
        feed = req.sandbox.extensions.get("member_activity", feed)
    items: list[dict[str, Any]] = list(feed(lst.id, member.id)) if feed is not None else []
    if limit is not None:
        items = items[:limit]
        total = len(items)
    else:
        items, total = page(items, req.query)
    href = f"{req.base_url}/lists/{lst.id}/members/{member.id}/{key}"
    body: dict[str, Any] = {
        "activity": items,
        "email_id": member.id,
        "list_id": lst.id,
        "total_items": total,
        "_links": [link("self", href), link("parent", href.rsplit("/", 1)[0])],
    }
    return Reply(body, items=len(items))


def _get_notes(req: ApiRequest) -> Reply:
    """A member's notes. Notes are written in Mailchimp's web app, which the sandbox does not
    have, so the collection is always empty (for access requests that read it)."""
    lst, member = _list_and_member(req)
    href = f"{req.base_url}/lists/{lst.id}/members/{member.id}/notes"
    body = {"notes": [], "email_id": member.id, "list_id": lst.id, "total_items": 0}
    return Reply({**body, "_links": [link("self", href)]}, items=0)


def _activity_feed(req: ApiRequest) -> Reply:
    return _activity(req, "activity-feed", None)


def _activity_legacy(req: ApiRequest) -> Reply:
    return _activity(req, "activity", 50)


# --- batch subscribe ---------------------------------------------------------------------------


def _batch_error(email: Any, problem: Problem) -> dict[str, Any]:
    entry: dict[str, Any] = {"email_address": email if isinstance(email, str) else ""}
    if problem.title == "Member Exists":
        entry["error"] = (
            f"{email} is already a list member, do you want to update? please provide "
            "update_existing:true in the request body"
        )
        entry["error_code"] = "ERROR_CONTACT_EXISTS"
        return entry
    entry["error"] = problem.detail
    entry["error_code"] = "ERROR_GENERIC"
    if problem.errors:
        entry["field"] = problem.errors[0].get("field", "")
        entry["field_message"] = problem.errors[0].get("message", "")
        if problem.detail.startswith("The resource submitted"):
            entry["error"] = problem.errors[0].get("message", problem.detail)
    return entry


def _answer_members(
    lst: AudienceList, base: str, query: Mapping[str, str], collection: str
) -> Callable[[Member], Any]:
    """How to render the members of the answer's ``collection`` so that, once the app has
    applied ``fields`` / ``exclude_fields``, the answer is what ``render_member`` would give:
    only the keys ``fields`` keeps, or, when nothing cuts the answer, each member encoded at
    once (``wire.encoded``)."""
    render = member_renderer(lst, base, kept_keys(query, collection))
    if answer_is_cut(query):
        return render
    return lambda member: encoded(render(member))


def batch_subscribe(
    sandbox: Sandbox,
    lst: AudienceList,
    body: Mapping[str, Any],
    *,
    base_url: str,
    client_ip: str = "",
    skip_merge_validation: bool = False,
    skip_duplicate_check: bool = False,
    query: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``POST /lists/{id}``: up to 500 members; a 200 envelope with per-member errors, unless
    the request breaks the schema (JSON types, status values: a 400 naming every member).

    ``query``: the call's query string, whose ``fields`` / ``exclude_fields`` will cut the
    answer; members are rendered only as far as that answer needs (``_answer_members``).
    """
    items = body.get("members")
    if not isinstance(items, list):
        raise _schema_error("", "Required fields were not provided: members")
    if len(items) > MAX_BATCH:
        raise _schema_error(
            "members", f"You may not submit more than {MAX_BATCH} members in one request."
        )
    _check_batch_schema(lst, items)
    update_existing = bool(body.get("update_existing", False))
    sync_tags = bool(body.get("sync_tags", False))
    created: list[Member] = []
    updated: list[Member] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    members = lst.members
    for item in items:
        email = item.get("email_address") if isinstance(item, dict) else None
        try:
            if not isinstance(item, dict):
                raise _schema_error("", "Schema describes object, other type found instead")
            email = check_email(sandbox, email)
            h = subscriber_hash(email)
            if h in seen:
                if skip_duplicate_check:
                    continue
                raise invalid_resource(f"{email} was provided more than once in this batch.")
            seen.add(h)
            if "marketing_permissions" in item:  # not in the batch member schema: ignored
                item = {k: v for k, v in item.items() if k != "marketing_permissions"}
            existing = members.get(h)
            if existing is None:
                status = item.get("status")  # "status_if_new" is not part of a batch member
                if status is None:
                    raise _schema_error("status", "This value should not be blank.")
                created.append(
                    create_member(
                        sandbox,
                        lst,
                        email,
                        status,
                        item,
                        client_ip=client_ip,
                        skip_merge_validation=skip_merge_validation,
                        tags=item.get("tags"),
                        checked_hash=h,
                        schema_checked=True,
                    )
                )
            elif not update_existing:
                raise member_exists(email)
            else:
                update_member(
                    sandbox,
                    lst,
                    existing,
                    item,
                    status=item.get("status"),
                    client_ip=client_ip,
                    skip_merge_validation=skip_merge_validation,
                    keep_address=True,
                    schema_checked=True,
                )
                if sync_tags:
                    wanted = set(_tag_names(item.get("tags")))
                    current = {lst.segments[s].name for s in existing.tags if s in lst.segments}
                    changes = [(n, True) for n in wanted - current]
                    changes += [(n, False) for n in current - wanted]
                    set_tags(sandbox, lst, existing, changes)
                updated.append(existing)
        except Problem as problem:
            errors.append(_batch_error(email, problem))
    render_new = _answer_members(lst, base_url, query or {}, "new_members")
    render_updated = _answer_members(lst, base_url, query or {}, "updated_members")
    return {
        "new_members": [render_new(m) for m in created],
        "updated_members": [render_updated(m) for m in updated],
        "errors": errors,
        "total_created": len(created),
        "total_updated": len(updated),
        "error_count": len(errors),
        "_links": [link("self", f"{base_url}/lists/{lst.id}", "POST")],
    }


def _check_batch_schema(lst: AudienceList, items: list[Any]) -> None:
    """The batch member schema: JSON types and ``status`` values, every member at once."""
    errors: list[dict[str, str]] = []
    for n, item in enumerate(items):
        if item.__class__ is not dict:
            continue  # reported for that member alone
        found = _schema_errors(lst, item)
        status = item.get("status")
        if status is not None and status not in STATUSES:
            found.insert(0, {"field": "status", "message": _NOT_ACCEPTED})
        errors += [{**e, "field": f"members.item:{n}.{e['field']}"} for e in found]
    if errors:
        raise invalid_resource(errors=errors)


def _batch_subscribe(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    body = req.json_object()
    result = batch_subscribe(
        req.sandbox,
        lst,
        body,
        base_url=req.base_url,
        client_ip=req.client_ip,
        skip_merge_validation=qbool(req.query, "skip_merge_validation"),
        skip_duplicate_check=qbool(req.query, "skip_duplicate_check"),
        query=req.query,
    )
    return Reply(result, items=len(body.get("members") or []))


_MEMBER = "/lists/{list_id}/members/{subscriber_hash}"

routes = [
    Route("POST", "/lists/{list_id}", _batch_subscribe),
    Route("GET", "/lists/{list_id}/members", _get_members),
    Route("POST", "/lists/{list_id}/members", _post_member),
    Route("GET", _MEMBER, _get_member),
    Route("PUT", _MEMBER, _put_member),
    Route("PATCH", _MEMBER, _patch_member),
    Route("DELETE", _MEMBER, _delete_member),
    Route("POST", _MEMBER + "/actions/delete-permanent", _delete_permanent),
    Route("GET", _MEMBER + "/tags", _get_tags),
    Route("POST", _MEMBER + "/tags", _post_tags),
    Route("GET", _MEMBER + "/activity-feed", _activity_feed),
    Route("GET", _MEMBER + "/activity", _activity_legacy),
    Route("GET", _MEMBER + "/notes", _get_notes),
]
