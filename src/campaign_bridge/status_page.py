"""The status page at ``/`` (recent runs, charts, current problems), ``/rejected`` (open
rejections by reason) and ``/contact`` (a contact's history, as ``campaign-bridge history``).

:func:`gather` reads what the page shows from the state store (sync, run it in a thread);
:func:`find_problems` and the ``render_*`` functions are pure. Pages are Jinja2 templates in
``web/``, autoescaped: every value from the store or the request is escaped by the template
engine, none by hand. Charts are inline SVG (no script, no CDN), so the page works offline and
behind any firewall; every bar carries ``data-*`` attributes with its figure so a browser test
(or a curious operator) can read the values.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge import __version__
from campaign_bridge.config import Settings
from campaign_bridge.observe import latest_webhook_error, parked_events, webhook_backlog
from campaign_bridge.rejections import counts_by_reason
from campaign_bridge.scheduler import ScheduleError, parse_schedule
from campaign_bridge.state import sync_runs
from campaign_bridge.webhook_parking import MAX_APPLY_ATTEMPTS
from campaign_bridge.webhook_queue import events_per_hour

if TYPE_CHECKING:
    import jinja2

    from campaign_bridge.history import ContactHistory
    from campaign_bridge.rejections import OpenRejection

__all__ = [
    "Problem",
    "RunView",
    "StatusData",
    "SyncView",
    "find_problems",
    "gather",
    "pulled_count",
    "pushed_count",
    "render",
    "render_contact",
    "render_login",
    "render_rejected",
]

RUNS_PER_SYNC = 20
WEBHOOK_HOURS = 24
_PUSHED_KEYS = ("created", "updated", "archived")
_PULLED_KEYS = ("activity_added", "status_changes")  # new engagement events + status changes


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class RunView:
    id: str
    sync: str
    direction: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    counts: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    rejected_by_reason: Mapping[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return max((self.finished_at - self.started_at).total_seconds(), 0.0)

    @property
    def dry_run(self) -> bool:
        return bool(self.counts.get("dry_run"))

    @property
    def rejected_sorted(self) -> list[tuple[str, int]]:
        return sorted(self.rejected_by_reason.items(), key=lambda item: (-item[1], item[0]))

    @property
    def pushed(self) -> int:
        return pushed_count(self.counts) if self.direction == "push" else 0

    @property
    def pulled(self) -> int:
        return pulled_count(self.counts) if self.direction == "pull" else 0


@dataclass(frozen=True)
class SyncView:
    name: str
    schedules: Mapping[str, str]  # direction -> schedule text
    runs: Sequence[RunView]  # newest first
    failing: bool = False  # a current problem names it: shown first


@dataclass(frozen=True)
class Problem:
    sync: str | None
    message: str


@dataclass(frozen=True)
class StatusData:
    generated_at: datetime
    syncs: Sequence[SyncView]
    webhook_hours: Sequence[tuple[datetime, int]]  # oldest first
    webhooks_pending: int = 0
    webhooks_failing: int = 0
    problems: Sequence[Problem] = ()
    webhook_oldest: datetime | None = None  # the oldest event waiting to be applied
    rejected: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (sync, reason)

    @property
    def webhook_age_seconds(self) -> float:
        if self.webhook_oldest is None:
            return 0.0
        return max((self.generated_at - self.webhook_oldest).total_seconds(), 0.0)

    webhooks_parked: int = 0  # set aside after failing to apply too often


def pushed_count(counts: Mapping[str, Any]) -> int:
    """Contacts a push sent: its ``pushed`` count, or created + updated + archived."""
    if isinstance(counts.get("pushed"), int):
        return int(counts["pushed"])
    return sum(int(counts[k]) for k in _PUSHED_KEYS if isinstance(counts.get(k), int))


def pulled_count(counts: Mapping[str, Any]) -> int:
    """Events a pull brought home: its ``events`` count, or new activity + status changes."""
    if isinstance(counts.get("events"), int):
        return int(counts["events"])
    return sum(int(counts[k]) for k in _PULLED_KEYS if isinstance(counts.get(k), int))


def rejected_from_counts(counts: Mapping[str, Any]) -> dict[str, int]:
    for key, value in counts.items():
        if (key == "rejected" or "reason" in key) and isinstance(value, Mapping):
            return {str(k): int(v) for k, v in value.items() if isinstance(v, int)}
    return {}


# --------------------------------------------------------------------------- problems


def expected_gap(schedule_text: str) -> timedelta | None:
    try:
        return parse_schedule(schedule_text).expected_gap()
    except ScheduleError:
        return None


def find_problems(
    syncs: Sequence[SyncView],
    now: datetime,
    *,
    webhooks_failing: int = 0,
    webhook_error: str | None = None,
) -> list[Problem]:
    """Failing runs, and scheduled work with no success within twice its expected interval."""
    problems: list[Problem] = []
    for sync in syncs:
        for direction in ("push", "pull"):
            runs = [r for r in sync.runs if r.direction == direction]
            finished = [r for r in runs if r.status != "running" and not r.dry_run]
            if finished and finished[0].status == "failed":
                last = finished[0]
                problems.append(
                    Problem(
                        sync.name,
                        f"last {direction} failed at {_when(last.started_at)}"
                        + (f": {last.error}" if last.error else ""),
                    )
                )
            text = sync.schedules.get(direction)
            gap = expected_gap(text) if text else None
            if gap is None:
                continue
            allowed = max(gap * 2, gap + timedelta(minutes=5))
            successes = [r for r in runs if r.status == "succeeded" and not r.dry_run]
            if not successes:
                problems.append(
                    Problem(sync.name, f"no successful {direction} yet (scheduled {text})")
                )
            elif now - (successes[0].finished_at or successes[0].started_at) > allowed:
                problems.append(
                    Problem(
                        sync.name,
                        f"no successful {direction} since "
                        f"{_when(successes[0].started_at)} (scheduled {text})",
                    )
                )
    if webhooks_failing:
        problems.append(
            Problem(
                None,
                f"{webhooks_failing} webhook event(s) could not be applied yet"
                + (f"; the latest error: {webhook_error}" if webhook_error else ""),
            )
        )
    return problems


# --------------------------------------------------------------------------- gathering (I/O)


def gather(engine: Engine, settings: Settings, *, now: datetime | None = None) -> StatusData:
    """Read the page's data from the state store (synchronous)."""
    now = now or datetime.now(UTC)
    names = list(settings.syncs)
    by_sync: dict[str, list[RunView]] = {}
    for row in _recent_runs(engine, RUNS_PER_SYNC):
        by_sync.setdefault(row.sync_name, []).append(_run_view(row))
    for name in by_sync:
        if name not in names:
            names.append(name)
    syncs = []
    for name in names:
        config = settings.syncs.get(name)
        schedules = {}
        if config is not None:
            schedules = {
                d: t
                for d, t in (("push", config.schedule.push), ("pull", config.schedule.pull))
                if t
            }
        runs = sorted(by_sync.get(name, []), key=lambda r: r.started_at, reverse=True)
        syncs.append(SyncView(name, schedules, runs[: RUNS_PER_SYNC * 2]))
    since = (now - timedelta(hours=WEBHOOK_HOURS - 1)).replace(minute=0, second=0, microsecond=0)
    per_hour = events_per_hour(engine, since)
    hours = [since + timedelta(hours=i) for i in range(WEBHOOK_HOURS)]
    webhook_hours = [(h, int(per_hour.get(h, 0))) for h in hours]
    pending, failing, oldest = webhook_backlog(engine)
    error = latest_webhook_error(engine) if failing else None
    problems = find_problems(syncs, now, webhooks_failing=failing, webhook_error=error)
    named = {p.sync for p in problems}
    syncs = [SyncView(s.name, s.schedules, s.runs, s.name in named) for s in syncs]
    syncs.sort(key=lambda s: not s.failing)  # the failing sync at the top (stable)
    rejected = counts_by_reason(engine)
    parked = parked_events(engine)
    if parked:
        problems.append(
            Problem(
                None,
                f"{parked} webhook event(s) parked after failing to apply "
                f"{MAX_APPLY_ATTEMPTS} times: see `campaign-bridge webhooks parked`",
            )
        )
    return StatusData(
        now,
        syncs,
        webhook_hours,
        pending,
        failing,
        problems,
        oldest,
        dict(sorted(rejected.items())),
        parked,
    )


