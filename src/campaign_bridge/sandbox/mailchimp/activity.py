"""Deterministic campaign activity: who bounced, opened, clicked and unsubscribed.

Pure logic, no I/O. A send draws every recipient's fate from a keyed hash of
(seed, campaign id, subscriber hash), so the same campaign sent with the same seed
to the same people produces the same activity, and one recipient's activity does
not depend on who else was on the list.

The result is stored column-wise (flat arrays, one slice of events per recipient)
so that any page of the email-activity, sent-to or unsubscribed collections is
O(page), and the counters of the report are computed once, at send time.
"""

from __future__ import annotations

import hashlib
import random
import re
import struct
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CLICK",
    "HARD_BOUNCE",
    "OPEN",
    "SOFT_BOUNCE",
    "UNSUBSCRIBE_REASONS",
    "ActivityRates",
    "CampaignActivity",
    "Event",
    "ListRecipients",
    "Recipients",
    "SyntheticRecipients",
    "extract_links",
    "iso",
    "subscriber_hash",
]

OPEN, CLICK, HARD_BOUNCE, SOFT_BOUNCE = 0, 1, 2, 3
STATUS_SENT, STATUS_HARD, STATUS_SOFT = 0, 1, 2
STATUS_NAMES = ("sent", "hard", "soft")

# The answers Mailchimp's unsubscribe survey offers; the member's
# `unsubscribe_reason` and the unsubscribed report carry one of them.
UNSUBSCRIBE_REASONS = (
    "N/A (Unsubscribed from campaign)",
    "I no longer want to receive these emails",
    "I never signed up for this mailing list",
    "The emails are inappropriate",
    "The emails are spam and should be reported",
    "Other",
)

