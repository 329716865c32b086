"""The provider contract suite now ships in the package (``campaign_bridge.testing.contract``);
this module keeps the old import path working for the harnesses in this directory."""

from __future__ import annotations

from campaign_bridge.testing.contract import (
    HarnessFactory,
    ProviderContract,
    ProviderHarness,
    SeedMember,
    contract_tests,
)

__all__ = ["HarnessFactory", "ProviderContract", "ProviderHarness", "SeedMember", "contract_tests"]
