"""Provider adapters: one module per provider, all behind the contract in ``base``.

``create_provider`` turns a sync's ``destination`` settings into the right adapter;
``webhook_parser`` gives a provider's webhook format by name (no client, no credentials).
"""

from __future__ import annotations

import importlib

import httpx

from campaign_bridge.config import DestinationConfig
from campaign_bridge.providers.base import Provider, WebhookParser

__all__ = ["create_provider", "webhook_parser", "webhook_providers"]

# provider name -> (module, class) of its WebhookParser; imported on first use
_WEBHOOK_PARSERS: dict[str, tuple[str, str]] = {
    "mailchimp": ("campaign_bridge.providers._mailchimp_webhooks", "MailchimpWebhooks"),
}
_parsers: dict[str, WebhookParser] = {}


def webhook_parser(provider: str) -> WebhookParser | None:
    """The webhook format of ``provider``; ``None`` when it has none (or no such provider)."""
    parser = _parsers.get(provider)
    if parser is None and provider in _WEBHOOK_PARSERS:
        module_name, class_name = _WEBHOOK_PARSERS[provider]
        module = importlib.import_module(module_name)
        parser = _parsers[provider] = getattr(module, class_name)()
    return parser


def webhook_providers() -> list[str]:
    """The providers whose webhooks ``serve`` receives."""
    return sorted(_WEBHOOK_PARSERS)


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
