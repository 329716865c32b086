"""Updating existing Brevo contacts in bulk: ``POST /contacts/import`` with
``updateExistingContacts``, for the members whose status the caller already knows.

A member changed in the source is mostly a subscribed contact with new attribute values. Read
one by one (``GET /contacts/{email}`` for its status, then ``PUT``) that is two requests a
contact, 10 a second on the general tier. The import carries 2,000 of them in one request; what
it cannot do is leave a contact's list membership alone: it adds every row to ``listIds``, and
Brevo takes that as joining the list (a contact removed from it, or one awaiting its double
opt-in, would be put back on; ``emailBlacklist: false`` never lifts a blocklisting). So only a
member the caller saw *subscribed* (``MemberUpsert.known_status``, from its status refresh) goes
this way, and only if Brevo shows no change to it since then:

- ``ChangeWatch``: the refresh's listing (``members_changed_since``) marks the moment the
  caller's statuses are true at (its first page's answer); right before each update import,
  one listing of the contacts of the whole account modified since then (``modifiedSince``,
  no ``listIds``: those who left the list are in it too) names every contact changed
  meanwhile, by anyone. Those take the one-by-one way, which reads their status first. The
  mark then moves to this listing, so each listing holds only what changed since the one
  before (mostly the previous import's rows). What no listing can show is a change made
  between the last one and the moment Brevo applies the import (imports are queued: seconds):
  a contact who left the list in that moment would be put back on it. A blocklisting, Brevo's
  unsubscribe, is never lifted by the import.
- The import's rows are read back from ``GET /contacts?modifiedSince=…&listIds=…`` (the
  ``/contacts`` bucket, not the 100-an-hour ``/processes``): a row holding every value sent is
  applied, with its id, its status now (an opt-out that came in meanwhile shows, and the caller
  records it) and whether the import created it (a contact deleted meanwhile). Rows not read
  back a poll interval after the import was applied (values Brevo held already: nothing was
  modified) wait for the import's process; its report names the rows it refused. Update
  imports go one at a time (``ChangeWatch.turn``), so a read-back lists its own rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from campaign_bridge.providers._brevo_errors import translate
from campaign_bridge.providers._brevo_members import attributes_of, brevo_time, holds_values
from campaign_bridge.providers._brevo_session import BrevoSession
from campaign_bridge.providers._brevo_wire import normal_email, parse_time, status_of
from campaign_bridge.providers._http import latest
from campaign_bridge.providers.base import MemberStatus, MemberUpsert, Outcome, OutcomeKind

__all__ = ["ChangeWatch", "bulk_update", "import_rejections", "import_updates"]

S = MemberStatus
K = OutcomeKind
PAGE = 1000  # GET /contacts: most rows a page
CLOCK_SKEW = timedelta(minutes=1)  # without Brevo's clock: ours, less this
LISTED_SLACK = timedelta(seconds=1)
FIRST_READ = 0.2  # seconds before the second read-back of an import not applied yet


def bulk_update(member: MemberUpsert) -> bool:
    """An update of a member the caller saw subscribed, attributes only (no status, no
    rename, nothing left over from an earlier run): the import may carry it."""
    return (
        member.exists is True
        and member.known_status is S.SUBSCRIBED
        and member.status is None
        and member.previous_email is None
        and not member.finish_follow_up
        and member.status_if_new is S.SUBSCRIBED
    )


class ChangeWatch:
    """The contacts Brevo shows changed since the caller read their statuses (module
    docstring)."""

    def __init__(self, session: BrevoSession, *, page_size: int = PAGE) -> None:
        self._session = session
        self._page = page_size
        self._since: datetime | None = None
        self._changed: set[str] = set()
        #: the newest change time of a contact the caller's writes read back (``saw``)
        self.newest_write: datetime | None = None
        self._lock = asyncio.Lock()
        #: held by an update import from its check to its read-back: one at a time, so a
        #: read-back lists its own rows, not those of every update import in flight
        self.turn = asyncio.Lock()

    def now(self) -> datetime:
        """A moment no later than Brevo's clock now: the ``Date`` of its latest answer (whole
        seconds, else ours less ``CLOCK_SKEW``) or, when later, ``newest_write``."""
        clock = self._session.http.server_time() or datetime.now(UTC) - CLOCK_SKEW
        return latest(clock, self.newest_write) or clock

    def saw(self, outcomes: Iterable[Outcome]) -> None:
        """Note the change times (``modifiedAt``, to the millisecond) of contacts the caller's
        writes read back: Brevo's clock has passed the newest. The windows that start at
        ``now`` (the next listing's, an update import's read-back) then start after the rows
        of the imports before, where the ``Date``'s whole second alone had every listing and
        read-back of a run of imports list again the rows of each import applied in that
        second (up to five pages for one import's own)."""
        self.newest_write = latest(self.newest_write, *(o.last_changed for o in outcomes))

    def listed(self) -> bool:
        """The caller's statuses were read moments ago: the first page of its refresh's listing
        was answered (Brevo's clock at that answer, less a second for the whole seconds of its
        ``Date`` and a listing read just before it)."""
        self._since = self.now() - LISTED_SLACK
        self._changed = set()
        return True

    async def unchanged(
        self, members: Sequence[MemberUpsert]
    ) -> tuple[list[MemberUpsert], list[MemberUpsert]]:
        """``members`` split into those Brevo shows no change to since the mark, and the rest
        (all of them when no refresh marked a moment: nothing says what the caller saw)."""
        if not members:
            return [], []
        async with self._lock:
            if self._since is None:
                return [], list(members)
            # Brevo's clock before the listing is sent: no later than the moment it is read at.
            moment = self.now()
            params: dict[str, str | int] = {"modifiedSince": brevo_time(self._since)}
            async for contact in self._session.pages("/contacts", "contacts", params, self._page):
                self._changed.add(normal_email(str(contact.get("email") or "")))
            self._since = max(self._since, moment)
            changed = self._changed
        fresh = [m for m in members if normal_email(m.email) not in changed]
        stale = [m for m in members if normal_email(m.email) in changed]
        return fresh, stale


async def import_updates(
    session: BrevoSession,
    watch: ChangeWatch,
    lid: int,
    members: Sequence[MemberUpsert],
) -> dict[str, Outcome]:
    """Update ``members`` (``bulk_update``, checked by ``watch``) with one import: the outcome
    of each (a row not read back was applied without a change to read, or changed again by
    someone else since: updated, its status not known here)."""
    sent = {m.key: attributes_of(m) for m in members}
    body = {
        "jsonBody": [{"email": m.email.strip(), "attributes": sent[m.key]} for m in members],
        "listIds": [lid],
        "updateExistingContacts": True,
        "emptyContactsAttributes": True,  # a value sent empty is erased, as PUT does
        "emailBlacklist": False,  # never lifts a blocklisting (only sets one when true)
        "disableNotification": True,
    }
    by_email = {normal_email(m.email): m for m in members}
    since = watch.now()
    started = await session.call("POST", "/contacts/import", json=body)
    if started.status_code != 202:
        raise translate(started, "starting a contact import")
    process_id = int((started.json() or {}).get("processId") or 0)
    rows: dict[str, Mapping[str, Any]] = {}
    poll = session.poll_initial
    began, delay = time.monotonic(), FIRST_READ
    while True:
        applied = await _read_back(session, lid, since, by_email, sent, rows)
        waited = time.monotonic() - began
        if len(rows) == len(by_email) or (applied and waited >= poll) or waited >= 30 * poll:
            break
        await asyncio.sleep(delay)
        delay = min(poll, delay * 2)
    outcomes: dict[str, Outcome] = {}
    if len(rows) < len(by_email):
        process = await session.wait(process_id, "contact import")
        if process.status != "completed":
            message = f"Brevo's import {process_id} ended {process.status}; it will be sent again"
            return {
                m.key: Outcome(m.key, K.RETRY, reason_code="import_failed", message=message)
                for m in members
            }
        outcomes = await import_rejections(session, process.body, by_email)
        await _read_back(session, lid, since, by_email, sent, rows)
        for email, member in by_email.items():
            if email not in rows and member.key not in outcomes:  # held the values already
                outcomes[member.key] = Outcome(member.key, K.UPDATED)
    for email, contact in rows.items():
        key = by_email[email].key
        created = parse_time(contact.get("createdAt"))
        kind = K.CREATED if created is not None and created >= since else K.UPDATED
        outcomes[key] = Outcome(
            key,
            kind,
            str(contact.get("id")),
            status_of(contact, lid),
            last_changed=parse_time(contact.get("modifiedAt")),
        )
    return outcomes


async def _read_back(
    session: BrevoSession,
    lid: int,
    since: datetime,
    by_email: Mapping[str, MemberUpsert],
    sent: Mapping[str, Mapping[str, Any]],
    rows: dict[str, Mapping[str, Any]],
) -> bool:
    """Read the list's contacts modified since ``since`` into ``rows`` (those of ``by_email``
    holding the values sent); whether any row of the import was among them."""
    params: dict[str, str | int] = {"modifiedSince": brevo_time(since), "listIds": lid}
    applied = False
    async for contact in session.pages("/contacts", "contacts", params, PAGE):
        email = normal_email(str(contact.get("email") or ""))
        member = by_email.get(email)
        if member is None:
            continue
        if holds_values(contact, sent[member.key]):
            rows[email] = contact
            applied = True
    return applied


async def import_rejections(
    session: BrevoSession, process: Mapping[str, Any], by_email: Mapping[str, MemberUpsert]
) -> dict[str, Outcome]:
    """The rows a completed import refused, from its report files."""
    info = (process.get("info") or {}).get("import") or {}
    outcomes: dict[str, Outcome] = {}
    for kind, url in info.items():
        if not url:
            continue
        text = await session.download(str(url))
        for member in _reported(text.splitlines()[1:], by_email):
            invalid = kind == "invalid_emails"
            outcomes[member.key] = Outcome(
                member.key,
                K.REJECTED,
                reason_code="invalid_email" if invalid else "duplicate_email",
                message=(
                    "Brevo's import refused the address as invalid; fix it in the source"
                    if invalid
                    else "Brevo's import found the address twice; keep one record per address"
                ),
            )
    return outcomes


def _reported(lines: Iterable[str], by_email: Mapping[str, MemberUpsert]) -> list[MemberUpsert]:
    found = []
    for line in lines:
        cells = line.split(";")
        member = by_email.get(normal_email(cells[1])) if len(cells) > 1 else None
        if member is not None:
            found.append(member)
    return found
