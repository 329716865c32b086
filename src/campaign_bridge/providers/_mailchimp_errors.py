"""Mailchimp's error answers, classified: record-level, retriable, fatal or an auth problem.

Pure: no I/O. :data:`RULES` maps Mailchimp's error titles, details and batch-subscribe error
texts (the real wordings collected in docs/providers.md) to a stable ``reason_code`` that the
push engine stores with rejected records. The first rule that matches wins.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "RULES",
    "Classification",
    "ErrorKind",
    "Problem",
    "Rule",
    "classify",
    "classify_batch_error",
    "parse_problem",
    "scrub",
]


class ErrorKind(StrEnum):
    RECORD = "record"  # this member is rejected; keep it with its reason and go on
    RETRIABLE = "retriable"  # passing condition; back off and try again
    FATAL = "fatal"  # the run cannot go on (our request is wrong, the list is gone, ...)
    AUTH = "auth"  # the key is wrong, disabled, or for another data centre


@dataclass(frozen=True)
class Problem:
    """A Mailchimp problem document, or what could be made of a non-JSON error body."""

    status: int
    title: str = ""
    detail: str = ""
    errors: tuple[tuple[str, str], ...] = ()  # (field, message)
    is_json: bool = True


@dataclass(frozen=True)
class Rule:
    reason_code: str
    kind: ErrorKind
    advice: str
    titles: tuple[str, ...] = ()  # exact titles (case-insensitive)
    texts: tuple[str, ...] = ()  # substrings of the detail / batch error text (case-insensitive)
    statuses: tuple[int, ...] = ()
    error_codes: tuple[str, ...] = ()  # batch-subscribe error_code values
    temporary: bool = False  # record-level but may succeed in a later run

    @property
    def _titles(self) -> frozenset[str]:
        return _folded_titles(self.titles)

    @property
    def _texts(self) -> tuple[str, ...]:
        return _folded_texts(self.texts)

    def matches(self, status: int | None, title: str, text: str, error_code: str) -> bool:
        """Match against ``title`` and ``text`` already casefolded."""
        if title and title in self._titles:
            return True
        if any(t in text for t in self._texts):
            return True
        if self.error_codes and error_code in self.error_codes:
            return True
        return bool(self.statuses) and status in self.statuses


@dataclass(frozen=True)
class Classification:
    kind: ErrorKind
    reason_code: str
    message: str  # provider text with email addresses replaced, plus what to do
    temporary: bool = False
    fields: tuple[str, ...] = ()


RULES: tuple[Rule, ...] = (
    Rule(
        "member_in_compliance_state",
        ErrorKind.RECORD,
        "the contact unsubscribed, bounced or is under compliance review; Mailchimp will not "
        "subscribe them through the API (they must re-subscribe, or be asked to re-confirm "
        "with status 'pending')",
        titles=("Member In Compliance State",),
        texts=("is in a compliance state",),
    ),
    Rule(
        "forgotten_email",
        ErrorKind.RECORD,
        "the address was permanently deleted in Mailchimp and cannot be re-imported through "
        "the API; the contact must sign up again through a Mailchimp form",
        titles=("Forgotten Email Not Subscribed",),
        texts=("was permanently deleted", "cannot be re-imported"),
    ),
    Rule(
        "fake_or_invalid_email",
        ErrorKind.RECORD,
        "Mailchimp considers the address fake or undeliverable; fix the address in the source",
        texts=("looks fake or invalid",),
    ),
    Rule(
        "signup_throttled",
        ErrorKind.RECORD,
        "temporary: Mailchimp blocks new signups of this address for a while (minutes to days); "
        "it may succeed in a later run (push --retry-rejected)",
        texts=("signed up to a lot of lists very recently",),
        temporary=True,
    ),
    Rule(
        "merge_fields_invalid",
        ErrorKind.RECORD,
        "fix the listed merge field values in the source, or the field mapping",
        texts=("merge fields were invalid",),
    ),
    Rule(
        "invalid_email",
        ErrorKind.RECORD,
        "the address is not a valid email address; fix it in the source",
        texts=(
            "provide a valid email address",
            "email address must contain",
            "is an invalid email address",
            "not a valid email",
        ),
    ),
    Rule(
        "member_exists",
        ErrorKind.RECORD,
        "the address is already on the audience (or a changed address collides with an "
        "existing member)",
        titles=("Member Exists",),
        texts=("is already a list member",),
        error_codes=("ERROR_CONTACT_EXISTS",),
    ),
    Rule(
        "not_archivable",
        ErrorKind.RECORD,
        "Mailchimp cannot archive this member (not on the audience, already archived, "
        "bounced or pending)",
        texts=("cannot be removed", "can not archive"),
        statuses=(405,),
    ),
    Rule(
        "resource_not_found",
        ErrorKind.RECORD,
        "the member (or the audience) does not exist in Mailchimp",
        titles=("Resource Not Found",),
        statuses=(404,),
    ),
    Rule(
        "too_many_requests",
        ErrorKind.RETRIABLE,
        "Mailchimp throttled the request (10 simultaneous connections per key); retry later",
        titles=("Too Many Requests",),
        texts=("simultaneous connections",),
        statuses=(429,),
    ),
    Rule(
        "api_key_invalid",
        ErrorKind.AUTH,
        "check the API key and that its data centre suffix matches the account",
        titles=("API Key Invalid", "API Key Missing"),
        statuses=(401,),
    ),
    Rule(
        "forbidden",
        ErrorKind.FATAL,
        "the key's user may not do this (role, disabled account, or another data centre); "
        "check the account and the key's permissions in Mailchimp",
        titles=("Forbidden", "User Disabled", "Wrong Datacenter"),
        statuses=(403,),
    ),
    Rule(
        "json_parse_error",
        ErrorKind.FATAL,
        "campaign-bridge sent a body Mailchimp could not parse; please report this bug",
        titles=("JSON Parse Error",),
    ),
    Rule(
        "invalid_resource",
        ErrorKind.RECORD,
        "Mailchimp refused the member's data; see the fields named and fix them in the source",
        titles=("Invalid Resource", "Bad Request"),
        statuses=(400, 422),
    ),
    Rule(
        "server_error",
        ErrorKind.RETRIABLE,
        "Mailchimp had an internal problem; retry later",
        statuses=(500, 502, 503, 504),
    ),
)

_FALLBACK_RECORD = Rule(
    "provider_rejected",
    ErrorKind.RECORD,
    "Mailchimp refused this member; see the message",
)

_EMAIL = re.compile(r"[^\s@<>\"'(),;:]+@[^\s@<>\"'(),;:]+")
PLACEHOLDER = "<email>"


def scrub(text: str, *emails: str) -> str:
    """``text`` with the given addresses, and anything that looks like one, replaced."""
    for email in emails:
        email = email.strip()
        if email:
            text = re.sub(re.escape(email), PLACEHOLDER, text, flags=re.IGNORECASE)
    text = _EMAIL.sub(PLACEHOLDER, text)
    return " ".join(text.split())


def parse_problem(status: int, body: bytes, content_type: str = "") -> Problem:
    """Read an error body; HTML or empty bodies become a problem with ``is_json=False``."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if not isinstance(data, Mapping):
        return Problem(status=status, is_json=False, detail=_snippet(body, content_type))
    errors: list[tuple[str, str]] = []
    raw_errors = data.get("errors")
    if isinstance(raw_errors, Sequence) and not isinstance(raw_errors, str):
        for item in raw_errors:
            if isinstance(item, Mapping):
                errors.append((str(item.get("field") or ""), str(item.get("message") or "")))
    raw_status = data.get("status")
    return Problem(
        status=raw_status if isinstance(raw_status, int) else status,
        title=str(data.get("title") or ""),
        detail=str(data.get("detail") or ""),
        errors=tuple(errors),
    )


