"""The status page at ``/``: recent runs, charts and current problems, rendered on the server.

:func:`gather` reads what the page shows from the state store (sync, run it in a thread);
:func:`find_problems` and :func:`render` are pure. Charts are inline SVG drawn here (no script,
no CDN), so the page works offline and behind any firewall; every bar carries ``data-*``
attributes with its figure so a browser test (or a curious operator) can read the values.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from string import Template
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge import __version__
from campaign_bridge.config import Settings
from campaign_bridge.scheduler import ScheduleError, parse_schedule
from campaign_bridge.state import sync_runs
from campaign_bridge.webhooks import backlog, events_per_hour

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
    "render_login",
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
    syncs: Sequence[SyncView], now: datetime, *, webhooks_failing: int = 0
) -> list[Problem]:
    """Failing runs, and scheduled work with no success within twice its expected interval."""
    problems: list[Problem] = []
    for sync in syncs:
        for direction in ("push", "pull"):
            runs = [r for r in sync.runs if r.direction == direction]
            finished = [r for r in runs if r.status != "running"]
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
            successes = [r for r in runs if r.status == "succeeded"]
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
            Problem(None, f"{webhooks_failing} webhook event(s) could not be applied yet")
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
    pending, failing = backlog(engine)
    problems = find_problems(syncs, now, webhooks_failing=failing)
    return StatusData(now, syncs, webhook_hours, pending, failing, problems)


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


def _asset(name: str) -> str:
    return (resources.files("campaign_bridge") / "web" / name).read_text(encoding="utf-8")


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


def _counts(counts: Mapping[str, Any]) -> str:
    parts = [
        f"{html.escape(str(k))} {v}"
        for k, v in counts.items()
        if isinstance(v, int) and not isinstance(v, bool)
    ]
    return " · ".join(parts) or "&ndash;"


def _rejected(reasons: Mapping[str, int]) -> str:
    if not reasons:
        return "&ndash;"
    return " · ".join(
        f'<span class="reason" data-reason="{html.escape(r)}" data-count="{n}">'
        f"{html.escape(r)} {n}</span>"
        for r, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    )


LOG_OUT_FORM = (
    '<form method="post" action="/-/logout" class="logout"><button type="submit">Log out</button>'
    "</form>"
)


def render(data: StatusData, *, can_log_out: bool = False) -> str:
    """The whole page as HTML; a "Log out" button only when there is a login (an admin token)."""
    page = Template(_asset("status.html"))
    problems = "".join(
        f'<li class="problem" data-sync="{html.escape(p.sync or "")}">'
        + (f"<strong>{html.escape(p.sync)}</strong>: " if p.sync else "")
        + f"{html.escape(p.message)}</li>"
        for p in data.problems
    )
    problems_html = (
        f'<ul class="problems">{problems}</ul>'
        if problems
        else '<p class="ok" id="no-problems">No current problems.</p>'
    )
    syncs_html = "".join(_render_sync(s) for s in data.syncs) or (
        '<p class="empty">No syncs are configured and no runs are recorded yet.</p>'
    )
    total = sum(n for _h, n in data.webhook_hours)
    return page.substitute(
        logout=LOG_OUT_FORM if can_log_out else "",
        version=html.escape(__version__),
        generated=_when(data.generated_at),
        problem_count=len(data.problems),
        problems=problems_html,
        syncs=syncs_html,
        webhook_chart=webhook_chart(data.webhook_hours),
        webhook_total=total,
        webhooks_pending=data.webhooks_pending,
        style=_asset("status.css"),
    )


def _render_sync(sync: SyncView) -> str:
    name = html.escape(sync.name)
    schedule = ", ".join(f"{d}: {html.escape(t)}" for d, t in sync.schedules.items()) or (
        "not scheduled"
    )
    rows = "".join(
        f'<tr class="run status-{html.escape(r.status)}" data-run-id="{html.escape(r.id)}" '
        f'data-direction="{html.escape(r.direction)}" data-status="{html.escape(r.status)}" '
        f'data-pushed="{r.pushed}" data-pulled="{r.pulled}">'
        f"<td>{_when(r.started_at)}</td><td>{html.escape(r.direction)}</td>"
        f'<td class="status">{html.escape(r.status)}</td>'
        f"<td>{_duration(r.seconds)}</td><td>{_counts(r.counts)}</td>"
        f"<td>{_rejected(r.rejected_by_reason)}</td>"
        f'<td class="error">{html.escape(r.error or "")}</td></tr>'
        for r in sync.runs
    )
    table = (
        '<table class="runs"><thead><tr><th>Started</th><th>Direction</th><th>Status</th>'
        "<th>Duration</th><th>Counts</th><th>Rejected by reason</th><th>Error</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        if rows
        else '<p class="empty">No runs recorded yet.</p>'
    )
    return (
        f'<section class="sync" id="sync-{name}" data-sync="{name}">'
        f'<h2>{name}</h2><p class="schedule">Schedule: {schedule}</p>'
        f"{runs_chart(sync.name, list(reversed(sync.runs)))}{table}</section>"
    )


def runs_chart(sync: str, runs: Sequence[RunView]) -> str:
    """Bars per run (oldest left): contacts pushed (push runs) and events pulled (pull runs)."""
    if not runs:
        return ""
    width, height, pad = 640, 180, 28
    top = max([max(r.pushed, r.pulled) for r in runs] + [1])
    slot = (width - 2 * pad) / len(runs)
    bar = max(min(slot * 0.7, 40), 2)
    parts = [
        f'<svg class="chart runs-chart" data-sync="{html.escape(sync)}" data-max="{top}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Contacts pushed and events pulled per run for {html.escape(sync)}">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'class="axis"/>',
        f'<text x="{pad - 4}" y="{pad}" class="tick" text-anchor="end">{top}</text>',
        f'<text x="{pad - 4}" y="{height - pad}" class="tick" text-anchor="end">0</text>',
    ]
    for i, run in enumerate(runs):
        series = "pushed" if run.direction == "push" else "pulled"
        value = run.pushed if run.direction == "push" else run.pulled
        h = (height - 2 * pad) * value / top
        x = pad + i * slot + (slot - bar) / 2
        y = height - pad - h
        label = f"{run.direction} {_when(run.started_at)}: {value} {series} ({run.status})"
        parts.append(
            f'<rect class="bar {series} status-{html.escape(run.status)}" '
            f'data-series="{series}" data-value="{value}" data-run-id="{html.escape(run.id)}" '
            f'x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(h, 0.5):.1f}">'
            f"<title>{html.escape(label)}</title></rect>"
        )
    first, last = runs[0].started_at, runs[-1].started_at
    parts.append(
        f'<text x="{pad}" y="{height - 8}" class="tick">{_when(first)}</text>'
        f'<text x="{width - pad}" y="{height - 8}" class="tick" text-anchor="end">'
        f"{_when(last)}</text>"
        f'<g class="legend"><rect x="{width - 190}" y="6" width="10" height="10" class="pushed"/>'
        f'<text x="{width - 176}" y="15" class="tick">contacts pushed</text>'
        f'<rect x="{width - 90}" y="6" width="10" height="10" class="pulled"/>'
        f'<text x="{width - 76}" y="15" class="tick">events pulled</text></g></svg>'
    )
    return "".join(parts)


def webhook_chart(hours: Sequence[tuple[datetime, int]]) -> str:
    """Webhook events received per hour (UTC), oldest left."""
    width, height, pad = 640, 140, 28
    top = max([n for _h, n in hours] + [1])
    slot = (width - 2 * pad) / max(len(hours), 1)
    parts = [
        f'<svg class="chart webhook-chart" data-max="{top}" viewBox="0 0 {width} {height}" '
        'role="img" aria-label="Webhook events per hour">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'class="axis"/>',
        f'<text x="{pad - 4}" y="{pad}" class="tick" text-anchor="end">{top}</text>',
    ]
    for i, (hour, count) in enumerate(hours):
        h = (height - 2 * pad) * count / top
        x = pad + i * slot + slot * 0.15
        parts.append(
            f'<rect class="bar hour" data-hour="{hour.strftime("%Y-%m-%dT%H:00Z")}" '
            f'data-value="{count}" x="{x:.1f}" y="{height - pad - h:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{max(h, 0.5):.1f}">'
            f"<title>{hour.strftime('%Y-%m-%d %H:00')} UTC: {count} events</title></rect>"
        )
        if i % 6 == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{height - 10}" class="tick">{hour.strftime("%H:00")}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def render_login(*, failed: bool = False) -> str:
    page = Template(_asset("login.html"))
    message = '<p class="error">That token is not valid.</p>' if failed else ""
    return page.substitute(message=message, style=_asset("status.css"))
