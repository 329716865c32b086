"""Push's privacy step (private to :mod:`campaign_bridge.push`): erasure requests and tombstones.

At the first chunk the gate carries out the sync's pending erasure requests (a dry run only
counts them) and notes the source keys marked for erasure. For every chunk, :meth:`admit` drops
the mapped contacts that must not be sent:

- ``erasure_requested``: the row carries the sync's erasure marker;
- ``erased``: the person has a tombstone and the row shows no *fresh consent* (consent true and
  ``updated_at`` later than the erasure; see :func:`campaign_bridge.erasure.admits`).

When the provider answers that an address was permanently deleted (Mailchimp: "Forgotten Email
Not Subscribed"), the record is skipped as ``forgotten_at_provider`` (not an error) and the
person gets a tombstone, so later pushes skip them without asking the provider again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa

from campaign_bridge import erasure, erasure_requests, permissions, privacy
from campaign_bridge._push_state import remove_intents
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.mapping import MappedContact, MappingPlan
from campaign_bridge.providers.base import Outcome, Provider

__all__ = ["FORGOTTEN_REASON", "PushGate"]


class _Sent(Protocol):
    """A contact the push sent (push's own item type; only its contact is read here)."""

    @property
    def contact(self) -> MappedContact: ...


FORGOTTEN_REASON = "forgotten_email"  # the adapters' reason code for a permanently deleted address


class PushGate:
    def __init__(self, settings: Settings, sync_name: str, provider: Provider, dry_run: bool):
        self.settings = settings
        self.sync_name = sync_name
        self.sync = settings.syncs[sync_name]
        self.provider = provider
        self.dry_run = dry_run
        self.flagged: set[str] = set()
        self.any_tombstones = False
        self.engine = create_engine(settings.effective_state_url())

    async def start(self) -> Counter[str]:
        """Carry out pending erasure requests; return what it did (for the run's counts)."""
        import anyio

        done: Counter[str] = Counter()
        if self.sync.erasure is not None:
            reports = await erasure_requests.process_requests(
                self.settings,
                self.sync_name,
                dry_run=self.dry_run,
                provider_factory=lambda _sync: self.provider,
            )
            if reports:
                done["would_erase" if self.dry_run else "erased_on_request"] += len(reports)
            if self.sync.erasure.column:
                self.flagged = await anyio.to_thread.run_sync(
                    erasure_requests.flagged_keys, self.sync
                )
        self.any_tombstones = await anyio.to_thread.run_sync(self._has_tombstones)
        return done

    def _has_tombstones(self) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(privacy.erasures.c.subject_hash).limit(1)).first()
        return found is not None

    def admit(
        self, plan: MappingPlan, rows: Sequence[Mapping[str, object]], contacts: list[MappedContact]
    ) -> tuple[list[MappedContact], Counter[str]]:
        """The contacts that may be sent, and why the others may not (runs on a DB thread)."""
        skipped: Counter[str] = Counter()
        if not self.flagged and not self.any_tombstones:
            return contacts, skipped
        erased: Mapping[str, datetime] = {}
        if self.any_tombstones:
            with self.engine.begin() as conn:
                erased = privacy.tombstones_of(conn, [c.email_hash for c in contacts])
        changed_at: dict[str, object] = {}
        if erased and plan.updated_at_column:
            column = plan.updated_at_column
            changed_at = {str(row.get(plan.key_column)): row.get(column) for row in rows}
        kept = []
        for contact in contacts:
            if contact.key in self.flagged:
                skipped["erasure_requested"] += 1
            elif contact.email_hash in erased and not erasure.admits(
                contact.consent, changed_at.get(contact.key), erased[contact.email_hash]
            ):
                skipped["erased"] += 1
            else:
                kept.append(contact)
        return kept, skipped

    def forgotten_at_provider(self, email_hash: str, *, intent_slice: str | None = None) -> bool:
        """The provider refused an address it permanently deleted: give the person a tombstone
        (or refresh it). True when the bridge had erased them itself (runs on a DB thread);
        then the intent the send wrote (in the ``cb_push_intents`` row ``intent_slice``) goes."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            mark = privacy.tombstone(privacy.load_salt(conn), email_hash)
            table = privacy.erasures
            origin = conn.execute(
                sa.select(table.c.origin).where(table.c.subject_hash == mark)
            ).scalar()
            erased_by_us = origin is not None and origin != "provider"
            if self.dry_run:
                return erased_by_us
            if erased_by_us and intent_slice is not None:
                # The change it was about did not happen: nothing to settle later.
                remove_intents(conn, [(self.sync_name, intent_slice, [email_hash])])
            values = {"erased_at": now, "provider_result": "forgotten"}
            if origin is not None:
                conn.execute(table.update().where(table.c.subject_hash == mark).values(values))
            else:
                conn.execute(table.insert().values(subject_hash=mark, origin="provider", **values))
        self.any_tombstones = True
        return erased_by_us

    def record_permissions(self, confirmed: Sequence[tuple[_Sent, Outcome]], run_id: str) -> None:
        """Store the GDPR permissions of confirmed members, ledgering changes (a writer thread)."""
        members = [
            permissions.MemberPermissions(
                sent.contact.email_hash,
                {pid: (None, on) for pid, on in sent.contact.marketing_permissions.items()},
                sent.contact.key,
            )
            for sent, _ in confirmed
            if sent.contact.marketing_permissions
        ]
        permissions.record_permissions(
            self.engine,
            members,
            provider=self.provider.name,
            list_id=self.sync.destination.list_id,
            sync_name=self.sync_name,
            origin="push",
            run_id=run_id,
        )

    def close(self) -> None:
        self.engine.dispose()
