"""Fixtures for the privacy tests: the push tests' sandbox (with its request log) and helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.db import create_engine
from tests.integration.push.conftest import (  # noqa: F401 - fixtures used by these tests
    Sandbox,
    _dispose_source_engines,
    anyio_backend,
    sandbox,
)


def write_config(
    path: Path, *, state_url: str, source_url: str, box: Sandbox, extra: str = ""
) -> Path:
    """A configuration file with one sync ``crm`` (the push tests' contacts table)."""
    handle = box.handle
    path.write_text(
        f"""
state_url = "{state_url}"
data_dir = "{(path.parent / "data").as_posix()}"
[syncs.crm]
fields = {{ FNAME = "first_name" }}
{extra}
[syncs.crm.source]
url = "{source_url}"
table = "contacts"
consent_column = "consent"
updated_at_column = "updated_at"
[syncs.crm.destination]
api_key = "{handle.api_key}"
list_id = "{handle.list_id}"
base_url = "{handle.base_url}"
""",
        encoding="utf-8",
    )
    return path


def migrated(url: str) -> str:
    migrations.upgrade(url)
    return url


def every_value(url: str) -> dict[str, list[tuple[str, str]]]:
    """Every non-empty value of every column of every cb_* table: {table: [(column, text)]}."""
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    found: dict[str, list[tuple[str, str]]] = {}
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            for table in inspector.get_table_names():
                if not table.startswith("cb_"):
                    continue
                rows = conn.execute(sa.text(f"SELECT * FROM {table}")).mappings().all()
                found[table] = [
                    (column, _text(value))
                    for row in rows
                    for column, value in row.items()
                    if value is not None
                ]
    finally:
        engine.dispose()
    return found


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)
