"""Register this service's webhook URL with each sync's audience (``campaign-bridge webhooks
register``): ``<server.public_url>/webhooks/<provider>/<first token>``."""

from __future__ import annotations

import logging

from campaign_bridge.config import Settings

__all__ = ["register_webhooks"]

log = logging.getLogger(__name__)


async def register_webhooks(
    settings: Settings, sync_name: str | None = None
) -> list[dict[str, str]]:
    """Register ``<public_url>/webhooks/<provider>/<first token>`` for each sync's audience.

    Without ``sync_name``, a sync whose provider calls no webhooks (``capabilities.webhooks``
    false: listmonk) is listed as skipped; named, its adapter says why it cannot."""
    from campaign_bridge.errors import ConfigProblem, ConfigurationError
    from campaign_bridge.providers import capabilities_of, create_provider

    problems = []
    if not settings.server.public_url:
        problems.append(
            ConfigProblem(
                "server.public_url",
                "is not set",
                "the https URL at which the provider reaches this service",
            )
        )
    if not settings.server.webhook_tokens:
        problems.append(
            ConfigProblem(
                "server.webhook_tokens", "is empty", "at least one long random secret token"
            )
        )
    if sync_name is not None and sync_name not in settings.syncs:
        known = ", ".join(sorted(settings.syncs)) or "none"
        problems.append(ConfigProblem("syncs", f"no sync named {sync_name!r}", f"one of: {known}"))
    if not settings.syncs:
        problems.append(ConfigProblem("syncs", "no sync is configured", "a [syncs.<name>] table"))
    if problems:
        raise ConfigurationError(problems)
    assert settings.server.public_url is not None
    token = settings.server.webhook_tokens[0].get_secret_value()
    base = f"{settings.server.public_url.rstrip('/')}/webhooks"
    names = [sync_name] if sync_name is not None else list(settings.syncs)
    results = []
    for name in names:
        destination = settings.syncs[name].destination
        if sync_name is None and not capabilities_of(destination.provider).webhooks:
            skipped = f"none: {destination.provider} calls no webhooks; pull reads its changes"
            results.append(
                {"sync": name, "list_id": destination.list_id, "webhook_id": "", "url": skipped}
            )
            continue
        url = f"{base}/{destination.provider}/{token}"
        shown = f"{base}/{destination.provider}/********"
        provider = create_provider(destination)
        try:
            webhook_id = await provider.register_webhook(destination.list_id, url)
        finally:
            await provider.aclose()
        log.info(
            "registered webhook %s for sync %s",
            webhook_id,
            name,
            extra={"action": "webhooks-register", "provider": destination.provider},
        )
        results.append(
            {"sync": name, "list_id": destination.list_id, "webhook_id": webhook_id, "url": shown}
        )
    return results
