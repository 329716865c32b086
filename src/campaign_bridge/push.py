"""Push: contacts from the user's database to the provider, consent-safe, incremental, resumable.

One run: start a run row -> fetch the audience and check the mapping (configuration errors stop
the run before any data moves) -> refresh the provider-side member statuses since the last run ->
stream the source in chunks -> map, diff against the saved content hashes, apply the consent
rules -> send slices of up to 500 members with several slices in flight (a bounded queue keeps
memory flat) -> save state, rejections and ledger entries per confirmed slice (so a crash loses
nothing and repeats only the slices in flight) -> in mirror mode archive managed contacts that
left the source -> finish the run row with the counts.

A dry run reads and diffs like a real run and reads from the provider, but writes nothing to the
provider, the state store's contact state, the rejected records or the ledger.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from campaign_bridge import features, mapping
from campaign_bridge._push_guard import (
    OPTED_OUT,
    AddressMove,
    OldMember,
    ProviderChanges,
    has_intent,
    intents_for,
    recover_intents,
)
from campaign_bridge._push_privacy import FORGOTTEN_REASON, PushGate
from campaign_bridge._push_state import (
    LEDGER_COLUMNS,
    ConfirmedRows,
    ConsentChange,
    ContactState,
    IntentsDone,
    LedgerRow,
    MemberStatusRecord,
    PushedAs,
    PushState,
    Rejection,
    consent_ledger_row,
    contact_state_row,
    ledger_row,
    member_status_row,
)
from campaign_bridge.config import Settings, SyncConfig, SyncMode
from campaign_bridge.consent import Actor, ConsentDecision, ConsentInput, Effect, decide
from campaign_bridge.errors import BridgeError, ConfigurationError, RecordError
from campaign_bridge.providers._http import gather_both
from campaign_bridge.providers.base import (
    MemberSnapshot,
    MemberStatus,
    MemberUpsert,
    Outcome,
    OutcomeKind,
    Provider,
    TagChange,
)
from campaign_bridge.source import Source, SourceChunk, SourceCursor
from campaign_bridge.state import contact_state
from campaign_bridge.status_changes import VACATED
from campaign_bridge.storable import column_limit, storable_value
from campaign_bridge.synclock import DEFAULT_TTL, SyncLock
from campaign_bridge.vanished import record_replaced_members, record_vanished_members
from campaign_bridge.writeback import WritebackTarget

__all__ = ["ProgressCallback", "PushSummary", "run_push"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
ProgressCallback = Callable[[int, int | None], None]

# Members per slice: the unit a worker sends and a save confirms (what a crash can repeat): the
# provider's bulk call (``capabilities.max_batch``), and never more than this.
SLICE = 1000
FIRST_SEEN = "first seen at the provider (the member existed before the bridge linked it)"
#: a first-seen entry records what the provider did, seen by the bridge: never "push", which
#: would make the bridge the one who unsubscribed the member (and free to re-subscribe them)
FIRST_SEEN_ORIGIN = "pull"
MAX_ATTEMPTS = 3  # per record within one run, for transient (RETRY) outcomes
MEMBERS_STREAM = "push:members"
SOURCE_STREAM = "push:source"
ARCHIVE_BATCH = 500
STATUS_BATCH = 5000  # refreshed member statuses saved per statement
CLOCK_SKEW = dt.timedelta(seconds=2)
GROUP_ROWS = 5000  # save confirmed slices in groups of about this many rows...
GROUP_WAIT = 0.2  # ...or after this many seconds, whichever comes first
SAVES_IN_FLIGHT = 20  # slices confirmed but not yet saved, at most
ANALYZE_FIRST = 5000  # refresh planner statistics after this many saved rows, then x4 each time
YIELD_EVERY = 500  # rows mapped or decided between two turns of the event loop
VACUUM_AFTER = 20_000  # status changes sent (intents written and deleted) that call for a VACUUM
# A member the bridge created unsubscribed but left off the list (its add to the list failed,
# ``_created_off_list``): the next run adds it as unsubscribed, whatever the source says now
# short of a consent the rules act on (never subscribed by this).
FINISH_CREATE = ConsentDecision(
    True,
    MemberStatus.UNSUBSCRIBED,
    MemberStatus.UNSUBSCRIBED,
    Effect.UNSUBSCRIBED_NEW,
    (
        str(MemberStatus.ARCHIVED),
        str(MemberStatus.UNSUBSCRIBED),
        "created off the list by an earlier run, whose add to it as unsubscribed failed",
    ),
)

_EFFECT_WORDS = {
    Effect.RECONFIRM: "ask re-confirmation of",
    Effect.CONFIRM_NEW: "ask confirmation of",
    Effect.RESUBSCRIBE: "re-subscribe",
    Effect.UNSUBSCRIBE: "unsubscribe",
    Effect.SUBSCRIBE: "subscribe",
}


@dataclass
class PushSummary:
    sync_name: str
    run_id: str | None = None
    status: str = "running"  # succeeded | failed
    dry_run: bool = False
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    archived: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    consent: Counter[str] = field(default_factory=Counter)
    retry_later: int = 0
    resolved: int = 0
    writes: int = 0  # provider write calls made (0 on a dry run or when nothing changed)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # what the run could not check
    exit_code: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase of the run

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def consent_sentence(self) -> str:
        """E.g. 'would ask re-confirmation of 3, would archive 12, would re-subscribe 0'."""
        verb = "would " if self.dry_run else ""
        parts = [
            f"{verb}ask re-confirmation of {self.consent.get(Effect.RECONFIRM, 0)}",
            f"{verb}archive {self.archived}",
            f"{verb}re-subscribe {self.consent.get(Effect.RESUBSCRIBE, 0)}",
            f"{verb}unsubscribe {self.consent.get(Effect.UNSUBSCRIBE, 0)}",
        ]
        kept = self.consent.get(Effect.KEPT, 0)
        if kept:
            parts.append(f"kept {kept} unsubscribed/cleaned/deleted members as they are")
        return ", ".join(parts)

    def counts(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "archived": self.archived,
            "rejected": dict(self.rejected),
            "rejected_total": self.rejected_total,
            "skipped": dict(self.skipped),
            "consent": dict(self.consent),
            "retry_later": self.retry_later,
            "resolved_rejections": self.resolved,
            "provider_writes": self.writes,
            "dry_run": self.dry_run,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "sync": self.sync_name,
            "run_id": self.run_id,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "phases": self.phases,
            "error": self.error,
            "warnings": self.warnings,
            "consent_effects": self.consent_sentence(),
            **self.counts(),
        }


@dataclass(slots=True)
class _Item:
    """One contact on its way to the provider."""

    contact: mapping.MappedContact
    upsert: MemberUpsert
    tags_change: TagChange | None  # for a member the provider already has
    state: ContactState | None
    provider_status: MemberStatus | None
    ledger: tuple[str | None, str, str] | None
    effect: Effect
    status_saved: bool  # cb_member_status holds a row for this member already
    attempts: int = 0
    renamed_from: str | None = None  # email hash of the member renamed to this address
    #: the source row's address hash, when the contact goes to the member's current address
    #: instead (the member changed it at the provider; see _at_member_address)
    source_email_hash: str | None = None
    intent_slice: str | None = None  # the cb_push_intents row holding its intent, once written
    unfinished: bool = False  # confirmed, but a later call about it (its tags) failed

    @property
    def last_consent(self) -> bool | None:
        """The consent to remember: this one, or (when NULL) the last one acted on."""
        if self.contact.consent is not None:
            return self.contact.consent
        return self.state.last_consent if self.state is not None else None


async def run_push(
    settings: Settings,
    sync_name: str,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    retry_rejected: bool = False,
    provider: Provider | None = None,
    progress: ProgressCallback | None = None,
    wait: float = 0.0,
    lock_ttl: float = DEFAULT_TTL,
) -> PushSummary:
    """Run one push of ``sync_name``. Never raises a BridgeError: the summary says what failed.

    The run takes the sync's lock (:mod:`campaign_bridge.synclock`); while another run holds
    it, this one waits up to ``wait`` seconds, then fails at once with exit code 75 and a
    message naming the holder. A dry run sends nothing and takes no lock."""
    sync = settings.syncs.get(sync_name)
    if sync is None:
        known = ", ".join(sorted(settings.syncs)) or "(none configured)"
        raise ConfigurationError([], source=f"unknown sync {sync_name!r}; known: {known}")
    engine = _Push(settings, sync_name, sync, dry_run, limit, retry_rejected, provider, progress)
    engine.wait, engine.lock_ttl = wait, lock_ttl
    return await engine.run()


class _Push:
    def __init__(
        self,
        settings: Settings,
        sync_name: str,
        sync: SyncConfig,
        dry_run: bool,
        limit: int | None,
        retry_rejected: bool,
        provider: Provider | None,
        progress: ProgressCallback | None,
    ) -> None:
        self.settings = settings
        self.name = sync_name
        self.sync = sync
        self.dry_run = dry_run
        self.limit = limit
        self.retry_rejected = retry_rejected
        self._own_provider = provider is None
        self.provider: Provider = provider or _default_provider(sync)
        self.progress = progress
        self.summary = PushSummary(sync_name, dry_run=dry_run)
        self.list_id = sync.destination.list_id
        self.db = ThreadPoolExecutor(1, thread_name_prefix="cb-state")
        # Saving confirmed slices is the state store's heaviest work: several writers on a
        # server database (distinct keys, no conflicts), one on SQLite (a single writer anyway).
        sqlite_state = settings.effective_state_url().startswith("sqlite")
        self.writers = ThreadPoolExecutor(1 if sqlite_state else 2, thread_name_prefix="cb-save")
        self._saver = _GroupSaver(self)
        self.decisions: dict[
            tuple[MemberStatus | None, bool | None, bool | None, Actor], ConsentDecision
        ] = {}
        self.reader = ThreadPoolExecutor(1, thread_name_prefix="cb-source")
        self._store: PushState | None = None
        self.source = Source(sync.source)
        self.seen: set[int] = set()  # 64-bit prefixes of the email hashes seen in this run
        self.duplicates: list[mapping.MappedContact] = []
        self.rejected: dict[str, str | None] | None = None
        self.nothing_stored = False  # no state for this sync nor status for the audience yet
        self.last_key: str | None = None  # the previous chunk's last key (repeats are adjacent)
        self.saved = 0
        self.saves: set[asyncio.Future[int]] = set()
        self.analyze_at = ANALYZE_FIRST
        self.done = 0
        self.total: int | None = None
        self.pending_retry = 0
        self.run_id = ""
        self.gate: PushGate | None = None  # the privacy step, opened at the first chunk
        self.wait = 0.0
        self.lock_ttl = DEFAULT_TTL
        self.lock: SyncLock | None = None
        self.changes: ProviderChanges | None = None
        self.writeback: WritebackTarget | None = None
        self.old_members: list[OldMember] = []
        self.intents_written = 0
        self._last_log = 0.0
        self._started = time.monotonic()

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def store(self) -> PushState:
        assert self._store is not None, "the state store is opened at the start of run()"
        return self._store

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.db, fn, *args)

    def _log(self, message: str, **extra: Any) -> None:
        logger.info(
            message,
            extra={
                "action": "push",
                "provider": self.provider.name,
                "run_id": self.run_id,
                **extra,
            },
        )

    def _phase(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.summary.phases[name] = round(now - since, 3)
        return now

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> PushSummary:
        summary = self.summary
        try:
            self._store = await self._db(PushState, self.settings.effective_state_url())
            if not self.dry_run:
                self.lock = SyncLock(self.store, self.name, ttl=self.lock_ttl)
                await self.lock.acquire(self.wait)
            self.run_id = await self._db(self.store.start_run, self.name, "push")
            summary.run_id = self.run_id
            self._log("push started", dry_run=self.dry_run)
            mark = time.monotonic()
            # Independent: the audience's definitions and the provider-side statuses.
            plan, _ = await gather_both(self._prepare(), self._refresh_member_statuses())
            if not self.dry_run:
                await self._recover()
                await self._record_vanished()
            self.nothing_stored = await self._db(
                self.store.nothing_stored, self.name, self.provider.name, self.list_id
            )
            mark = self._phase("prepare", mark)
            source_cursor = await self._stream(plan)
            if self.nothing_stored and self.saved >= ANALYZE_FIRST:
                await self._db(self.store.settle_after_initial_push)
            await self._record_duplicates()
            await self._unsubscribe_old_addresses()
            mark = self._phase("send", mark)
            if self.sync.mode is SyncMode.MIRROR and self.limit is None:
                await self._mirror()
                self._phase("mirror", mark)
            if not self.dry_run:
                # This run's own writes are already in cb_member_status: the next refresh starts
                # at the provider's clock now, not at the start of this run. Without the
                # provider's clock, ours, less an allowance for the difference.
                until = self.provider.server_time() or dt.datetime.now(dt.UTC) - CLOCK_SKEW
                await self._db(self.store.set_cursor, self.name, MEMBERS_STREAM, until.isoformat())
            complete = not self.dry_run and self.pending_retry == 0 and self.limit is None
            if complete and source_cursor is not None:
                await self._db(self.store.set_cursor, self.name, SOURCE_STREAM, source_cursor)
            if self.intents_written >= VACUUM_AFTER:
                await self._db(self.store.vacuum_intents)
            summary.status = "succeeded"
        except BridgeError as exc:
            summary.status = "failed"
            summary.error = str(exc)
            summary.exit_code = exc.exit_code
            logger.error(
                "push failed: %s",
                exc,
                extra={"action": "push", "provider": self.provider.name, "run_id": self.run_id},
            )
        except Exception as exc:  # a bug: record the run as failed, keep the traceback in logs
            summary.status = "failed"
            summary.error = f"unexpected error ({type(exc).__name__}); see the log for details"
            summary.exit_code = 1
            logger.exception(
                "push failed unexpectedly",
                extra={"action": "push", "provider": self.provider.name, "run_id": self.run_id},
            )
        finally:
            if summary.status == "running":  # cancelled (Ctrl-C, shutdown)
                summary.status = "failed"
                summary.error = summary.error or "the run was interrupted"
                summary.exit_code = summary.exit_code or 1
            summary.seconds = time.monotonic() - self._started
            summary.retry_later = self.pending_retry
            await self._finish()
        return summary

    async def _finish(self) -> None:
        summary = self.summary
        try:
            if self.run_id:
                await self._db(
                    self.store.finish_run,
                    self.run_id,
                    summary.status,
                    summary.counts(),
                    summary.error,
                )
        except BridgeError as exc:  # the state store went away: say so, keep the first error
            summary.status = "failed"
            summary.error = summary.error or str(exc)
            summary.exit_code = summary.exit_code or 1
        finally:
            self._log("push finished", status=summary.status, seconds=summary.seconds)
            if self.lock is not None:
                await self.lock.release()
            if self.writeback is not None:
                self.writeback.close()
            if self._own_provider:
                await self.provider.aclose()
            self.source.close()
            if self._store is not None:
                self._store.close()
            if self.gate is not None:
                self.gate.close()
            self.db.shutdown(wait=False)
            self.writers.shutdown(wait=False)
            self.reader.shutdown(wait=False)

    async def _prepare(self) -> mapping.MappingPlan:
        features.require_supported(self.name, self.sync, self.provider.capabilities)
        audience = await self.provider.audience(self.list_id)
        plan = mapping.compile_plan(self.sync, audience, sync_name=self.name)
        for warning in plan.warnings:  # as doctor warns: the run goes on and says why
            logger.warning(
                warning,
                extra={"action": "push", "provider": self.provider.name, "run_id": self.run_id},
            )
            self.summary.warnings.append(warning)
        await self._db(self.source.check_columns, mapping.required_columns(plan))
        return plan

    # -- provider-side statuses ---------------------------------------------------------------

    async def _refresh_member_statuses(self) -> None:
        """Bring cb_member_status up to date with what the provider has changed since last time."""
        text = await self._db(self.store.get_cursor, self.name, MEMBERS_STREAM)
        since = dt.datetime.fromisoformat(text) if text else None
        started = dt.datetime.now(dt.UTC)
        newest = since
        batch: list[MemberStatusRecord] = []
        count = 0
        if self.sync.writeback is not None and not self.dry_run:
            state_url = self.settings.effective_state_url()
            self.writeback = await self._db(
                functools.partial(WritebackTarget.open, self.name, self.sync, state_url=state_url)
            )
        changes = self.changes = ProviderChanges(
            self.store, self.name, self.provider.name, self.list_id, self.writeback
        )
        # Members an interrupted run was changing: settled by _recover, not seen as the
        # provider's own changes.
        changes.skip = {i.email_hash for i in await self._db(self.store.load_intents, self.name)}
        seen: set[str] = set()
        page: list[MemberSnapshot] = []
        async for snapshot in self.provider.members_changed_since(self.list_id, since):
            page.append(snapshot)
            batch.append(_status_row(self.provider.name, self.list_id, snapshot))
            if since is not None:
                seen.add(batch[-1].member_id)
            if snapshot.last_changed and (newest is None or snapshot.last_changed > newest):
                newest = snapshot.last_changed
            if len(batch) >= STATUS_BATCH:
                count += len(batch)
                await self._record_replaced(page)
                await self._db(self._save_refreshed, changes, batch)
                batch, page = [], []
        if batch:
            count += len(batch)
            await self._record_replaced(page)
            await self._db(self._save_refreshed, changes, batch)
        if count >= ANALYZE_FIRST:
            await self._db(self.store.refresh_statistics)
        if since is not None and not self.dry_run:
            await self._find_erased(since, seen)
        # The first run reads everything; later runs start where this one began.
        cursor = started if since is None else max(newest or started, since)
        if not self.dry_run:
            await self._db(self.store.set_cursor, self.name, MEMBERS_STREAM, cursor.isoformat())
        self._log("member statuses refreshed", members=count)

    async def _find_erased(self, since: dt.datetime, seen: set[str]) -> None:
        """Mailchimp sends the same webhook (``unsubscribe``, ``action=delete``) for an archive
        and a permanent delete, so the applier records "archived". An archived member is in
        the refresh's listing; one that is not was erased: a re-read answering 404 says so,
        and the member gets its ledger row (archived -> forgotten)."""
        archived = await self._db(
            self.store.webhook_archives_since, self.name, self.provider.name, self.list_id, since
        )
        missing = sorted(h for h in archived if h not in seen)
        if not missing:
            return
        known = await self._db(
            self.store.member_statuses, self.provider.name, self.list_id, missing
        )
        addresses = [
            (digest, row.email)
            for digest, row in known.items()
            if row.status == MemberStatus.ARCHIVED
        ]
        if not addresses:
            return
        found = await self.provider.read_members(self.list_id, addresses)
        now = dt.datetime.now(dt.UTC)
        erased = [
            MemberStatusRecord(
                provider=self.provider.name,
                list_id=self.list_id,
                member_id=digest,
                email=email,
                status=str(MemberStatus.FORGOTTEN),
                unsubscribe_reason=None,
                last_changed=now,
            )
            for digest, email in addresses
            if found.get(digest) is None
        ]
        if erased:
            await self._db(self._record_observed, erased)

    async def _recover(self) -> None:
        """Settle what an interrupted run sent but could not record (``cb_push_intents``)."""
        hashes = await self._db(
            recover_intents, self.store, self.name, self.provider.name, self.list_id
        )
        if not hashes:
            return
        self._log("settled the changes an interrupted run left", members=len(hashes))
        changes = self.changes
        assert changes is not None
        changes.skip = set()
        # Whatever else happened to those members at the provider gets its ledger row too.
        rows = await self._db(self.store.member_statuses, self.provider.name, self.list_id, hashes)
        await self._db(changes.record, list(rows.values()), self.run_id)

    async def _record_vanished(self) -> None:
        """Members the refresh cannot list: deleted permanently, or moved to another address
        at the provider. The same check as pull's (``campaign_bridge.vanished``: the audience's
        count against the members known, then one listing when it is lower), so each gets its
        one ledger row even when nobody runs pull and nothing is sent to the member again
        (model findings F15, F16). After ``_recover``: a member an interrupted run was
        changing is settled first."""
        result = await record_vanished_members(
            self.provider,
            self.store.engine,
            self.list_id,
            sync_name=self.name,
            run_id=self.run_id,
            writeback=self.writeback,
            found=lambda snapshots: self._db(
                self._record_observed,
                [_status_row(self.provider.name, self.list_id, s) for s in snapshots],
            ),
        )
        if result.received:
            self._log(
                "members gone from the audience's listing recorded",
                members=result.received,
                transitions=result.transitions,
            )

    async def _record_replaced(self, page: Sequence[MemberSnapshot]) -> None:
        """Before a refreshed page is saved: a stored address listed with another provider id
        has a new member; what became of the stored one is recorded first, as pull does
        (``campaign_bridge.vanished.record_replaced_members``, model finding F20)."""
        if self.dry_run:
            return
        await record_replaced_members(
            self.provider,
            self.store.engine,
            self.list_id,
            page,
            sync_name=self.name,
            run_id=self.run_id,
            writeback=self.writeback,
        )

    def _save_refreshed(self, changes: ProviderChanges, batch: list[MemberStatusRecord]) -> None:
        """Save refreshed statuses; a contact whose status moved gets its one ledger row (the
        same function pull and webhooks use, so whoever sees a change first records it)."""
        self.store.upsert_member_statuses(batch)
        if not self.dry_run:  # a dry run leaves its cursor, so the real run ledgers them
            changes.record(batch, self.run_id)

    # -- streaming, mapping, deciding ---------------------------------------------------------

    async def _stream(self, plan: mapping.MappingPlan) -> str | None:
        columns = mapping.required_columns(plan)
        since: SourceCursor | None = None
        if self.sync.source.updated_at_column and not self.retry_rejected:
            # --retry-rejected reads everything: rejected rows are older than the cursor.
            text = await self._db(self.store.get_cursor, self.name, SOURCE_STREAM)
            since = SourceCursor.parse(text) if text else None
        if self.progress is not None:
            self.total = await self._db(self.source.count, since, self.limit)
        chunks: Iterator[SourceChunk] = self.source.iter_chunks(
            columns, since=since, limit=self.limit
        )
        queue: asyncio.Queue[list[_Item] | None] = asyncio.Queue(maxsize=4)
        # More workers than connections: while one worker digests an answer, another's request
        # is already waiting for the freed connection (the adapter's budget caps what is sent).
        concurrency = self.sync.destination.concurrency
        workers = [
            asyncio.create_task(self._worker(queue))
            for _ in range(concurrency + max(2, concurrency // 2))
        ]
        newest: object = None
        size = min(SLICE, self.provider.capabilities.max_batch)
        loop = asyncio.get_running_loop()
        ahead: asyncio.Future[SourceChunk | None] | None = None
        try:
            ahead = loop.run_in_executor(self.reader, next, chunks, None)
            while True:
                chunk = await ahead
                if chunk is None:
                    break
                # Read the next chunk while this one is mapped and diffed (one chunk ahead).
                ahead = loop.run_in_executor(self.reader, next, chunks, None)
                if chunk.max_updated_at is not None:
                    newest = chunk.max_updated_at
                items = await self._plan_chunk(plan, chunk)
                for start in range(0, len(items), size):
                    await _put(queue, items[start : start + size], workers)
            for _ in workers:
                await _put(queue, None, workers)
            await asyncio.gather(*workers)
            await self._drain_saves()
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await asyncio.gather(*self.saves, return_exceptions=True)  # let saves finish
            if ahead is not None:
                await asyncio.gather(ahead, return_exceptions=True)
            await loop.run_in_executor(self.reader, _close, chunks)
        return self._next_cursor(since, Source.cursor_text(newest))

    def _next_cursor(self, since: SourceCursor | None, newest: str | None) -> str | None:
        """The cursor after a complete scan; a scan that read nothing still moves ``read_at``."""
        read_at = self.source.read_at
        if newest is None:
            newest = since.newest if since is not None else None
        if newest is None or read_at is None:
            return None
        return SourceCursor(newest, read_at).to_text()

    async def _plan_chunk(self, plan: mapping.MappingPlan, chunk: SourceChunk) -> list[_Item]:
        summary = self.summary
        rejections = [
            Rejection(self.name, r.key, None, r.content_hash, r.reason_code, r.message)
            for r in chunk.rejections
        ]
        contacts: list[mapping.MappedContact] = []
        duplicates: list[mapping.MappedContact] = []
        keys_read: set[str] = set()
        for count, row in enumerate(chunk.rows, 1):
            if count % YIELD_EVERY == 0:
                await _let_others_run()
            key = str(row.get(plan.key_column))
            if key in keys_read or key == self.last_key:
                rejections.append(self._repeated_key(key))
                continue
            keys_read.add(key)
            self.last_key = key
            try:
                storable_key(key)
                contact = mapping.map_row(plan, row)
            except RecordError as exc:
                key = str(row.get(plan.key_column))
                version = mapping.row_hash(row)
                rejections.append(
                    Rejection(self.name, key, None, version, exc.reason_code, exc.message)
                )
                continue
            prefix = int(contact.email_hash[:16], 16)
            if prefix in self.seen:
                duplicates.append(contact)
                continue
            self.seen.add(prefix)
            contacts.append(contact)
        summary.read += len(chunk.rows) + len(chunk.rejections)
        contacts = await self._privacy_step(plan, chunk, contacts)
        self.duplicates += duplicates  # recorded after the sends, naming the first key
        if duplicates:
            summary.rejected[mapping.DUPLICATE_EMAIL] += len(duplicates)
        contacts = await self._drop_unchanged(contacts)
        states, rejected_hashes, statuses = await self._db(self._load_chunk, contacts)
        moving_away = await self._db(self._members_moving_away, contacts, states, statuses)
        left_behind = await self._db(self._opted_out_then_vacated, contacts, states, statuses)
        items: list[_Item] = []
        ledger_only: list[ConsentChange] = []
        kept_states: list[ContactState] = []
        bridge_actor = await self._bridge_actors(statuses, states)
        decisions = self.decisions
        for count, contact in enumerate(contacts, 1):
            if count % YIELD_EVERY == 0:
                await _let_others_run()
            state = states.get(contact.key)
            source_hash = contact.email_hash
            contact = _at_member_address(contact, state, statuses)
            known = statuses.get(contact.email_hash)
            provider_status = MemberStatus(known.status) if known else None
            move = AddressMove.of(contact, state, known, statuses)
            if move is None and contact.email_hash in left_behind:
                move = AddressMove.left_behind(contact, left_behind[contact.email_hash])
            if move is not None:
                provider_status = move.status
            elif provider_status is None and state and state.provider_status:
                provider_status = MemberStatus(state.provider_status)
            if _unchanged(state, contact) and provider_status is not MemberStatus.ARCHIVED:
                summary.unchanged += 1
                continue
            if rejected_hashes.get(contact.key) == contact.content_hash and not self.retry_rejected:
                summary.skipped["rejected_unchanged"] += 1
                continue
            if contact.email_hash in moving_away:
                # The member at the row's address is another row's, renamed away in this run:
                # the next run finds the address free (the source cursor waits for this row).
                summary.skipped["address_member_moving_away"] += 1
                self.pending_retry += 1
                continue
            if self.sync.mode is SyncMode.UPDATE_ONLY and provider_status is None:
                summary.skipped["not_at_provider"] += 1
                continue
            # The last non-null consent the bridge acted on (true -> NULL -> false unsubscribes).
            previous = state.last_consent if state is not None else None
            actor_hash = move.old_hash if move is not None and move.rename else contact.email_hash
            actor = Actor.BRIDGE if actor_hash in bridge_actor else Actor.UNKNOWN
            # The rules are a pure function of four values here (the sync's settings are
            # fixed): each combination is decided once per run, not once per contact.
            given = (provider_status, contact.consent, previous, actor)
            decision = decisions.get(given)
            if decision is None:
                decision = decisions[given] = decide(
                    ConsentInput(*given, self.sync.double_opt_in, self.sync.unconsented_new)
                )
            if move is not None:
                decision = move.adjust(decision)
                if move.unsubscribe_old is not None:
                    self.old_members.append(move.unsubscribe_old)
            follow_up = contact.key in rejected_hashes and rejected_hashes[contact.key] is None
            if (
                follow_up
                and move is None
                and not decision.send
                and _created_off_list(state, provider_status, actor)
            ):
                decision = FINISH_CREATE
            if not decision.send:
                if decision.effect is not Effect.NONE:
                    summary.consent[decision.effect] += 1
                if decision.effect is Effect.SKIP_UNCONSENTED:
                    summary.skipped["unconsented_new"] += 1
                elif decision.ledger is not None:
                    ledger_only.append(self._entry(contact, decision.ledger))
                    # Remember the consent this decision acted on: the entry is written once.
                    kept_states.append(
                        _kept_state(self.name, contact, state, provider_status, self.run_id)
                    )
                else:
                    summary.skipped["left_alone"] += 1
                continue
            exists = provider_status is not None and (move is None or move.rename or move.known)
            change: TagChange | None = None
            if exists:
                before = state.managed_tags if state is not None else None
                add, remove = mapping.tag_delta(contact.tags, before)
                if add or remove:
                    change = TagChange(contact.key, contact.email, add, remove)
            status_if_new = decision.status_if_new
            if provider_status in OPTED_OUT:
                # Should the member turn out not to exist, it is never created subscribed.
                status_if_new = decision.status or MemberStatus.UNSUBSCRIBED
            upsert = MemberUpsert(
                key=contact.key,
                email=contact.email,
                status_if_new=status_if_new,
                status=decision.status,
                exists=exists,
                previous_email=move.old_email if move is not None and move.rename else None,
                merge_fields=contact.merge_fields,
                interests=contact.interests,
                marketing_permissions=contact.marketing_permissions,
                language=contact.language,
                tags=() if exists or not contact.tags else tuple(sorted(contact.tags)),
                # A kept rejection without a version: a later call of its last write failed.
                finish_follow_up=exists and follow_up,
            )
            items.append(
                _Item(
                    contact,
                    upsert,
                    change,
                    state,
                    provider_status,
                    decision.ledger,
                    decision.effect,
                    known is not None,
                    renamed_from=move.old_hash if move is not None and move.rename else None,
                    source_email_hash=source_hash if source_hash != contact.email_hash else None,
                )
            )
        rejections = self._new_rejections(rejections)
        for rejection in rejections:
            summary.rejected[rejection.reason_code] += 1
        if not self.dry_run and (rejections or ledger_only):
            await self._db(self._save_side, rejections, ledger_only, kept_states)
        if self.dry_run:
            for item in items:
                self._count_dry(item)
            self._advance(len(chunk.rows) + len(chunk.rejections))
            return []
        self._advance(len(chunk.rows) + len(chunk.rejections) - len(items))
        return items

    async def _drop_unchanged(
        self, contacts: list[mapping.MappedContact]
    ) -> list[mapping.MappedContact]:
        """The contacts that differ from what was last pushed for their key; the others are
        counted unchanged here and go no further (no state objects, no status lookups, no
        consent decision: nothing about them is sent or written)."""
        if self.nothing_stored or not contacts:
            return contacts
        keys = [c.key for c in contacts]
        pushed = await self._db(self.store.pushed_as, self.name, keys)
        changed = [c for c in contacts if not _pushed_as_is(pushed.get(c.key), c)]
        self.summary.unchanged += len(contacts) - len(changed)
        return changed

    async def _privacy_step(
        self, plan: mapping.MappingPlan, chunk: SourceChunk, contacts: list[mapping.MappedContact]
    ) -> list[mapping.MappedContact]:
        """The privacy hook (:mod:`campaign_bridge._push_privacy`): carry out the sync's erasure
        requests once, then drop contacts marked for erasure or erased without fresh consent."""
        if self.gate is None:
            self.gate = PushGate(self.settings, self.name, self.provider, self.dry_run)
            self.summary.skipped.update(await self.gate.start())
        kept, skipped = await self._db(self.gate.admit, plan, chunk.rows, contacts)
        self.summary.skipped.update(skipped)
        return kept

    def _new_rejections(self, rejections: list[Rejection]) -> list[Rejection]:
        """Leave out rows rejected before as they are now (same version): counted once per
        version, not on every run that reads them; ``--retry-rejected`` counts them again."""
        known = self.rejected
        if self.retry_rejected or not known:
            return rejections
        fresh = []
        for rejection in rejections:
            stored = known.get(rejection.source_key)
            if rejection.content_hash is not None and stored == rejection.content_hash:
                self.summary.skipped["rejected_unchanged"] += 1
            else:
                fresh.append(rejection)
        return fresh

    def _repeated_key(self, key: str) -> Rejection:
        # Rows come ordered, so a repeat is within one chunk or right across its edge.
        return Rejection(
            self.name,
            key,
            None,
            None,
            mapping.DUPLICATE_KEY,
            f"the source returned key {key} more than once in one read; the first row was "
            "used. Keys must be unique: check the query (a join can repeat rows)",
        )

    def _load_chunk(
        self, contacts: list[mapping.MappedContact]
    ) -> tuple[dict[str, ContactState], dict[str, str | None], dict[str, MemberStatusRecord]]:
        if self.rejected is None:  # open rejections are few: read them once per run
            self.rejected = self.store.rejected_keys_with_hash(self.name)
        if self.nothing_stored or not contacts:
            # Nothing was stored when the run began, and within a run keys and addresses are
            # unique (repeats are rejected as duplicates): every lookup would come back empty.
            return {}, self.rejected, {}
        states = self.store.load_contact_states(self.name, [c.key for c in contacts])
        # A contact whose content is what was last pushed is not sent whatever the provider
        # says now (the state's own status still catches one the bridge archived), so the
        # provider-side status is looked up only for the others: a re-read of unchanged rows
        # then costs one lookup per row, not two.
        wanted = [c.email_hash for c in contacts if not _unchanged(states.get(c.key), c)]
        # An address change needs the member at the previous address too.
        wanted += [
            s.email_hash
            for c in contacts
            if (s := states.get(c.key)) is not None and s.email_hash != c.email_hash
        ]
        statuses = self.store.member_statuses(self.provider.name, self.list_id, wanted)
        return states, self.rejected, statuses

    def _members_moving_away(
        self,
        contacts: list[mapping.MappedContact],
        states: dict[str, ContactState],
        statuses: dict[str, MemberStatusRecord],
    ) -> set[str]:
        """The addresses of this chunk whose member belongs to another row that renames it
        away in this run.

        A row whose address is a member's takes that member as its own (the consent rules then
        apply to it). But a member can still be at the address another row just left: that row
        renames it to its new address in this same run, wherever the row sits in the source.
        Taking it too would let one row's consent act on the other row's person (F22), so the
        row is left for the next run, which finds the address free. The member is another
        row's when that row's contact state is at the address, and it is moving away when the
        row's source address is now a different one, not yet a member's (a swap between two
        members is no rename), and not one the member itself moved from at the provider."""
        targets: dict[str, str] = {}
        for contact in contacts:
            state = states.get(contact.key)
            contact = _at_member_address(contact, state, statuses)
            known = statuses.get(contact.email_hash)
            if known is None or known.status == MemberStatus.FORGOTTEN:
                continue
            if state is None or state.email_hash != contact.email_hash:
                targets[contact.email_hash] = contact.key
        if not targets:
            return set()
        owners = self.store.keys_by_email_hash(self.name, list(targets), list(targets.values()))
        owner_states = self.store.load_contact_states(self.name, owners.values())
        holders = {
            digest: owner_states[key]
            for digest, key in owners.items()
            if key in owner_states and owner_states[key].email_hash == digest
        }
        if not holders:
            return set()
        now_at = self.source.addresses_of_keys([s.source_key for s in holders.values()])
        leaving = {
            digest: new
            for digest, state in holders.items()
            if (new := now_at.get(state.source_key)) is not None
            and new not in (digest, state.source_address)
        }
        taken = self.store.member_statuses(self.provider.name, self.list_id, leaving.values())
        return {digest for digest, new in leaving.items() if new not in taken}

    def _opted_out_then_vacated(
        self,
        contacts: list[mapping.MappedContact],
        states: dict[str, ContactState],
        statuses: dict[str, MemberStatusRecord],
    ) -> dict[str, str]:
        """The new rows' addresses that no member uses now, whose last member opted out there
        and then moved away at the provider, with that opt-out (see
        :meth:`AddressMove.left_behind`)."""
        if self.nothing_stored:
            return {}
        fresh = [
            c.email_hash for c in contacts if c.key not in states and c.email_hash not in statuses
        ]
        return self.store.opted_out_then_vacated(self.name, fresh)

    async def _record_duplicates(self) -> None:
        """Reject the later rows whose address repeats an earlier one, naming the earlier key."""
        if not self.duplicates or self.dry_run:
            return
        hashes = sorted({d.email_hash for d in self.duplicates})
        dup_keys = [d.key for d in self.duplicates]
        owners = await self._db(self.store.keys_by_email_hash, self.name, hashes, dup_keys)
        rejections: list[Rejection] = []
        for dup in self.duplicates:
            first = owners.get(dup.email_hash)
            other = f"source key {first}" if first else "an earlier row of this run"
            rejections.append(
                Rejection(
                    self.name,
                    dup.key,
                    dup.email_hash,
                    dup.content_hash,
                    mapping.DUPLICATE_EMAIL,
                    f"same address as {other} (addresses are compared without case); "
                    "keep one row per address",
                )
            )
        await self._db(self._save_side, rejections, [])

    async def _bridge_actors(
        self, statuses: dict[str, MemberStatusRecord], states: dict[str, ContactState]
    ) -> set[str]:
        """Email hashes whose unsubscribe/archive the ledger attributes to this bridge.

        The bridge did it when the ledger's last status change is the bridge's and nothing
        changed at the provider after the bridge's last write to the member (a later field
        update by the bridge itself does not make it forget)."""
        candidates = {
            h: row.last_changed
            for h, row in statuses.items()
            if row.status in (MemberStatus.UNSUBSCRIBED, MemberStatus.ARCHIVED)
        }
        if not candidates:
            return set()
        written = {s.email_hash: s.pushed_at for s in states.values() if s.pushed_at}
        last = await self._db(self.store.last_bridge_status_change, self.name, list(candidates))
        actors: set[str] = set()
        for digest, (status, when) in last.items():
            changed = candidates.get(digest)
            row = statuses[digest]
            # The bridge did it, and nothing changed at the provider after the bridge's change.
            last_write = max(when, written.get(digest, when)) + CLOCK_SKEW
            if status == row.status and (changed is None or changed <= last_write):
                actors.add(digest)
        return actors

    def _entry(
        self, contact: mapping.MappedContact, ledger: tuple[str | None, str, str]
    ) -> ConsentChange:
        row = self._ledger_row(contact, ledger, dt.datetime.now(dt.UTC))
        return ConsentChange(**dict(zip(LEDGER_COLUMNS, row, strict=True)))

    def _ledger_row(
        self,
        contact: mapping.MappedContact,
        ledger: tuple[str | None, str, str],
        now: dt.datetime,
        origin: str = "push",
    ) -> LedgerRow:
        old, new, reason = ledger
        return consent_ledger_row(
            sync_name=self.name,
            provider=self.provider.name,
            email_hash=contact.email_hash,
            source_key=contact.key,
            old_status=old,
            new_status=new,
            origin=origin,
            reason=reason,
            run_id=self.run_id,
            occurred_at=now,
        )

    def _save_side(
        self,
        rejections: list[Rejection],
        ledger: list[ConsentChange],
        kept: Sequence[ContactState] = (),
    ) -> None:
        if rejections:
            self.store.record_rejections(self.run_id, rejections)
        if ledger:
            firsts = {c.email_hash for c in ledger}
            known = {s.email_hash for s in kept if s.provider_status is not None}
            unseen = self.store.hashes_without_history(self.name, sorted(firsts & known))
            by_hash = {s.email_hash: s for s in kept}
            ledger = [
                *(
                    replace(c, old_status=None, reason=FIRST_SEEN, origin=FIRST_SEEN_ORIGIN)
                    for c in ledger
                    if c.email_hash in unseen and by_hash[c.email_hash].pushed_at is None
                ),
                *ledger,
            ]
            # The entries and the consent they record, in one transaction.
            rows = ConfirmedRows(
                state_updates=[contact_state_row(**vars(s)) for s in kept],
                ledger=[ledger_row(change) for change in ledger],
            )
            self.store.save_confirmed(rows)

    def _count_dry(self, item: _Item) -> None:
        summary = self.summary
        if item.effect is not Effect.NONE:
            summary.consent[item.effect] += 1
        if item.provider_status is None:
            summary.created += 1
        else:
            summary.updated += 1

    def _advance(self, count: int) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.done, self.total)
        now = time.monotonic()
        if now - self._last_log >= 5.0:
            self._last_log = now
            elapsed = max(now - self._started, 1e-6)
            self._log(
                "push progress",
                done=self.done,
                total=self.total,
                rate=round(self.done / elapsed, 1),
            )

    # -- sending ------------------------------------------------------------------------------

    async def _worker(self, queue: asyncio.Queue[list[_Item] | None]) -> None:
        while True:
            items = await queue.get()
            if items is None:
                return
            while items:
                retry = await self._send(items)
                items = [i for i in retry if i.attempts < MAX_ATTEMPTS]
                self.pending_retry += len(retry) - len(items)
                if items:
                    await asyncio.sleep(min(2.0 ** items[0].attempts, 10.0))

    async def _send(self, items: list[_Item]) -> list[_Item]:
        """Send one slice; save what the provider confirmed; return the items to try again."""
        summary = self.summary
        self._ensure_lock()
        items = await self._confirm_statuses(items)
        if not items:
            return []
        changing = [i for i in items if has_intent(i.ledger)]
        slice_id = uuid.uuid4().hex if changing else None
        if slice_id is not None:  # written down before the call: a crash cannot lose them
            intents = intents_for([(i.contact, i.ledger, i.last_consent) for i in changing])
            replacing: dict[str, list[str]] = {}  # a retry's earlier intents, replaced
            for item in changing:
                if item.intent_slice is not None:
                    replacing.setdefault(item.intent_slice, []).append(item.contact.email_hash)
                item.intent_slice = slice_id
            write = functools.partial(
                self.store.write_intents, self.name, slice_id, self.run_id, intents, replacing
            )
            await self._db(write)
            self.intents_written += len(intents)
        self._ensure_lock()
        for item in items:
            item.attempts += 1
        outcomes = await self.provider.upsert_members(self.list_id, [_upsert(i) for i in items])
        summary.writes += 1
        by_key = {i.contact.key: i for i in items}
        confirmed: list[tuple[_Item, Outcome]] = []
        retry: list[_Item] = []
        rejections: list[Rejection] = []
        tag_changes: list[TagChange] = []
        moved: list[_Item] = []  # a rename the provider refused: settled next run
        gone: list[_Item] = []  # permanently deleted at the provider
        for outcome in outcomes:
            item = by_key[outcome.key]
            if outcome.kind is OutcomeKind.RETRY:
                retry.append(item)
            elif (
                outcome.kind is OutcomeKind.REJECTED
                and item.renamed_from is not None
                and (outcome.reason_code in ("member_exists", "previous_member_missing"))
            ):
                moved.append(item)
            elif outcome.kind is OutcomeKind.REJECTED:
                if outcome.reason_code == FORGOTTEN_REASON:
                    # Permanently deleted at the provider: skipped with its reason, not an error.
                    # The privacy hook gives the person a tombstone; one the bridge erased itself
                    # is not observed again (its address must not come back into the store).
                    summary.skipped["forgotten_at_provider"] += 1
                    assert self.gate is not None  # opened by the first chunk
                    forgotten = functools.partial(
                        self.gate.forgotten_at_provider,
                        item.contact.email_hash,
                        intent_slice=item.intent_slice,
                    )
                    if not await self._db(forgotten):
                        gone.append(item)
                    continue
                rejections.append(
                    Rejection(
                        self.name,
                        item.contact.key,
                        item.contact.email_hash,
                        item.contact.content_hash,
                        outcome.reason_code or "rejected",
                        outcome.message or "the provider refused this member",
                    )
                )
            else:
                confirmed.append((item, outcome))
                if outcome.follow_up is not None:  # kept either way: the next run finishes it
                    rejections += self._unfinished(item, outcome, OutcomeKind.REJECTED)
                change = item.tags_change
                if item.upsert.tags and outcome.kind is not OutcomeKind.CREATED:
                    # It existed after all: tags in the member body were ignored.
                    before = item.state.managed_tags if item.state else None
                    add, remove = mapping.tag_delta(item.contact.tags, before)
                    change = TagChange(item.contact.key, item.contact.email, add, remove)
                if change is not None and (change.add or change.remove):
                    tag_changes.append(change)
        if tag_changes:
            rejections += await self._update_tags(tag_changes, by_key)
        if moved or gone:
            await self._observe_refused(moved, gone)
        for rejection in rejections:
            summary.rejected[rejection.reason_code] += 1
        for item, outcome in confirmed:
            if outcome.kind is OutcomeKind.CREATED:
                summary.created += 1
            else:
                summary.updated += 1
            if item.effect is not Effect.NONE:
                summary.consent[item.effect] += 1
        # The intents of the members settled here go with their ledger rows: the whole row when
        # every one is (the usual case), else those (the others stay for a retry or next run).
        intents_done: list[IntentsDone] = []
        if slice_id is not None:
            settled = [i for i, _ in confirmed if i.intent_slice == slice_id]
            settled += [
                i for r in rejections if (i := by_key[r.source_key]).intent_slice == slice_id
            ]
            hashes = {i.contact.email_hash for i in settled}
            whole = len(hashes) == len(changing)
            intents_done.append((self.name, slice_id, None if whole else hashes))
        # Saving overlaps the next call (the group commit gathers slices for a moment); a
        # bounded number of groups may be in flight, and the stream waits for all at its end.
        save = asyncio.ensure_future(self._saver.save(confirmed, rejections, intents_done))
        self.saves.add(save)
        while len(self.saves) > SAVES_IN_FLIGHT:
            done, _ = await asyncio.wait(self.saves, return_when=asyncio.FIRST_COMPLETED)
            self._collect(done)
        self.saved += len(confirmed)
        # An initial push looks nothing up while it streams (every look-up would come back
        # empty): its tables are analysed once, after the stream, not as they grow.
        if self.saved >= self.analyze_at and not self.nothing_stored:
            self.analyze_at *= 4
            await self._db(self.store.refresh_statistics)
        self._advance(
            len(confirmed) + sum(1 for r in rejections if not by_key[r.source_key].unfinished)
        )
        return retry

    async def _update_tags(
        self, changes: list[TagChange], by_key: dict[str, _Item]
    ) -> list[Rejection]:
        """Set the tags of members whose upsert the provider confirmed (their own call). A tag
        call that fails does not undo the upsert: the member is saved as confirmed (a status
        change with its ledger row) but not as pushed, so the next run sends it again, and a
        refusal is kept as a rejection with the provider's reason until then."""
        self._ensure_lock()
        outcomes = await self.provider.update_tags(self.list_id, changes)
        self.summary.writes += 1
        rejections: list[Rejection] = []
        for outcome in outcomes:
            if outcome.kind in (OutcomeKind.RETRY, OutcomeKind.REJECTED):
                item = by_key[outcome.key]
                if not item.unfinished:  # one rejection per contact: its first failure
                    rejections += self._unfinished(item, outcome, outcome.kind)
        return rejections

    def _unfinished(self, item: _Item, outcome: Outcome, failure: OutcomeKind) -> list[Rejection]:
        """A confirmed member a later call about failed: saved as confirmed but not as pushed
        (the next run sends it again: the source cursor waits for it); a refusal is kept as a
        rejection with the provider's reason until then. So is any failed follow-up the upsert
        itself reports (``Outcome.follow_up``): the kept rejection is what tells the next run to
        finish it (``MemberUpsert.finish_follow_up``: a confirmation request is sent once)."""
        item.unfinished = True
        self.pending_retry += 1
        if failure is not OutcomeKind.REJECTED:
            return []
        rejection = Rejection(
            self.name,
            item.contact.key,
            item.contact.email_hash,
            None,  # retried by the next run, changed or not
            outcome.reason_code or "follow_up_rejected",
            outcome.message or "the provider refused a later call about this member",
        )
        return [rejection]

    def _ensure_lock(self) -> None:
        if self.lock is not None:
            self.lock.ensure()  # a run that lost its lock sends nothing more

    async def _confirm_statuses(self, items: list[_Item]) -> list[_Item]:
        """Re-read the members an explicit status change is about to be sent for; one whose
        status is not the one the decision was made on is left for the next run (which
        decides again from what it finds), and what was found gets its ledger row."""
        explicit = [i for i in items if i.upsert.status is not None and i.upsert.exists]
        if not explicit:
            return items
        addresses = [(i.contact.key, i.upsert.previous_email or i.contact.email) for i in explicit]
        found = await self.provider.read_members(self.list_id, addresses)
        now = dt.datetime.now(dt.UTC)
        stale: set[str] = set()
        observed: list[MemberStatusRecord] = []
        for item, (key, email) in zip(explicit, addresses, strict=True):
            snapshot = found.get(key)
            status = MemberStatus(snapshot.status) if snapshot else MemberStatus.FORGOTTEN
            if status == item.provider_status:
                continue
            stale.add(key)
            observed.append(
                MemberStatusRecord(
                    provider=self.provider.name,
                    list_id=self.list_id,
                    member_id=mapping.email_hash(email),
                    email=snapshot.email if snapshot else email,
                    status=str(status),
                    unsubscribe_reason=snapshot.unsubscribe_reason if snapshot else None,
                    last_changed=(snapshot.last_changed if snapshot else None) or now,
                )
            )
        if not stale:
            return items
        await self._db(self._record_observed, observed)
        self.summary.skipped["status_changed_at_provider"] += len(stale)
        self.pending_retry += len(stale)
        return [i for i in items if i.contact.key not in stale]

    async def _observe_refused(self, moved: list[_Item], gone: list[_Item]) -> None:
        """Record what the provider showed about refused renames and erased members."""
        now = dt.datetime.now(dt.UTC)
        observed = [
            MemberStatusRecord(
                provider=self.provider.name,
                list_id=self.list_id,
                member_id=item.contact.email_hash,
                email=item.contact.email,
                status=str(MemberStatus.FORGOTTEN),
                unsubscribe_reason=None,
                last_changed=now,
            )
            for item in gone
        ]
        if moved:
            addresses = [(i.contact.key, i.contact.email) for i in moved]
            addresses += [(f"old:{i.contact.key}", str(i.upsert.previous_email)) for i in moved]
            found = await self.provider.read_members(self.list_id, addresses)
            for key, email in addresses:
                snapshot = found.get(key)
                status = MemberStatus(snapshot.status) if snapshot else MemberStatus.FORGOTTEN
                observed.append(
                    MemberStatusRecord(
                        provider=self.provider.name,
                        list_id=self.list_id,
                        member_id=mapping.email_hash(email),
                        email=email,
                        status=str(status),
                        unsubscribe_reason=snapshot.unsubscribe_reason if snapshot else None,
                        last_changed=(snapshot.last_changed if snapshot else None) or now,
                    )
                )
            self.summary.skipped["address_change_next_run"] += len(moved)
            self.pending_retry += len(moved)
        await self._db(self._record_observed, observed)

    def _record_observed(self, rows: list[MemberStatusRecord]) -> None:
        if rows:
            self.store.upsert_member_statuses(rows)
            assert self.changes is not None
            self.changes.record(rows, self.run_id)

    def _collect(self, done: set[asyncio.Future[int]]) -> None:
        for task in done:
            self.saves.discard(task)
            self.summary.resolved += task.result()  # raises the save's error, if any

    async def _drain_saves(self) -> None:
        while self.saves:
            done, _ = await asyncio.wait(self.saves)
            self._collect(done)

    def _save_slice(  # runs in a writer thread: no shared counters here
        self,
        confirmed: Sequence[tuple[_Item, Outcome]],
        rejections: Sequence[Rejection],
        intents_done: Sequence[IntentsDone] = (),
    ) -> int:
        """Save one confirmed slice; return how many earlier rejections it resolved."""
        now = dt.datetime.now(dt.UTC)
        rows = ConfirmedRows()
        provider, list_id = self.provider.name, self.list_id
        # Contacts first linked to a member that existed before (a form signup, an import):
        # the ledger starts their story with the status they were found in, once per member.
        found = [
            (item, outcome)
            for item, outcome in confirmed
            if outcome.kind is not OutcomeKind.CREATED
            and item.renamed_from is None
            and (item.state is None or item.state.email_hash != item.contact.email_hash)
        ]
        # "Once per member": unless the ledger already says that status for the address. An
        # address an earlier member left says "vacated" last: this member's story starts anew.
        said = self.store.last_ledger_statuses(
            self.name, [item.contact.email_hash for item, _ in found]
        )
        for item, outcome in found:
            before = item.provider_status or outcome.status
            last = said.get(item.contact.email_hash)
            if before is None or last == str(before):
                continue
            entry = (None if last == VACATED else last, str(before), FIRST_SEEN)
            rows.ledger.append(self._ledger_row(item.contact, entry, now, FIRST_SEEN_ORIGIN))
        meanwhile: list[MemberStatusRecord] = []
        for item, outcome in confirmed:
            contact = item.contact
            decided_on = _changed_meanwhile(item, outcome)
            if decided_on is not None:  # saved as decided on; the change is recorded below
                meanwhile.append(self._observed(contact, outcome, now))
            status = str(
                decided_on
                or outcome.status
                or item.upsert.status
                or (item.provider_status if item.provider_status else item.upsert.status_if_new)
            )
            created = outcome.kind is OutcomeKind.CREATED
            asked_only = _asked_to_confirm_only(item, outcome)
            states = rows.state_updates if item.state is not None else rows.state_inserts
            # Tags the provider did not take: not pushed as is, the tags it holds unchanged.
            tags = item.state.managed_tags if item.state is not None else None
            states.append(
                contact_state_row(
                    sync_name=self.name,
                    source_key=contact.key,
                    email_hash=contact.email_hash,
                    provider_member_id=outcome.member_id or _stored_id(item.state),
                    content_hash=None if item.unfinished else contact.content_hash,
                    pushed_at=now,
                    provider_status=status,
                    # Owned only if this bridge's create call made it: mirror archives no other.
                    managed=created or _still_owned(item),
                    # A confirmation request that failed is not a consent acted on: the next
                    # run decides again (and asks again while the rules still say so).
                    last_consent=_previous_consent(item)
                    if asked_only and outcome.follow_up is not None
                    else item.last_consent,
                    managed_tags=tags if item.unfinished else sorted(contact.tags),
                    last_run_id=self.run_id,
                    source_email_hash=item.source_email_hash,
                )
            )
            if item.renamed_from is not None:
                rows.members_gone.append((provider, list_id, item.renamed_from))
                rows.ledger.append(self._vacated_row(item, now))
            statuses = rows.status_updates if item.status_saved else rows.status_inserts
            statuses.append(
                member_status_row(
                    provider=provider,
                    list_id=list_id,
                    member_id=contact.email_hash,
                    email=contact.email,
                    status=status,
                    last_changed=outcome.last_changed or now,
                    updated_at=now,
                    provider_member_id=outcome.member_id or _stored_id(item.state),
                )
            )
            ledger = item.ledger
            if ledger is not None and ledger[0] is None and not created:
                # Sent as new, but the member existed: nothing was created and its status was
                # left as it was, so there is no change to record.
                ledger = None
            if asked_only:  # the person was asked to confirm; their status did not change
                ledger = None
            ledger = _as_made(ledger, outcome)
            if ledger is not None:
                rows.ledger.append(self._ledger_row(contact, ledger, now))
        rows.intents_done += intents_done
        self.store.save_confirmed(rows)
        if meanwhile:  # one ledger row each, with the state it moves (F14)
            self._record_observed(meanwhile)
        if self.gate is not None and self.sync.marketing_permissions:
            # The privacy hook: GDPR permissions the provider confirmed (not those of a write
            # whose later call failed: Mailchimp sets them in that call).
            finished = [(i, o) for i, o in confirmed if o.follow_up is None]
            self.gate.record_permissions(finished, self.run_id)
        if rejections:
            self.store.record_rejections(self.run_id, rejections)
        open_rejections = self.rejected
        if not open_rejections:  # an initial push has none: no pass over the group
            return 0
        keys = [
            item.contact.key
            for item, _ in confirmed
            if item.contact.key in open_rejections and not item.unfinished
        ]
        return self.store.resolve_rejections(self.name, keys, now) if keys else 0

    def _observed(
        self, contact: mapping.MappedContact, outcome: Outcome, now: dt.datetime
    ) -> MemberStatusRecord:
        return MemberStatusRecord(
            provider=self.provider.name,
            list_id=self.list_id,
            member_id=contact.email_hash,
            email=contact.email,
            status=str(outcome.status),
            unsubscribe_reason=None,
            last_changed=outcome.last_changed or now,
        )

    def _vacated_row(self, item: _Item, now: dt.datetime) -> LedgerRow:
        """The previous address of a member the bridge renamed: its history there ends."""
        assert item.renamed_from is not None
        before = item.provider_status
        return consent_ledger_row(
            sync_name=self.name,
            provider=self.provider.name,
            email_hash=item.renamed_from,
            source_key=item.contact.key,
            old_status=str(before) if before is not None else None,
            new_status=VACATED,
            origin="push",
            reason=f"the member was renamed to another address (member {item.contact.email_hash})",
            run_id=self.run_id,
            occurred_at=now,
        )

    # -- mirror -------------------------------------------------------------------------------

    async def _mirror(self) -> None:
        """Archive managed contacts that left the source (never anyone else's)."""
        for batch in await self._db(self._managed_batches):
            present = await self._db(self.source.existing_keys, [s.source_key for s in batch])
            gone = [s for s in batch if s.source_key not in present]
            if not gone:
                continue
            emails = await self._db(
                self.store.member_statuses,
                self.provider.name,
                self.list_id,
                [s.email_hash for s in gone],
            )
            targets = [(s, emails[s.email_hash].email) for s in gone if s.email_hash in emails]
            targets = await self._not_in_source(targets)
            if self.dry_run:
                self.summary.archived += len(targets)
                continue
            for start in range(0, len(targets), ARCHIVE_BATCH):
                part = targets[start : start + ARCHIVE_BATCH]
                self._ensure_lock()
                outcomes = await self.provider.archive_members(
                    self.list_id, [(s.source_key, email) for s, email in part]
                )
                self.summary.writes += 1
                await self._db(self._save_archived, part, outcomes)

    async def _not_in_source(
        self, targets: list[tuple[ContactState, str]]
    ) -> list[tuple[ContactState, str]]:
        """Drop the contacts whose member's present address a row still in the source holds:
        a member that moved, at the provider, onto another row's address is not archived
        while that row is there (consent model finding F21)."""
        if not targets:
            return targets
        present = await self._db(self.source.addresses_present, [e for _, e in targets])
        if not present:
            return targets
        self._log("mirror keeps members whose address is still in the source", kept=len(present))
        return [(s, e) for s, e in targets if mapping.email_hash(e) not in present]

    def _managed_batches(self) -> list[list[ContactState]]:
        batches: list[list[ContactState]] = []
        for batch in self.store.managed_contacts(self.name, ARCHIVE_BATCH):
            # Archived already, or deleted permanently: nothing left to archive.
            live = [s for s in batch if s.provider_status not in _NOT_ARCHIVABLE]
            if live:
                batches.append(live)
        return batches

    def _save_archived(
        self, part: Sequence[tuple[ContactState, str]], outcomes: Sequence[Outcome]
    ) -> None:
        by_key = {o.key: o for o in outcomes}
        now = dt.datetime.now(dt.UTC)
        rows = ConfirmedRows()
        for state, email in part:
            outcome = by_key.get(state.source_key)
            if outcome is None or outcome.kind not in (OutcomeKind.ARCHIVED, OutcomeKind.UNCHANGED):
                if outcome is not None and outcome.kind is OutcomeKind.RETRY:
                    self.pending_retry += 1
                continue
            if outcome.kind is OutcomeKind.ARCHIVED:
                self.summary.archived += 1
                rows.ledger.append(
                    consent_ledger_row(
                        sync_name=self.name,
                        provider=self.provider.name,
                        email_hash=state.email_hash,
                        source_key=state.source_key,
                        old_status=state.provider_status,
                        new_status=str(MemberStatus.ARCHIVED),
                        origin="push",
                        reason="left the source (mirror mode)",
                        run_id=self.run_id,
                        occurred_at=now,
                    )
                )
                rows.status_updates.append(
                    member_status_row(
                        provider=self.provider.name,
                        list_id=self.list_id,
                        member_id=state.email_hash,
                        email=email,
                        status=str(MemberStatus.ARCHIVED),
                        last_changed=now,
                        updated_at=now,
                        provider_member_id=state.provider_member_id,
                    )
                )
            # Unchanged: the provider would not archive it (Mailchimp refuses a cleaned or
            # pending member) and its status stays what it was, so the contact's state keeps
            # saying so; saved as archived, the next read would record a change nobody made
            # (model finding F19: "archived -> cleaned" with no archive before it).
            archived = replace(
                state,
                pushed_at=now,
                provider_status=str(MemberStatus.ARCHIVED)
                if outcome.kind is OutcomeKind.ARCHIVED
                else state.provider_status,
                last_run_id=self.run_id,
            )
            rows.state_updates.append(contact_state_row(**vars(archived)))
        # The archive, the member's status and the ledger entry: one transaction.
        self.store.save_confirmed(rows)

    # -- the previous address of a contact whose new address is another member ----------------

    async def _unsubscribe_old_addresses(self) -> None:
        """Unsubscribe the member at a contact's previous address when the new address is
        another member already (it could not be renamed): one ledger row each. Not when a row
        in the source holds that previous address now: the member is that row's, and its own
        consent decides (consent model finding F26)."""
        if not self.old_members or self.dry_run:
            return
        olds = {f"old:{o.key}": o for o in self.old_members}
        self.old_members = []
        olds = await self._not_held_in_source(olds)
        if not olds:
            return
        olds = await self._confirm_old_statuses(olds)
        if not olds:
            return
        upserts = [
            MemberUpsert(
                key=key,
                email=old.email,
                status_if_new=MemberStatus.UNSUBSCRIBED,
                status=MemberStatus.UNSUBSCRIBED,
                exists=True,
            )
            for key, old in olds.items()
        ]
        self._ensure_lock()
        outcomes = await self.provider.upsert_members(self.list_id, upserts)
        self.summary.writes += 1
        now = dt.datetime.now(dt.UTC)
        rows = ConfirmedRows()
        done: list[OldMember] = []  # unsubscribed, as the provider confirmed
        for outcome in outcomes:
            old = olds[outcome.key]
            if outcome.kind not in (OutcomeKind.UPDATED, OutcomeKind.UNCHANGED):
                self.pending_retry += outcome.kind is OutcomeKind.RETRY
                continue
            done.append(old)
            self.summary.consent[Effect.UNSUBSCRIBE] += 1
            rows.ledger.append(
                consent_ledger_row(
                    sync_name=self.name,
                    provider=self.provider.name,
                    email_hash=old.email_hash,
                    source_key=old.key,
                    old_status=old.status,
                    new_status=str(MemberStatus.UNSUBSCRIBED),
                    origin="push",
                    reason="address changed in source to an address that is another member; "
                    "the previous address is unsubscribed",
                    run_id=self.run_id,
                    occurred_at=now,
                )
            )
            rows.status_updates.append(
                member_status_row(
                    provider=self.provider.name,
                    list_id=self.list_id,
                    member_id=old.email_hash,
                    email=old.email,
                    status=str(MemberStatus.UNSUBSCRIBED),
                    last_changed=outcome.last_changed or now,
                    updated_at=now,
                )
            )
        if rows:
            await self._db(self._save_old_unsubscribes, rows, done)

    async def _not_held_in_source(self, olds: dict[str, OldMember]) -> dict[str, OldMember]:
        """The previous addresses no row in the source holds now. One that a row holds (a new
        row, or another row that moved there) is that row's member: the same run took it as
        that row's, under that row's consent, and unsubscribing it for the row that left would
        act on the other row's person."""
        present = await self._db(self.source.addresses_present, [o.email for o in olds.values()])
        if not present:
            return olds
        self._log("previous addresses another row holds are left to it", kept=len(present))
        return {k: o for k, o in olds.items() if mapping.email_hash(o.email) not in present}

    async def _confirm_old_statuses(self, olds: dict[str, OldMember]) -> dict[str, OldMember]:
        """Re-read the previous addresses about to be unsubscribed, as ``_confirm_statuses``
        does for the other explicit status changes: one whose status is no longer the one the
        decision was made on (an admin archived it, it bounced, since the refresh) is left for
        the next run, and what was found gets its ledger row (model finding F18: a bounce
        between the refresh and this unsubscribe was overwritten with ``unsubscribed``)."""
        self._ensure_lock()
        found = await self.provider.read_members(
            self.list_id, [(key, old.email) for key, old in olds.items()]
        )
        now = dt.datetime.now(dt.UTC)
        observed: list[MemberStatusRecord] = []
        confirmed: dict[str, OldMember] = {}
        for key, old in olds.items():
            snapshot = found.get(key)
            status = MemberStatus(snapshot.status) if snapshot else MemberStatus.FORGOTTEN
            if status == old.status:
                confirmed[key] = old
                continue
            observed.append(
                MemberStatusRecord(
                    provider=self.provider.name,
                    list_id=self.list_id,
                    member_id=old.email_hash,
                    email=snapshot.email if snapshot else old.email,
                    status=str(status),
                    unsubscribe_reason=snapshot.unsubscribe_reason if snapshot else None,
                    last_changed=(snapshot.last_changed if snapshot else None) or now,
                )
            )
        if observed:
            await self._db(self._record_observed, observed)
            self.summary.skipped["status_changed_at_provider"] += len(observed)
            self.pending_retry += len(observed)
        return confirmed

    def _save_old_unsubscribes(self, rows: ConfirmedRows, olds: Sequence[OldMember]) -> None:
        """Save the unsubscribes of previous addresses with the state they explain: a contact
        whose move to its new address was not saved (the new address's member was left alone
        or changed at the provider meanwhile) still points at the previous member, and says
        so, or the next refresh would record the same unsubscribe again (model finding F10)."""
        states = self.store.load_contact_states(self.name, [o.key for o in olds])
        for old in olds:
            state = states.get(old.key)
            if state is None or state.email_hash != old.email_hash:
                continue  # moved to its new address: nothing here describes the old member
            still = replace(
                state, provider_status=str(MemberStatus.UNSUBSCRIBED), last_run_id=self.run_id
            )
            rows.state_updates.append(contact_state_row(**vars(still)))
        self.store.save_confirmed(rows)