def _recent_runs(engine: Engine, per_sync: int) -> list[Any]:
    """The newest ``per_sync`` runs of every sync and direction (one query)."""
    t = sync_runs
    rank = (
        sa.func.row_number()
        .over(partition_by=(t.c.sync_name, t.c.direction), order_by=t.c.started_at.desc())
        .label("rank")
    )
    inner = sa.select(*t.c, rank).subquery()
    query = sa.select(*(inner.c[c.name] for c in t.c)).where(inner.c.rank <= per_sync)
    with engine.connect() as conn:
        return list(conn.execute(query))


def _run_view(row: Any) -> RunView:
    counts = row.counts if isinstance(row.counts, Mapping) else {}
    rejected = rejected_from_counts(counts)
    return RunView(
        id=str(row.id),
        sync=row.sync_name,
        direction=row.direction,
        started_at=row.started_at,
        finished_at=row.finished_at,
        status=row.status,
        counts=counts,
        error=row.error_summary,
        rejected_by_reason=rejected,
    )


# --------------------------------------------------------------------------- rendering (pure)


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("campaign_bridge", "web"),
        autoescape=True,  # every template, whatever its name: values are never trusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["duration"] = _duration
    return env


@functools.cache
def _style() -> str:
    return (resources.files("campaign_bridge") / "web" / "status.css").read_text(encoding="utf-8")


