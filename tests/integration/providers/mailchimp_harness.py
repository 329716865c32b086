"""The Mailchimp sandbox behind the contract suite's ``ProviderHarness`` interface."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import httpx

from campaign_bridge.config import MailchimpDestination
from campaign_bridge.providers import create_provider
from campaign_bridge.providers._http import RetryPolicy
from campaign_bridge.providers.base import Provider
from campaign_bridge.providers.mailchimp import MailchimpProvider
from campaign_bridge.sandbox.mailchimp import SandboxHandle
from campaign_bridge.testing.contract import SeedMember
from tests.integration.providers._sandbox_harness import SandboxHarness


def _hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


class MailchimpHarness(SandboxHarness):
    """The contract suite's view of a freshly reset Mailchimp sandbox."""

    handle: SandboxHandle

    text_fields = ("FNAME", "LNAME")
    bad_api_key = "0" * 32 + "-us6"
    capabilities = MailchimpProvider.capabilities
    features = frozenset(
        {
            "account_id",
            "required_fields",
            "forgotten",
            "fake_email",
            "signup_throttle",
            "concurrency_probe",
            "every_event",
            "lifts_unsubscribe",
            "lists_removed",
            "bare_403",
        }
    )

    def __init__(self, handle: SandboxHandle) -> None:
        self.handle = handle
        health = self._start(handle)
        self.api_key: str = health["api_key"]
        self.list_id: str = health["list_id"]
        self._ok(self.control.put("/batches/settings", json={"auto": True, "step_seconds": 0.0}))
        self.api = httpx.Client(base_url=handle.base_url, auth=("x", self.api_key), timeout=30)

    def provider(self, **options: Any) -> Provider:
        destination = MailchimpDestination(
            api_key=options.pop("api_key", self.api_key),
            list_id=self.list_id,
            base_url=self.handle.base_url,
            concurrency=options.pop("concurrency", 10),
            timeout_seconds=options.pop("timeout_seconds", 30.0),
            max_retries=options.pop("max_retries", 8),
        )
        if not options:
            return create_provider(destination)
        retry = None
        if options.pop("fast_retries", False):
            retry = RetryPolicy(
                max_retries=destination.max_retries, base_delay=0.01, max_delay=0.05
            )
        return MailchimpProvider(
            destination,
            retry=retry,
            batch_poll_initial=0.01,
            batch_poll_max=0.1,
            **options,
        )

    async def seed(self, members: Sequence[SeedMember]) -> None:
        items = [
            {
                "email_address": m.email,
                "status": m.status,
                "unsubscribe_origin": m.origin,
                "tags": list(m.tags),
            }
            for m in members
        ]
        self._ok(
            self.control.post("/seed", json={"lists": [{"id": self.list_id, "members": items}]})
        )

    async def forget(self, email: str) -> None:
        path = f"/lists/{self.list_id}/members/{_hash(email)}/actions/delete-permanent"
        self._ok(self.api.post(path))

    def _members(self) -> list[dict[str, Any]]:
        return list(self._ok(self.control.get(f"/lists/{self.list_id}"))["members"])

    async def member(self, email: str) -> dict[str, Any] | None:
        for member in self._members():
            if member["email_address"].lower() == email.lower():
                member["tags"] = [t["name"] for t in member.get("tags", [])]
                return member
        return None

    async def member_count(self) -> int:
        return len(self._members())

    async def fault(
        self,
        kind: str,
        *,
        path: str | None = None,
        count: int | None = 1,
        rate: float = 1.0,
        delay: float = 0.0,
        method: str | None = None,
    ) -> None:
        spec = {"kind": kind, "path": path, "count": count, "rate": rate, "method": method}
        if delay:
            spec["delay"] = delay
        self._ok(self.control.post("/faults", json=spec))

    async def concurrency_rejections(self) -> int:
        return int(self._ok(self.control.get("/limits"))["rejected"])

    async def peak_in_flight(self) -> int:
        return int(self._ok(self.control.get("/limits"))["peak_in_flight"].get(self.api_key, 0))

    async def throttle_signups(self, emails: Sequence[str]) -> None:
        self._ok(self.control.post("/limits", json={"throttled_emails": list(emails)}))

    async def touch(self, email: str) -> None:
        body = {"merge_fields": {"LNAME": f"touch{next(self._touches)}"}}
        self._ok(
            self.control.post(f"/lists/{self.list_id}/members/{_hash(email)}/profile", json=body)
        )

    async def add_required_field(self, tag: str) -> None:
        body = {"name": tag.title(), "tag": tag, "type": "text", "required": True}
        self._ok(self.api.post(f"/lists/{self.list_id}/merge-fields", json=body))

    async def seed_campaign(self, recipients: int | None = None) -> str:
        body: dict[str, Any] = {"list_id": self.list_id, "seed": 7}
        if recipients is not None:
            body["recipients"] = recipients
        return str(self._ok(self.control.post("/campaigns/seed", json=body))["id"])

    def webhook_target(self) -> str:
        return f"{self.handle.control_url}/health?hook=contract"
