"""Alerts: tell someone when a run fails, a sync stops succeeding, rejections pile up or
webhook events wait too long, through Apprise (``[alerts] urls``).

Each condition is an *incident* with a stable key (``run_failed:crm:push``...). An incident is
announced once when it starts and, with ``recovery``, once when it clears; checking again while
it lasts sends nothing. :func:`incidents` is pure (a :class:`~campaign_bridge.observe.Health`
snapshot in, incidents out) and :class:`Tracker` only remembers which are open, so both are
tested without I/O; :class:`Alerter` is the loop ``serve`` runs. Open incidents are kept in
memory: after a restart, one still open is announced once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from campaign_bridge.config import AlertsConfig
from campaign_bridge.observe import Health, allowed_gap

__all__ = ["Alerter", "Incident", "Message", "Tracker", "incidents", "send_apprise"]

log = logging.getLogger(__name__)

TITLE = "campaign-bridge"


@dataclass(frozen=True)
class Incident:
    key: str
    summary: str
    detail: str = ""


@dataclass(frozen=True)
class Message:
    kind: str  # firing | resolved
    incident: Incident

    @property
    def title(self) -> str:
        state = "ALERT" if self.kind == "firing" else "RESOLVED"
        return f"{TITLE} {state}: {self.incident.summary}"

    @property
    def body(self) -> str:
        if self.kind == "resolved":
            return f"resolved: {self.incident.summary}"
        return self.incident.detail or self.incident.summary


def incidents(health: Health, config: AlertsConfig) -> dict[str, Incident]:
    """The conditions that hold in ``health``, by incident key."""
    found: dict[str, Incident] = {}
    now = health.taken_at
    for sync in health.syncs:
        label = f"{sync.direction} of sync {sync.sync}"
        if sync.failed and sync.last_run is not None:
            run = sync.last_run
            key = f"run_failed:{sync.sync}:{sync.direction}"
            found[key] = Incident(
                key,
                f"the last {label} failed",
                f"run {run.id} started {_when(run.started_at)} failed: "
                f"{run.error or 'no error recorded'}. See `campaign-bridge runs {sync.sync}`.",
            )
        limit = _stale_limit(sync.expected_gap, config)
        if limit is not None and (sync.last_success is None or now - sync.last_success > limit):
            since = _when(sync.last_success) if sync.last_success else "ever"
            key = f"stale:{sync.sync}:{sync.direction}"
            found[key] = Incident(
                key,
                f"no successful {label} since {since}",
                f"scheduled {sync.schedule}; expected a success at least every "
                f"{_minutes(limit)}. See `campaign-bridge runs {sync.sync}`.",
            )
    for sync_name, count in sorted(health.rejected_by_sync().items()):
        if count >= config.rejections_threshold:
            key = f"rejections:{sync_name}"
            reasons = {r: n for (s, r), n in health.rejected.items() if s == sync_name}
            top = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda i: -i[1]))
            found[key] = Incident(
                key,
                f"{count} records of sync {sync_name} are rejected",
                f"threshold {config.rejections_threshold}; by reason: {top}. "
                f"See `campaign-bridge rejected {sync_name}`.",
            )
    if health.webhook_parked:
        found["webhook_parked"] = Incident(
            "webhook_parked",
            f"{health.webhook_parked} webhook event(s) parked after failing to apply repeatedly",
            "See `campaign-bridge webhooks parked`; retry them once the cause is fixed.",
        )
    waited = timedelta(seconds=health.webhook_age_seconds)
    if waited > timedelta(minutes=config.webhook_queue_minutes):
        found["webhook_queue"] = Incident(
            "webhook_queue",
            f"a webhook event has waited {_minutes(waited)} to be applied",
            f"{health.webhook_pending} event(s) waiting, {health.webhook_failing} with an "
            f"error; threshold {config.webhook_queue_minutes:g} minutes.",
        )
    return found


def _stale_limit(expected: timedelta | None, config: AlertsConfig) -> timedelta | None:
    if expected is None:
        return None  # not scheduled: nothing says when it should have run
    if config.stale_after_minutes is not None:
        return timedelta(minutes=config.stale_after_minutes)
    return allowed_gap(expected)


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _minutes(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


@dataclass
class Tracker:
    """Which incidents are open; turns each check's incidents into messages to send."""

    recovery: bool = True
    open: dict[str, Incident] = field(default_factory=dict)

    def step(self, current: Mapping[str, Incident]) -> list[Message]:
        messages = [Message("firing", i) for k, i in current.items() if k not in self.open]
        if self.recovery:
            messages += [Message("resolved", i) for k, i in self.open.items() if k not in current]
        # An open incident keeps the text it was announced with (its recovery message says so).
        self.open = {k: self.open.get(k, incident) for k, incident in current.items()}
        return messages


Sender = Callable[[Sequence[str], Message], bool]


def send_apprise(urls: Sequence[str], message: Message) -> bool:
    """Send ``message`` to every URL through Apprise (blocking); True if all took it."""
    # Apprise loads its plugins on first use; one imports imghdr, deprecated since Python 3.11.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise

        notifier = apprise.Apprise()
        for url in urls:
            if not notifier.add(url):
                log.error("alerts: an [alerts] url is not a valid Apprise URL (not shown: secret)")
        if len(notifier) == 0:
            return False
        failure, success = apprise.NotifyType.FAILURE, apprise.NotifyType.SUCCESS
        kind = failure if message.kind == "firing" else success
        return bool(notifier.notify(body=message.body, title=message.title, notify_type=kind))


class Alerter:
    """The loop ``serve`` runs: every ``check_seconds``, read :func:`health`, send what changed.

    A message that could not be sent is tried again at the next check (the incident stays
    "not yet announced"), so a notification service that is down delays alerts, not loses them.
    """

    def __init__(
        self,
        config: AlertsConfig,
        read_health: Callable[[], Health],
        *,
        send: Sender = send_apprise,
    ) -> None:
        self.config = config
        self.read_health = read_health
        self.send = send
        self.tracker = Tracker(recovery=config.recovery)
        self._stop = asyncio.Event()

    @property
    def urls(self) -> list[str]:
        return [url.get_secret_value() for url in self.config.urls]

    async def check(self) -> list[Message]:
        """One check: the messages it sent."""
        health = await asyncio.to_thread(self.read_health)
        before = dict(self.tracker.open)
        messages = self.tracker.step(incidents(health, self.config))
        sent: list[Message] = []
        for message in messages:
            ok = await asyncio.to_thread(self.send, self.urls, message)
            if ok:
                sent.append(message)
                log.info("alert sent: %s", message.title, extra={"action": "alert"})
                continue
            log.error(
                "alert not sent (retried next check): %s", message.title, extra={"action": "alert"}
            )
            key = message.incident.key
            if message.kind == "firing":  # not announced yet: announce it next time
                self.tracker.open.pop(key, None)
            else:  # not cleared yet for the receiver: say so next time
                self.tracker.open[key] = before[key]
        return sent

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.check()
            except Exception as exc:  # the state store is down: /-/ready says so; try again
                log.error("alerts: check failed: %s", exc, extra={"action": "alert"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.config.check_seconds)

    def stop(self) -> None:
        self._stop.set()