class _GroupSaver:
    """Group commit: slices confirmed at about the same time are saved in one transaction.

    A crash loses no confirmed work beyond the groups not yet committed (at most about
    ``GROUP_WAIT`` seconds' worth, and ``SAVES_IN_FLIGHT`` slices), which the next run finds at
    the provider and updates, never duplicates.
    """

    def __init__(self, push: _Push) -> None:
        self.push = push
        self.pending: list[
            tuple[list[tuple[_Item, Outcome]], list[Rejection], list[IntentsDone]]
        ] = []
        self.waiters: list[asyncio.Future[int]] = []
        self.rows = 0
        self.timer: asyncio.TimerHandle | None = None

    async def save(
        self,
        confirmed: list[tuple[_Item, Outcome]],
        rejections: list[Rejection],
        intents_done: list[IntentsDone],
    ) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self.pending.append((confirmed, rejections, intents_done))
        self.waiters.append(future)
        self.rows += len(confirmed) + len(rejections)
        if self.rows >= GROUP_ROWS:
            self._flush()
        elif self.timer is None:
            self.timer = loop.call_later(GROUP_WAIT, self._flush)
        return await future

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        pending, waiters = self.pending, self.waiters
        self.pending, self.waiters, self.rows = [], [], 0
        if not pending:
            return
        confirmed = [pair for group, _, _ in pending for pair in group]
        rejections = [r for _, group, _ in pending for r in group]
        intents_done = [done for _, _, group in pending for done in group]
        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(
            self.push.writers, self.push._save_slice, confirmed, rejections, intents_done
        )

        def done(result: asyncio.Future[int]) -> None:
            error = result.exception()
            for index, waiter in enumerate(waiters):
                if waiter.done():
                    continue
                if error is not None:
                    waiter.set_exception(error)
                else:  # the resolved count is reported once, by the first sender
                    waiter.set_result(result.result() if index == 0 else 0)

        task.add_done_callback(done)


