"""The Brevo adapter's pure helpers: which path a member takes, and the outcomes it gets
when it is refused. No I/O (``record_error`` reads an answer already received)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from campaign_bridge.errors import BridgeError, ProviderError
from campaign_bridge.providers._brevo_errors import parse_problem, translate
from campaign_bridge.providers._brevo_wire import normal_email, status_of, valid_email
from campaign_bridge.providers.base import MemberStatus, MemberUpsert, Outcome, OutcomeKind

__all__ = [
    "attributes_of",
    "awaiting_confirmation",
    "bind",
    "blocklisted",
    "brevo_time",
    "doi_missing",
    "doi_unsent",
    "holds_values",
    "importable",
    "joins",
    "list_number",
    "made_by_import",
    "precheck",
    "record_error",
    "unique_keys",
]

S = MemberStatus
K = OutcomeKind


def list_number(list_id: str) -> int:
    if not str(list_id).strip().isdigit():
        raise ProviderError(
            f"Brevo list ids are numbers and {list_id!r} is not one: set destination.list_id "
            "to the list's id (Contacts > Lists in Brevo)"
        )
    return int(list_id)


def unique_keys(keys: Iterable[str]) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice in one call; keys must be unique")
        seen.add(key)


#: attribute names already upper case (Brevo's form), so a member whose names are all here is
#: copied as it is instead of upper-casing every name again (a push sends the same few names)
_UPPER_NAMES: set[str] = set()


def attributes_of(member: MemberUpsert) -> dict[str, Any]:
    """The member's merge fields as Brevo attributes (names upper case): a new dict."""
    fields = member.merge_fields
    if _UPPER_NAMES.issuperset(fields):
        return dict(fields)
    attributes = {name.upper(): value for name, value in fields.items()}
    _UPPER_NAMES.update(name for name in fields if name == name.upper())
    return attributes


def made_by_import(
    contact: Mapping[str, Any],
    member: MemberUpsert,
    list_id: int,
    status: MemberStatus,
    sent: Mapping[str, Any] | None = None,
) -> bool:
    """Whether ``contact``, read back after an import, is the one the import made for
    ``member``: it has the import's status and every value the import sent (``sent``: the
    attributes as sent, when the caller has them)."""
    if status_of(contact, list_id) is not status:
        return False
    return holds_values(contact, attributes_of(member) if sent is None else sent)


def holds_values(contact: Mapping[str, Any], sent: Mapping[str, Any]) -> bool:
    """Whether ``contact`` holds every value of ``sent`` (attributes as sent; ``None``, an
    erased value, is not compared)."""
    held = contact.get("attributes") or {}
    for name, value in sent.items():
        if value is None:
            continue
        now = held.get(name)
        if not ((now.__class__ is value.__class__ and now == value) or _same(now, value)):
            return False
    return True


def _same(held: object, sent: object) -> bool:
    """Whether Brevo holds the value sent (numbers compare as numbers: 12.50 is 12.5)."""
    if (held.__class__ is sent.__class__ and held == sent) or str(held) == str(sent):
        return True
    try:
        return float(str(held)) == float(str(sent))
    except ValueError:
        return False


def joins(member: MemberUpsert) -> bool:
    """A member the caller believes new, to be subscribed: it may join the list."""
    return member.exists is not True and member.status_if_new is S.SUBSCRIBED


def importable(member: MemberUpsert) -> bool:
    """Created through the import: unknown to exist, no status change, no rename."""
    return (
        member.exists is not True
        and member.previous_email is None
        and member.status is None
        and member.status_if_new in (S.SUBSCRIBED, S.UNSUBSCRIBED)
    )


def precheck(member: MemberUpsert, seen: set[str]) -> Outcome | None:
    """A rejection for a member Brevo would refuse (or that repeats an address of the same
    call); ``None`` for one that may be sent, whose normal address is then added to ``seen``."""
    email = normal_email(member.email)
    if not valid_email(email):
        return Outcome(
            member.key,
            K.REJECTED,
            reason_code="invalid_email",
            message="not a valid e-mail address; fix it in the source",
        )
    if email in seen:
        return Outcome(
            member.key,
            K.REJECTED,
            reason_code="duplicate_email",
            message="another record in the same batch has this address (compared without "
            "case); keep one record per address",
        )
    if not _utf8(member):
        return Outcome(
            member.key,
            K.REJECTED,
            reason_code="invalid_text",
            message="a value holds text that is not valid UTF-8; fix it in the source",
        )
    seen.add(email)
    return None


def _utf8(member: MemberUpsert) -> bool:
    """Whether the address and every text value can be sent as UTF-8 (a lone surrogate cannot);
    ASCII text, nearly all of it, needs no encoding to know."""
    if not member.email.isascii() and not _encodes(member.email):
        return False
    for value in member.merge_fields.values():
        if isinstance(value, str) and not value.isascii() and not _encodes(value):
            return False
    return True


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def record_error(
    key: str, response: httpx.Response, what: str, member_id: str | None = None
) -> Outcome:
    """A 400 refuses this record; anything else stops the run."""
    if response.status_code != 400:
        raise translate(response, what)
    problem = parse_problem(response)
    return Outcome(
        key,
        K.REJECTED,
        member_id,
        reason_code="merge_fields_invalid" if "attribute" in problem.message.lower() else "invalid",
        message=f"Brevo refused {what}: {problem.message}",
    )


def doi_unsent(done: Outcome, failure: BridgeError) -> Outcome:
    """``done`` was made (the contact is pending), but Brevo's double opt-in e-mail was not
    asked for: a ``follow_up`` the next run finishes."""
    message = f"made pending, but the double opt-in e-mail was not sent: {failure}"
    return done.with_failed_follow_up(failure, "confirmation_not_sent", message)


def doi_missing(key: str, member_id: str | None = None) -> Outcome:
    return Outcome(
        key,
        K.REJECTED,
        member_id,
        reason_code="double_opt_in_not_configured",
        message="a pending (double opt-in) contact needs destination.double_opt_in_template_id "
        "and double_opt_in_redirect_url for Brevo",
    )


def awaiting_confirmation(current: MemberStatus) -> MemberStatus:
    """The status Brevo shows for a contact asked to confirm (double opt-in) until the person
    clicks the link: an opted-out contact keeps its status (only the confirmation lifts a
    blocklisting or a list unsubscription); any other is pending."""
    if current in (MemberStatus.UNSUBSCRIBED, MemberStatus.CLEANED):
        return current
    return MemberStatus.PENDING


def blocklisted(key: str, member_id: str, current: MemberStatus) -> Outcome:
    return Outcome(
        key,
        K.REJECTED,
        member_id,
        status=current,
        reason_code="blocklisted",
        message="Brevo has this contact unsubscribed (blocklisted, or off this list by their "
        "choice); the bridge never re-subscribes it: configure double opt-in so the contact "
        "can confirm, or let them sign up again",
    )


def brevo_time(moment: datetime) -> str:
    """``2026-12-07T10:00:00.000Z``: UTC, so no ``+`` needs encoding in a query."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def bind(fn: Callable[..., Awaitable[None]], *args: Any) -> Callable[[], Awaitable[None]]:
    return lambda: fn(*args)
