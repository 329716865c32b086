"""What the sandbox harnesses (Mailchimp, Brevo, listmonk) share: the sandbox's control API
(reset, faults, latency, clock), and for Brevo and listmonk the destination their providers'
constructors take."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import httpx

from campaign_bridge.providers._http import RetryPolicy
from campaign_bridge.sandbox._server import ServedSandbox


class SandboxHarness:
    """A base for a ``ProviderHarness`` over one of the bundled sandboxes."""

    label = ""  # the provider's name in messages
    api: httpx.Client

    def _start(self, handle: ServedSandbox) -> Any:
        """Connect to ``handle``'s control API and reset the sandbox; its health answer."""
        self.control = httpx.Client(base_url=handle.control_url, timeout=30)
        self._touches = itertools.count()
        return self._ok(self.control.post("/reset", json={}))

    def close(self) -> None:
        self.control.close()
        self.api.close()

    @staticmethod
    def _ok(response: httpx.Response) -> Any:
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    @staticmethod
    def _destination(base_url: str, options: dict[str, Any], **keys: Any) -> SimpleNamespace:
        """The destination settings a provider takes: ``keys`` (credentials, list) and the
        common ones, from ``options`` (popped) or their defaults."""
        return SimpleNamespace(
            base_url=base_url,
            **keys,
            concurrency=options.pop("concurrency", 10),
            timeout_seconds=options.pop("timeout_seconds", 30.0),
            max_retries=options.pop("max_retries", 8),
            ca_bundle=None,
        )

    @staticmethod
    def _retry(options: dict[str, Any], max_retries: int) -> RetryPolicy | None:
        """Fast retries when ``options`` asks (``fast_retries``): the sandboxes' rate-limit
        resets count real windows, so Retry-After is capped too."""
        if not options.pop("fast_retries", False):
            return None
        return RetryPolicy(
            max_retries=max_retries, base_delay=0.01, max_delay=0.05, retry_after_cap=0.05
        )

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
        spec: dict[str, Any] = {"kind": kind, "path": path, "count": count, "rate": rate}
        if method:
            spec["method"] = method
        if delay:
            spec["delay"] = delay
        self._ok(self.control.post("/faults", json=spec))

    async def clear_faults(self) -> None:
        self._ok(self.control.delete("/faults"))

    async def latency(self, seconds: float) -> None:
        self._ok(self.control.post("/limits", json={"latency": seconds}))

    async def concurrency_rejections(self) -> int:
        return 0

    async def peak_in_flight(self) -> int:
        return 0

    async def throttle_signups(self, emails: Sequence[str]) -> None:
        raise NotImplementedError(f"{self.label} has no per-address signup throttle")

    async def advance_clock(self, seconds: float) -> datetime:
        now = self._ok(self.control.post("/clock", json={"advance": seconds}))["now"]
        return datetime.fromisoformat(now)

    def fake_email(self, local: str) -> str:
        return f"{local}@example.com"
