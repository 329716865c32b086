"""What a sync asks of its provider, checked against what the provider declares it can do.

Pure: a sync's settings and the adapter's :class:`~campaign_bridge.providers.base.Capabilities`
in, the settings the provider cannot honour out. ``push`` refuses to start with any (before data
moves), and ``doctor`` reports them, so a setting is never silently ignored by one provider.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaign_bridge.config import SyncConfig, UnconsentedNew
from campaign_bridge.errors import ConfigProblem, ConfigurationError
from campaign_bridge.providers.base import Capabilities

__all__ = ["Unsupported", "require_supported", "unsupported"]


@dataclass(frozen=True)
class Unsupported:
    setting: str  # the sync's setting, relative to the sync (``tags``, ``double_opt_in``)
    feature: str  # what the provider lacks, in words


def unsupported(sync: SyncConfig, capabilities: Capabilities) -> list[Unsupported]:
    """The sync's settings that ``capabilities`` cannot honour, in settings order."""
    wanted = [
        ("tags", bool(sync.tags), capabilities.tags, "tags"),
        ("tags_column", bool(sync.tags_column), capabilities.tags, "tags"),
        ("interests", bool(sync.interests), capabilities.interests, "interests (groups)"),
        (
            "marketing_permissions",
            bool(sync.marketing_permissions),
            capabilities.marketing_permissions,
            "GDPR marketing permissions",
        ),
        ("language_column", bool(sync.language_column), capabilities.language, "a language"),
        ("double_opt_in", sync.double_opt_in, capabilities.double_opt_in, "double opt-in"),
        (
            "unconsented_new",
            sync.unconsented_new is UnconsentedNew.TRANSACTIONAL,
            capabilities.transactional_status,
            "transactional-only members",
        ),
    ]
    return [
        Unsupported(setting, feature)
        for setting, used, supported, feature in wanted
        if used and not supported
    ]


def require_supported(sync_name: str, sync: SyncConfig, capabilities: Capabilities) -> None:
    """Raise :class:`ConfigurationError` naming every setting the sync's provider cannot
    honour (``capabilities``: what its adapter declares)."""
    provider = sync.destination.provider
    found = unsupported(sync, capabilities)
    if found:
        raise ConfigurationError(
            [
                ConfigProblem(
                    f"syncs.{sync_name}.{item.setting}",
                    f"{provider} has no {item.feature}",
                    f"remove the setting for this sync (provider = {provider!r})",
                )
                for item in found
            ]
        )
