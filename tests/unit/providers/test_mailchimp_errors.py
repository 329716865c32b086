"""Error classification against the real Mailchimp wordings (reference notes §3.5, §4, §8)."""

from __future__ import annotations

import json

import pytest

from campaign_bridge.providers._mailchimp_errors import (
    RULES,
    ErrorKind,
    classify,
    classify_batch_error,
    parse_problem,
    scrub,
)
from campaign_bridge.providers.base import TEMPORARY_REASON_CODES

EMAIL = "Jane.Doe+news@Example.org"


def problem(status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None):
    body = {
        "type": "https://mailchimp.com/developer/marketing/docs/errors/",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": "0935713b-96cf-17d4-1bcc-de5b99b72ca5",
    }
    if errors is not None:
        body["errors"] = errors
    return parse_problem(status, json.dumps(body).encode(), "application/problem+json")


@pytest.mark.parametrize(
    ("status", "title", "detail", "kind", "reason"),
    [
        (
            400,
            "Member In Compliance State",
            f"{EMAIL} is in a compliance state due to unsubscribe, bounce, or compliance "
            "review and cannot be subscribed.",
            ErrorKind.RECORD,
            "member_in_compliance_state",
        ),
        (
            400,
            "Forgotten Email Not Subscribed",
            f"{EMAIL} was permanently deleted and cannot be re-imported. The contact must "
            "re-subscribe to get back on the list.",
            ErrorKind.RECORD,
            "forgotten_email",
        ),
        (
            400,
            "Invalid Resource",
            f"{EMAIL} looks fake or invalid, please enter a real email address.",
            ErrorKind.RECORD,
            "fake_or_invalid_email",
        ),
        (
            400,
            "Invalid Resource",
            f"{EMAIL} has signed up to a lot of lists very recently; we're not allowing more "
            "signups for now",
            ErrorKind.RECORD,
            "signup_throttled",
        ),
        (
            400,
            "Member Exists",
            f"{EMAIL} is already a list member. Use PUT to insert or update list members.",
            ErrorKind.RECORD,
            "member_exists",
        ),
        (
            404,
            "Resource Not Found",
            "The requested resource could not be found.",
            ErrorKind.RECORD,
            "resource_not_found",
        ),
        (
            405,
            "Method Not Allowed",
            "This list member cannot be removed.  Please contact support.",
            ErrorKind.RECORD,
            "not_archivable",
        ),
        (
            429,
            "Too Many Requests",
            "You have exceeded the limit of 10 simultaneous connections.",
            ErrorKind.RETRIABLE,
            "too_many_requests",
        ),
        (
            401,
            "API Key Invalid",
            "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
            ErrorKind.AUTH,
            "api_key_invalid",
        ),
        (401, "API Key Invalid", "API key has been disabled", ErrorKind.AUTH, "api_key_invalid"),
        (403, "User Disabled", "This account has been disabled.", ErrorKind.FATAL, "forbidden"),
        (
            400,
            "JSON Parse Error",
            "We encountered an unspecified JSON parsing error.",
            ErrorKind.FATAL,
            "json_parse_error",
        ),
        (
            500,
            "Internal Server Error",
            "An unexpected internal error has occurred.",
            ErrorKind.RETRIABLE,
            "server_error",
        ),
        (503, "Service Unavailable", "", ErrorKind.RETRIABLE, "server_error"),
        (
            400,
            "Invalid Resource",
            "The resource submitted could not be validated. For field-specific details, see "
            "the 'errors' array.",
            ErrorKind.RECORD,
            "invalid_resource",
        ),
        (400, "Something New", "Never seen before.", ErrorKind.RECORD, "invalid_resource"),
        (409, "Conflict", "Never seen before.", ErrorKind.RECORD, "provider_rejected"),
    ],
)
def test_real_error_texts_are_classified(status, title, detail, kind, reason) -> None:
    found = classify(problem(status, title, detail), emails=[EMAIL])
    assert (found.kind, found.reason_code) == (kind, reason)
    assert "@" not in found.message
    assert " — " in found.message  # says what to do


