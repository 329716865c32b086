"""Brevo's hourly request budget for the endpoints outside ``/contacts``.

developers.brevo.com "Rate limits": every endpoint without a limit of its own (among them
``/emailCampaigns``, ``exportRecipients`` and ``/processes``) shares one hourly window per
account: 100 requests on the general tier (every plan), 200 on the advanced tier. Each answer
says where the window stands: ``x-sib-ratelimit-limit``, ``x-sib-ratelimit-remaining`` and
``x-sib-ratelimit-reset`` (seconds until it resets). Over it, Brevo answers 429 until the reset.

The budget keeps the latest of those figures and

- ``take``: before each request in the window, waits for the reset once no more than
  ``RESERVE`` requests are left (a 429 would cost the same wait, and the operator's own calls
  with the same key would find nothing left);
- ``poll_spacing``: the shortest time between two process polls, the pace that would spend
  what is left of the window evenly until its reset (40 s with a whole general-tier window
  ahead), so polls never use the budget faster than that.

An answer without the headers comes from an endpoint that is not limited (developers.brevo.com
/docs/limit-headers: every rate-limited endpoint sends them): the budget is unknown, and
nothing waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import httpx

__all__ = ["RESERVE", "HourlyBudget"]

logger = logging.getLogger(__name__)

RESERVE = 10  # requests left in each window for everything else using the key
MAX_WAIT = 3600.0  # the window is an hour; a longer reset is not believed


class HourlyBudget:
    """What is left of the hourly window the answers report (shared by every caller)."""

    def __init__(
        self,
        sleep: Callable[[float], Awaitable[None]],
        *,
        reserve: int = RESERVE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reserve = reserve
        self._sleep = sleep
        self._clock = clock
        self.remaining: int | None = None  # None: not known (no answer with the headers yet)
        self.resets_at = 0.0
        self.used = 0  # requests taken, for logs and benchmarks

    def observe(self, response: httpx.Response) -> None:
        """Adopt the window an answer reports; an answer without one is not limited."""
        headers = response.headers
        try:
            remaining = int(headers["x-sib-ratelimit-remaining"])
            reset = float(headers["x-sib-ratelimit-reset"])
        except (KeyError, ValueError):
            self.remaining = None
            return
        self.remaining = remaining
        self.resets_at = self._clock() + min(max(reset, 0.0), MAX_WAIT)

    async def take(self) -> None:
        """Return when a request may be sent without eating into the reserve."""
        if self.remaining is not None and self.remaining <= self.reserve:
            wait = self.resets_at - self._clock()
            if wait > 0:
                logger.warning(
                    "Brevo's hourly API budget is down to its reserve of %d requests: "
                    "waiting %.0fs for the window to reset (exports and process polls count "
                    "against it; a larger plan has a larger budget)",
                    self.reserve,
                    wait,
                )
                await self._sleep(wait + 1.0)
            self.remaining = None  # a new window: the next answer says how much is in it
        elif self.remaining is not None:
            self.remaining -= 1  # the answer will say; meanwhile others see this one taken
        self.used += 1

    def poll_spacing(self) -> float:
        """Seconds between two polls that spend what is left of the window evenly."""
        if self.remaining is None:
            return 0.0
        left = self.resets_at - self._clock()
        if left <= 0:
            return 0.0
        return left / max(1, self.remaining - self.reserve)
