"""Defect 7: an invalid source row is counted as rejected once per version of the row, not again
on every run that reads it (``contacts_rejected_total`` and the run's counts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from campaign_bridge.db import create_engine
from campaign_bridge.metrics import Metrics
from campaign_bridge.push import run_push

from ..push.conftest import Sandbox, make_source, push_settings
from ..push.conftest import sandbox as sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def attempts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT source_key, attempts FROM cb_rejected_records"))
            return {str(k): int(a) for k, a in rows}
    finally:
        engine.dispose()


def rejected_metric(metrics: Metrics) -> float:
    total = 0.0
    for family in metrics.registry.collect():
        if family.name == "campaign_bridge_contacts_rejected":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


@pytest.mark.parametrize("incremental", [True, False], ids=["incremental", "full-scan"])
async def test_an_unchanged_invalid_row_is_rejected_once(
    database_url: str, tmp_path: Path, sandbox: Sandbox, incremental: bool
) -> None:
    source = make_source(database_url, rows=6)
    source.update(2, email="not-an-address")
    source.update(4, age="forty")
    extra: dict[str, Any] = {} if incremental else {"source": {"updated_at_column": None}}
    settings = push_settings(tmp_path, database_url, sandbox, **extra)
    state_url = settings.effective_state_url()
    metrics = Metrics()

    first = await run_push(settings, "crm")
    metrics.record_run("crm", "push", first.status, counts=first.counts())
    assert first.rejected_total == 2

    for _ in range(2):
        again = await run_push(settings, "crm")
        metrics.record_run("crm", "push", again.status, counts=again.counts())
        assert again.status == "succeeded", again.error
        assert again.rejected_total == 0
    assert rejected_metric(metrics) == 2
    assert attempts(state_url) == {"2": 1, "4": 1}

    source.update(2, email="still@not-valid")  # a new version of the row: counted again
    changed = await run_push(settings, "crm")
    assert changed.rejected == {"invalid_email": 1}
    assert attempts(state_url) == {"2": 2, "4": 1}
