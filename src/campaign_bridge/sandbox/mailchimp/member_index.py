"""Indexes over one audience's members, so filtered listings cost what they return.

``GET /lists/{id}/members?status=X&since_last_changed=T`` on a big audience would otherwise
look at every member. ``MemberIndex`` keeps, per audience:

- the members by status, and
- a change log: (``last_changed``, member) pairs in ``last_changed`` order, one appended at
  every change, which ``since_last_changed`` bisects. Superseded entries (the member changed
  again, or was deleted) stay until the log is twice the audience, then it is compacted.

``pool`` answers with a *superset* of the members a filter can match, in the audience's own
order (``Member.seq`` mirrors the insertion order of ``AudienceList.members``), or ``None``
when it cannot help; the caller then applies every filter to the pool exactly as it would to
the whole audience, so an indexed answer is the plain answer by construction.

The log stays usable only while stamps arrive in order. A stamp older than the newest logged
one (the sandbox clock went backwards, or seeding set an old ``last_changed``) drops the log:
queries scan the audience until the clock has caught up with the newest stamp, then the log is
rebuilt once by sorting.

The write functions of ``members.py`` and ``lists.py`` report every insertion, removal, status
change and ``last_changed`` bump through the ``AudienceList.member_*`` hooks.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from operator import attrgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaign_bridge.sandbox.mailchimp.model import Member

__all__ = ["MemberIndex"]

#: a pool is used only when it is at most this share of the audience (else a scan is cheaper)
_POOL_SHARE = 4
#: the log is compacted when it holds more than twice the audience plus this many entries
_LOG_SLACK = 4096

_by_last_changed = attrgetter("last_changed")


class MemberIndex:
    """Members by status and by ``last_changed`` for one audience (see the module doc)."""

    __slots__ = ("_by_status", "_count", "_log_members", "_log_stamps", "_members", "_next_seq")

    def __init__(self, members: dict[str, Member]) -> None:
        self._members = members
        self._by_status: dict[str, dict[int, Member]] = {}
        self._next_seq = 0
        for member in members.values():
            self._file(member)
        self._count = len(members)
        self._log_stamps: list[str] | None = None
        self._log_members: list[Member] = []
        self._rebuild_log()

    def in_step(self, members: dict[str, Member]) -> bool:
        """False when ``members`` changed behind the hooks' back (the index must be rebuilt)."""
        return members is self._members and len(members) == self._count

    # --- hooks -------------------------------------------------------------------------------

    def added(self, member: Member) -> None:
        """``member`` was just inserted into the audience (last in its order)."""
        self._file(member)
        self._count += 1
        self.touched(member)

    def removed(self, member: Member) -> None:
        """``member`` was just deleted from the audience."""
        self._by_status.get(member.status, {}).pop(member.seq, None)
        self._count -= 1

    def status_changed(self, member: Member, previous: str) -> None:
        """``member.status`` (and ``last_changed``) changed from ``previous``."""
        self._by_status.get(previous, {}).pop(member.seq, None)
        self._by_status.setdefault(member.status, {})[member.seq] = member
        self.touched(member)

    def touched(self, member: Member) -> None:
        """``member.last_changed`` was set."""
        stamps = self._log_stamps
        if stamps is None:
            return
        stamp = member.last_changed
        if stamps and stamp < stamps[-1]:
            self._drop_log()
            return
        stamps.append(stamp)
        self._log_members.append(member)
        if len(stamps) > 2 * self._count + _LOG_SLACK:
            self._compact_log()

    # --- queries -----------------------------------------------------------------------------

    def pool(self, status: str | None, since: str | None, now: str) -> list[Member] | None:
        """Members that may have ``status`` and ``last_changed > since`` (either may be
        ``None``: no constraint), in audience order; ``None`` when scanning is as cheap.
        ``now``: the clock's current stamp (a dropped log is rebuilt once it is past)."""
        limit = len(self._members) // _POOL_SHARE
        bucket = self._by_status.get(status, {}) if status is not None else None
        start = self._log_start(since, now) if since is not None else None
        tail = len(self._log_members) - start if start is not None else None
        if tail is not None and tail <= limit and (bucket is None or tail <= len(bucket)):
            return self._from_log(start or 0, status)
        if bucket is not None and len(bucket) <= limit:
            return [bucket[seq] for seq in sorted(bucket)]
        return None

    def _log_start(self, since: str, now: str) -> int | None:
        """Index of the first log entry after ``since``; ``None`` without a usable log."""
        if self._log_stamps is None:
            if not self._members or now < max(m.last_changed for m in self._members.values()):
                return None
            self._rebuild_log()
        assert self._log_stamps is not None
        return bisect_right(self._log_stamps, since)

    def _from_log(self, start: int, status: str | None) -> list[Member]:
        live = self._members
        found: dict[int, Member] = {}
        for member in self._log_members[start:]:
            if (status is None or member.status == status) and live.get(member.id) is member:
                found[member.seq] = member
        return [found[seq] for seq in sorted(found)]

    # --- upkeep ------------------------------------------------------------------------------

    def _file(self, member: Member) -> None:
        member.seq = self._next_seq
        self._next_seq += 1
        self._by_status.setdefault(member.status, {})[member.seq] = member

    def _rebuild_log(self) -> None:
        self._set_log(sorted(self._members.values(), key=_by_last_changed))

    def _drop_log(self) -> None:
        self._log_stamps = None
        self._log_members = []

    def _compact_log(self) -> None:
        """Keep one entry per live member: the one matching its current ``last_changed``."""
        assert self._log_stamps is not None
        live = self._members
        kept: dict[int, Member] = {}
        for stamp, member in zip(self._log_stamps, self._log_members, strict=True):
            if stamp == member.last_changed and live.get(member.id) is member:
                kept.setdefault(id(member), member)
        self._set_log(kept.values())

    def _set_log(self, ordered: Iterable[Member]) -> None:
        self._log_members = list(ordered)
        self._log_stamps = [m.last_changed for m in self._log_members]
