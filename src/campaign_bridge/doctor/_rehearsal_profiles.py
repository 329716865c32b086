"""What ``doctor --rehearse`` needs to know about each provider's sandbox, in one place.

The round trip itself (``doctor/_rehearse.py``) knows no provider: it runs the real push, serve,
pull and push against whatever sandbox a :class:`Profile` starts, and asks the profile for the
rest — the destination settings that point a sync at the sandbox, the source column the
provider's first-name field maps from, how a subscriber unsubscribes at the provider (through the
sandbox's control API, as a real subscriber's click would) and how to read the member's status
back. Whether the unsubscribe comes back by webhook or only by pull is the adapter's declared
``webhook_member_events``, not the profile's say.

Adding a provider: one ``Profile`` in ``PROFILES``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from campaign_bridge.providers import capabilities_of

__all__ = ["PROFILES", "Profile", "label_of"]

#: ``await unsubscribe(handle, control, email)``: the subscriber unsubscribes at the provider
Unsubscribe = Callable[[Any, httpx.AsyncClient, str], Awaitable[None]]
#: ``await member_status(handle, control, email)``: ``subscribed``, ``unsubscribed``,
#: ``pending``, ``blocklisted`` or ``absent``, as the sandbox holds it
MemberStatus = Callable[[Any, httpx.AsyncClient, str], Awaitable[str]]


@dataclass(frozen=True)
class Profile:
    """One provider's rehearsal: ``start()`` serves its sandbox on 127.0.0.1 (a context manager
    yielding a handle with ``control_url``); the callables take that handle."""

    provider: str
    label: str
    start: Callable[[], AbstractContextManager[Any]]
    destination: Callable[[Any], dict[str, Any]]
    fields: dict[str, str]
    unsubscribe: Unsubscribe
    member_status: MemberStatus

    @property
    def webhooks(self) -> bool:
        """Whether the provider reports an unsubscribe to ``serve`` (else only pull sees it)."""
        return capabilities_of(self.provider).webhook_member_events


async def _json(response: httpx.Response) -> Any:
    response.raise_for_status()
    return response.json()


# --- Mailchimp ----------------------------------------------------------------------------------


def _mailchimp_start() -> AbstractContextManager[Any]:
    from campaign_bridge.sandbox.mailchimp.server import run_in_thread

    return run_in_thread()


def _mailchimp_destination(handle: Any) -> dict[str, Any]:
    return {
        "provider": "mailchimp",
        "api_key": handle.api_key,
        "list_id": handle.list_id,
        "base_url": handle.base_url,
    }


def _mailchimp_member(handle: Any, email: str) -> str:
    from campaign_bridge.status_changes import email_hash

    return f"/lists/{handle.list_id}/members/{email_hash(email)}"


async def _mailchimp_unsubscribe(handle: Any, control: httpx.AsyncClient, email: str) -> None:
    path = _mailchimp_member(handle, email) + "/unsubscribe"
    await _json(await control.post(path, json={"reason": "rehearsal"}))


async def _mailchimp_status(handle: Any, control: httpx.AsyncClient, email: str) -> str:
    state = await _json(await control.get(f"/lists/{handle.list_id}"))
    for member in state["members"]:
        if str(member["email_address"]).lower() == email.lower():
            return str(member["status"])
    return "absent"


# --- Brevo --------------------------------------------------------------------------------------


def _brevo_start() -> AbstractContextManager[Any]:
    from campaign_bridge.sandbox.brevo.server import run_in_thread

    return run_in_thread()


def _brevo_destination(handle: Any) -> dict[str, Any]:
    return {
        "provider": "brevo",
        "api_key": handle.api_key,
        "list_id": str(handle.list_id),
        "base_url": handle.base_url,
    }


async def _brevo_unsubscribe(_handle: Any, control: httpx.AsyncClient, email: str) -> None:
    # the default unsubscribe link: blocklisted for all marketing email (Brevo's webhook says so)
    await _json(await control.post(f"/contacts/{quote(email)}/unsubscribe", json={}))


async def _brevo_status(handle: Any, control: httpx.AsyncClient, email: str) -> str:
    response = await control.get(f"/contacts/{quote(email)}")
    if response.status_code == 404:
        return "absent"
    contact = await _json(response)
    if contact.get("emailBlacklisted") or handle.list_id in contact.get("listUnsubscribed", []):
        return "unsubscribed"
    return "subscribed" if handle.list_id in contact.get("listIds", []) else "absent"


# --- listmonk -----------------------------------------------------------------------------------


def _listmonk_start() -> AbstractContextManager[Any]:
    from campaign_bridge.sandbox.listmonk.server import run_in_thread

    return run_in_thread()


def _listmonk_destination(handle: Any) -> dict[str, Any]:
    return {
        "provider": "listmonk",
        "base_url": handle.base_url,
        "api_user": handle.api_user,
        "api_token": handle.api_token,
        "list_id": str(handle.list_id),
    }


async def _listmonk_unsubscribe(handle: Any, control: httpx.AsyncClient, email: str) -> None:
    # the campaign's unsubscribe page, for the sync's list
    path = f"/subscribers/{quote(email)}/unsubscribe"
    await _json(await control.post(path, json={"list_id": handle.list_id}))


_LISTMONK_STATUS = {"unsubscribed": "unsubscribed", "confirmed": "subscribed"}


async def _listmonk_status(handle: Any, control: httpx.AsyncClient, email: str) -> str:
    response = await control.get(f"/subscribers/{quote(email)}")
    if response.status_code == 404:
        return "absent"
    subscriber = await _json(response)
    if subscriber.get("status") == "blocklisted":
        return "blocklisted"
    for item in subscriber.get("lists", []):
        if item.get("id") == handle.list_id:
            status = str(item.get("subscription_status"))
            return _LISTMONK_STATUS.get(status, "pending")
    return "absent"


# --- the registry -------------------------------------------------------------------------------

PROFILES: dict[str, Profile] = {
    "mailchimp": Profile(
        provider="mailchimp",
        label="Mailchimp",
        start=_mailchimp_start,
        destination=_mailchimp_destination,
        fields={"FNAME": "first_name"},
        unsubscribe=_mailchimp_unsubscribe,
        member_status=_mailchimp_status,
    ),
    "brevo": Profile(
        provider="brevo",
        label="Brevo",
        start=_brevo_start,
        destination=_brevo_destination,
        fields={"FIRSTNAME": "first_name"},
        unsubscribe=_brevo_unsubscribe,
        member_status=_brevo_status,
    ),
    "listmonk": Profile(
        provider="listmonk",
        label="listmonk",
        start=_listmonk_start,
        destination=_listmonk_destination,
        fields={"name": "first_name"},
        unsubscribe=_listmonk_unsubscribe,
        member_status=_listmonk_status,
    ),
}


def label_of(provider: str) -> str:
    """How messages name ``provider`` (its own name when it has no profile)."""
    profile = PROFILES.get(provider)
    return profile.label if profile is not None else provider