_NOT_ARCHIVABLE = frozenset({str(MemberStatus.ARCHIVED), str(MemberStatus.FORGOTTEN)})


def _upsert(item: _Item) -> MemberUpsert:
    """The member as sent: an existing one with the status the refresh found (a hint the
    adapter checks before it relies on it; ``MemberUpsert.known_status``)."""
    upsert = item.upsert
    if upsert.exists and item.provider_status is not None:
        return replace(upsert, known_status=item.provider_status)
    return upsert


def _changed_meanwhile(item: _Item, outcome: Outcome) -> MemberStatus | None:
    """The status the push decided on for an existing member, when the provider answered a
    send that carried no status with an opt-out: the member changed at the provider between
    the push's read and its send. A send without a status opts nobody out, so it is the
    provider's change and gets its own ledger row (saving the answer as the contact's status
    would hide it). Other differences may be the send's own doing (an adapter may add a
    contact to the list), and are saved as answered."""
    if outcome.kind is OutcomeKind.CREATED or item.upsert.status is not None:
        return None
    before, now = item.provider_status, outcome.status
    if before is None or now is None or now == before or now not in OPTED_OUT:
        return None
    return before


def _asked_to_confirm_only(item: _Item, outcome: Outcome) -> bool:
    """A re-confirmation the provider answered by asking the person while keeping the member's
    status until they confirm (Brevo keeps a blocklisted contact blocklisted): no status
    changed, so no ledger row; the confirmation, when it comes, is the provider's change."""
    decided = item.ledger
    return (
        decided is not None
        and decided[1] == MemberStatus.PENDING
        and outcome.kind is OutcomeKind.UPDATED
        and outcome.status is not None
        and outcome.status != MemberStatus.PENDING
        and outcome.status == item.provider_status
    )


