"""Applies stored webhook events exactly once, with the code the pull uses for status changes.

Events are read back from ``cb_webhook_events`` (:mod:`campaign_bridge.webhook_queue`), read by
their provider's :class:`~campaign_bridge.providers.base.WebhookParser` into neutral events,
turned into :class:`~campaign_bridge.status_changes.StatusChange` values and applied per sync
(the syncs whose destination has the event's provider and list). Each event is marked applied
in the state store once applied; one that keeps failing is parked
(:mod:`campaign_bridge.webhook_parking`). The applier knows no provider.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.engine import Engine

from campaign_bridge.config import SyncConfig
from campaign_bridge.errors import ConfigurationError, WebhookPayloadError
from campaign_bridge.privacy import scrub_addresses
from campaign_bridge.providers import webhook_parser
from campaign_bridge.providers.base import MemberStatus, WebhookEvent, WebhookKind
from campaign_bridge.status_changes import StatusChange, apply_status_changes
from campaign_bridge.webhook_deletes import confirm_archives
from campaign_bridge.webhook_parking import MAX_APPLY_ATTEMPTS, error_text, is_store_failure
from campaign_bridge.webhook_queue import (
    StoredEvent,
    mark_events,
    pending_events,
    pending_events_with_keys,
)
from campaign_bridge.writeback import WritebackTarget

__all__ = [
    "APPLY_LOCK",
    "AppliedChunk",
    "ApplierLocks",
    "WebhookApplier",
    "change_from_event",
]

log = logging.getLogger(__name__)

# the status a member has after an event of each kind; kinds absent here change no status
KIND_STATUS = {
    WebhookKind.SUBSCRIBE: MemberStatus.SUBSCRIBED,
    WebhookKind.UNSUBSCRIBE: MemberStatus.UNSUBSCRIBED,
    WebhookKind.ARCHIVE: MemberStatus.ARCHIVED,
    WebhookKind.DELETE: MemberStatus.FORGOTTEN,
    WebhookKind.CLEANED: MemberStatus.CLEANED,
}


def change_from_event(
    provider: str, event: WebhookEvent, received_at: datetime | None = None
) -> StatusChange | None:
    """The status (or address) change ``event`` reports; ``None`` if it reports none.

    The event's own time is the change's time; without one, when it was received.
    """
    if not event.email:
        return None
    status = KIND_STATUS.get(event.kind)
    if event.kind is WebhookKind.ADDRESS_CHANGE:
        if not event.previous_email:
            return None
    elif status is None:
        return None
    occurred = event.occurred_at or received_at or datetime.now(UTC)
    return StatusChange(
        provider=provider,
        list_id=event.list_id or "",
        email=event.email,
        status=status,
        occurred_at=_utc(occurred),
        origin="webhook",
        reason=event.reason,
        campaign_id=event.campaign_id,
        previous_email=event.previous_email if event.kind is WebhookKind.ADDRESS_CHANGE else None,
        provider_member_id=event.member_id,  # stored beside the bridge's key, never a key
    )


def _account_wide(provider: str) -> bool:
    """Whether ``provider``'s events without a list concern every list of the account."""
    parser = webhook_parser(provider)
    return parser is not None and parser.account_wide


def _utc(value: datetime) -> datetime:
    """``value`` in UTC to the second (a zoneless time is taken as UTC)."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.replace(microsecond=0)


def _pending_with_keys(engine: Engine, keys: Sequence[tuple[str, str]]) -> list[StoredEvent]:
    """The pending events among ``keys`` (``(provider, dedupe key)``), oldest first."""
    per_provider: dict[str, list[str]] = {}
    for provider, key in keys:
        per_provider.setdefault(provider, []).append(key)
    rows = [
        row
        for provider, dedupe_keys in per_provider.items()
        for row in pending_events_with_keys(engine, provider, dedupe_keys)
    ]
    return sorted(rows, key=lambda row: row.id) if len(per_provider) > 1 else rows


def _event_outcomes(
    own: Mapping[int, Mapping[str, str]], waiting: Mapping[int, Mapping[str, str]]
) -> tuple[dict[int, str], dict[int, str]]:
    """Each failed event's error, naming every sync it failed in and why, split into the
    failures that count an attempt and those that do not.

    An event waiting for a sync's configuration counts no attempt, even if it also failed on
    its own in another sync: parking it would take it from the sync about to be fixed. Once no
    sync waits, its own failures count (and park it) as for an event of one sync."""
    counted: dict[int, str] = {}
    blocked: dict[int, str] = {}
    for event_id in sorted(own.keys() | waiting.keys()):
        failures = own.get(event_id, {})
        configuration = waiting.get(event_id, {})
        text = "; ".join(
            f"sync {name}: {error}"
            for part in (failures, configuration)
            for name, error in sorted(part.items())
        )
        (blocked if configuration else counted)[event_id] = text
    return counted, blocked


def _nobodys_fault(exc: BaseException) -> bool:
    """A failure no event causes: a database is unreachable, or write-back is misconfigured.
    It counts no attempt against the events (nothing is parked for it)."""
    return is_store_failure(exc) or isinstance(exc, ConfigurationError)


# --------------------------------------------------------------------------- applier


APPLY_LOCK = "webhooks:apply"
APPLY_LOCK_TTL = 60.0  # seconds; renewed every third of it while chunks follow each other


class ApplierLocks(Protocol):
    """The state store's TTL locks (``cb_locks``)."""

    def try_acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool: ...

    def release_lock(self, name: str, owner: str) -> bool: ...


