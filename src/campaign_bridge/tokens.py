"""Secret tokens compared without leaking which one matched (webhook URLs, the admin token)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

__all__ = ["match_token"]


def match_token(candidate: str, tokens: Iterable[str]) -> bool:
    """Whether ``candidate`` equals one of ``tokens``, compared in constant time.

    Every token is compared (no early exit), so timing does not reveal which one matched.
    """
    given = candidate.encode("utf-8")
    matched = False
    for token in tokens:
        if token and hmac.compare_digest(given, token.encode("utf-8")):
            matched = True
    return matched
