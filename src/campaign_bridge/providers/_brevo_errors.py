"""Brevo's error answers, translated once: retriable, auth, fatal, or a reason for one record.

Pure except for reading an ``httpx.Response``. Brevo's error body is ``{"code", "message"}``
(sometimes with ``metadata``); codes are matched case-insensitively because some endpoints
answer in upper case. Rate limits: a 429 carries ``x-sib-ratelimit-reset`` (seconds left in
the window) and usually no ``Retry-After``, so :func:`brevo_retry_after` reads both.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import httpx

from campaign_bridge.errors import BridgeError, ProviderAuthError, ProviderError, RetriableError
from campaign_bridge.providers._http import decode_json, parse_retry_after

__all__ = [
    "BrevoProblem",
    "brevo_retriable",
    "brevo_retry_after",
    "parse_problem",
    "scrub",
    "translate",
]

_EMAIL = re.compile(r"[^\s@;,<>\"']+@[^\s@;,<>\"']+")


def scrub(text: str) -> str:
    """``text`` without e-mail addresses (error messages end up in logs and the state store)."""
    return _EMAIL.sub("<address>", text)


@dataclass(frozen=True)
class BrevoProblem:
    status: int
    code: str = ""  # lower-cased
    message: str = ""


def parse_problem(response: httpx.Response) -> BrevoProblem:
    """The error body as a problem; an HTML or empty body keeps just the status."""
    try:
        body = decode_json(response)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return BrevoProblem(response.status_code)
    return BrevoProblem(
        response.status_code,
        str(body.get("code") or "").lower(),
        scrub(str(body.get("message") or "")),
    )


def brevo_retriable(response: httpx.Response) -> str | None:
    """Transient answers: 429, 5xx, and 425 (``account_in_process``: the account or contact is
    still being processed by Brevo)."""
    status = response.status_code
    if status == 429:
        return "too_many_requests"
    if status == 425:
        return "too_early"
    if status >= 500:
        return f"server_error_{status}"
    return None


def brevo_retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait: ``Retry-After`` when sent, else ``x-sib-ratelimit-reset`` on a 429 plus
    up to a second of jitter: the reset names when the window opens, and every caller refused
    in one window would otherwise retry at its first instant and be refused together again."""
    hint = parse_retry_after(response.headers.get("Retry-After"))
    if hint is not None or response.status_code != 429:
        return hint
    reset = parse_retry_after(response.headers.get("x-sib-ratelimit-reset"))
    return None if reset is None else reset + random.random()


def _auth_error(problem: BrevoProblem) -> ProviderAuthError:
    return ProviderAuthError(
        f"Brevo rejected the API key ({problem.message or 'unauthorized'}): check the API key "
        "(SMTP & API > API keys in Brevo; it starts with xkeysib-), that it is not disabled, "
        "and that this host's IP address is allowed if the account restricts API keys by IP.",
        status=problem.status,
        title=problem.code,
        detail=problem.message,
    )


def translate(response: httpx.Response, what: str) -> BridgeError:
    """The error to raise for an answer the caller cannot go on from; ``what`` names the call
    (no addresses in it)."""
    problem = parse_problem(response)
    if problem.status == 401 or problem.code == "unauthorized":
        return _auth_error(problem)
    if problem.status == 402 or problem.code == "not_enough_credits":
        return ProviderError(
            f"Brevo refused {what}: the account has no credits left ({problem.message}); "
            "add credits or change plan in Brevo, then run again.",
            status=problem.status,
            title=problem.code,
            detail=problem.message,
        )
    if problem.status == 403 or problem.code in ("permission_denied", "account_under_validation"):
        return ProviderError(
            f"Brevo refused {what} ({problem.code or problem.status}: {problem.message}); the "
            "key's account may not allow this feature, or is still under validation.",
            status=problem.status,
            title=problem.code,
            detail=problem.message,
        )
    if brevo_retriable(response) is not None:
        return RetriableError(f"Brevo {what}: {problem.status} {problem.message}".rstrip())
    return ProviderError(
        f"Brevo refused {what}: {problem.status} {problem.code} {problem.message}".rstrip(),
        status=problem.status,
        title=problem.code,
        detail=problem.message,
    )