def _as_made(
    ledger: tuple[str | None, str, str] | None, outcome: Outcome
) -> tuple[str | None, str, str] | None:
    """The ledger entry of a write that was made, but whose failed follow-up left it at
    another status than the one decided on (listmonk: created off the list, not yet added to
    it): the status it has, not the one it was to get (the next run's entry finishes it)."""
    if ledger is None or outcome.follow_up is None or outcome.status is None:
        return ledger
    if str(outcome.status) == ledger[1]:
        return ledger
    reason = f"{ledger[2]}; {outcome.status} until the next run finishes it"
    return (ledger[0], str(outcome.status), reason)


def _created_off_list(
    state: ContactState | None, provider_status: MemberStatus | None, actor: Actor
) -> bool:
    """The bridge created this member, but its create was left off the list (``archived``,
    by the bridge, as its last change) with a follow-up still open: the next run adds it to
    the list as unsubscribed, the status it was created for (``FINISH_CREATE``)."""
    return (
        state is not None
        and state.managed
        and provider_status is MemberStatus.ARCHIVED
        and actor is Actor.BRIDGE
    )


def _previous_consent(item: _Item) -> bool | None:
    return item.state.last_consent if item.state is not None else None


def _still_owned(item: _Item) -> bool:
    """The bridge created the member this contact had, and it is still that member (same
    address, or renamed in place) -- not another member its new address belongs to."""
    state = item.state
    if state is None or not state.managed:
        return False
    return state.email_hash == item.contact.email_hash or item.renamed_from is not None


