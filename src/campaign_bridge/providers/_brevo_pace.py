"""Pacing of the Brevo ``/contacts`` calls, so a push meets the per-second limit without 429s.

Brevo limits ``/v3/contacts/*`` per second (10 on the general tier, which every plan has; 20
and 60 on the larger ones: developers.brevo.com/docs/api-limits) and answers 429 over it.
Workers that simply send collide: every one refused in a window retries when it reopens, and
each refusal costs its caller a second or more. So the pacer (one per API key in the process:
``KeyPacer``; Brevo counts per key) hands out the turns of every attempt at a ``/contacts`` path
(first attempts and retries alike) ``margin / rps`` seconds apart, and so that no ``rps + 1``
calls leave within ``margin`` seconds: any 1-second window, wherever it starts, sees ``rps`` at
most, with room for the calls to arrive a little unevenly. The moments counted for the window
are those the calls really leave (``left``: a caller may wait for a connection after its turn,
and calls spaced when their turns were handed out could leave bunched: 13 within a second were
seen), and a turn handed out counts as leaving now until it has.

Turns handed out late (a busy event loop, or no call waiting) are not made up. Letting the next
turns go sooner (half the spacing apart, the window allowing) made a loaded host's push faster,
but drew 429s from the sandbox: Brevo counts a call when it has read it, an import's body of
100 KB and more later than a read, so calls bunched by the client arrive more unevenly still.

It paces from the first call, at the general tier's 10 a second, and then follows what the
answers say (developers.brevo.com/docs/limit-headers: every answer of a rate-limited endpoint
carries ``x-sib-ratelimit-limit``, ``-remaining`` and ``-reset``):

- a per-second window's limit (``x-sib-ratelimit-reset`` of 1 s at most, a limit up to
  ``MAX_RPS``) becomes the rate: a larger tier paces faster;
- a successful answer without the headers comes from an endpoint that is not rate limited
  (an account or emulator that does not enforce the limit): pacing stops;
- a 429 starts pacing again, and while pacing widens the spacing a little (``WIDEN``, up to
  ``MAX_MARGIN``): calls spaced when sent can still arrive bunched on a busy host. Each answer
  let through narrows it back, slowly, to ``MARGIN``.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable

import httpx

from campaign_bridge.keyslots import key_hash

__all__ = ["ContactsPacer", "KeyPacer", "paced"]

GENERAL_TIER_RPS = 10  # developers.brevo.com/docs/api-limits: /v3/contacts/*, every plan
MARGIN = 1.03  # window slack: a fixed window must not see limit + 1 from scheduling jitter
MAX_MARGIN = 1.25
WIDEN = 1.04  # per 429 once pacing
NARROW = 0.002  # per answer let through, down to MARGIN
MAX_RPS = 100  # a larger "limit" is an hourly window's, not the per-second one
LIMIT = "x-sib-ratelimit-limit"
RESET = "x-sib-ratelimit-reset"


def paced(path: str) -> bool:
    """Whether a call to ``path`` (relative to ``/v3``) counts against the per-second limit."""
    return path == "/contacts" or path.startswith(("/contacts/", "/contacts?"))


class ContactsPacer:
    """Spaces ``/contacts`` calls evenly at the account's per-second limit, for every caller
    that shares it (``KeyPacer``: every provider of one API key in the process)."""

    def __init__(
        self,
        sleep: Callable[[float], Awaitable[None]],
        *,
        rps: int = GENERAL_TIER_RPS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rps = rps
        self.active = True  # the documented limit holds until an answer says otherwise
        self.margin = MARGIN
        self.refused = 0  # 429s seen on /contacts
        self._sleep = sleep
        self._clock = clock
        self._last = -math.inf  # when the latest turn was handed out
        self._recent: deque[float] = deque(maxlen=MAX_RPS)  # when the latest calls left
        self._out = 0  # turns handed out whose calls have not left yet
        self._freed = asyncio.Event()  # set when a turn's call leaves (or never will)
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = 0
        self._turns: asyncio.Task[None] | None = None

    @property
    def spacing(self) -> float:
        """The average gap between turns at the limit."""
        return self.margin / self.rps

    def _next_turn(self) -> float:
        """The earliest moment the next turn may be handed out (``inf``: not before a turn
        handed out is used)."""
        room = self.rps - self._out  # calls that may have left in the window, this one's aside
        if room <= 0:
            return math.inf
        earliest = self._last + self.spacing
        if len(self._recent) >= room:  # so the room-th call back must be margin seconds old
            earliest = max(earliest, self._recent[-room] + self.margin)
        return earliest

    async def wait(self, method: str, path: str) -> bool:
        """Return at this call's turn (at once for a path the limit does not cover): whether
        a turn was handed out (to be ended by ``left``). Turns go first come, first served,
        reads before writes: a read (an import's read-back page, a contact's state) finishes
        work in flight, a write (an import) starts more."""
        if not self.active or not paced(path):
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._queue, (0 if method == "GET" else 1, self._seq, turn))
        if self._turns is None or self._turns.done():
            self._turns = asyncio.create_task(self._hand_out_turns())
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # handed out, never to be used
                self.left(path, sent=False)
            raise
        return True

    def left(self, path: str, *, sent: bool) -> None:
        """The call a turn was handed out for leaves now (``sent``), or never will; every
        turn ``wait`` handed out is ended so, once."""
        if self._out <= 0:
            return
        self._out -= 1
        if sent:
            self._recent.append(self._clock())
        self._freed.set()

    async def _hand_out_turns(self) -> None:
        """Wake the waiters one at a time, each at the earliest moment ``_next_turn`` allows
        (waiting for a turn's call to leave when the turns out fill the window)."""
        while self._queue:
            self._freed.clear()
            delay = self._next_turn() - self._clock()
            if delay == math.inf:
                await self._freed.wait()
                continue
            if delay > 0:  # a call leaving meanwhile cannot move the moment (it was counted)
                await self._sleep(delay)
            while self._queue:
                _, _, turn = heapq.heappop(self._queue)
                if not turn.done():  # a cancelled waiter gives its turn to the next
                    turn.set_result(None)
                    self._last = self._clock()
                    self._out += 1
                    break
            await asyncio.sleep(0)  # let the woken caller send before the next turn

    def observe(self, path: str, response: httpx.Response) -> None:
        """Learn from the answer to a call of ``path``: the rate, or that there is none."""
        if not paced(path):
            return
        if response.status_code == 429:
            self.refused += 1
            if self.active:
                self.margin = min(MAX_MARGIN, self.margin * WIDEN)
            self.active = True
            return
        if self.margin > MARGIN:
            self.margin = max(MARGIN, self.margin - NARROW)
        limit = _per_second_limit(response.headers)
        if limit is not None:
            self.rps, self.active = limit, True
        elif response.is_success and LIMIT not in response.headers:
            self.active = False  # not rate limited: nothing to pace


def _per_second_limit(headers: httpx.Headers) -> int | None:
    """The limit of a per-second window, if that is the window the headers describe."""
    try:
        limit = int(headers.get(LIMIT) or 0)
        reset = float(headers.get(RESET) or 0)
    except ValueError:
        return None
    return limit if 0 < limit <= MAX_RPS and 0 < reset <= 1 else None


_shared: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, Callable[[float], Awaitable[None]]], ContactsPacer]
] = weakref.WeakKeyDictionary()


class KeyPacer:
    """One provider's view of its API key's pacer: Brevo counts the limit per key, so every
    provider of the key in the process (syncs run side by side, a push beside a pull) takes its
    turns from one ``ContactsPacer`` (per running event loop, and per ``sleep``, so a test's
    own clock paces alone)."""

    def __init__(self, host: str, api_key: str, sleep: Callable[[float], Awaitable[None]]) -> None:
        self._ident = (key_hash(host, api_key), sleep)

    @property
    def shared(self) -> ContactsPacer:
        """The key's pacer in the running event loop."""
        per_loop = _shared.setdefault(asyncio.get_running_loop(), {})
        pacer = per_loop.get(self._ident)
        if pacer is None:
            pacer = per_loop[self._ident] = ContactsPacer(self._ident[1])
        return pacer

    async def wait(self, method: str, path: str) -> bool:
        return await self.shared.wait(method, path)

    def left(self, path: str, *, sent: bool) -> None:
        self.shared.left(path, sent=sent)

    def observe(self, path: str, response: httpx.Response) -> None:
        self.shared.observe(path, response)
