"""Fixtures for the operator commands: the push tests' sandbox and source database."""

from __future__ import annotations

from tests.integration.push.conftest import (  # fixtures, registered by import
    _dispose_source_engines,
    sandbox,
)

__all__ = ["_dispose_source_engines", "sandbox"]