def _at_member_address(
    contact: mapping.MappedContact,
    state: ContactState | None,
    statuses: dict[str, MemberStatusRecord],
) -> mapping.MappedContact:
    """The contact at its member's current address, when the member changed it at the
    provider (the contact followed, see :mod:`campaign_bridge.status_changes`) and the source
    row still has the address it was last pushed with: the person's own change stands, and the
    row's other changes go to them there. A row whose address changed in the source since is
    left as it is: an address change from the member's current address, through the consent
    rules (:class:`AddressMove`). So is one whose member the bridge no longer knows."""
    if state is None or state.email_hash == contact.email_hash:
        return contact
    if state.source_address != contact.email_hash:
        return contact
    member = statuses.get(state.email_hash)
    if member is None:
        return contact
    return replace(contact, email=member.email, email_hash=state.email_hash)


def _kept_state(
    sync_name: str,
    contact: mapping.MappedContact,
    state: ContactState | None,
    status: MemberStatus | None,
    run_id: str,
) -> ContactState:
    """The contact's state after a decision that sent nothing: the consent it acted on is
    remembered (so its ledger entry is not written again), nothing else moves. A state still
    at a previous address (an address change that sent nothing) keeps that member's status:
    ``status`` is the new address's."""
    if state is None:
        state = ContactState(sync_name, source_key=contact.key, email_hash=contact.email_hash)
    consent = contact.consent if contact.consent is not None else state.last_consent
    same_member = state.email_hash == contact.email_hash
    return replace(
        state,
        provider_status=str(status)
        if status is not None and same_member
        else state.provider_status,
        last_consent=consent,
        last_run_id=run_id,
    )


