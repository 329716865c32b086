"""Shared by the scale-out tests: source tables, a configuration with several syncs sharing one
API key, and the CLI as a subprocess."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import sqlalchemy as sa

from campaign_bridge.db import create_engine

CLI = Path(sys.executable).with_name("campaign-bridge")


def make_contacts(path: Path, sync: str, rows: int) -> str:
    """An SQLite source file with ``rows`` consenting contacts of ``sync``; returns its URL."""
    url = f"sqlite:///{path.as_posix()}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, "
                    "first_name TEXT, consent BOOLEAN)"
                )
            )
            conn.execute(
                sa.text("INSERT INTO contacts VALUES (:id, :email, :name, 1)"),
                [
                    {"id": i, "email": f"p{i}@{sync}.test", "name": f"P{i}"}
                    for i in range(1, rows + 1)
                ],
            )
    finally:
        engine.dispose()
    return url


def write_config(
    path: Path,
    state_url: str,
    sources: dict[str, str],
    *,
    base_url: str,
    api_key: str,
    list_id: str,
    concurrency: int = 10,
    chunk_size: int = 100,
) -> Path:
    """A configuration with one sync per source, all on one API key and audience."""
    parts = [f'state_url = "{state_url}"\n']
    for name, url in sources.items():
        parts.append(
            f"""
[syncs.{name}]
fields = {{ FNAME = "first_name" }}
[syncs.{name}.source]
url = "{url}"
table = "contacts"
consent_column = "consent"
chunk_size = {chunk_size}
[syncs.{name}.destination]
api_key = "{api_key}"
list_id = "{list_id}"
base_url = "{base_url}"
concurrency = {concurrency}
"""
        )
    path.write_text("".join(parts))
    return path


def cli_env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    env["CAMPAIGN_BRIDGE_CONFIG"] = str(config)
    env["CAMPAIGN_BRIDGE_LOG_FORMAT"] = "json"
    return env


def scalar(url: str, sql: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()
