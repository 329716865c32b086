"""`webhooks register` asks each provider's capabilities: a provider that calls no webhooks
(listmonk) is skipped when registering every sync, and refused with its reason when named."""

from __future__ import annotations

import asyncio

import pytest

from campaign_bridge.config import Settings
from campaign_bridge.errors import ProviderError
from campaign_bridge.webhook_registration import register_webhooks


def settings() -> Settings:
    return Settings.model_validate(
        {
            "server": {"public_url": "https://bridge.example", "webhook_tokens": ["t" * 20]},
            "syncs": {
                "lists": {
                    "source": {"url": "sqlite:///x.db", "table": "contacts"},
                    "destination": {
                        "provider": "listmonk",
                        "base_url": "http://127.0.0.1:9",
                        "api_user": "bridge",
                        "api_token": "secret",
                        "list_id": 3,
                    },
                }
            },
        }
    )


def test_a_provider_without_webhooks_is_skipped_when_registering_all() -> None:
    [row] = asyncio.run(register_webhooks(settings()))
    assert row == {
        "sync": "lists",
        "list_id": "3",
        "webhook_id": "",
        "url": "none: listmonk calls no webhooks; pull reads its changes",
    }


def test_naming_it_says_why_it_cannot() -> None:
    with pytest.raises(ProviderError, match="no outbound webhooks"):
        asyncio.run(register_webhooks(settings(), "lists"))
