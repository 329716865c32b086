"""Contacts: identity, typed attributes, lists membership, blocklisting, and their endpoints.

Every change to a contact goes through the functions here (``create_contact``,
``update_contact``, ``delete_contact``, ``add_to_list``, ``remove_from_list``,
``set_blacklisted``): they keep the identifier indexes and list memberships in step, bump
``modifiedAt`` and emit ``ContactEvent`` for webhooks.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any
from urllib.parse import unquote

from campaign_bridge.sandbox.brevo import recent
from campaign_bridge.sandbox.brevo.model import Attribute, BrevoSandbox, Contact, ContactEvent
from campaign_bridge.sandbox.brevo.wire import (
    ApiRequest,
    BrevoError,
    Reply,
    Route,
    invalid,
    missing,
    not_found,
    paging,
    parse_when,
    qints,
    stamp,
)

__all__ = [
    "IDENTIFIER_TYPES",
    "add_to_list",
    "changed_since",
    "coerce_attributes",
    "coerce_value",
    "create_contact",
    "delete_contact",
    "emit_change",
    "find_contact",
    "mark_list_unsubscribed",
    "normal_email",
    "remove_from_list",
    "render_contact",
    "resolve",
    "routes",
    "set_blacklisted",
    "update_contact",
]

IDENTIFIER_TYPES = (
    "email_id",
    "contact_id",
    "ext_id",
    "phone_id",
    "whatsapp_id",
    "landline_number_id",
)
_EMAIL = re.compile(
    r"^[^@\s,;<>()\[\]\\\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
NO_CONTACT = "Contact does not exist"
#: the attributes handled as identifiers rather than stored values
IDENTITY_ATTRIBUTES = frozenset({"EMAIL", "SMS"})


# --- identity ------------------------------------------------------------------------------------


def normal_email(value: Any) -> str | None:
    """The lower-cased address, or None when it is not a valid address."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if _EMAIL.match(email) else None


