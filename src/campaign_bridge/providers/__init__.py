"""Provider adapters: one module per provider, all behind the contract in ``base``.

``create_provider`` turns a sync's ``destination`` settings into the right adapter.
"""

from __future__ import annotations

import httpx

from campaign_bridge.config import DestinationConfig
from campaign_bridge.providers.base import Provider

__all__ = ["create_provider"]


def create_provider(
    destination: DestinationConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> Provider:
    """The adapter for ``destination.provider``; ``transport`` lets tests run the sandbox
    in-process (``httpx.ASGITransport``). Close it with ``await provider.aclose()``."""
    if destination.provider == "mailchimp":
        from campaign_bridge.providers.mailchimp import MailchimpProvider

        return MailchimpProvider(
            destination, transport=transport, webhook_sources=destination.webhook_sources
        )
    raise ValueError(f"unknown provider {destination.provider!r}")  # pragma: no cover
