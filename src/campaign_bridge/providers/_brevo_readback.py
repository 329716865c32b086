"""Reading back what Brevo's contact imports created, for every import in flight at once.

``POST /contacts/import`` says nothing per contact: which rows it created (and their ids) is
read from ``GET /contacts?createdSince=…&listIds=…&sort=asc`` (oldest first, 1,000 a page at
most), a request in the ``/contacts`` bucket (10 a second on the general tier) like the import
itself. Each import reading its own window re-read the rows of every import applied in the
same second (the window starts at the import's ``Date``, whole seconds): up to four rows read
per row created. Here one cursor reads the list's new contacts once, in creation order, and
hands each row to the import waiting for its address, so the read-back costs one page per
1,000 rows created — the floor the API allows.

- An import registers its addresses *before* it is sent (so no row of it can be read before
  someone waits for it), is marked sent once Brevo accepted it, and ready once Brevo reports
  its process done: from then on every row it created is in the listing.
- An import whose rows have all been read back is finished without its process: every row was
  created, with the import's status and values (the caller checks), so the process can add
  nothing. Only an import with rows still unread after a poll interval waits for its process
  (``GET /processes``, 100 an hour), then for a read that reaches the end of the listing:
  what it still waits for, it did not create (the contact existed, or the row was refused).
- Pages are read when a full one is known to wait (rows of ready imports, or the last answer's
  ``count``), or, at a growing interval while such reads come back short, when the imports sent
  hold a page of rows not read yet; when every import in flight is ready; or when a ready
  import has waited ``max_wait`` seconds. Several pages are read at once when the rows are
  known to be there.
- New rows are appended to an ascending listing, so the offset only ever moves forward; after
  each read the window is moved up to the newest row read (``createdSince`` = its
  ``createdAt`` less a millisecond, the offset = the rows read with that very ``createdAt``),
  so a long push does not page at ever larger offsets (nor Brevo filter ever more rows), and
  the next import (whose ``Date`` has whole seconds) does not re-read the second before it.
  The window opens at the first import's ``Date`` and is kept for the provider's life.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from campaign_bridge.providers._brevo_members import brevo_time
from campaign_bridge.providers._brevo_session import BrevoSession
from campaign_bridge.providers._brevo_wire import parse_time
from campaign_bridge.providers._http import gather_all

__all__ = ["ImportReader", "Ticket"]

PAGE = 1000  # GET /contacts: most rows a page
PAGES_AT_ONCE = 4
MAX_WAIT = 1.0  # seconds a ready import waits for a fuller page
FIRST_TRY = 0.2  # seconds before reading again after a read for sent rows came back short


@dataclass(eq=False)
class Ticket:
    """One import's rows: normal address -> the contact read back (``None`` until read)."""

    since: datetime
    rows: dict[str, Mapping[str, Any] | None]
    left: int = 0
    #: when Brevo accepted the import (0: not yet)
    sent_at: float = 0.0
    #: a read reached the end of the listing a while after it was sent, its rows still missing
    stale: asyncio.Event = field(default_factory=asyncio.Event)
    #: the read batch from which on every row the import created is listed (its process done)
    ready_from: int | None = None
    ready_at: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    error: Exception | None = None

    def found(self) -> dict[str, Mapping[str, Any]]:
        return {email: row for email, row in self.rows.items() if row is not None}


