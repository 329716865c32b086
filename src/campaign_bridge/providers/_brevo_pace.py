"""Pacing of the Brevo ``/contacts`` calls, so a push meets the per-second limit without 429s.

Brevo limits ``/v3/contacts/*`` per second (10 on the general tier, 20 and 60 on the larger
ones) in fixed windows and answers 429 over it. Workers that simply send collide: every one
refused in a window retries when it reopens, and some run out of retries. The pacer spaces
first attempts ``1 / limit`` seconds apart (with a small margin), learning the limit from the
``x-sib-ratelimit-limit`` header of a per-second window (``x-sib-ratelimit-reset`` of 1 s).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import httpx

__all__ = ["ContactsPacer"]

GENERAL_TIER_RPS = 10  # developers.brevo.com "Rate limits": /v3/contacts/*, every plan
MARGIN = 1.03  # spacing slack: a fixed window must not see limit + 1 from scheduling jitter
MAX_RPS = 100  # a larger "limit" is an hourly window's, not the per-second one


class ContactsPacer:
    """Spaces calls evenly at the account's per-second limit (shared by every caller)."""

    def __init__(
        self,
        sleep: Callable[[float], Awaitable[None]],
        *,
        rps: int = GENERAL_TIER_RPS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rps = rps
        self._sleep = sleep
        self._clock = clock
        self._next = 0.0

    async def wait(self) -> None:
        """Return at this caller's turn."""
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + MARGIN / self.rps
        if slot > now:
            await self._sleep(slot - now)

    def learn(self, response: httpx.Response) -> None:
        """Adopt the per-second limit an answer reports (a higher tier paces faster)."""
        headers = response.headers
        if headers.get("x-sib-ratelimit-reset") != "1":
            return
        try:
            limit = int(headers.get("x-sib-ratelimit-limit") or 0)
        except ValueError:
            return
        if 0 < limit <= MAX_RPS:
            self.rps = limit
