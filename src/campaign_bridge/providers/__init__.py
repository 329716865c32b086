"""Provider adapters: one module per provider, all behind the contract in ``base``.

``create_provider`` turns a sync's ``destination`` settings into the right adapter, found in
``REGISTRY``: adding a provider is one entry there (plus its settings model in
``campaign_bridge._destinations``). An adapter class is built as
``Adapter(destination, transport=transport)`` and imported only when a sync uses it.
``webhook_parser`` gives a provider's webhook format by name (no client, no credentials), found
in ``WEBHOOK_PARSERS`` the same way.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import httpx

from campaign_bridge.errors import ConfigProblem, ConfigurationError
from campaign_bridge.providers.base import Capabilities

if TYPE_CHECKING:
    from campaign_bridge.config import DestinationConfig
    from campaign_bridge.providers.base import Provider, WebhookParser

__all__ = [
    "REGISTRY",
    "WEBHOOK_PARSERS",
    "AdapterEntry",
    "AdapterFactory",
    "adapter_class",
    "capabilities_of",
    "create_provider",
    "webhook_parser",
]

AdapterFactory = Callable[..., "Provider"]


@dataclass(frozen=True)
class AdapterEntry:
    """Where a provider's adapter lives: ``module`` holds the class named ``attribute``."""

    module: str
    attribute: str


REGISTRY: dict[str, AdapterEntry] = {
    "mailchimp": AdapterEntry("campaign_bridge.providers.mailchimp", "MailchimpProvider"),
    "brevo": AdapterEntry("campaign_bridge.providers.brevo", "BrevoProvider"),
    "listmonk": AdapterEntry("campaign_bridge.providers.listmonk", "ListmonkProvider"),
}

# each provider's WebhookParser (``/webhooks/{provider}/{token}``); built once, on first use
WEBHOOK_PARSERS: dict[str, AdapterEntry] = {
    "mailchimp": AdapterEntry("campaign_bridge.providers._mailchimp_webhooks", "MailchimpWebhooks"),
    "brevo": AdapterEntry("campaign_bridge.providers._brevo_webhooks", "BrevoWebhooks"),
}
_parsers: dict[str, WebhookParser] = {}


def adapter_class(provider: str) -> AdapterFactory:
    """The adapter class registered for ``provider``; :class:`ConfigurationError` when there
    is none or its module is not installed (yet)."""
    entry = REGISTRY.get(provider)
    if entry is None:
        raise _unavailable(provider, f"no adapter is registered for provider {provider!r}")
    try:
        module = importlib.import_module(entry.module)
    except ModuleNotFoundError as exc:
        if exc.name != entry.module:
            raise  # the adapter exists but one of its own imports is missing: a real bug
        raise _unavailable(
            provider, f"the {provider} adapter is not available yet ({entry.module})"
        ) from None
    found: Any = getattr(module, entry.attribute, None)
    if not callable(found):
        raise _unavailable(
            provider, f"{entry.module} has no adapter class {entry.attribute} for {provider!r}"
        )
    return cast(AdapterFactory, found)


def capabilities_of(provider: str) -> Capabilities:
    """What the adapter registered for ``provider`` declares it can do (no connection made)."""
    found = getattr(adapter_class(provider), "capabilities", None)
    if not isinstance(found, Capabilities):
        raise _unavailable(provider, f"the {provider} adapter declares no capabilities")
    return found


def create_provider(
    destination: DestinationConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> Provider:
    """The adapter for ``destination.provider``; ``transport`` lets tests run the sandbox
    in-process (``httpx.ASGITransport``). Close it with ``await provider.aclose()``."""
    return adapter_class(destination.provider)(destination, transport=transport)


def _unavailable(provider: str, problem: str) -> ConfigurationError:
    usable = [name for name, entry in REGISTRY.items() if _installed(entry.module)]
    return ConfigurationError(
        [
            ConfigProblem(
                "destination.provider",
                problem,
                "one of the providers this installation ships: " + ", ".join(usable),
            )
        ]
    )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def webhook_parser(provider: str) -> WebhookParser | None:
    """The webhook format of ``provider``; ``None`` when it has none (or no such provider)."""
    parser = _parsers.get(provider)
    if parser is None and provider in WEBHOOK_PARSERS:
        entry = WEBHOOK_PARSERS[provider]
        module = importlib.import_module(entry.module)
        parser = _parsers[provider] = getattr(module, entry.attribute)()
    return parser
