"""docs/operations.md documents every metric the service exports."""

from __future__ import annotations

from pathlib import Path

from campaign_bridge.metrics import NAMES, PREFIX

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_every_metric_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in NAMES if f"`{PREFIX}_{name}`" not in text]
    assert missing == []