def _page(template: str, *, generated: datetime | None = None, **values: Any) -> str:
    return (
        _environment()
        .get_template(template)
        .render(
            style=_style(),
            version=__version__,
            generated=_when(generated or datetime.now(UTC)),
            can_log_out=values.pop("can_log_out", False),
            **values,
        )
    )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "running"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


WEBHOOK_LAG_BAD = 15 * 60  # seconds; the page shows the age in red beyond this


def render(data: StatusData, *, can_log_out: bool = False) -> str:
    """The whole status page as HTML; a "Log out" button only when there is a login."""
    syncs = [
        {
            "name": sync.name,
            "schedules": sync.schedules,
            "runs": sync.runs,
            "failing": sync.failing,
            "chart": runs_chart(sync.name, list(reversed(sync.runs))),
        }
        for sync in data.syncs
    ]
    return _page(
        "status.html",
        generated=data.generated_at,
        can_log_out=can_log_out,
        problems=data.problems,
        syncs=syncs,
        webhook_chart_data=webhook_chart(data.webhook_hours),
        webhook_total=sum(n for _h, n in data.webhook_hours),
        webhooks_pending=data.webhooks_pending,
        webhook_age_seconds=data.webhook_age_seconds,
        webhook_age=_age(data.webhook_age_seconds),
        webhook_lag_bad=data.webhook_age_seconds > WEBHOOK_LAG_BAD,
        rejected=list(data.rejected.items()),
        rejected_total=sum(data.rejected.values()),
    )


def render_rejected(
    rows: Sequence[OpenRejection],
    counts: Mapping[tuple[str, str], int],
    *,
    sync: str | None,
    reason: str | None,
    truncated: bool = False,
    can_log_out: bool = False,
) -> str:
    """Open rejections (of one sync, one reason), with the counts by reason as filters."""
    return _page(
        "rejected.html",
        rows=rows,
        counts=sorted(counts.items()),
        sync=sync,
        reason=reason,
        truncated=truncated,
        can_log_out=can_log_out,
    )


def render_contact(query: str, history: ContactHistory | None, *, can_log_out: bool = False) -> str:
    """The lookup form and, after a lookup, the contact's history."""
    return _page("contact.html", query=query, history=history, can_log_out=can_log_out)


def render_login(*, failed: bool = False) -> str:
    return _environment().get_template("login.html").render(style=_style(), failed=failed)


def runs_chart(sync: str, runs: Sequence[RunView]) -> dict[str, Any] | None:
    """Bars per run (oldest left): contacts pushed (push runs) and events pulled (pull runs)."""
    if not runs:
        return None
    width, height, pad = 640, 180, 28
    top = max([max(r.pushed, r.pulled) for r in runs] + [1])
    slot = (width - 2 * pad) / len(runs)
    bar = max(min(slot * 0.7, 40), 2)
    bars = []
    for i, run in enumerate(runs):
        series = "pushed" if run.direction == "push" else "pulled"
        value = run.pushed if run.direction == "push" else run.pulled
        h = (height - 2 * pad) * value / top
        dry = " (dry run)" if run.dry_run else ""
        bars.append(
            {
                "series": series,
                "status": run.status,
                "dry_run": run.dry_run,
                "value": value,
                "run_id": run.id,
                "x": pad + i * slot + (slot - bar) / 2,
                "y": height - pad - h,
                "w": bar,
                "h": max(h, 0.5),
                "label": f"{run.direction} {_when(run.started_at)}: {value} {series} "
                f"({run.status}){dry}",
            }
        )
    return {
        "sync": sync,
        "width": width,
        "height": height,
        "pad": pad,
        "top": top,
        "bars": bars,
        "first": _when(runs[0].started_at),
        "last": _when(runs[-1].started_at),
    }


def webhook_chart(hours: Sequence[tuple[datetime, int]]) -> dict[str, Any]:
    """Webhook events received per hour (UTC), oldest left."""
    width, height, pad = 640, 140, 28
    top = max([n for _h, n in hours] + [1])
    slot = (width - 2 * pad) / max(len(hours), 1)
    bars = []
    for i, (hour, count) in enumerate(hours):
        h = (height - 2 * pad) * count / top
        bars.append(
            {
                "hour": hour.strftime("%Y-%m-%dT%H:00Z"),
                "value": count,
                "x": pad + i * slot + slot * 0.15,
                "y": height - pad - h,
                "w": slot * 0.7,
                "h": max(h, 0.5),
                "label": f"{hour.strftime('%Y-%m-%d %H:00')} UTC: {count} events",
                "tick": hour.strftime("%H:00") if i % 6 == 0 else None,
            }
        )
    return {"width": width, "height": height, "pad": pad, "top": top, "bars": bars}
