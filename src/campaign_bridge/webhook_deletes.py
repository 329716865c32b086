"""Which of the two it was: an archive or a permanent delete announced by the same webhook.

A provider may announce both an archive and a permanent delete (an erasure) with one webhook
(its parser reads it as an ``archive`` event: Mailchimp's ``unsubscribe`` with
``data[action]=delete`` is one). Recording the archive when the member was in fact erased would
put a change in the consent ledger that never happened, followed by a second one when the next
push finds the member gone. So before a webhook archive is applied, the provider is asked for
the member: one it no longer has was deleted permanently. When it cannot be asked (network,
credentials), the webhook's own word (archived) stands and the next push's status refresh
records the deletion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

from campaign_bridge.config import SyncConfig
from campaign_bridge.errors import BridgeError
from campaign_bridge.providers.base import MemberSnapshot, MemberStatus
from campaign_bridge.status_changes import StatusChange

__all__ = ["confirm_archives"]

log = logging.getLogger(__name__)


def confirm_archives(sync: SyncConfig, changes: Sequence[StatusChange]) -> list[StatusChange]:
    """``changes`` with each webhook archive of a member the provider no longer has turned into
    a permanent deletion (synchronous: call it from a worker thread, not the event loop)."""
    asks = [
        (str(index), change.email)
        for index, change in enumerate(changes)
        if change.origin == "webhook" and change.status is MemberStatus.ARCHIVED
    ]
    confirmed = list(changes)
    if not asks:
        return confirmed
    try:
        found = asyncio.run(_read_members(sync, asks))
    except BridgeError as exc:
        log.warning(
            "could not ask the provider whether %d archived member(s) were deleted permanently "
            "(%s); recording them as archived, the next push's refresh corrects it",
            len(asks),
            exc,
            extra={"action": "webhook", "provider": sync.destination.provider},
        )
        return confirmed
    for key, _email in asks:
        if key in found and found[key] is None:
            index = int(key)
            confirmed[index] = replace(confirmed[index], status=MemberStatus.FORGOTTEN)
    return confirmed


async def _read_members(
    sync: SyncConfig, asks: Sequence[tuple[str, str]]
) -> dict[str, MemberSnapshot | None]:
    from campaign_bridge.providers import create_provider

    provider = create_provider(sync.destination)
    try:
        return await provider.read_members(sync.destination.list_id, asks)
    finally:
        await provider.aclose()