@dataclass
class AppliedChunk:
    seen: int = 0  # pending events read
    applied: dict[tuple[str, str], int] = field(default_factory=dict)  # (provider, kind) -> n
    unmatched: int = 0  # no sync has the event's list
    failed: int = 0
    parked: int = 0  # failed too often: set aside with their error


class WebhookApplier:
    """Applies stored events in order, with the same code the pull uses for status changes.

    Runs in the server process. Events this process has just committed are handed over by key
    (:meth:`notify`) and read back by the unique key, so a chunk costs the same whatever the
    backlog. A scan of everything not applied yet runs at start (events a previous process
    stored but did not apply: a crash between the commit and the apply loses nothing), after a
    failure (the retry), and when nothing was handed over for ``poll_seconds`` (events another
    machine stored while this one holds the apply lock).
    """

    def __init__(
        self,
        engine: Engine,
        syncs: Mapping[str, SyncConfig],
        *,
        state_url: str | None = None,
        chunk: int = 1000,
        poll_seconds: float = 5.0,
        settle_seconds: float = 0.2,
        busy: Callable[[], bool] = lambda: False,
        busy_share: float = 0.25,
        busy_chunk: int = 100,
        max_handed_over: int = 100_000,
        locks: ApplierLocks | None = None,
        on_chunk: Callable[[AppliedChunk], None] | None = None,
        retry_pause: float = 2.0,
        max_attempts: int = MAX_APPLY_ATTEMPTS,
        log_emails: bool = False,
        confirm_deletes: bool = True,
    ) -> None:
        self.engine = engine
        # ask the provider whether an "archived" webhook was a permanent delete (see
        # webhook_deletes.py); off only for benchmarks that measure the store alone
        self.confirm_deletes = confirm_deletes
        self.retry_pause = retry_pause  # first pause after a failure; doubles, up to 60 s
        self.max_attempts = max_attempts  # an event failing this often is parked
        self.log_emails = log_emails  # stored errors keep addresses in clear only if True
        self.syncs = dict(syncs)
        self.state_url = state_url
        self.chunk = chunk
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.busy = busy
        self.busy_share = busy_share
        self.busy_chunk = busy_chunk  # short turns while deliveries arrive: the GIL is shared
        self.max_handed_over = max_handed_over
        self.locks = locks
        # per host, not per process: a restarted ``serve`` takes its crashed predecessor's lock
        # at once instead of waiting for it to expire
        self.owner = f"{socket.gethostname()}:applier"
        self.on_chunk = on_chunk
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        # (provider, dedupe key) of each event handed over, in order
        self._handed_over: collections.deque[tuple[str, str]] = collections.deque()
        self._scan_due = True  # at start: whatever a previous process left
        self._renew_lock_at = 0.0  # time.monotonic() when the held apply lock is renewed; 0: free
        self._targets: dict[str, WritebackTarget | None] = {}
        self._by_list: dict[tuple[str, str], list[str]] = {}  # (provider, list id) -> syncs
        self._by_provider: dict[str, list[str]] = {}  # provider -> syncs
        for name, sync in self.syncs.items():
            destination = sync.destination
            self._by_list.setdefault((destination.provider, destination.list_id), []).append(name)
            self._by_provider.setdefault(destination.provider, []).append(name)

    def notify(self, keys: Iterable[tuple[str, str]]) -> None:
        """Events this process has just committed, as ``(provider, dedupe key)``: apply them
        next, read back by key."""
        if len(self._handed_over) >= self.max_handed_over:  # far behind: a scan finds them all
            self._handed_over.clear()
            self._scan_due = True
        else:
            self._handed_over.extend(keys)
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if failures:
                # back off before the retry
                await self._pause(min(self.retry_pause * 2.0 ** (failures - 1), 60.0))
            elif not self._scan_due and not self._handed_over:
                await self._release_quietly()
                # nothing handed over for ``poll_seconds``: look for leftovers
                self._scan_due = not await self._idle()
            if self._stop.is_set():
                break  # what is left is applied by the next start
            self._wake.clear()
            limit = self.busy_chunk if self.busy() else self.chunk
            keys = None if self._scan_due else self._take_keys(limit)
            if keys == []:
                continue
            started = time.monotonic()
            try:
                chunk = await asyncio.to_thread(self.apply_pending_once, limit, keys)
            except Exception as exc:
                failures += 1
                self._scan_due = True  # the retry finds whatever this attempt left
                log.error(
                    "applying webhook events failed: %s",
                    exc,
                    extra={"action": "webhook"},
                )
                continue
            failures = failures + 1 if chunk.failed else 0
            if chunk.failed:
                self._scan_due = True  # failed events stay pending: a scan retries them
            elif keys is None:
                self._scan_due = chunk.seen >= limit  # more may be waiting
            if self.on_chunk is not None:
                self.on_chunk(chunk)
            if chunk.seen and self.busy():
                # deliveries are arriving: acknowledging them comes first, so applying takes at
                # most ``busy_share`` of the time (the backlog waits, stored)
                await self._pause((time.monotonic() - started) * (1 / self.busy_share - 1))
        await self._release_quietly()
        self.close()

    def close(self) -> None:
        """Close the write-back connections this applier opened (run() does it on its way out;
        call it after driving :meth:`apply_pending_once` by hand)."""
        targets, self._targets = self._targets, {}
        for target in targets.values():
            if target is not None:
                target.close()

    async def _release_quietly(self) -> None:
        if not self._renew_lock_at:
            return
        try:
            await asyncio.to_thread(self.release_lock)
        except Exception as exc:  # it expires on its own
            log.warning(
                "could not release the lock %s: %s",
                APPLY_LOCK,
                exc,
                extra={"action": "webhook"},
            )

    async def _idle(self) -> bool:
        """Wait for events to be handed over, then let a burst gather; False on a timeout."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
        except TimeoutError:
            return False
        await self._pause(self.settle_seconds)
        return True

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    def _take_keys(self, limit: int) -> list[tuple[str, str]]:
        queue = self._handed_over
        return [queue.popleft() for _ in range(min(limit, len(queue)))]

    def apply_pending_once(
        self, limit: int | None = None, keys: Sequence[tuple[str, str]] | None = None
    ) -> AppliedChunk:
        """Apply one chunk of pending events (synchronous: run it in a thread): those with
        ``keys`` that are still pending, or without ``keys`` the oldest ``limit`` pending ones.

        With ``locks``, one machine at a time applies (database lock ``webhooks:apply``, held
        while chunks follow each other and released by :meth:`release_lock` when idle): ``serve``
        processes on several machines do not apply the same events side by side (applying twice
        would be harmless, only wasted work: the apply is idempotent).
        """
        if self.locks is not None and not self._hold_lock():
            return AppliedChunk()
        return self._apply_chunk(limit or self.chunk, keys)

    def release_lock(self) -> None:
        """Let another machine apply (synchronous: run it in a thread)."""
        if self.locks is not None and self._renew_lock_at:
            self._renew_lock_at = 0.0
            self.locks.release_lock(APPLY_LOCK, self.owner)

    def _hold_lock(self) -> bool:
        assert self.locks is not None
        now = time.monotonic()
        if self._renew_lock_at and now < self._renew_lock_at:
            return True
        if not self.locks.try_acquire_lock(APPLY_LOCK, self.owner, APPLY_LOCK_TTL):
            self._renew_lock_at = 0.0
            return False
        self._renew_lock_at = now + APPLY_LOCK_TTL / 3
        return True

    def _apply_chunk(self, limit: int, keys: Sequence[tuple[str, str]] | None) -> AppliedChunk:
        result = AppliedChunk()
        if keys is None:
            rows = pending_events(self.engine, limit)
        else:
            rows = _pending_with_keys(self.engine, keys)
        result.seen = len(rows)
        per_sync: dict[str, list[tuple[StoredEvent, StatusChange]]] = {}
        plain: list[StoredEvent] = []  # nothing to change (profile, campaign) or no sync
        for row in rows:
            names = self._syncs_of(row)
            change = self._change(row)
            if change is None or not names:
                plain.append(row)
                if not names and change is not None:
                    result.unmatched += 1
                continue
            for name in names:
                own = change
                if not change.list_id:  # account-wide: this sync's list
                    own = dataclasses.replace(change, list_id=self.syncs[name].destination.list_id)
                per_sync.setdefault(name, []).append((row, own))
        failures: dict[int, dict[str, str]] = {}  # event id -> sync -> the event's own failure
        waiting: dict[int, dict[str, str]] = {}  # event id -> sync -> its configuration error
        for name, items in per_sync.items():
            try:
                for row, exc in self._apply_isolating(name, items):
                    text = error_text(exc, log_emails=self.log_emails)
                    failures.setdefault(row.id, {})[name] = text
            except ConfigurationError as exc:
                reason = error_text(exc, log_emails=self.log_emails)
                for row, _change in items:
                    waiting.setdefault(row.id, {})[name] = reason
        errors, blocked = _event_outcomes(failures, waiting)
        failed_ids = set(errors) | set(blocked)
        parked = {
            row.id for row in rows if row.id in errors and row.attempts + 1 >= self.max_attempts
        }
        applied: dict[int, str | None] = {}
        for row in rows:
            if row.id in failed_ids:
                result.failed += 1
                continue
            unmatched = not self._syncs_of(row)
            applied[row.id] = (
                f"no sync has destination list_id {row.list_id!r}" if unmatched else None
            )
            if not unmatched:
                kind = (row.provider, row.event_type)
                result.applied[kind] = result.applied.get(kind, 0) + 1
        mark_events(
            self.engine,
            applied,
            errors,
            parked=parked,
            bodies=self._at_rest(rows, applied),
            blocked=blocked,
        )
        result.parked = len(parked)
        return result

    def _at_rest(
        self, rows: Sequence[StoredEvent], applied: Mapping[int, object]
    ) -> dict[int, str]:
        """Applied bodies without addresses in clear (unless log_emails): docs/privacy.md."""
        if self.log_emails:
            return {}
        bodies: dict[int, str] = {}
        for row in rows:
            if row.id in applied:
                body = scrub_addresses(row.payload) or ""
                if body != row.payload:
                    bodies[row.id] = body
        return bodies

    def _apply_isolating(
        self, name: str, items: Sequence[tuple[StoredEvent, StatusChange]]
    ) -> list[tuple[StoredEvent, Exception]]:
        """Apply ``items`` to sync ``name`` together; if that fails for a reason of the events'
        own, apply each alone, so one bad event fails alone and the others land. A database
        outage or a write-back misconfiguration is re-raised: it is no event's fault."""
        try:
            self._apply_to(name, items)
            return []
        except Exception as exc:
            if _nobodys_fault(exc) or len(items) == 1:
                self._log_failure(name, len(items), exc)
                if _nobodys_fault(exc):
                    raise
                return [(items[0][0], exc)]
        failures: list[tuple[StoredEvent, Exception]] = []
        for item in items:
            try:
                self._apply_to(name, [item])
            except Exception as exc:
                if _nobodys_fault(exc):
                    raise
                self._log_failure(name, 1, exc)
                failures.append((item[0], exc))
        return failures

    def _apply_to(self, name: str, items: Sequence[tuple[StoredEvent, StatusChange]]) -> None:
        changes = [change for _row, change in items]
        if self.confirm_deletes:
            changes = confirm_archives(self.syncs[name], changes)
        apply_status_changes(
            self.engine,
            changes,
            sync_name=name,
            writeback=self._target(name),
        )

    def _log_failure(self, name: str, count: int, exc: Exception) -> None:
        log.error(
            "applying %d webhook events to sync %s failed: %s",
            count,
            name,
            exc,
            extra={
                "action": "webhook",
                "provider": self.syncs[name].destination.provider,
                "sync": name,
            },
        )

    def _syncs_of(self, row: StoredEvent) -> list[str]:
        if not row.list_id and _account_wide(row.provider):
            return self._by_provider.get(row.provider, [])
        return self._by_list.get((row.provider, row.list_id or ""), [])

    def _change(self, row: StoredEvent) -> StatusChange | None:
        parser = webhook_parser(row.provider)
        if parser is None:
            return None
        try:
            event = parser.load(json.loads(row.payload), row.dedupe_key)
        except (ValueError, TypeError, WebhookPayloadError):
            return None
        return change_from_event(row.provider, event, row.received_at)

    def _target(self, name: str) -> WritebackTarget | None:
        if name not in self._targets:
            self._targets[name] = WritebackTarget.open(
                name, self.syncs[name], state_url=self.state_url
            )
        return self._targets[name]
