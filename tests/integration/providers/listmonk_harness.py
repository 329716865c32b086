"""The listmonk sandbox behind the contract suite's ``ProviderHarness`` interface.

The audience is listmonk's install-time "Opt-in list" (double opt-in, list 2), so that members
can be pending. Bridge statuses are seeded as listmonk holds them: ``unsubscribed`` is an
unsubscribed subscription (listmonk does not record who unsubscribed), ``cleaned`` a hard bounce
(listmonk's default bounce action blocklists), ``pending`` an unconfirmed subscription.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import SecretStr

from campaign_bridge.providers._listmonk_wire import existing_from, list_state
from campaign_bridge.providers.base import Provider
from campaign_bridge.providers.listmonk import ListmonkProvider
from campaign_bridge.sandbox.listmonk import ListmonkHandle
from campaign_bridge.testing.contract import SeedMember
from tests.integration.providers._sandbox_harness import SandboxHarness

LIST_ID = 2  # "Opt-in list": double opt-in
SUBSCRIPTION = {"subscribed": "confirmed", "pending": "unconfirmed", "unsubscribed": "unsubscribed"}


class ListmonkHarness(SandboxHarness):
    """The contract suite's view of a freshly reset listmonk sandbox."""

    label = "listmonk"
    handle: ListmonkHandle
    text_fields = ("name", "city")
    bad_api_key = "0" * 32
    capabilities = ListmonkProvider.capabilities
    features = frozenset()  # none of the facts beyond the capabilities (contract docstring)
    list_id = str(LIST_ID)

    def __init__(self, handle: ListmonkHandle) -> None:
        self.handle = handle
        health = self._start(handle)
        self.user: str = health["api_user"]
        self.token: str = health["api_token"]
        auth = {"Authorization": f"token {self.user}:{self.token}"}
        self.api = httpx.Client(base_url=f"{handle.base_url}/api", headers=auth, timeout=30)

    def _data(self, response: httpx.Response) -> Any:
        return self._ok(response)["data"]

    def provider(self, **options: Any) -> Provider:
        destination = self._destination(
            self.handle.base_url,
            options,
            api_user=self.user,
            api_token=SecretStr(options.pop("api_key", self.token)),
            list_id=self.list_id,
        )
        retry = self._retry(options, destination.max_retries)
        options.pop("batch_threshold", None)  # Mailchimp's knob; listmonk's is import_threshold
        return ListmonkProvider(destination, retry=retry, import_poll=0.005, **options)

    def _subscriber(self, email: str) -> dict[str, Any] | None:
        query = {"query": f"subscribers.email = '{email.lower()}'", "per_page": "all"}
        results = self._data(self.api.get("/subscribers", params=query))["results"]
        return results[0] if results else None

    async def seed(self, members: Sequence[SeedMember]) -> None:
        people = [
            {
                "email": m.email,
                "lists": [LIST_ID],
                "subscription_status": SUBSCRIPTION.get(m.status, "confirmed"),
            }
            for m in members
        ]
        self._ok(self.control.post("/seed", json={"subscribers": people}))
        for m in members:
            if m.status == "cleaned":
                self._ok(self.control.post(f"/subscribers/{m.email}/bounce", json={"type": "hard"}))

    async def forget(self, email: str) -> None:
        found = self._subscriber(email)
        assert found is not None
        self._ok(self.api.delete(f"/subscribers/{found['id']}"))

    async def member(self, email: str) -> dict[str, Any] | None:
        found = self._subscriber(email)
        if found is None:
            return None
        item = existing_from(found, LIST_ID)
        bounced = bool(self._data(self.api.get(f"/subscribers/{item.id}/bounces")))
        return {
            "status": str(list_state(item, bounced=bounced)),
            "tags": [],
            "merge_fields": {"name": item.name, **item.attribs},
        }

    async def member_count(self) -> int:
        return int(self._data(self.api.get(f"/lists/{LIST_ID}"))["subscriber_count"])

    async def touch(self, email: str) -> None:
        found = self._subscriber(email)
        assert found is not None
        body = {"attribs": {"touch": next(self._touches)}}
        self._ok(self.api.patch(f"/subscribers/{found['id']}", json=body))

    async def add_required_field(self, tag: str) -> None:
        raise NotImplementedError("listmonk attributes have no schema")

    async def seed_campaign(self, recipients: int | None = None) -> str:
        body = {"name": "Contract", "subject": "Hello", "lists": [LIST_ID]}
        campaign = self._data(self.api.post("/campaigns", json=body))
        self._ok(self.api.put(f"/campaigns/{campaign['id']}/status", json={"status": "running"}))
        self._ok(self.api.get(f"/campaigns/{campaign['id']}"))  # finishes on the next request
        return str(campaign["id"])

    def webhook_target(self) -> str:
        return f"{self.handle.control_url}/health"
