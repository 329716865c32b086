"""Limits and faults: per-key concurrency, latency, and injected failures.

- Concurrency: at most ``max_concurrent`` (10) in-flight requests per API key; the next one gets
  Mailchimp's ``429 Too Many Requests`` "You have exceeded the limit of 10 simultaneous
  connections." The slot is held until the response has been sent (latency included).
- Latency: the response time a client sees. An answer leaves no sooner than ``latency`` +
  ``latency_per_item`` x items (served or accepted) seconds after its request arrived; the
  sandbox's own processing time counts towards it (it only waits for what is left, and not at
  all when processing took longer). So ten concurrent calls modelled at 1 s each answer in
  about 1 s each, however the one sandbox process interleaves their work.
- Faults: rules matched against method and path (a regular expression searched in the path
  without ``/3.0``), either scripted (the next ``count`` matching requests) or by ``rate`` (a
  seeded probability). Kinds: ``429``, ``400`` (Mailchimp's ``Invalid Resource`` document: the
  call is refused, nothing changes), ``403`` (bare HTML, no JSON), ``500``/``502``/``503``
  (HTML bodies), ``timeout`` (hold the request ``delay`` seconds, then answer normally) and
  ``drop`` (the connection is cut mid-response).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from campaign_bridge.sandbox import _common
from campaign_bridge.sandbox.mailchimp.wire import Problem

__all__ = ["FAULT_KINDS", "FaultRule", "Limits", "invalid_resource", "too_many_requests"]

FAULT_KINDS = ("429", "400", "403", "500", "502", "503", "timeout", "drop")

HTML_BODIES = {
    403: "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n"
    "<center><h1>403 Forbidden</h1></center>\r\n<hr><center>openresty</center>\r\n"
    "</body>\r\n</html>\r\n",
    500: "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n"
    "<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>openresty</center>\r\n"
    "</body>\r\n</html>\r\n",
    502: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>openresty</center>\r\n"
    "</body>\r\n</html>\r\n",
    503: "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n"
    "<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
    "<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n",
}


def too_many_requests(limit: int = 10) -> Problem:
    return Problem(
        429,
        "Too Many Requests",
        f"You have exceeded the limit of {limit} simultaneous connections.",
    )


def invalid_resource() -> Problem:
    """What Mailchimp answers a call whose data it refuses (the ``400`` fault)."""
    return Problem(
        400,
        "Invalid Resource",
        "The resource submitted could not be validated. For field-specific details, see the "
        "'errors' array.",
    )


@dataclass
class FaultRule(_common.FaultRule):
    """One fault rule (``_common.FaultRule``) of one of Mailchimp's ``FAULT_KINDS``."""

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {FAULT_KINDS}")
        super().__post_init__()


class Limits:
    """Mutable knobs and counters; safe to use from several threads."""

    def __init__(
        self, *, max_concurrent: int, latency: float, latency_per_item: float, seed: int
    ) -> None:
        self.max_concurrent = max_concurrent
        self.latency = latency
        self.latency_per_item = latency_per_item
        self._faults = _common.FaultBox(FAULT_KINDS, seed)
        self.in_flight: dict[str, int] = {}
        self.peak_in_flight: dict[str, int] = {}
        #: seconds x requests in flight, per key: over a span, divided by it, how many of the
        #: key's connections were busy on average (what a latency-bound client really used)
        self.busy_seconds: dict[str, float] = {}
        self.busy_clock: Callable[[], float] = time.monotonic  # its own: tests script timer
        self._counted_at: dict[str, float] = {}
        self.rejected = 0
        self._lock = threading.Lock()
        #: the clock request arrivals and answers are timed with (seconds; tests may replace it)
        self.timer: Callable[[], float] = time.monotonic

    def acquire(self, key: str) -> bool:
        """Take a slot for ``key``; False when the concurrency limit is reached."""
        with self._lock:
            current = self.in_flight.get(key, 0)
            if current >= self.max_concurrent:
                self.rejected += 1
                return False
            self._count_busy(key)
            self.in_flight[key] = current + 1
            self.peak_in_flight[key] = max(self.peak_in_flight.get(key, 0), current + 1)
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._count_busy(key)
            remaining = self.in_flight.get(key, 0) - 1
            if remaining > 0:
                self.in_flight[key] = remaining
            else:
                self.in_flight.pop(key, None)

    @property
    def faults(self) -> list[_common.FaultRule]:
        """The fault rules, in the order they are tried."""
        return self._faults.rules

    def add_fault(self, rule: FaultRule) -> None:
        self._faults.append(rule)

    def add_fault_spec(self, spec: Mapping[str, Any]) -> _common.FaultRule:
        """Add a rule from its JSON form; ``ValueError`` names an unknown field or kind, or
        a path that is not a regular expression."""
        return self._faults.add(spec)

    def clear_faults(self) -> None:
        self._faults.clear()

    def pick_fault(self, method: str, path: str) -> _common.FaultRule | None:
        """The fault to inject for this request, if any (consumes scripted counts)."""
        return self._faults.pick(method, path)

    def delay_for(self, items: int) -> float:
        """The response time modelled for an answer with ``items`` items, in seconds."""
        return self.latency + self.latency_per_item * max(items, 0)

    def wait_before_answer(self, arrived: float, items: int) -> float:
        """Seconds to hold an answer whose request arrived at ``arrived`` (``timer`` time), so
        that it leaves ``delay_for(items)`` after the arrival; 0 when that moment has passed."""
        return max(0.0, arrived + self.delay_for(items) - self.timer())

    def _count_busy(self, key: str) -> None:
        """Add the time since the last count times the requests in flight (under the lock)."""
        now = self.busy_clock()
        since = self._counted_at.get(key, now)
        busy = self.in_flight.get(key, 0) * (now - since)
        self.busy_seconds[key] = self.busy_seconds.get(key, 0.0) + busy
        self._counted_at[key] = now

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            for key in self.in_flight:
                self._count_busy(key)
            return {
                "max_concurrent": self.max_concurrent,
                "latency": self.latency,
                "latency_per_item": self.latency_per_item,
                "faults": self._faults.to_json(),
                "in_flight": dict(self.in_flight),
                "peak_in_flight": dict(self.peak_in_flight),
                "busy_seconds": dict(self.busy_seconds),
                "rejected": self.rejected,
            }