_KEY_LIMIT = column_limit(contact_state.c.source_key.type, "")
# The longest ASCII key every limit takes (an ASCII character is one byte).
_ASCII_KEY_MAX = min(n for n in (_KEY_LIMIT.chars, _KEY_LIMIT.bytes, 2**31) if n is not None)


def storable_key(key: str) -> None:
    """Raise RecordError(unstorable_value) for a source key the state store cannot hold as it
    is (a NUL, a lone surrogate, longer than the column): the record is rejected, not lost."""
    if key.isascii() and "\x00" not in key and len(key) <= _ASCII_KEY_MAX:
        return  # the common case, decided here: this runs once per contact read
    storable_value(contact_state.name, "source_key", key, _KEY_LIMIT, key=True)


def _unchanged(state: ContactState | None, contact: mapping.MappedContact) -> bool:
    """The source row is exactly what was last pushed for its key (its content hash covers
    the address it had then)."""
    if state is None:
        return False
    return _pushed_as_is((state.email_hash, state.content_hash, state.provider_status), contact)


def _pushed_as_is(pushed: PushedAs | None, contact: mapping.MappedContact) -> bool:
    """``pushed`` (a key's last push: address hash, content hash, status) is ``contact`` as
    it is now, and the bridge did not archive the member since.

    Only the source side is compared: the content hash is a fingerprint of the row as last
    pushed, its address included. The address hash is the member's *current* one, which the
    member may have changed at the provider since (the contact follows it, see
    :mod:`campaign_bridge.status_changes`); that is the person's own act, and a push whose
    source row did not change neither renames them back nor acts on the address they left."""
    return (
        pushed is not None
        and pushed[1] == contact.content_hash
        and pushed[2] != MemberStatus.ARCHIVED
    )


