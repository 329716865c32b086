"""The pull: campaigns, reports, per-contact activity and member statuses, into the database.

``run_pull`` reads the provider incrementally and lands what it reads in the state-store
database (see :mod:`campaign_bridge.landing` and docs/pull.md):

1. **campaigns** -- new ones (created or sent since the ``campaigns`` cursor) and every campaign
   the database still holds as not finished (``save``, ``schedule``, ``sending``, ...): the
   provider's list filters only by create/send time, so those are re-read until they end.
2. **reports** -- the counters of every campaign sent within the history window.
3. **activity** -- each such campaign's sent/open/click/bounce/unsubscribe events, from its own
   cursor (``activity:<campaign id>``). Events are written in chunks, each committed before the
   next is read; the cursor moves only after the campaign's last chunk is committed, because
   the provider does not return events in time order. A crash therefore re-reads (never skips)
   events, and the natural key makes a re-read add nothing. A campaign whose report counters
   are those its last complete read ended with (``activity:<campaign id>:report``) has no new
   activity and is not read again.
4. **members** -- members changed since the ``members`` cursor (``since_last_changed``), applied
   through :func:`campaign_bridge.status_changes.apply_status_changes` (the same code the webhook
   receiver uses), which also writes back to the user's table when configured.

Cursors hold provider timestamps (the campaigns cursor never later than the pull's start) and
are re-read with an overlap (``OVERLAP``; ``ACTIVITY_OVERLAP`` for events, which the provider
may record late), so an event stamped in the same second as the cursor is never missed. The
first pull reaches back ``pull.history_days``; ``since`` overrides the window and the cursors
(a deliberate re-read: nothing is duplicated).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import md5
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge import landing, permissions
from campaign_bridge.config import Settings, SyncConfig
from campaign_bridge.db import create_engine, describe_database_error
from campaign_bridge.errors import (
    BridgeError,
    ConfigProblem,
    ConfigurationError,
    DatabaseError,
)
from campaign_bridge.providers.base import (
    ActivityEvent,
    Campaign,
    CampaignReport,
    CampaignStatus,
    MemberSnapshot,
    Provider,
)
from campaign_bridge.status_changes import (
    ApplySummary,
    apply_status_changes,
    change_from_snapshot,
    email_hash,
)
from campaign_bridge.store import StateStore, prepare_state_store
from campaign_bridge.synclock import SyncLock
from campaign_bridge.vanished import record_replaced_members, record_vanished_members
from campaign_bridge.writeback import WritebackTarget

__all__ = [
    "ACTIVITY_CHUNK",
    "MEMBER_CHUNK",
    "OVERLAP",
    "PullSummary",
    "activity_rows",
    "parse_since",
    "pull_with_progress",
    "run_pull",
]

logger = logging.getLogger(__name__)

ACTIVITY_CHUNK = 10_000
ROW_BATCH = 500  # events turned into rows at a time (see _Run.pull_activity)
ACTIVITY_GC_THRESHOLD = 20_000  # young collections while reading activity (_YoungCollections)
ACTIVITY_CONCURRENCY = 3  # campaigns read at once (each keeps one page request in flight)
MEMBER_CHUNK = 2_000
OVERLAP = timedelta(minutes=5)
# Activity is re-read with a longer overlap: an event the provider records late, stamped with the
# time it happened, must still fall after the next pull's ``since``.
ACTIVITY_OVERLAP = timedelta(hours=1)
#: suffix of the stream holding a campaign's report counters as of its last complete activity read
REPORT_MARK = ":report"
REPORT_CONCURRENCY = 8
# Campaign statuses as landed (CampaignStatus values): finished ones are not re-read; those with
# recipients have activity to pull.
FINISHED = frozenset(status.value for status in CampaignStatus if status.finished)
SENT = frozenset(status.value for status in CampaignStatus if status.has_recipients)

Progress = Callable[[str, int], None]
"""``progress(stage, advance)``: called as work is done (stage: campaigns, reports, activity,
members)."""


@dataclass
class PullSummary:
    sync_name: str
    run_id: str
    provider: str
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "running"
    campaigns_new: int = 0
    campaigns_updated: int = 0
    reports: int = 0
    activity_read: int = 0
    activity_added: int = 0
    members_read: int = 0
    status_changes: int = 0  # member rows whose status/email changed
    transitions: int = 0  # contact status transitions (consent ledger rows)
    written_back: int = 0
    unknown_contacts: int = 0
    error: str | None = None
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return {
            "campaigns_new": self.campaigns_new,
            "campaigns_updated": self.campaigns_updated,
            "reports": self.reports,
            "activity_read": self.activity_read,
            "activity_added": self.activity_added,
            "members_read": self.members_read,
            "status_changes": self.status_changes,
            "transitions": self.transitions,
            "written_back": self.written_back,
            "unknown_contacts": self.unknown_contacts,
        }

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return data


# --- pure helpers ----------------------------------------------------------------------------


def activity_rows(
    events: Iterable[ActivityEvent], *, provider: str, pulled_at: datetime, state: _SeqState
) -> list[tuple[Any, ...]]:
    """Events as ``cb_email_activity`` rows (tuples in ``landing.ACTIVITY_COLUMNS`` order): UTC
    whole seconds, hashed URL, ``seq`` numbering identical events of one member (same action,
    second and URL) in the order given, and ``event_id`` (``landing.event_id``) first. Hot path:
    one pass, cached hashes."""
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    urls = state.urls
    if len(urls) > 50_000:  # personalised links: keep the caches bounded
        urls.clear()
    epochs = state.epochs
    if len(epochs) > 20_000:
        epochs.clear()
    email = member_id = clean = prefix = ""
    campaign = ""
    seen: dict[str, int] = {}
    for event in events:
        moment = epochs.get(event.occurred_at)
        if moment is None:
            moment = epochs[event.occurred_at] = _moment(event.occurred_at)
        occurred, epoch = moment
        if event.email != email or event.campaign_id != campaign:
            email, campaign = event.email, event.campaign_id
            clean = email.strip()
            member_id = email_hash(email)
            prefix = f"{provider}|{campaign}|{member_id}|"
            if member_id != state.member:
                state.member = member_id
                state.seen = {}
            seen = state.seen.setdefault(campaign, {})
        url = event.url
        if url:
            hashed = urls.get(url)
            if hashed is None:
                hashed = urls[url] = landing.url_hash(url)
        else:
            hashed = ""
        action = event.action
        key = f"{action}|{epoch}|{hashed}"
        seq = seen.get(key, 0)
        seen[key] = seq + 1
        append(
            (
                md5(f"{prefix}{key}|{seq}".encode(), usedforsecurity=False).hexdigest(),
                provider,
                campaign,
                member_id,
                action,
                occurred,
                hashed,
                seq,
                clean,
                url,
                event.bounce_type,
                event.reason,
                event.ip,
                pulled_at,
            )
        )
    return rows


def report_mark(report: CampaignReport) -> str:
    """A campaign's counters in one string: while it stays the same, the campaign has no new
    activity (every kind of event a provider lists is counted in its report)."""
    counters = asdict(report)
    for moment in ("last_open", "last_click"):
        counters.pop(moment, None)
    return md5(repr(sorted(counters.items())).encode(), usedforsecurity=False).hexdigest()


@dataclass
class _SeqState:
    """Counts identical keys of the current member only (events arrive grouped by member)."""

    member: str = ""
    seen: dict[str, dict[str, int]] = field(default_factory=dict)  # campaign -> key -> count
    urls: dict[str, str] = field(default_factory=dict)
    #: an event's time -> (whole seconds in UTC, epoch seconds as text)
    epochs: dict[datetime, tuple[datetime, str]] = field(default_factory=dict)


def _moment(value: datetime) -> tuple[datetime, str]:
    occurred = value if value.tzinfo is UTC and not value.microsecond else _whole_seconds(value)
    return occurred, str(int(occurred.timestamp()))


class _ActivityChunker:
    """Turns a campaign's event stream into rows ``ROW_BATCH`` events at a time and hands them
    out ``ACTIVITY_CHUNK`` rows at a time; remembers the newest ``occurred_at`` (whole
    seconds, UTC) for the cursor."""

    def __init__(self, provider: str, pulled_at: datetime) -> None:
        self.provider = provider
        self.pulled_at = pulled_at
        self.state = _SeqState()
        self.events: list[ActivityEvent] = []
        self.rows: list[tuple[Any, ...]] = []
        self.newest: datetime | None = None

    def add(self, event: ActivityEvent) -> list[tuple[Any, ...]] | None:
        """Take one event; return a full chunk of rows when there is one."""
        self.events.append(event)
        if len(self.events) < ROW_BATCH:
            return None
        self._convert()
        if len(self.rows) < ACTIVITY_CHUNK:
            return None
        rows, self.rows = self.rows, []
        return rows

    def rest(self) -> list[tuple[Any, ...]]:
        """The rows not handed out yet."""
        self._convert()
        rows, self.rows = self.rows, []
        return rows

    def _convert(self) -> None:
        if not self.events:
            return
        rows = activity_rows(
            self.events, provider=self.provider, pulled_at=self.pulled_at, state=self.state
        )
        self.events = []
        newest = max(row[_OCCURRED] for row in rows)
        if self.newest is None or newest > self.newest:
            self.newest = newest
        self.rows.extend(rows)


_OCCURRED = landing.ACTIVITY_COLUMNS.index("occurred_at")


def campaign_row(campaign: Campaign, *, provider: str, now: datetime) -> dict[str, Any]:
    return {
        "provider": provider,
        "campaign_id": campaign.id,
        "list_id": campaign.list_id,
        "title": campaign.title or "",
        "subject": campaign.subject or "",
        "status": campaign.status.value,
        "created_at": _opt_seconds(campaign.created_at),
        "send_time": _opt_seconds(campaign.send_time),
        "emails_sent": campaign.emails_sent,
        "updated_at": now,
    }


def _whole_seconds(value: datetime) -> datetime:
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.replace(microsecond=0)


def _opt_seconds(value: datetime | None) -> datetime | None:
    return None if value is None else _whole_seconds(value)


def _parse_cursor(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return _whole_seconds(datetime.fromisoformat(text))
    except ValueError:
        return None


# --- the run ---------------------------------------------------------------------------------


async def run_pull(
    settings: Settings,
    sync_name: str,
    *,
    since: datetime | None = None,
    provider: Provider | None = None,
    progress: Progress | None = None,
    wait: float = 0.0,
) -> PullSummary:
    """Pull one sync. Raises a :class:`BridgeError` if the run fails (after recording it), and
    :class:`~campaign_bridge.synclock.SyncBusy` when another run of the sync holds its lock for
    longer than ``wait`` seconds."""
    sync = settings.syncs.get(sync_name)
    if sync is None:
        known = ", ".join(sorted(settings.syncs)) or "none configured"
        raise ConfigurationError(
            [ConfigProblem(f"syncs.{sync_name}", "no such sync", f"one of: {known}")]
        )
    state_url = settings.effective_state_url()
    await anyio.to_thread.run_sync(prepare_state_store, state_url)
    engine = create_engine(state_url)
    store = StateStore(engine)
    try:
        await anyio.to_thread.run_sync(store.check)
    except BaseException:
        engine.dispose()
        raise
    try:
        writeback = await anyio.to_thread.run_sync(
            lambda: WritebackTarget.open(sync_name, sync, state_url=state_url)
        )
    except BaseException:
        engine.dispose()
        raise
    owns_provider = provider is None
    if provider is None:
        from campaign_bridge.providers import create_provider

        provider = create_provider(sync.destination)
    run = _Run(
        engine=engine,
        store=store,
        sync_name=sync_name,
        sync=sync,
        provider=provider,
        writeback=writeback,
        since=_opt_seconds(since),
        progress=progress or (lambda _stage, _n: None),
    )
    lock = SyncLock(store, sync_name)
    try:
        # The same per-sync lock as push and the scheduler: one run of a sync at a time.
        await lock.acquire(wait)
        await anyio.to_thread.run_sync(run.record_start)
        try:
            await run.execute()
        except BaseException as exc:
            run.summary.status = "failed"
            run.summary.error = _describe(exc)
            try:
                await anyio.to_thread.run_sync(run.record_finish)
            except BridgeError as record_error:  # keep the run's own error; say this one too
                logger.error("could not record the failed pull: %s", record_error)
            if isinstance(exc, BridgeError) or not isinstance(exc, Exception):
                raise
            if isinstance(exc, sa.exc.SQLAlchemyError):
                raise DatabaseError(describe_database_error(state_url, "write to", exc)) from exc
            raise
        run.summary.status = "succeeded"
        await anyio.to_thread.run_sync(run.record_finish)
        return run.summary
    finally:
        await lock.release()
        if owns_provider:
            await provider.aclose()
        if writeback is not None:
            writeback.close()
        engine.dispose()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


class _Run:
    def __init__(
        self,
        *,
        engine: Engine,
        store: StateStore,
        sync_name: str,
        sync: SyncConfig,
        provider: Provider,
        writeback: WritebackTarget | None,
        since: datetime | None,
        progress: Progress,
    ) -> None:
        self.engine = engine
        self.store = store
        self.sync_name = sync_name
        self.sync = sync
        self.provider = provider
        self.writeback = writeback
        self.since = since
        self.progress = progress
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.window_start = since or self.now - timedelta(days=sync.pull.history_days)
        self.summary = PullSummary(
            sync_name=sync_name,
            run_id="",
            provider=provider.name,
            started_at=self.now,
        )
        self._clock = time.monotonic()
        #: each campaign's report counters as this run read them (``report_mark``)
        self.report_marks: dict[str, str] = {}

    @property
    def log_extra(self) -> dict[str, str]:
        return {"action": "pull", "provider": self.provider.name, "run_id": self.summary.run_id}

    # -- run record ---------------------------------------------------------------------------

    def record_start(self) -> None:
        self.summary.run_id = self.store.start_run(self.sync_name, "pull")

    def record_finish(self) -> None:
        self.summary.finished_at = datetime.now(UTC)
        self.summary.seconds = round(time.monotonic() - self._clock, 3)
        self.store.finish_run(
            self.summary.run_id, self.summary.status, self.summary.counts(), self.summary.error
        )
        logger.info(
            "pull %s %s in %.1fs: %s",
            self.sync_name,
            self.summary.status,
            self.summary.seconds,
            self.summary.counts(),
            extra=self.log_extra,
        )

    # -- stages -------------------------------------------------------------------------------

    async def execute(self) -> None:
        if self.sync.pull.enabled:
            await self.pull_campaigns()
            sent = await anyio.to_thread.run_sync(self.sent_campaigns)
            await self.pull_reports(sent)
            await self.pull_all_activity(sent)
        await self.pull_members()

    async def pull_campaigns(self) -> None:
        cursor, unfinished = await anyio.to_thread.run_sync(self._campaign_start)
        start = self.since or cursor or self.window_start
        if unfinished is not None and unfinished < start:
            start = unfinished
        found: dict[str, Campaign] = {}
        async for campaign in self.provider.campaigns(start - OVERLAP):
            found[campaign.id] = campaign
        rows = [campaign_row(c, provider=self.provider.name, now=self.now) for c in found.values()]
        await anyio.to_thread.run_sync(self._store_campaigns, rows)
        self.progress("campaigns", len(rows))
        stamps = [t for c in found.values() for t in (c.created_at, c.send_time) if t is not None]
        if stamps:
            # never past now: a scheduled campaign's send_time lies in the future
            newest = min(_whole_seconds(max(stamps)), self.now)
            await anyio.to_thread.run_sync(self._advance_cursor, "campaigns", newest)

    def _campaign_start(self) -> tuple[datetime | None, datetime | None]:
        table = landing.campaigns
        cursor = self._read_cursor("campaigns")
        with self.engine.connect() as conn:
            unfinished = conn.execute(
                sa.select(sa.func.min(table.c.created_at)).where(
                    table.c.provider == self.provider.name, table.c.status.not_in(FINISHED)
                )
            ).scalar_one_or_none()
        return cursor, landing.as_utc(unfinished)

    def _store_campaigns(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        table = landing.campaigns
        compared = ("list_id", "title", "subject", "status", "send_time", "emails_sent")
        with self.engine.begin() as conn:
            existing = {
                row.campaign_id: row
                for chunk in _chunks([r["campaign_id"] for r in rows], 500)
                for row in conn.execute(
                    sa.select(table).where(
                        table.c.provider == self.provider.name, table.c.campaign_id.in_(chunk)
                    )
                )
            }
            changed = []
            for row in rows:
                old = existing.get(row["campaign_id"])
                if old is None:
                    self.summary.campaigns_new += 1
                elif any(_differs(getattr(old, name), row[name]) for name in compared):
                    self.summary.campaigns_updated += 1
                else:
                    continue
                changed.append(row)
            landing.upsert_campaigns(conn, changed)

    def sent_campaigns(self) -> list[str]:
        table = landing.campaigns
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(table.c.campaign_id)
                    .where(
                        table.c.provider == self.provider.name,
                        table.c.status.in_(SENT),
                        table.c.send_time >= self.window_start,
                    )
                    .order_by(table.c.send_time, table.c.campaign_id)
                ).scalars()
            )

    async def pull_reports(self, campaign_ids: Sequence[str]) -> None:
        limit = anyio.Semaphore(REPORT_CONCURRENCY)
        rows: list[dict[str, Any]] = []

        async def one(campaign_id: str) -> None:
            async with limit:
                report = await self.provider.campaign_report(campaign_id)
            row = asdict(report)
            self.report_marks[campaign_id] = report_mark(report)
            row["last_open"] = _opt_seconds(report.last_open)
            row["last_click"] = _opt_seconds(report.last_click)
            rows.append({**row, "provider": self.provider.name, "fetched_at": self.now})
            self.progress("reports", 1)

        async with anyio.create_task_group() as group:
            for campaign_id in campaign_ids:
                group.start_soon(one, campaign_id)

        def store() -> None:
            with self.engine.begin() as conn:
                landing.upsert_campaign_reports(conn, rows)

        await anyio.to_thread.run_sync(store)
        self.summary.reports += len(rows)

    async def pull_all_activity(self, campaign_ids: Sequence[str]) -> None:
        """Each campaign's activity, ``ACTIVITY_CONCURRENCY`` campaigns at a time."""
        limit = anyio.Semaphore(ACTIVITY_CONCURRENCY)

        async def one(campaign_id: str) -> None:
            async with limit:
                await self.pull_activity(campaign_id)

        with _young_collections.every(ACTIVITY_GC_THRESHOLD):
            async with anyio.create_task_group() as group:
                for campaign_id in campaign_ids:
                    group.start_soon(one, campaign_id)

    async def pull_activity(self, campaign_id: str) -> None:
        """One campaign's events, in chunks: while chunk *n* is written (in a worker thread),
        chunk *n+1* is being read. Events become rows every ``ROW_BATCH`` events, so only rows
        wait for the writer: tuples of plain values, which the garbage collector stops tracking,
        where buffered events were promoted to the old generation and swept again by every full
        collection. Chunks are written strictly in order, so ``seq`` numbering is the same on
        every read of the same events."""
        stream = f"activity:{campaign_id}"
        cursor = await anyio.to_thread.run_sync(self._read_cursor, stream)
        mark = self.report_marks.get(campaign_id)
        if await anyio.to_thread.run_sync(self._unchanged_since_read, stream, cursor, mark):
            return
        start = self.since if self.since is not None else cursor
        query_since = None if start is None else start - ACTIVITY_OVERLAP
        chunk = _ActivityChunker(self.provider.name, datetime.now(UTC))
        pending: asyncio.Future[int] | None = None
        async for event in _activity(self.provider, campaign_id, query_since):
            rows = chunk.add(event)
            if rows is not None:
                if pending is not None:
                    self._count_activity(await pending)
                pending = asyncio.ensure_future(
                    anyio.to_thread.run_sync(self._write_activity, rows)
                )
                self.summary.activity_read += len(rows)
                # Let the write start now: a provider that reads a whole file without
                # waiting (Brevo's exports) would otherwise start it only at the next chunk.
                await asyncio.sleep(0)
        if pending is not None:
            self._count_activity(await pending)
        rows = chunk.rest()
        if rows:
            self.summary.activity_read += len(rows)
            self._count_activity(await anyio.to_thread.run_sync(self._write_activity, rows))
        if chunk.newest is not None and (cursor is None or chunk.newest > cursor):
            await anyio.to_thread.run_sync(self._advance_cursor, stream, chunk.newest)
        if mark is not None:
            await anyio.to_thread.run_sync(
                self.store.set_cursor, self.sync_name, stream + REPORT_MARK, mark
            )

    def _unchanged_since_read(self, stream: str, cursor: datetime | None, mark: str | None) -> bool:
        """The campaign's counters are those its last complete read ended with: no new
        activity, so it is not read again (a provider's exports cost requests of an hourly
        budget). Not after its cursor was reset, nor when ``since`` asks for a re-read."""
        if mark is None or cursor is None or self.since is not None:
            return False
        return self.store.get_cursor(self.sync_name, stream + REPORT_MARK) == mark

    def _count_activity(self, added: int) -> None:
        self.summary.activity_added += added
        self.progress("activity", added)

    def _write_activity(self, rows: Sequence[Sequence[Any]]) -> int:
        with self.engine.begin() as conn:
            return landing.insert_activity(conn, rows)

    async def pull_members(self) -> None:
        list_id = self.sync.destination.list_id
        cursor = await anyio.to_thread.run_sync(self._read_cursor, "members")
        start = self.since if self.since is not None else cursor
        query_since = None if start is None else start - OVERLAP
        newest: datetime | None = None
        chunk: list[MemberSnapshot] = []
        applied = 0
        await anyio.to_thread.run_sync(self._analyze)
        async for snapshot in self.provider.members_changed_since(list_id, query_since):
            chunk.append(snapshot)
            if snapshot.last_changed is not None and (
                newest is None or snapshot.last_changed > newest
            ):
                newest = snapshot.last_changed
            if len(chunk) >= MEMBER_CHUNK:
                await self._apply_members(list_id, chunk)
                chunk = []
                applied += 1
                if applied == 10:  # cb_member_status may have grown from empty: re-plan
                    await anyio.to_thread.run_sync(self._analyze)
        if chunk:
            await self._apply_members(list_id, chunk)
        await self._record_vanished_members(list_id)
        if newest is not None:
            newest = _whole_seconds(newest)
            if cursor is None or newest > cursor:
                await anyio.to_thread.run_sync(self._advance_cursor, "members", newest)

    async def _record_vanished_members(self, list_id: str) -> None:
        """Members the provider no longer lists under their address: erased, or moved to
        another address (see :mod:`campaign_bridge.vanished`). Without webhooks this is how an
        erasure or an address change made at the provider reaches the ledger."""
        result = await record_vanished_members(
            self.provider,
            self.engine,
            list_id,
            sync_name=self.sync_name,
            run_id=self.summary.run_id,
            writeback=self.writeback,
            found=lambda snapshots: self._apply_members(list_id, snapshots),
        )
        self.summary.status_changes += result.members_changed
        self.summary.transitions += result.transitions
        self.summary.written_back += result.written_back

    def _analyze(self) -> None:
        """PostgreSQL: fresh planner statistics for the tables looked up per chunk. A table that
        grew from empty still looks empty to the planner, and once psycopg prepares the lookup
        its generic plan scans the whole table per chunk (quadratic overall)."""
        if self.engine.dialect.name != "postgresql":
            return
        with self.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE cb_contact_state")
            conn.exec_driver_sql("ANALYZE cb_member_status")

    async def _apply_members(self, list_id: str, snapshots: Sequence[MemberSnapshot]) -> None:
        # An address listed with another provider id than the stored one: what became of the
        # stored member is recorded first, so the member there now lands as a new one (F20).
        replaced = await record_replaced_members(
            self.provider,
            self.engine,
            list_id,
            snapshots,
            sync_name=self.sync_name,
            run_id=self.summary.run_id,
            writeback=self.writeback,
        )
        self.summary.status_changes += replaced.members_changed
        self.summary.transitions += replaced.transitions
        self.summary.written_back += replaced.written_back
        fetched = datetime.now(UTC)
        changes = [
            change_from_snapshot(
                s, provider=self.provider.name, list_id=list_id, fetched_at=fetched
            )
            for s in snapshots
            if s.email
        ]
        result: ApplySummary = await anyio.to_thread.run_sync(
            lambda: apply_status_changes(
                self.engine,
                changes,
                sync_name=self.sync_name,
                writeback=self.writeback,
                run_id=self.summary.run_id,
            )
        )
        await anyio.to_thread.run_sync(self._record_permissions, list_id, snapshots)
        self.summary.members_read += len(snapshots)
        self.summary.status_changes += result.members_changed
        self.summary.transitions += result.transitions
        self.summary.written_back += result.written_back
        self.summary.unknown_contacts += result.unknown_contacts
        self.progress("members", len(snapshots))

    def _record_permissions(self, list_id: str, snapshots: Sequence[MemberSnapshot]) -> None:
        """Members' GDPR permission states, and a ledger entry per change (permissions.py)."""
        permissions.record_permissions(
            self.engine,
            permissions.from_snapshots(snapshots),
            provider=self.provider.name,
            list_id=list_id,
            sync_name=self.sync_name,
            origin="pull",
            run_id=self.summary.run_id,
        )

    # -- cursors ------------------------------------------------------------------------------

    def _read_cursor(self, stream: str) -> datetime | None:
        return _parse_cursor(self.store.get_cursor(self.sync_name, stream))

    def _advance_cursor(self, stream: str, value: datetime) -> None:
        """Move a cursor forward (never back), after the data it covers is committed. One run
        per sync at a time (the scheduler's lock), so read-then-write is safe here."""
        current = self._read_cursor(stream)
        if current is None or value > current:
            self.store.set_cursor(self.sync_name, stream, value.isoformat())


