"""Mailchimp's side of erasure and access requests (private to the Mailchimp adapter).

- Erasure: ``POST /lists/{id}/members/{hash}/actions/delete-permanent`` (204). Mailchimp keeps
  no record of the person afterwards and refuses to re-add the address through the API
  ("Forgotten Email Not Subscribed"): the person must sign up again through a Mailchimp form.
- Access: the member record, its tags, its activity feed and its notes, as Mailchimp returns
  them (without the ``_links`` hypermedia, which only repeats URLs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from campaign_bridge.errors import BridgeError
from campaign_bridge.providers._mailchimp_session import MailchimpSession

__all__ = ["delete_permanently", "member_export"]


async def delete_permanently(session: MailchimpSession, list_id: str, member_id: str) -> str:
    """Erase one member; ``deleted``, or ``not_found`` when Mailchimp has no such member (never
    added, or erased before). Any other refusal raises the session's typed error."""
    path = f"/lists/{list_id}/members/{member_id}/actions/delete-permanent"
    response = await session.http.request("POST", path)
    if response.status_code < 300:
        return "deleted"
    if response.status_code == 404:
        return "not_found"
    raise session.error(response, "POST", path, list_id=None)


async def member_export(
    session: MailchimpSession, list_id: str, member_id: str
) -> dict[str, Any] | None:
    """Everything Mailchimp holds about one member, or ``None`` when it has no such member."""
    base = f"/lists/{list_id}/members/{member_id}"
    response = await session.http.request("GET", base)
    if response.status_code == 404:
        return None
    if response.status_code >= 300:
        raise session.error(response, "GET", base, list_id=None)
    member = _plain(session.json_object(response, "GET", base))
    found: dict[str, Any] = {"member": member}
    for name, key in (("tags", "tags"), ("activity-feed", "activity"), ("notes", "notes")):
        try:
            found[name.replace("-", "_")] = [
                _plain(item) async for item in session.pages(f"{base}/{name}", key)
            ]
        except BridgeError as exc:  # one missing section must not hide the rest
            found[name.replace("-", "_")] = {"unavailable": type(exc).__name__}
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if k != "_links"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