class ImportReader:
    """The new contacts of one list, read once for all the imports waiting for them."""

    def __init__(
        self,
        session: BrevoSession,
        list_id: int,
        *,
        page_size: int = PAGE,
        pages_at_once: int = PAGES_AT_ONCE,
        max_wait: float = MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._list_id = list_id
        self._page = page_size
        self._at_once = pages_at_once
        self._max_wait = max_wait
        self._clock = clock
        self._tickets: set[Ticket] = set()
        self._owner: dict[str, Ticket] = {}
        self._since: datetime | None = None
        self._offset = 0
        self._count = 0
        self._batches = 0
        self._retry_at = 0.0  # no read for sent rows before (the last one came back short)
        self._retry_after = FIRST_TRY
        self._grace = max_wait
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.pages_read = 0

    # --- the imports' side ------------------------------------------------------------------

    def expect(self, since: datetime, emails: Sequence[str]) -> Ticket:
        """Wait for ``emails`` (normal form), to be created from ``since`` on (at or before
        the import is accepted)."""
        ticket = Ticket(since, dict.fromkeys(emails))
        ticket.left = len(ticket.rows)
        for email in emails:
            self._owner[email] = ticket
        self._tickets.add(ticket)
        # A window already open (kept from one import to the next) starts before this
        # import's rows: they are created after this call, so they come after every row read
        # so far, or in a read under way.
        if self._since is None:
            self._since, self._offset, self._count = since, 0, 0
        return ticket

    def forget(self, ticket: Ticket, emails: Sequence[str]) -> None:
        """Stop waiting for ``emails`` (rows the import refused)."""
        for email in emails:
            if self._owner.get(email) is ticket:
                del self._owner[email]
                ticket.left -= 1

    def cancel(self, ticket: Ticket) -> None:
        """Stop waiting for the ticket's rows (its import failed or was not sent)."""
        self._close(ticket)

    async def read_all(
        self, ticket: Ticket, grace: float, limit: float
    ) -> dict[str, Mapping[str, Any]] | None:
        """Every row of the import (accepted by Brevo) if all are read back; ``None`` (the
        caller then waits for the import's process) once a read has reached the end of the
        listing ``grace`` seconds after it was sent without finding them all, or after
        ``limit`` seconds."""
        ticket.sent_at = self._clock()
        self._grace = grace
        self._start()
        self._wake.set()
        waits = [asyncio.ensure_future(e.wait()) for e in (ticket.done, ticket.stale)]
        try:
            await asyncio.wait(waits, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if ticket.error is not None:
            raise ticket.error
        return ticket.found() if ticket.done.is_set() else None

    async def collect(self, ticket: Ticket) -> dict[str, Mapping[str, Any]]:
        """The rows the import created, once its process is done: normal address -> contact."""
        ticket.ready_from = self._batches + 1  # a read sent from now on lists them all
        ticket.ready_at = self._clock()
        if ticket.left <= 0:
            self._close(ticket)
        else:
            self._start()
            self._wake.set()
        try:
            await ticket.done.wait()
        finally:
            self._close(ticket)
        if ticket.error is not None:
            raise ticket.error
        return ticket.found()

    async def close(self) -> None:
        """Stop reading (the provider is closed): imports still waiting get an error."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for ticket in list(self._tickets):
            ticket.error = RuntimeError("the Brevo provider was closed during an import")
            self._close(ticket)

    # --- the reader -------------------------------------------------------------------------

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    def _claim(self, ticket: Ticket, email: str, row: Mapping[str, Any]) -> None:
        ticket.rows[email] = row
        ticket.left -= 1
        del self._owner[email]
        if ticket.left <= 0:
            self._close(ticket)

    def _close(self, ticket: Ticket) -> None:
        if ticket in self._tickets:
            self._tickets.discard(ticket)
            for email, row in ticket.rows.items():
                if row is None and self._owner.get(email) is ticket:
                    del self._owner[email]
        ticket.done.set()

    def _pages_due(self) -> tuple[int, float | None]:
        """How many pages to read now; if none, how long to wait at most (``None``: until
        an import is sent or ready)."""
        ready = [t for t in self._tickets if t.ready_from is not None]
        certain = sum(t.left for t in ready)
        known = max(0, self._count - self._offset)
        if certain >= self._page or known >= self._page:
            return min(self._at_once, math.ceil(max(certain, known) / self._page)), None
        now = self._clock()
        waits: list[float] = []
        sent = [t for t in self._tickets if t.sent_at]
        if sent and (
            sum(t.left for t in sent) >= self._page or len(sent) == len(self._tickets)
        ):  # a page of rows sent, or all there is
            if now >= self._retry_at:
                return 1, None
            waits.append(self._retry_at - now)
        if ready:
            if len(ready) == len(self._tickets):
                return 1, None  # every import in flight is done: nothing will fill the page
            oldest = min(t.ready_at for t in ready)
            if now - oldest >= self._max_wait:
                return 1, None
            waits.append(oldest + self._max_wait - now)
        return 0, min(waits) if waits else None

    async def _run(self) -> None:
        try:
            while self._tickets:
                pages, wait = self._pages_due()
                if pages == 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                    continue
                await self._read(pages)
        except Exception as exc:  # handed to every waiter, which raises it
            for ticket in list(self._tickets):
                ticket.error = exc
                self._close(ticket)

    async def _read(self, pages: int) -> None:
        assert self._since is not None
        self._batches += 1
        batch = self._batches
        started = self._clock()
        since, start = self._since, self._offset
        params: dict[str, str | int] = {
            "createdSince": brevo_time(since - timedelta(milliseconds=1)),
            "listIds": self._list_id,
            "sort": "asc",
            "limit": self._page,
        }
        answers: list[Any] = [None] * pages

        async def one(index: int) -> None:
            answers[index] = await self._session.json(
                "GET", "/contacts", params={**params, "offset": start + index * self._page}
            )

        await gather_all([one(i) for i in range(pages)])
        self.pages_read += pages
        if self._since != since or self._offset != start:
            return  # the window was moved meanwhile: read again from where it is now
        end = False
        last: Mapping[str, Any] | None = None
        read: list[list[Mapping[str, Any]]] = []
        for data in answers:
            items = list(data.get("contacts") or ())
            read.append(items)
            for contact in items:
                self._hand_over(contact)
            self._offset += len(items)
            if items:
                last = items[-1]
            total = data.get("count")
            if isinstance(total, int):
                self._count = total
            if len(items) < self._page:
                end = True  # later pages may hold rows appended meanwhile: read them again
                break
        if last is not None:
            self._move_window(last, read)
        if not end:
            self._retry_after = FIRST_TRY
            return
        for ticket in self._tickets:
            if ticket.sent_at and ticket.sent_at + self._grace <= started:
                ticket.stale.set()  # its rows are not all there: its process will say why
        # Short: what the imports sent still hold is not applied yet; ask again later, less
        # often while answers keep coming back short.
        self._retry_at = self._clock() + self._retry_after
        self._retry_after = min(self._max_wait, self._retry_after * 2)
        for ticket in [t for t in self._tickets if t.ready_from and t.ready_from <= batch]:
            self._close(ticket)  # what it still waits for, it did not create

    def _hand_over(self, contact: Mapping[str, Any]) -> None:
        email = str(contact.get("email") or "").strip().lower()
        ticket = self._owner.get(email)
        if ticket is not None:
            self._claim(ticket, email, contact)

    def _move_window(self, last: Mapping[str, Any], read: list[list[Mapping[str, Any]]]) -> None:
        """Start the window at the newest row read: ``createdSince`` is exclusive, so the
        query begins a millisecond earlier, and the offset skips the rows read with that very
        ``createdAt`` (Brevo keeps milliseconds)."""
        stamp = last.get("createdAt")
        moment = parse_time(stamp)
        if moment is None or self._since is None or moment <= self._since:
            return
        same = 0
        for items in reversed(read):
            for contact in reversed(items):
                if contact.get("createdAt") != stamp:
                    break
                same += 1
            else:
                continue
            break
        unread = max(0, self._count - self._offset)
        self._since, self._offset, self._count = moment, same, same + unread
