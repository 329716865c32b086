"""The Brevo sandbox behind the contract suite's ``ProviderHarness`` interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from campaign_bridge.providers._brevo_wire import status_of
from campaign_bridge.providers.base import Provider
from campaign_bridge.providers.brevo import BrevoProvider
from campaign_bridge.sandbox.brevo import BrevoHandle
from campaign_bridge.testing.contract import SeedMember
from tests.integration.providers._sandbox_harness import SandboxHarness


class BrevoHarness(SandboxHarness):
    """The contract suite's view of a freshly reset Brevo sandbox."""

    label = "Brevo"
    handle: BrevoHandle
    text_fields = ("FIRSTNAME", "LASTNAME")
    bad_api_key = "xkeysib-" + "0" * 64 + "-0000000000000000"
    capabilities = BrevoProvider.capabilities
    # a blocklisted contact asked to confirm stays blocklisted until they do (contract docstring)
    features = frozenset({"opt_out_until_confirmed"})

    def __init__(self, handle: BrevoHandle) -> None:
        self.handle = handle
        health = self._start(handle)
        self.api_key: str = health["api_key"]
        self.list_id: str = str(health["list_id"])
        self.api = httpx.Client(
            base_url=handle.base_url, headers={"api-key": self.api_key}, timeout=30
        )

    def provider(self, **options: Any) -> Provider:
        destination = self._destination(
            self.handle.base_url,
            options,
            api_key=SecretStr(options.pop("api_key", self.api_key)),
            list_id=self.list_id,
        )
        # retry_after_cap: the sandbox's x-sib-ratelimit-reset counts real windows
        retry = self._retry(options, destination.max_retries)
        options.pop("batch_threshold", None)  # Mailchimp's knob; Brevo has no batch endpoint
        return BrevoProvider(
            destination,
            retry=retry,
            poll_initial=0.01,
            poll_max=0.1,
            double_opt_in_template_id=1,
            double_opt_in_redirect_url="https://corp.org/confirmed",
            **options,
        )

    async def seed(self, members: Sequence[SeedMember]) -> None:
        lid = int(self.list_id)
        contacts = []
        for m in members:
            item: dict[str, Any] = {"email": m.email, "attributes": {}}
            if m.status in ("subscribed", "unsubscribed", "cleaned"):
                item["listIds"] = [lid]
            if m.status == "unsubscribed":
                item["emailBlacklisted"] = True
                item["blacklistReason"] = "unsubscribe" if m.origin == "user" else m.origin
            if m.status == "pending":
                item["attributes"]["DOUBLE_OPT-IN"] = 2
            contacts.append(item)
        self._ok(self.control.post("/seed", json={"contacts": contacts}))
        for m in members:
            if m.status == "cleaned":
                path = f"/contacts/{quote(m.email)}/bounce"
                self._ok(self.control.post(path, json={"type": "hard"}))

    async def forget(self, email: str) -> None:
        self._ok(self.api.delete(f"/contacts/{quote(email)}"))

    async def member(self, email: str) -> dict[str, Any] | None:
        response = self.api.get(f"/contacts/{quote(email)}")
        if response.status_code == 404:
            return None
        contact = self._ok(response)
        return {
            "status": str(status_of(contact, int(self.list_id))),
            "tags": [],
            "merge_fields": contact.get("attributes") or {},
        }

    async def member_count(self) -> int:
        return int(self._ok(self.api.get("/contacts", params={"limit": 1}))["count"])

    async def touch(self, email: str) -> None:
        body = {"attributes": {"LASTNAME": f"touch{next(self._touches)}"}}
        self._ok(self.api.put(f"/contacts/{quote(email)}", json=body))

    async def add_required_field(self, tag: str) -> None:
        self._ok(self.api.post(f"/contacts/attributes/normal/{tag}", json={"type": "text"}))

    async def seed_campaign(self, recipients: int | None = None) -> str:
        body = {
            "name": "Contract",
            "subject": "Hello",
            "sender": {"name": "Bridge", "email": "news@corp.org"},
            "htmlContent": "<p>hi</p>",
            "recipients": {"listIds": [int(self.list_id)]},
        }
        campaign = self._ok(self.api.post("/emailCampaigns", json=body))
        self._ok(self.api.post(f"/emailCampaigns/{campaign['id']}/sendNow"))
        return str(campaign["id"])

    def webhook_target(self) -> str:
        return f"{self.handle.control_url}/health?hook=contract"
