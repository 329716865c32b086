"""The three database engines are reachable through our engine factory."""

from __future__ import annotations

import sqlalchemy as sa

from campaign_bridge.db import create_engine, dialect_of


def test_fresh_database_is_empty_and_writable(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            assert sa.inspect(conn).get_table_names() == []
            conn.execute(sa.text("CREATE TABLE probe (id INTEGER PRIMARY KEY, note VARCHAR(20))"))
            conn.execute(sa.text("INSERT INTO probe (id, note) VALUES (1, 'ünïcode ✓')"))
            note = conn.execute(sa.text("SELECT note FROM probe WHERE id = 1")).scalar_one()
        assert note == "ünïcode ✓"
        assert dialect_of(database_url) in {"sqlite", "postgresql", "mysql"}
    finally:
        engine.dispose()