def _activity(
    provider: Provider, campaign_id: str, since: datetime | None
) -> AsyncIterator[ActivityEvent]:
    """The campaign's events, including one ``sent`` per recipient."""
    return provider.email_activity(campaign_id, since, include_sent=True)


class _YoungCollections:
    """Python's young-generation collection threshold, raised while activity stages run.

    The cyclic collector examines the young generation every 700 net new container objects by
    default, and the whole heap once enough of them have survived. Reading activity keeps each
    decoded page (thousands of dicts and lists) alive while its events are handled, so pages
    kept surviving into the old generation and full collections took about a third of the
    pull's CPU. The activity stage creates no reference cycles of its own. Overlapping stages
    (several pulls in one process) share one raise; the last to end restores the thresholds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: tuple[int, int, int] = gc.get_threshold()

    @contextmanager
    def every(self, objects: int) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._saved = gc.get_threshold()
                if self._saved[0]:  # 0: automatic collection is off, leave it so
                    gc.set_threshold(max(objects, self._saved[0]), *self._saved[1:])
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    gc.set_threshold(*self._saved)


_young_collections = _YoungCollections()


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, datetime) or isinstance(new, datetime):
        return landing.as_utc(old) != landing.as_utc(new)
    return bool(old != new)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- command-line support ----------------------------------------------------------------------


def parse_since(text: str | None) -> datetime | None:
    """``--since``: a date (``2024-01-31``) or an ISO time; a time without zone is UTC."""
    if text is None or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigurationError(
            [ConfigProblem("--since", f"{text!r} is not a date", "YYYY-MM-DD or an ISO time")]
        ) from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def pull_with_progress(
    settings: Settings,
    names: Sequence[str],
    *,
    since: datetime | None,
    tty: bool,
    wait: float = 0.0,
) -> list[PullSummary]:
    """Pull each named sync in turn: a live progress display on a terminal, a progress log line
    every few seconds otherwise. Stops at the first failing sync (its error propagates)."""
    if not names:
        raise ConfigurationError(
            [ConfigProblem("syncs", "no sync is configured", "a [syncs.<name>] table")]
        )
    summaries = []
    for name in names:
        if tty:
            summaries.append(await _pull_on_terminal(settings, name, since, wait))
        else:
            summaries.append(await _pull_logged(settings, name, since, wait))
    return summaries


async def _pull_logged(
    settings: Settings, name: str, since: datetime | None, wait: float
) -> PullSummary:
    done: dict[str, int] = {}
    last = [time.monotonic()]

    def progress(stage: str, advance: int) -> None:
        done[stage] = done.get(stage, 0) + advance
        if time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            logger.info("pull %s progress: %s", name, done, extra={"action": "pull"})

    return await run_pull(settings, name, since=since, progress=progress, wait=wait)


async def _pull_on_terminal(
    settings: Settings, name: str, since: datetime | None, wait: float
) -> PullSummary:
    from rich.progress import (
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        tasks: dict[str, Any] = {}
        started = time.monotonic()

        def progress(stage: str, advance: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(f"{name}: {stage}", total=None, rate="")
            bar.advance(tasks[stage], advance)
            task = bar.tasks[tasks[stage]]
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.update(tasks[stage], rate=f"{task.completed / elapsed:,.0f}/s")

        return await run_pull(settings, name, since=since, progress=progress, wait=wait)
