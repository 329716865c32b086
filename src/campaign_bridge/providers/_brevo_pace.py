"""Pacing of the Brevo ``/contacts`` calls, so a push meets the per-second limit without 429s.

Brevo limits ``/v3/contacts/*`` per second (10 on the general tier, 20 and 60 on the larger
ones) in fixed windows and answers 429 over it. Workers that simply send collide: every one
refused in a window retries when it reopens, and some run out of retries. The pacer spaces
first attempts ``1 / limit`` seconds apart (with a small margin), learning the limit from the
``x-sib-ratelimit-limit`` header of a per-second window (``x-sib-ratelimit-reset`` of 1 s). It
starts once a ``/contacts`` call has been refused with a 429 (``observe``), so an account or
emulator that does not enforce the limit is not slowed down. Each later 429 widens the spacing
a little (``MARGIN`` up to ``MAX_MARGIN``): calls spaced when sent can still arrive bunched on a
busy host, and each refusal costs its caller a second or more; each answer let through narrows
it again, slowly.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx

__all__ = ["ContactsPacer"]

GENERAL_TIER_RPS = 10  # developers.brevo.com "Rate limits": /v3/contacts/*, every plan
MARGIN = 1.03  # spacing slack: a fixed window must not see limit + 1 from scheduling jitter
MAX_MARGIN = 1.25
WIDEN = 1.04  # per 429 once pacing
NARROW = 0.002  # per answer let through, down to MARGIN
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
        self.active = False
        self.margin = MARGIN

    def observe(self, response: httpx.Response) -> None:
        """Start pacing once a ``/contacts`` call is refused for its rate; space the calls a
        little wider at each refusal after that."""
        if response.status_code == 429 and "/contacts" in urlsplit(str(response.url)).path:
            if self.active:
                self.margin = min(MAX_MARGIN, self.margin * WIDEN)
            self.active = True

    async def wait(self) -> None:
        """Return at this caller's turn."""
        if not self.active:
            return
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self.margin / self.rps
        if slot > now:
            await self._sleep(slot - now)

    def learn(self, response: httpx.Response) -> None:
        """Adopt the per-second limit an answer reports (a higher tier paces faster); an
        answer let through narrows the spacing back towards ``MARGIN``."""
        if self.active and response.status_code != 429 and self.margin > MARGIN:
            self.margin = max(MARGIN, self.margin - NARROW)
        headers = response.headers
        if headers.get("x-sib-ratelimit-reset") != "1":
            return
        try:
            limit = int(headers.get("x-sib-ratelimit-limit") or 0)
        except ValueError:
            return
        if 0 < limit <= MAX_RPS:
            self.rps = limit