_INV = 1.0 / 18446744073709551616.0
_ACTIVITY_CAP = 1000  # opens and clicks listed per member per campaign (spec)
_HREF = re.compile(r"""href\s*=\s*["'](https?://[^"'\s>]+)["']""", re.IGNORECASE)
_BARE_URL = re.compile(r"https?://[^\s<>\"')]+")


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: md5 of the lowercased address."""
    return hashlib.md5(email.strip().lower().encode()).hexdigest()  # noqa: S324 - an id


def iso(ts: int) -> str:
    """Epoch seconds as Mailchimp writes timestamps (`2021-02-27T00:30:39+00:00`). Built from
    cached parts (the date, hours:minutes, seconds): formatting each stamp with strftime was
    most of the cost of serving a large email-activity page."""
    day, second = divmod(ts, 86400)
    date = _DATES.get(day)
    if date is None:
        date = _DATES[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
    minute, second = divmod(second, 60)
    return date + _HOURS_MINUTES[minute] + _SECONDS[second]


_DATES: dict[int, str] = {}
_HOURS_MINUTES = tuple(f"T{h:02d}:{m:02d}" for h in range(24) for m in range(60))
_SECONDS = tuple(f":{s:02d}+00:00" for s in range(60))


def extract_links(html: str, plain_text: str = "") -> tuple[str, ...]:
    """Trackable links of a campaign: every http(s) href of the HTML, else bare URLs.

    Order of first appearance, duplicates removed; merge tags such as *|UNSUB|* are
    not links.
    """
    found = _HREF.findall(html) or _BARE_URL.findall(html) or _BARE_URL.findall(plain_text)
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class ActivityRates:
    """Probabilities of what happens to one recipient of a campaign.

    `hard_bounce` and `soft_bounce` are drawn first (a bounced email is neither
    opened nor clicked); `open`, `unsubscribe` are fractions of delivered emails;
    `click` is the fraction of openers who click. Extra opens/clicks per person
    follow a geometric law with the given means, capped at `max_opens`/`max_clicks`.
    Timestamps fall within `window_seconds` after the send.
    """

    hard_bounce: float = 0.02
    soft_bounce: float = 0.03
    open: float = 0.45
    click: float = 0.3
    unsubscribe: float = 0.02
    extra_opens_mean: float = 0.8
    extra_clicks_mean: float = 0.5
    max_opens: int = 50
    max_clicks: int = 20
    window_seconds: int = 48 * 3600

    def __post_init__(self) -> None:
        for name in ("hard_bounce", "soft_bounce", "open", "click", "unsubscribe"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"rate {name} must be between 0 and 1, got {value}")
        if self.hard_bounce + self.soft_bounce > 1.0:
            raise ValueError("hard_bounce + soft_bounce must not exceed 1")
        if self.window_seconds < 1 or self.max_opens < 1 or self.max_clicks < 1:
            raise ValueError("window_seconds, max_opens and max_clicks must be positive")

    @classmethod
    def from_mapping(cls, values: dict[str, object]) -> ActivityRates:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown activity rates: {', '.join(unknown)}")
        return cls(**known)  # type: ignore[arg-type]


class Recipients:
    """Who a campaign was sent to, by position: address and subscriber hash."""

    def __len__(self) -> int:
        raise NotImplementedError

    def email(self, index: int) -> str:
        raise NotImplementedError

    def email_id(self, index: int) -> str:
        raise NotImplementedError

    def index_of(self, email_id: str) -> int | None:
        raise NotImplementedError

    def pair(self, index: int) -> tuple[str, str]:
        """(address, subscriber hash) of one recipient."""
        return self.email(index), self.email_id(index)


class ListRecipients(Recipients):
    """Recipients snapshotted from the audience at send time."""

    def __init__(self, emails: Sequence[str]) -> None:
        self._emails = list(emails)
        self._ids = [subscriber_hash(e) for e in self._emails]
        self._index = {h: i for i, h in enumerate(self._ids)}

    def __len__(self) -> int:
        return len(self._emails)

    def email(self, index: int) -> str:
        return self._emails[index]

    def email_id(self, index: int) -> str:
        return self._ids[index]

    def index_of(self, email_id: str) -> int | None:
        return self._index.get(email_id)

    @property
    def emails(self) -> list[str]:
        return list(self._emails)


class SyntheticRecipients(Recipients):
    """`count` made-up addresses (`<prefix><n>@<domain>`), computed on demand.

    Used by the control API to seed very large reports (benchmarks) without
    creating a million audience members.
    """

    def __init__(self, count: int, prefix: str = "recipient", domain: str = "bench.invalid"):
        self.count, self.prefix, self.domain = count, prefix, domain

    def __len__(self) -> int:
        return self.count

    def email(self, index: int) -> str:
        return f"{self.prefix}{index}@{self.domain}"

    def email_id(self, index: int) -> str:
        return subscriber_hash(self.email(index))

    def index_of(self, email_id: str) -> int | None:
        return None  # not members of any audience: nothing looks them up by hash

    def pair(self, index: int) -> tuple[str, str]:
        email = f"{self.prefix}{index}@{self.domain}"
        return email, hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


class _Draw:
    """Uniform floats in [0, 1) from a keyed BLAKE2b stream (fast, stable, seedable)."""

    __slots__ = ("_block", "_key", "_msg", "_values")

    def __init__(self, key: bytes, message: bytes) -> None:  # message: the subscriber hash
        self._key, self._msg, self._block = key, message, 0
        self._values: list[float] = []

    def __call__(self) -> float:
        if not self._values:
            digest = hashlib.blake2b(
                self._msg + self._block.to_bytes(4, "little"), key=self._key, digest_size=64
            ).digest()
            self._values = [v * _INV for v in struct.unpack("<8Q", digest)]
            self._values.reverse()
            self._block += 1
        value: float = self._values.pop()
        return value


def _geometric(draw: Callable[[], float], mean: float, cap: int) -> int:
    """0, 1, 2, ... with the given mean (capped)."""
    if mean <= 0:
        return 0
    p = mean / (1.0 + mean)
    n = 0
    while n < cap and draw() < p:
        n += 1
    return n


@dataclass(frozen=True, slots=True)
class Event:
    kind: int  # OPEN, CLICK, HARD_BOUNCE, SOFT_BOUNCE
    ts: int
    link: int  # index into the campaign's links for clicks, else -1


@dataclass(frozen=True)
class RecipientFate:
    status: int
    events: tuple[tuple[int, int, int], ...]  # (ts, kind, link), oldest first
    unsubscribed_at: int | None
    reason: int  # index into UNSUBSCRIBE_REASONS


def draw_fate(
    draw: Callable[[], float], send_ts: int, n_links: int, rates: ActivityRates
) -> RecipientFate:
    """Everything that happens to one recipient, from a stream of uniform draws.

    The first four draws decide bounce, open, click and unsubscribe (CampaignActivity's fast
    path relies on that order).
    """
    end = send_ts + rates.window_seconds

    def later(start: int) -> int:
        # front-loaded: most activity happens in the first hours, as with real sends
        return start + 1 + int(max(1, end - start) * draw() ** 3)

    bounce = draw()
    if bounce < rates.hard_bounce:
        return RecipientFate(STATUS_HARD, ((later(send_ts), HARD_BOUNCE, -1),), None, 0)
    if bounce < rates.hard_bounce + rates.soft_bounce:
        return RecipientFate(STATUS_SOFT, ((later(send_ts), SOFT_BOUNCE, -1),), None, 0)
    events: list[tuple[int, int, int]] = []
    opened, clicked, unsub = draw(), draw(), draw()
    if opened < rates.open:
        first = later(send_ts)
        events.append((first, OPEN, -1))
        for _ in range(_geometric(draw, rates.extra_opens_mean, rates.max_opens - 1)):
            events.append((later(first), OPEN, -1))
        if n_links and clicked < rates.click:
            n_clicks = 1 + _geometric(draw, rates.extra_clicks_mean, rates.max_clicks - 1)
            for _ in range(n_clicks):
                events.append((later(first), CLICK, int(draw() * n_links)))
    unsubscribed_at: int | None = None
    reason = 0
    if unsub < rates.unsubscribe:
        unsubscribed_at = later(min(events)[0] if events else send_ts)
        reason = int(draw() * len(UNSUBSCRIBE_REASONS))
    events.sort()
    return RecipientFate(STATUS_SENT, tuple(events), unsubscribed_at, reason)


def campaign_key(seed: int, campaign_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{campaign_id}".encode(), digest_size=32).digest()


@dataclass
class LinkStats:
    url: str
    total_clicks: int = 0
    unique_clicks: int = 0
    last_click: int = 0
    clickers: list[tuple[int, int]] = field(default_factory=list)  # (recipient, clicks)


class CampaignActivity:
    """The generated activity of one sent campaign, indexed for O(page) reads."""

    def __init__(
        self,
        campaign_id: str,
        seed: int,
        send_ts: int,
        links: Sequence[str],
        rates: ActivityRates,
        recipients: Recipients,
    ) -> None:
        self.campaign_id, self.seed, self.send_ts = campaign_id, seed, send_ts
        self.links, self.rates, self.recipients = tuple(links), rates, recipients
        n = len(recipients)
        key = campaign_key(seed, campaign_id)
        self.status = bytearray(n)
        self.event_start = array("q", [0]) * (n + 1)
        self.event_ts = array("q")
        self.event_kind = array("b")
        self.event_link = array("h")
        self.open_count = array("l", [0]) * n
        self.click_count = array("l", [0]) * n
        self.last_open = array("q", [0]) * n
        self.unsubscribes: list[tuple[int, int, int]] = []  # (recipient, ts, reason)
        self.link_stats = [LinkStats(url) for url in self.links]
        self.hard_bounces = self.soft_bounces = 0
        self.opens_total = self.unique_opens = self.clicks_total = self.unique_subscriber_clicks = 0
        self.last_open_ts = self.last_click_ts = 0
        last_ts = array("q", [0]) * n
        # Fast path: most recipients neither bounce, open nor unsubscribe, which the first
        # four draws tell (draw_fate reads them in that order).
        quiet_bounce = rates.hard_bounce + rates.soft_bounce
        quiet_open, quiet_unsub = rates.open, rates.unsubscribe
        n_links, starts, record = len(self.links), self.event_start, self._record
        if isinstance(recipients, SyntheticRecipients):
            # made-up recipients: one seeded stream for the whole campaign (much faster)
            stream = random.Random(int.from_bytes(key[:8], "little")).random
            for i in range(n):
                b, o, c, u = stream(), stream(), stream(), stream()
                if b >= quiet_bounce and o >= quiet_open and u >= quiet_unsub:
                    starts[i + 1] = starts[i]
                    continue
                replay = [u, c, o, b]

                def draw(replay: list[float] = replay) -> float:
                    return replay.pop() if replay else stream()

                record(i, draw_fate(draw, send_ts, n_links, rates), last_ts)
                starts[i + 1] = len(self.event_ts)
        else:
            block0, unpack, blake2b = (0).to_bytes(4, "little"), struct.unpack, hashlib.blake2b
            email_id = recipients.email_id
            for i in range(n):
                eid = email_id(i).encode()
                v = unpack("<8Q", blake2b(eid + block0, key=key, digest_size=64).digest())
                if (
                    v[0] * _INV >= quiet_bounce
                    and v[1] * _INV >= quiet_open
                    and v[3] * _INV >= quiet_unsub
                ):
                    starts[i + 1] = starts[i]
                    continue
                record(i, draw_fate(_Draw(key, eid), send_ts, n_links, rates), last_ts)
                starts[i + 1] = len(self.event_ts)
        self.unsubscribes.sort(key=lambda u: (u[1], u[0]))
        self._unsub_by_index = {i: (ts, reason) for i, ts, reason in self.unsubscribes}
        # email-activity `since`: recipients ordered by their latest event
        active = sorted((i for i in range(n) if last_ts[i]), key=lambda i: (last_ts[i], i))
        self.by_last_ts = array("l", active)
        self.sorted_last_ts = array("q", (last_ts[i] for i in active))

    def _record(self, i: int, fate: RecipientFate, last_ts: array[int]) -> None:
        self.status[i] = fate.status
        opens = clicks = 0
        per_link: dict[int, int] = {}
        push_ts, push_kind, push_link = (
            self.event_ts.append,
            self.event_kind.append,
            self.event_link.append,
        )
        for ts, kind, link in fate.events:
            push_ts(ts)
            push_kind(kind)
            push_link(link)
            if kind == OPEN:
                opens += 1
                self.last_open[i] = ts
            elif kind == CLICK:
                clicks += 1
                per_link[link] = per_link.get(link, 0) + 1
                stats = self.link_stats[link]
                stats.total_clicks += 1
                if ts > stats.last_click:
                    stats.last_click = ts
        if fate.events:
            last_ts[i] = fate.events[-1][0]
        if fate.status == STATUS_HARD:
            self.hard_bounces += 1
        elif fate.status == STATUS_SOFT:
            self.soft_bounces += 1
        if opens:
            self.open_count[i] = opens
            self.opens_total += opens
            self.unique_opens += 1
            self.last_open_ts = max(self.last_open_ts, self.last_open[i])
        if clicks:
            self.click_count[i] = clicks
            self.clicks_total += clicks
            self.unique_subscriber_clicks += 1
            for link, count in per_link.items():
                stats = self.link_stats[link]
                stats.unique_clicks += 1
                stats.clickers.append((i, count))
                self.last_click_ts = max(self.last_click_ts, stats.last_click)
        if fate.unsubscribed_at is not None:
            self.unsubscribes.append((i, fate.unsubscribed_at, fate.reason))

    # -- reading -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.recipients)

    @property
    def emails_sent(self) -> int:
        return len(self.recipients)

    def fate_status(self, index: int) -> str:
        return STATUS_NAMES[self.status[index]]

    def events(self, index: int, since: int | None = None) -> Iterator[Event]:
        """The recipient's opens, clicks and bounces, oldest first; at most 1000 opens
        and 1000 clicks, as Mailchimp lists them."""
        opens = clicks = 0
        for j in range(self.event_start[index], self.event_start[index + 1]):
            kind, ts = self.event_kind[j], self.event_ts[j]
            if since is not None and ts <= since:
                continue
            if kind == OPEN:
                opens += 1
                if opens > _ACTIVITY_CAP:
                    continue
            elif kind == CLICK:
                clicks += 1
                if clicks > _ACTIVITY_CAP:
                    continue
            yield Event(kind, ts, self.event_link[j])

    def activity_items(self, index: int, since: int | None = None) -> list[dict[str, Any]]:
        """``events`` in the email-activity item shape (``action``, ``timestamp``, ...)."""
        start, end = self.event_start[index], self.event_start[index + 1]
        if start == end:
            return []
        items: list[dict[str, Any]] = []
        opens = clicks = 0
        kinds, stamps, links = self.event_kind, self.event_ts, self.event_link
        for j in range(start, end):
            ts = stamps[j]
            if since is not None and ts <= since:
                continue
            kind = kinds[j]
            if kind == OPEN:
                opens += 1
                if opens <= _ACTIVITY_CAP:
                    items.append({"action": "open", "timestamp": iso(ts), "ip": ""})
            elif kind == CLICK:
                clicks += 1
                if clicks <= _ACTIVITY_CAP:
                    url = self.links[links[j]]
                    items.append({"action": "click", "timestamp": iso(ts), "url": url, "ip": ""})
            else:
                bounce = "hard" if kind == HARD_BOUNCE else "soft"
                items.append({"action": "bounce", "type": bounce, "timestamp": iso(ts), "ip": ""})
        return items

    def email_activity_page(
        self, offset: int, count: int, since: int | None = None
    ) -> tuple[int, list[int]]:
        """(total_items, recipient indexes) of one page of email activity."""
        if since is None:
            total = len(self.recipients)
            return total, list(range(min(offset, total), min(offset + count, total)))
        first = bisect_right(self.sorted_last_ts, since)
        total = len(self.by_last_ts) - first
        start = first + min(offset, total)
        return total, list(self.by_last_ts[start : min(start + count, len(self.by_last_ts))])

    def unsubscribe_of(self, index: int) -> tuple[int, int] | None:
        """(timestamp, reason index) if the recipient unsubscribed via this campaign."""
        return self._unsub_by_index.get(index)
