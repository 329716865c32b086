"""Are `campaign-bridge worker` processes running on this state store?

``serve --schedule`` runs the syncs' schedules in its own process; workers run the same
schedules as procrastinate periodic tasks. Both at once would run every scheduled sync twice as
often, so ``serve --schedule`` asks the state store first: procrastinate registers each worker
in ``procrastinate_workers`` and refreshes its ``last_heartbeat`` every ``--heartbeat`` seconds
(a worker that stops cleanly removes its row; a killed one's heartbeat goes stale).

- At start, ``serve --schedule`` refuses (exit 2) while a worker has beaten in the last
  :data:`LIVE_WITHIN` seconds, and says what to run instead.
- Running, its scheduler asks again every :data:`CHECK_EVERY` seconds and defers the syncs' runs
  while workers are alive (logged once when it starts deferring and once when it resumes), so a
  worker started later does not double the runs, and the schedules carry on if the workers go.

Only a PostgreSQL state store can have workers; on SQLite and MariaDB the answer is always 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import sqlalchemy as sa

from campaign_bridge.errors import FatalError

__all__ = [
    "CHECK_EVERY",
    "LIVE_WITHIN",
    "WorkersRunning",
    "deferral",
    "live_workers",
    "refuse_if_workers",
]

log = logging.getLogger(__name__)

LIVE_WITHIN = 60.0  # seconds: a worker that beat this recently is alive (default beat: 10 s)
CHECK_EVERY = 15.0  # seconds between two questions of the running scheduler

_LIVE = sa.text(
    "SELECT count(*) FROM procrastinate_workers "
    "WHERE last_heartbeat > now() - make_interval(secs => :within)"
)


class WorkersRunning(FatalError):
    """``serve --schedule`` beside running workers: one of the two must not schedule."""

    exit_code = 2  # as a configuration problem: the way the service is run must change


def live_workers(engine: sa.Engine, within: float = LIVE_WITHIN) -> int:
    """Workers that beat in the last ``within`` seconds (0 off PostgreSQL or before migrating)."""
    if engine.dialect.name != "postgresql":
        return 0
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("procrastinate_workers"):
            return 0
        return int(conn.execute(_LIVE, {"within": within}).scalar_one())


def _advice(count: int) -> str:
    noun = "worker is" if count == 1 else "workers are"
    return (
        f"{count} campaign-bridge {noun} running on this state store (heartbeat in the last "
        f"{LIVE_WITHIN:g} s); workers run the syncs' schedules as periodic tasks, so "
        "`serve --schedule` would run every scheduled sync twice as often"
    )


def refuse_if_workers(engine: sa.Engine) -> None:
    """Raise :class:`WorkersRunning` when workers are alive on the state store."""
    count = live_workers(engine)
    if count:
        raise WorkersRunning(
            f"serve --schedule refused: {_advice(count)}. Run `campaign-bridge serve` without "
            "--schedule beside workers (it still receives webhooks), or stop the workers to "
            "schedule in this process"
        )


def deferral(
    engine: sa.Engine, *, every: float = CHECK_EVERY, clock: Callable[[], float] = time.monotonic
) -> Callable[[], str | None]:
    """A check for the scheduler: the reason to defer the syncs' runs now, or ``None``.

    Asks the state store at most once per ``every`` seconds and logs each change of answer.
    """
    last: dict[str, float | str | None] = {"at": float("-inf"), "reason": None}

    def check() -> str | None:
        now = clock()
        at = last["at"]
        if isinstance(at, float) and now - at < every:
            return last["reason"] if isinstance(last["reason"], str) else None
        try:
            count = live_workers(engine)
        except sa.exc.SQLAlchemyError as exc:  # keep the last answer; ask again next time
            log.warning("cannot tell whether workers run: %s", exc, extra={"action": "schedule"})
            count = 1 if last["reason"] else 0
        reason = _advice(count) if count else None
        if reason != last["reason"]:
            extra = {"action": "schedule"}
            if reason:
                log.warning("%s: the scheduler defers the syncs' runs to them", reason, extra=extra)
            else:
                log.warning("no worker runs any more: the scheduler runs the syncs", extra=extra)
        last.update(at=now, reason=reason)
        return reason

    return check
