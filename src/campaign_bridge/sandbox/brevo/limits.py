"""Brevo's rate limits, per API key and endpoint group, in fixed windows of the sandbox clock.

Groups (Brevo's general tier, developers.brevo.com/docs/api-limits): everything under
``/contacts`` — 10 requests per second and 36,000 per hour; every other endpoint emulated here
(``/emailCampaigns``, ``/processes``, ``/webhooks``) — 100 per hour. When ``config.rate_limits``
is on, every answer carries ``x-sib-ratelimit-limit``, ``x-sib-ratelimit-remaining`` and
``x-sib-ratelimit-reset`` (seconds until the window resets) for the tightest window, as Brevo's
rate-limited endpoints do (developers.brevo.com/docs/limit-headers), and a request over a limit
is answered 429, without ``Retry-After`` unless ``config.retry_after``. When it is off, requests
are still counted but the answers carry no limit headers, like an endpoint Brevo does not limit
(so a client pacing itself by those headers is not slowed down).

``served`` counts the requests let through per group (and ``contacts/import`` apart), and
``rejected`` the 429s, for benchmarks to report.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass

from campaign_bridge.sandbox.brevo.model import BrevoConfig
from campaign_bridge.sandbox.brevo.wire import BrevoError

__all__ = ["RateLimiter", "Verdict", "group_of"]

TOO_MANY = "The expected rate limit is exceeded."


def group_of(path: str) -> str:
    return "contacts" if path == "/contacts" or path.startswith("/contacts/") else "other"


@dataclass
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    enforced: bool = True

    def headers(self) -> dict[str, str]:
        if not self.enforced:
            return {}
        return {
            "x-sib-ratelimit-limit": str(self.limit),
            "x-sib-ratelimit-remaining": str(self.remaining),
            "x-sib-ratelimit-reset": str(self.reset),
        }

    def error(self, retry_after: bool) -> BrevoError:
        headers = self.headers()
        if retry_after:
            headers["Retry-After"] = str(self.reset)
        return BrevoError(429, "too_many_requests", TOO_MANY, headers=headers)


class RateLimiter:
    """Counts requests per (key, group, window); thread-safe."""

    def __init__(self, config: BrevoConfig) -> None:
        self.config = config
        self._counts: dict[tuple[str, str, int, int], int] = {}
        self._lock = threading.Lock()
        self.rejected = 0
        self.served: Counter[str] = Counter()

    def windows(self, group: str) -> list[tuple[int, int]]:
        """``(seconds, limit)`` windows of a group."""
        c = self.config
        if group == "contacts":
            return [(1, c.contacts_rps), (3600, c.contacts_rph)]
        return [(3600, c.other_rph)]

    def check(self, key: str, group: str, now: float, path: str = "") -> Verdict:
        """Count this request (unless refused) and say whether it may go on."""
        enforce = self.config.rate_limits
        with self._lock:
            states = []
            for seconds, limit in self.windows(group):
                window = int(now // seconds)
                used = self._counts.get((key, group, seconds, window), 0)
                reset = max(1, math.ceil((window + 1) * seconds - now))
                states.append((seconds, window, limit, used, reset))
            refused = [s for s in states if enforce and s[3] >= s[2]]
            if refused:
                self.rejected += 1
                _, _, limit, _, reset = max(refused, key=lambda s: s[4])
                return Verdict(False, limit, 0, reset)
            for seconds, window, _, used, _ in states:
                self._counts[(key, group, seconds, window)] = used + 1
            self.served[group] += 1
            if path == "/contacts/import":
                self.served["contacts/import"] += 1
            if len(self._counts) > 10_000:
                self._prune(now)
            seconds, _, limit, used, reset = min(states, key=lambda s: s[2] - s[3] - 1)
            return Verdict(True, limit, max(0, limit - used - 1), reset, enforce)

    def _prune(self, now: float) -> None:
        for entry in [k for k in self._counts if k[3] < int(now // k[2])]:
            del self._counts[entry]

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self.rejected = 0
            self.served.clear()
