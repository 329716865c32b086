"""A sync's settings against what its provider declares it can do (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from campaign_bridge.config import SyncConfig
from campaign_bridge.errors import ConfigurationError
from campaign_bridge.features import require_supported, unsupported
from campaign_bridge.providers import REGISTRY, capabilities_of, create_provider
from campaign_bridge.providers.base import Capabilities

BARE = Capabilities(max_batch=100, max_connections=2)
EVERYTHING = Capabilities(
    max_batch=500,
    max_connections=10,
    tags=True,
    interests=True,
    marketing_permissions=True,
    double_opt_in=True,
    transactional_status=True,
    language=True,
)


def sync(**settings: Any) -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "source": {"url": "sqlite:///x.db", "table": "t"},
            "destination": {"api_key": "k", "list_id": "a", "base_url": "http://s:1/3.0"},
            **settings,
        }
    )


def test_a_plain_sync_needs_nothing() -> None:
    assert unsupported(sync(fields={"FNAME": "first"}), BARE) == []


def test_every_unsupported_setting_is_named() -> None:
    asked = sync(
        tags={"vip": "is_vip"},
        interests={"abc": "likes"},
        marketing_permissions={"p1": "ok"},
        language_column="lang",
        double_opt_in=True,
        unconsented_new="transactional",
    )
    assert [u.setting for u in unsupported(asked, BARE)] == [
        "tags",
        "interests",
        "marketing_permissions",
        "language_column",
        "double_opt_in",
        "unconsented_new",
    ]
    assert unsupported(asked, EVERYTHING) == []


def test_push_refuses_them_all_at_once() -> None:
    with pytest.raises(ConfigurationError) as caught:
        require_supported("crm", sync(tags_column="labels", double_opt_in=True), BARE)
    assert [p.location for p in caught.value.problems] == [
        "syncs.crm.tags_column",
        "syncs.crm.double_opt_in",
    ]
    assert "mailchimp has no tags" in str(caught.value)


def test_the_registry_knows_every_configurable_provider() -> None:
    from campaign_bridge.config import PROVIDERS

    assert set(REGISTRY) == set(PROVIDERS)
    assert capabilities_of("mailchimp").max_batch == 500
    assert not capabilities_of("listmonk").webhooks


def test_a_missing_adapter_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from campaign_bridge.providers import AdapterEntry

    monkeypatch.setitem(
        REGISTRY, "brevo", AdapterEntry("campaign_bridge.providers.nowhere", "Nope")
    )
    with pytest.raises(ConfigurationError, match="adapter is not available yet"):
        capabilities_of("brevo")
    destination = sync().destination.model_copy(update={"provider": "brevo"})
    with pytest.raises(ConfigurationError, match="not available yet"):
        create_provider(destination)


@pytest.mark.parametrize("provider", ["mailchimp", "brevo", "listmonk"])
def test_the_concurrency_setting_stops_at_what_the_provider_tolerates(provider: str) -> None:
    from annotated_types import Le

    from campaign_bridge.config import PROVIDERS

    field = PROVIDERS[provider].model_fields["concurrency"]
    [ceiling] = [m.le for m in field.metadata if isinstance(m, Le)]
    assert ceiling == capabilities_of(provider).max_connections