def test_merge_field_errors_name_the_fields() -> None:
    found = classify(
        problem(
            400,
            "Invalid Resource",
            "Your merge fields were invalid.",
            [
                {"field": "MMERGE6", "message": "Please enter a value"},
                {"field": "AGE", "message": "Please enter a number"},
            ],
        )
    )
    assert found.reason_code == "merge_fields_invalid"
    assert found.fields == ("MMERGE6", "AGE")
    assert "MMERGE6: Please enter a value" in found.message
    assert "AGE: Please enter a number" in found.message


def test_signup_throttle_is_record_level_but_temporary() -> None:
    found = classify_batch_error(
        f"{EMAIL} has signed up to a lot of lists very recently; we're not allowing more "
        "signups for now"
    )
    assert found.kind is ErrorKind.RECORD
    assert found.temporary is True
    assert "later run" in found.message
    temporary = {rule.reason_code for rule in RULES if rule.temporary}
    assert temporary == {"signup_throttled"}
    assert temporary <= TEMPORARY_REASON_CODES


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (
            f"{EMAIL} is already a list member, do you want to update? please provide "
            "update_existing:true in the request body",
            "ERROR_CONTACT_EXISTS",
            "member_exists",
        ),
        ("Please provide a valid email address.", "ERROR_GENERIC", "invalid_email"),
        (
            f"{EMAIL} looks fake or invalid, please enter a real email address.",
            "ERROR_GENERIC",
            "fake_or_invalid_email",
        ),
        (
            f"{EMAIL} is in a compliance state due to unsubscribe, bounce, or compliance "
            "review and cannot be subscribed.",
            "ERROR_GENERIC",
            "member_in_compliance_state",
        ),
        (
            f"{EMAIL} was permanently deleted and cannot be re-imported. The contact must "
            "re-subscribe to get back on the list.",
            "ERROR_GENERIC",
            "forgotten_email",
        ),
        ("Something else entirely", "ERROR_GENERIC", "provider_rejected"),
    ],
)
def test_batch_subscribe_error_texts(error: str, code: str, reason: str) -> None:
    found = classify_batch_error(error, error_code=code, emails=[EMAIL])
    assert found.reason_code == reason
    assert found.kind is ErrorKind.RECORD
    assert EMAIL.lower() not in found.message.lower()


def test_batch_field_error_without_known_text_names_the_field() -> None:
    found = classify_batch_error(
        "Invalid merge field",
        error_code="ERROR_GENERIC",
        field="BIRTHDAY",
        field_message="Please enter a valid date",
    )
    assert found.reason_code == "merge_fields_invalid"
    assert found.fields == ("BIRTHDAY",)


def test_html_error_bodies_are_tolerated() -> None:
    html = b"<html><head><title>502 Bad Gateway</title></head><body>openresty</body></html>"
    parsed = parse_problem(502, html, "text/html")
    assert parsed.is_json is False
    assert "502 Bad Gateway" in parsed.detail
    assert classify(parsed).kind is ErrorKind.RETRIABLE


def test_bare_403_is_throttling_but_json_403_is_not() -> None:
    bare = parse_problem(403, b"", "")
    assert classify(bare).reason_code == "too_many_requests"
    assert classify(bare).kind is ErrorKind.RETRIABLE
    html = parse_problem(403, b"<html>Forbidden</html>", "text/html")
    assert classify(html).kind is ErrorKind.RETRIABLE
    jsonish = problem(403, "Forbidden", "You don't have permission to access this resource.")
    assert classify(jsonish).kind is ErrorKind.FATAL


def test_scrub_replaces_the_address_and_anything_like_one() -> None:
    text = f"{EMAIL.upper()} and other@x.io are bad, unlike 'noreply@'"
    assert scrub(text, EMAIL) == "<email> and <email> are bad, unlike 'noreply@'"