def _snippet(body: bytes, content_type: str) -> str:
    kind = content_type.split(";")[0].strip() or "no content type"
    if not body:
        return f"empty body ({kind})"
    text = body[:2000].decode("utf-8", "replace")
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    shown = title.group(1) if title else re.sub(r"<[^>]+>", " ", text)
    return f"non-JSON body ({kind}): {' '.join(shown.split())[:120]}"


def classify(problem: Problem, *, emails: Sequence[str] = ()) -> Classification:
    """Classify an HTTP error answer (a problem document) for one request."""
    if problem.status == 403 and not problem.is_json:
        rule = _rule("too_many_requests")  # Mailchimp throttles high volume with a bare 403
    else:
        rule = _match(problem.status, problem.title, problem.detail, "")
    field_errors = tuple((f, m) for f, m in problem.errors if f or m)
    return _classification(rule, problem.title, problem.detail, field_errors, emails)


def classify_batch_error(
    error: str,
    *,
    error_code: str = "",
    field: str = "",
    field_message: str = "",
    emails: Sequence[str] = (),
) -> Classification:
    """Classify one ``errors[]`` entry of a batch-subscribe (``POST /lists/{id}``) answer."""
    rule = _match(None, "", error, error_code)
    field_errors = ((field, field_message),) if field or field_message else ()
    if rule is _FALLBACK_RECORD and field_errors:
        rule = _rule("invalid_email" if field == "email_address" else "merge_fields_invalid")
    return _classification(rule, "", error, field_errors, emails)


@functools.cache
def _folded_titles(titles: tuple[str, ...]) -> frozenset[str]:
    return frozenset(t.casefold() for t in titles)


@functools.cache
def _folded_texts(texts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(t.casefold() for t in texts)


def _match(status: int | None, title: str, text: str, error_code: str) -> Rule:
    title, text = title.casefold(), text.casefold()
    for rule in RULES:
        if rule.matches(status, title, text, error_code):
            return rule
    if status is not None and status >= 500:
        return _rule("server_error")
    return _FALLBACK_RECORD


def _rule(reason_code: str) -> Rule:
    return next(rule for rule in RULES if rule.reason_code == reason_code)


def _classification(
    rule: Rule,
    title: str,
    detail: str,
    field_errors: tuple[tuple[str, str], ...],
    emails: Sequence[str],
) -> Classification:
    said = ": ".join(part for part in (title, detail) if part) or "no details given"
    if field_errors:
        listed = "; ".join(f"{f}: {m}" if f else m for f, m in field_errors)
        said = f"{said} ({listed})"
    message = scrub(f"{said} — {rule.advice}", *emails)
    fields = tuple(f for f, _ in field_errors if f)
    return Classification(rule.kind, rule.reason_code, message, rule.temporary, fields)