def normal_sms(value: Any) -> str | None:
    """``+33612345678`` from ``+33…``, ``0033…`` or ``33…``; None when not a phone number."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    digits = re.sub(r"[\s().-]", "", value)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    return "+" + digits if digits.isdigit() and 6 <= len(digits) <= 17 else None


def find_contact(sandbox: BrevoSandbox, identifier: str) -> Contact | None:
    """By email, then id, then SMS (Brevo's guess when no ``identifierType`` is given)."""
    email = normal_email(identifier)
    if email is not None:
        cid = sandbox.by_email.get(email)
        return sandbox.contacts.get(cid) if cid is not None else None
    if identifier.isdigit():
        found = sandbox.contacts.get(int(identifier))
        if found is not None:
            return found
    sms = normal_sms(identifier)
    cid = sandbox.by_sms.get(sms) if sms else None
    return sandbox.contacts.get(cid) if cid is not None else None


def resolve(request: ApiRequest) -> Contact:
    """The contact named by the path's ``{identifier}`` and ``identifierType``; 404 if none."""
    sandbox = request.sandbox
    identifier = unquote(request.params["identifier"])
    kind = request.query.get("identifierType")
    found: Contact | None
    if kind is None:
        found = find_contact(sandbox, identifier)
    elif kind == "email_id":
        cid = sandbox.by_email.get(identifier.strip().lower())
        found = sandbox.contacts.get(cid) if cid is not None else None
    elif kind == "contact_id":
        if not identifier.isdigit():
            raise invalid("Invalid contact id")
        found = sandbox.contacts.get(int(identifier))
    elif kind == "ext_id":
        cid = sandbox.by_ext_id.get(identifier)
        found = sandbox.contacts.get(cid) if cid is not None else None
    elif kind in ("phone_id", "whatsapp_id", "landline_number_id"):
        sms = normal_sms(identifier)
        cid = sandbox.by_sms.get(sms) if sms else None
        found = sandbox.contacts.get(cid) if cid is not None else None
    else:
        raise invalid(f"identifierType must be one of {', '.join(IDENTIFIER_TYPES)}")
    if found is None:
        raise not_found(NO_CONTACT)
    return found


# --- attributes ----------------------------------------------------------------------------------


def coerce_value(attribute: Attribute, value: Any) -> tuple[bool, Any]:
    """``(fits, value)``: a value that does not fit the attribute's type is ignored."""
    kind = attribute.type
    if kind == "text" or kind is None or kind == "id":
        if isinstance(value, str):
            return True, value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, str(value)
        return False, None
    if kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, value
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if kind == "boolean":
        if isinstance(value, bool):
            return True, value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return True, value.lower() == "true"
        return False, None
    if kind == "date":
        if isinstance(value, str):
            try:
                return True, datetime.fromisoformat(value[:10]).date().isoformat()
            except ValueError:
                return False, None
        return False, None
    if kind == "category":
        for item in attribute.enumeration:
            if value == item["value"] or (isinstance(value, str) and value == item["label"]):
                return True, item["value"]
            if isinstance(value, str) and value.isdigit() and int(value) == item["value"]:
                return True, item["value"]
        return False, None
    if kind == "multiple-choice":
        chosen = [value] if isinstance(value, str) else value
        if isinstance(chosen, list) and all(c in attribute.options for c in chosen):
            return True, list(chosen)
        return False, None
    return False, None


def coerce_attributes(
    sandbox: BrevoSandbox,
    given: Any,
    *,
    strict: bool,
    empty_erases: bool = True,
) -> dict[str, Any]:
    """Attribute values keyed by upper-case name (``None``: erase). Unknown names raise 400 when
    ``strict`` (else they are dropped); values that do not fit their type are dropped."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise invalid("attributes should be an object")
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for raw_name, value in given.items():
        name = str(raw_name).upper()
        if name in IDENTITY_ATTRIBUTES:
            out[name] = value
            continue
        attribute = sandbox.attributes.get(name)
        if attribute is None or attribute.category in ("calculated", "global"):
            unknown.append(name)
            continue
        if value is None or value == "":
            if empty_erases:
                out[name] = None
            continue
        fits, coerced = coerce_value(attribute, value)
        if fits:
            out[name] = coerced
    if unknown and strict:
        raise invalid(f"Attribute(s) not found: {', '.join(unknown)}")
    return out


# --- changes -------------------------------------------------------------------------------------


def emit_change(sandbox: BrevoSandbox, contact: Contact, kind: str, **kwargs: Any) -> None:
    """Tell the listeners; a change made through the API carries the name of the API key that
    made it (``api_key_name`` in Brevo's contact webhooks)."""
    if sandbox.has_listeners:
        if kwargs.get("source", "api") == "api":
            kwargs.setdefault("api_key_name", sandbox.acting_key_name)
        sandbox.emit(ContactEvent(kind, contact.id, contact.email, sandbox.now(), **kwargs))


def _set_email(sandbox: BrevoSandbox, contact: Contact, email: str | None) -> None:
    if contact.email:
        sandbox.by_email.pop(contact.email, None)
    contact.email = email
    if email:
        sandbox.by_email[email] = contact.id


def _set_sms(sandbox: BrevoSandbox, contact: Contact, sms: str | None) -> None:
    old = contact.attributes.get("SMS")
    if old:
        sandbox.by_sms.pop(old, None)
    if sms:
        contact.attributes["SMS"] = sms
        sandbox.by_sms[sms] = contact.id
    else:
        contact.attributes.pop("SMS", None)


def _set_ext_id(sandbox: BrevoSandbox, contact: Contact, ext_id: str | None) -> None:
    if contact.ext_id:
        sandbox.by_ext_id.pop(contact.ext_id, None)
    contact.ext_id = ext_id
    if ext_id:
        sandbox.by_ext_id[ext_id] = contact.id


def _list_ids(value: Any, name: str) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise invalid(f"{name} should be an array of integers")
    return value


def _check_lists(sandbox: BrevoSandbox, ids: Iterable[int]) -> None:
    for list_id in ids:
        if list_id not in sandbox.lists:
            raise invalid("List ID does not exist")


def add_to_list(sandbox: BrevoSandbox, contact: Contact, list_id: int) -> bool:
    """True when the contact was not on the list yet."""
    if list_id in contact.list_ids:
        return False
    contact.list_ids[list_id] = None
    if contact.list_unsubscribed:
        contact.list_unsubscribed.pop(list_id, None)
    sandbox.lists[list_id].members[contact.id] = None
    return True


def remove_from_list(sandbox: BrevoSandbox, contact: Contact, list_id: int) -> bool:
    if list_id not in contact.list_ids:
        return False
    del contact.list_ids[list_id]
    lst = sandbox.lists.get(list_id)
    if lst is not None:
        lst.members.pop(contact.id, None)
    return True


def mark_list_unsubscribed(contact: Contact, list_id: int) -> None:
    """Record that the contact unsubscribed from ``list_id`` (``listUnsubscribed``)."""
    if contact.list_unsubscribed is None:
        contact.list_unsubscribed = {}
    contact.list_unsubscribed[list_id] = None


def set_blacklisted(
    sandbox: BrevoSandbox, contact: Contact, value: bool, *, reason: str, source: str
) -> bool:
    """Set ``emailBlacklisted``; True when it changed (an event is emitted then)."""
    if contact.email_blacklisted == value:
        return False
    contact.email_blacklisted = value
    contact.blacklist_reason = reason if value else ""
    recent.touch(sandbox, contact)
    emit_change(
        sandbox,
        contact,
        "blocklisted" if value else "updated",
        source=source,
        changed={"emailBlacklisted": value},
        list_ids=list(contact.list_ids),
    )
    return True


def _identities(sandbox: BrevoSandbox, body: Mapping[str, Any]) -> dict[str, Any]:
    """The identifiers a create body carries: email, ext_id, SMS (validated)."""
    out: dict[str, Any] = {}
    if body.get("email") not in (None, ""):
        email = normal_email(body["email"])
        if email is None:
            raise invalid("Invalid email address")
        out["email"] = email
    if body.get("ext_id") not in (None, ""):
        out["ext_id"] = str(body["ext_id"])
    attrs = body.get("attributes")
    if isinstance(attrs, Mapping):
        sms_raw = next((v for k, v in attrs.items() if str(k).upper() == "SMS"), None)
        if sms_raw not in (None, ""):
            sms = normal_sms(sms_raw)
            if sms is None:
                raise invalid("Invalid phone number")
            out["SMS"] = sms
    return out


def _existing(sandbox: BrevoSandbox, ids: Mapping[str, Any]) -> dict[str, int]:
    found: dict[str, int] = {}
    for name, index in (
        ("email", sandbox.by_email),
        ("ext_id", sandbox.by_ext_id),
        ("SMS", sandbox.by_sms),
    ):
        if name in ids and ids[name] in index:
            found[name] = index[ids[name]]
    return found


def create_contact(
    sandbox: BrevoSandbox, body: Mapping[str, Any], *, source: str = "api"
) -> tuple[int, Contact | None]:
    """``POST /contacts``: ``(201, new)``, or ``(204, updated)`` with ``updateEnabled``."""
    ids = _identities(sandbox, body)
    if not ids:
        raise missing("Please provide either email, ext_id or SMS attribute for the contact")
    list_ids = _list_ids(body.get("listIds"), "listIds")
    _check_lists(sandbox, list_ids)
    found = _existing(sandbox, ids)
    if found:
        owners = set(found.values())
        if body.get("updateEnabled") is not True or (
            len(owners) > 1 and body.get("forceMerge") is not True
        ):
            first = next(iter(found))
            raise BrevoError(
                400,
                "duplicate_parameter",
                f"Unable to create contact, {first} is already associated with another Contact",
                metadata={"duplicate_identifiers": list(found)},
            )
        survivors = sorted(
            (sandbox.contacts[c] for c in owners), key=lambda c: c.modified_at, reverse=True
        )
        for loser in survivors[1:]:
            delete_contact(sandbox, loser, source=source)
        contact = survivors[0]
        update = dict(body)
        if sandbox.config.upsert_replaces_lists and "listIds" in body:
            update["unlinkListIds"] = [i for i in contact.list_ids if i not in list_ids]
        if "email" in ids and contact.email != ids["email"]:
            update.setdefault("attributes", {})
            update["attributes"] = {**update["attributes"], "EMAIL": ids["email"]}
        update_contact(sandbox, contact, update, source=source)
        return 204, contact
    attributes = coerce_attributes(
        sandbox, body.get("attributes"), strict=sandbox.config.reject_unknown_attributes
    )
    now = sandbox.now()
    contact = Contact(
        id=sandbox.ids.next("contact"),
        email=None,
        ext_id=None,
        created_at=now,
        modified_at=now,
        email_blacklisted=body.get("emailBlacklisted") is True,
        sms_blacklisted=body.get("smsBlacklisted") is True,
    )
    if contact.email_blacklisted:
        contact.blacklist_reason = "api"
    sandbox.contacts[contact.id] = contact
    recent.note(sandbox, contact)
    _set_email(sandbox, contact, ids.get("email"))
    _set_ext_id(sandbox, contact, ids.get("ext_id"))
    _set_sms(sandbox, contact, ids.get("SMS"))
    for name, value in attributes.items():
        if name not in IDENTITY_ATTRIBUTES and value is not None:
            contact.attributes[name] = value
    if isinstance(body.get("smtpBlacklistSender"), list):
        contact.smtp_blacklist_sender = tuple(str(s) for s in body["smtpBlacklistSender"])
    for list_id in list_ids:
        add_to_list(sandbox, contact, list_id)
    emit_change(sandbox, contact, "created", source=source, list_ids=list_ids)
    if list_ids:
        emit_change(sandbox, contact, "list_addition", source=source, list_ids=list_ids)
    return 201, contact


def update_contact(
    sandbox: BrevoSandbox,
    contact: Contact,
    body: Mapping[str, Any],
    *,
    source: str = "api",
    strict: bool | None = None,
    empty_erases: bool = True,
) -> dict[str, Any]:
    """``PUT /contacts/{identifier}``: only what is sent changes. Returns what changed."""
    strict = sandbox.config.reject_unknown_attributes if strict is None else strict
    add = _list_ids(body.get("listIds"), "listIds")
    unlink = _list_ids(body.get("unlinkListIds"), "unlinkListIds")
    _check_lists(sandbox, [*add, *unlink])
    attributes = coerce_attributes(
        sandbox, body.get("attributes"), strict=strict, empty_erases=empty_erases
    )
    changed: dict[str, Any] = {}
    if "EMAIL" in attributes:
        email = normal_email(attributes.pop("EMAIL"))
        if email is None:
            raise invalid("Invalid email address")
        if email != contact.email:
            other = sandbox.by_email.get(email)
            if other is not None and other != contact.id:
                raise BrevoError(
                    400,
                    "duplicate_parameter",
                    "Unable to update contact, email is already associated with another Contact",
                    metadata={"duplicate_identifiers": ["email"]},
                )
            _set_email(sandbox, contact, email)
            changed["EMAIL"] = email
            # a new address is a new consent: Brevo lifts the blocklisting
            if contact.email_blacklisted and "emailBlacklisted" not in body:
                contact.email_blacklisted = False
                contact.blacklist_reason = ""
                changed["emailBlacklisted"] = False
    if "SMS" in attributes:
        raw = attributes.pop("SMS")
        sms = normal_sms(raw) if raw not in (None, "") else None
        if raw not in (None, "") and sms is None:
            raise invalid("Invalid phone number")
        other = sandbox.by_sms.get(sms) if sms else None
        if other is not None and other != contact.id:
            raise BrevoError(
                400,
                "duplicate_parameter",
                "Unable to update contact, SMS is already associated with another Contact",
                metadata={"duplicate_identifiers": ["SMS"]},
            )
        if contact.attributes.get("SMS") != sms:
            _set_sms(sandbox, contact, sms)
            changed["SMS"] = sms
    if body.get("ext_id") not in (None, "") and str(body["ext_id"]) != contact.ext_id:
        ext_id = str(body["ext_id"])
        other = sandbox.by_ext_id.get(ext_id)
        if other is not None and other != contact.id:
            raise BrevoError(
                400,
                "duplicate_parameter",
                "Unable to update contact, ext_id is already associated with another Contact",
                metadata={"duplicate_identifiers": ["ext_id"]},
            )
        _set_ext_id(sandbox, contact, ext_id)
        changed["ext_id"] = ext_id
    for name, value in attributes.items():
        if value is None:
            if contact.attributes.pop(name, None) is not None:
                changed[name] = None
        elif contact.attributes.get(name) != value:
            contact.attributes[name] = value
            changed[name] = value
    for flag, attr in (
        ("emailBlacklisted", "email_blacklisted"),
        ("smsBlacklisted", "sms_blacklisted"),
    ):
        if isinstance(body.get(flag), bool) and getattr(contact, attr) != body[flag]:
            setattr(contact, attr, body[flag])
            changed[flag] = body[flag]
            if flag == "emailBlacklisted":
                contact.blacklist_reason = "api" if body[flag] else ""
    if isinstance(body.get("smtpBlacklistSender"), list):
        contact.smtp_blacklist_sender = tuple(str(s) for s in body["smtpBlacklistSender"])
    added = [i for i in add if add_to_list(sandbox, contact, i)]
    removed = [i for i in unlink if remove_from_list(sandbox, contact, i)]
    if changed or added or removed:
        recent.touch(sandbox, contact)
    if changed:
        emit_change(sandbox, contact, "updated", source=source, changed=changed)
    if added:
        emit_change(sandbox, contact, "list_addition", source=source, list_ids=added)
    if removed:
        changed["unlinkListIds"] = removed
    return changed


def delete_contact(sandbox: BrevoSandbox, contact: Contact, *, source: str = "api") -> None:
    lists = list(contact.list_ids)
    for list_id in lists:
        remove_from_list(sandbox, contact, list_id)
    _set_email(sandbox, contact, None)
    _set_ext_id(sandbox, contact, None)
    _set_sms(sandbox, contact, None)
    del sandbox.contacts[contact.id]
    recent.forget(sandbox, contact.id)
    emit_change(sandbox, contact, "deleted", source=source, list_ids=lists)


# --- rendering -----------------------------------------------------------------------------------


def render_contact(contact: Contact) -> dict[str, Any]:
    """The contact as ``GET /contacts`` lists it."""
    out: dict[str, Any] = {
        "id": contact.id,
        "emailBlacklisted": contact.email_blacklisted,
        "smsBlacklisted": contact.sms_blacklisted,
        "whatsappBlacklisted": False,
        "createdAt": stamp(contact.created_at),
        "modifiedAt": stamp(contact.modified_at),
        "listIds": list(contact.list_ids),
        "attributes": dict(contact.attributes),
    }
    if contact.email:
        out["email"] = contact.email
    if contact.ext_id:
        out["attributes"]["EXT_ID"] = contact.ext_id
    if contact.list_unsubscribed:
        out["listUnsubscribed"] = list(contact.list_unsubscribed)
    return out


# --- handlers ------------------------------------------------------------------------------------


def _filter(expression: str) -> tuple[str, str]:
    found = re.fullmatch(r'\s*equals\(\s*([A-Za-z0-9_]+)\s*,\s*"?([^"]*)"?\s*\)\s*', expression)
    if found is None:
        raise invalid('filter must look like equals(ATTRIBUTE,"value")')
    return found.group(1).upper(), found.group(2)


def select_contacts(
    request: ApiRequest,
    candidates: Callable[[], Iterable[Contact]],
    default: int,
    maximum: int,
) -> Reply:
    """Filter (``modifiedSince``, ``createdSince``, ``filter``), sort by creation, page:
    ``{contacts, count}``. The filtered, sorted ids are cached until the next write, so paging
    through a big account filters and sorts once, not once per page."""
    limit, offset, sort = paging(request, default, maximum)
    sandbox = request.sandbox
    key = (request.path, tuple(sorted(p for p in request.pairs if p[0] not in ("limit", "offset"))))
    cache: dict[Any, tuple[int, list[int]]] = sandbox.extensions.setdefault("query_cache", {})
    cached = cache.get(key)
    if cached is not None and cached[0] == sandbox.write_seq:
        ids = cached[1]
    else:
        ids = _select_ids(request, candidates(), sort)
        if len(cache) > 32:
            cache.clear()
        cache[key] = (sandbox.write_seq, ids)
    chosen = [sandbox.contacts[i] for i in ids[offset : offset + limit]]
    return Reply(
        {"contacts": [render_contact(c) for c in chosen], "count": len(ids)}, items=len(chosen)
    )


@functools.lru_cache(maxsize=4096)
def millis(epoch: float) -> int:
    """The millisecond ``stamp`` shows for ``epoch``: the fraction rounded to microseconds, as
    ``datetime.fromtimestamp`` does, then cut (a carry to 1,000,000 us is the next second).
    Cached like ``stamp``: an import's contacts share one instant, and every read-back page
    compares the creation time of each contact created since the window's start."""
    whole = math.floor(epoch)
    return whole * 1000 + round((epoch - whole) * 1_000_000) // 1000


def created_after(sandbox: BrevoSandbox, since: float) -> list[Contact] | None:
    """The contacts created after ``since``, newest first, found from the newest back; ``None``
    when the account's contacts are not in creation order (then the caller scans them all).

    Contacts are kept in id order, which is creation order unless the clock was set back;
    whether it is, is checked once per contact (``extensions["creation_order"]``: the last id
    checked, its time, and whether all so far were in order)."""
    contacts = sandbox.contacts
    checked_id, checked_at, in_order = sandbox.extensions.get("creation_order", (0, 0.0, True))
    newest = next(reversed(contacts.values()), None)
    if newest is not None and newest.id < checked_id:  # the account was reset: check afresh
        checked_id, checked_at, in_order = 0, 0.0, True
    if in_order:
        fresh: list[Contact] = []
        for contact in reversed(contacts.values()):
            if contact.id <= checked_id:
                break
            fresh.append(contact)
        for contact in reversed(fresh):  # oldest first
            if contact.created_at < checked_at or contact.id <= checked_id:
                in_order = False
                break
            checked_id, checked_at = contact.id, contact.created_at
        sandbox.extensions["creation_order"] = (checked_id, checked_at, in_order)
    if not in_order:
        return None
    found: list[Contact] = []
    since_ms = millis(since)
    for contact in reversed(contacts.values()):
        if millis(contact.created_at) <= since_ms:
            break
        found.append(contact)
    return found


def changed_since(request: ApiRequest) -> list[Contact] | None:
    """The contacts changed after the query's ``modifiedSince`` (from the index Brevo answers
    it from; ``_select_ids`` filters them as it would every contact), or ``None`` without one."""
    modified = request.query.get("modifiedSince")
    if not modified:
        return None
    return recent.changed_after(request.sandbox, parse_when(modified, "modifiedSince"))


def _select_ids(request: ApiRequest, candidates: Iterable[Contact], sort: str) -> list[int]:
    query = request.query
    rows = list(candidates)
    if query.get("modifiedSince"):
        since = parse_when(query["modifiedSince"], "modifiedSince")
        rows = [c for c in rows if c.modified_at > since]
    if query.get("createdSince"):  # to the millisecond, as Brevo keeps (and shows) them
        since_ms = millis(parse_when(query["createdSince"], "createdSince"))
        rows = [c for c in rows if millis(c.created_at) > since_ms]
    if query.get("filter"):
        name, value = _filter(query["filter"])
        rows = [c for c in rows if str(c.attributes.get(name, "")).lower() == value.lower()]
    rows.sort(key=attrgetter("created_at", "id"), reverse=sort == "desc")
    return [c.id for c in rows]


def list_contacts(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    list_ids = qints(request.pairs, "listIds")
    ids = qints(request.pairs, "ids")
    if list_ids and request.query.get("segmentId"):
        raise invalid("Either listIds or segmentId can be passed, not both")
    if len(ids) > 20:
        raise invalid("A maximum of 20 ids can be passed")
    if list_ids:
        _check_lists(sandbox, list_ids)

    def candidates() -> Iterable[Contact]:
        contacts = sandbox.contacts
        created_since = request.query.get("createdSince")
        recent = (
            created_after(sandbox, parse_when(created_since, "createdSince"))
            if created_since and not ids
            else None
        )
        if recent is not None:  # the newest contacts only (_select_ids still filters all)
            if list_ids:
                wanted = set(list_ids)
                return [c for c in recent if not wanted.isdisjoint(c.list_ids)]
            return recent
        if ids:
            rows = [contacts[i] for i in dict.fromkeys(ids) if i in contacts]
            if list_ids:
                wanted = set(list_ids)
                rows = [c for c in rows if not wanted.isdisjoint(c.list_ids)]
            return rows
        changed = changed_since(request)
        if changed is not None:  # the contacts changed since, from the index (recent.py)
            if list_ids:
                wanted = set(list_ids)
                return [c for c in changed if not wanted.isdisjoint(c.list_ids)]
            return changed
        if list_ids:  # the lists' member indexes, not a scan of the account
            members: dict[int, None] = {}
            for list_id in list_ids:
                members.update(sandbox.lists[list_id].members)
            return [contacts[i] for i in members]
        return contacts.values()

    return select_contacts(request, candidates, 50, 1000)


def create_handler(request: ApiRequest) -> Reply:
    body = request.json_object()
    status, contact = create_contact(request.sandbox, body)
    if status == 201:
        assert contact is not None
        return Reply({"id": contact.id}, status=201)
    if body.get("getId") is True and contact is not None:
        return Reply({"id": contact.id}, status=200)
    return Reply(status=204)


def get_handler(request: ApiRequest) -> Reply:
    contact = resolve(request)
    out = render_contact(contact)
    stats = request.sandbox.extensions.get("contact_statistics")
    if callable(stats):
        start, end = stats_window(request.query, request.sandbox.now())
        out["statistics"] = stats(contact, start, end)
    else:
        out["statistics"] = {}
    return Reply(out)


def update_handler(request: ApiRequest) -> Reply:
    update_contact(request.sandbox, resolve(request), request.json_object())
    return Reply(status=204)


def delete_handler(request: ApiRequest) -> Reply:
    delete_contact(request.sandbox, resolve(request))
    return Reply(status=204)


def stats_window(query: Mapping[str, str], now: float) -> tuple[float, float]:
    """``startDate``/``endDate`` (YYYY-MM-DD, both or neither, span ≤ 90 days; default: the last
    90 days) as epoch seconds, the end day included."""
    from campaign_bridge.sandbox.brevo.wire import parse_day

    start, end = query.get("startDate"), query.get("endDate")
    if bool(start) != bool(end):
        raise invalid("startDate and endDate must be passed together")
    if not start or not end:
        # a send's events are stamped up to a few hours after it, and visible at once
        return now - 90 * 86400, now + 86400
    first, last = parse_day(start, "startDate"), parse_day(end, "endDate")
    if last < first:
        raise invalid("endDate must be after startDate")
    if last - first > timedelta(days=90):
        raise invalid("The maximum date range is 90 days")
    return first.timestamp(), (last + timedelta(days=1)).astimezone(UTC).timestamp()


routes = [
    Route("GET", "/contacts", list_contacts),
    Route("POST", "/contacts", create_handler),
]

#: single-contact routes, registered after every literal /contacts/… route (app.py)
identifier_routes = [
    Route("GET", "/contacts/{identifier}", get_handler),
    Route("PUT", "/contacts/{identifier}", update_handler),
    Route("DELETE", "/contacts/{identifier}", delete_handler),
]