def _stored_id(state: ContactState | None) -> str | None:
    return state.provider_member_id if state is not None else None


def _status_row(provider: str, list_id: str, snapshot: MemberSnapshot) -> MemberStatusRecord:
    """The snapshot under the bridge's key; the provider's id is only stored beside it."""
    return MemberStatusRecord(
        provider=provider,
        list_id=list_id,
        member_id=mapping.email_hash(snapshot.email),
        provider_member_id=snapshot.member_id or None,
        email=snapshot.email,
        status=str(snapshot.status),
        unsubscribe_reason=snapshot.unsubscribe_reason,
        last_changed=snapshot.last_changed,
    )


def _default_provider(sync: SyncConfig) -> Provider:
    from campaign_bridge.providers import create_provider

    return create_provider(sync.destination)


async def _put(
    queue: asyncio.Queue[list[_Item] | None],
    item: list[_Item] | None,
    workers: Sequence[asyncio.Task[None]],
) -> None:
    """Put on the bounded queue, but surface a worker's failure instead of waiting forever."""
    put = asyncio.ensure_future(queue.put(item))
    while True:
        done, _ = await asyncio.wait({put, *workers}, return_when=asyncio.FIRST_COMPLETED)
        for task in workers:
            if task in done and not task.cancelled() and task.exception() is not None:
                put.cancel()
                raise task.exception()  # type: ignore[misc]
        if put in done:
            return


async def _let_others_run() -> None:
    """One turn of the event loop while a chunk is mapped: the sends' answers are taken in and
    the next requests go out (a 5,000-row chunk is 0.1-0.3 s of work, which would otherwise
    hold every connection's next call back by that much)."""
    await asyncio.sleep(0)


def _close(chunks: Iterator[SourceChunk]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
