"""Bulk upsert, insert-ignore, COPY and merge on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from campaign_bridge import db
from campaign_bridge.state import JSONDocument, UTCDateTime, exact_string

T0 = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
metadata = sa.MetaData()
probe = sa.Table(
    "probe_rows",
    metadata,
    sa.Column("tenant", sa.String(20), primary_key=True),
    sa.Column("key", exact_string(50), primary_key=True),
    sa.Column("counter", sa.Integer, nullable=False),
    sa.Column("seen_at", UTCDateTime(), nullable=True),
    sa.Column("doc", JSONDocument(), nullable=True),
    sa.Column("flag", sa.Boolean, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
)


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    # Small statements, so a few dozen rows already cross several chunk boundaries.
    monkeypatch.setattr(db, "_MAX_ROWS_PER_STATEMENT", 7)
    monkeypatch.setattr(db, "_PG_ROWS_PER_STATEMENT", 7)
    engine = db.create_engine(database_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def _row(i: int, **changes: Any) -> dict[str, Any]:
    row = {
        "tenant": "t1",
        "key": f"k{i:03d}",
        "counter": 1,
        "seen_at": T0 + timedelta(minutes=i),
        "doc": {"i": i, "tags": ["a", "ü"]},
        "flag": i % 2 == 0,
        "note": None,
    }
    row.update(changes)
    return row


def _all(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(probe).order_by(probe.c.key)).mappings()
        return {row["key"]: dict(row) for row in rows}


KEYS = ["tenant", "key"]


def test_upsert_inserts_then_updates_across_chunks(engine: sa.Engine) -> None:
    rows = [_row(i) for i in range(40)]
    with engine.begin() as conn:
        db.upsert_rows(conn, probe, rows, KEYS)
    stored = _all(engine)
    assert len(stored) == 40
    assert stored["k007"] == rows[7]  # types round-trip: aware UTC, JSON, bool, NULL

    changed = [_row(i, counter=5, note="new", flag=True) for i in range(30, 50)]
    with engine.begin() as conn:
        db.upsert_rows(conn, probe, changed, KEYS)
    stored = _all(engine)
    assert len(stored) == 50
    assert stored["k029"]["note"] is None
    assert stored["k030"]["note"] == "new"
    assert stored["k031"]["flag"] is True
    assert stored["k049"]["counter"] == 5


def test_upsert_update_columns_accumulate_and_do_nothing(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        db.upsert_rows(conn, probe, [_row(i, note="first") for i in range(10)], KEYS)
        db.upsert_rows(
            conn,
            probe,
            [_row(i, counter=2, note="second") for i in range(10)],
            KEYS,
            ["counter"],
            accumulate_columns=["counter"],
        )
        db.upsert_rows(conn, probe, [_row(i, note="third") for i in range(12)], KEYS, [])
    stored = _all(engine)
    assert len(stored) == 12
    assert {row["counter"] for key, row in stored.items() if key < "k010"} == {3}
    assert {row["note"] for key, row in stored.items() if key < "k010"} == {"first"}
    assert stored["k011"]["note"] == "third"


def test_upsert_keeps_the_last_of_duplicate_keys(engine: sa.Engine) -> None:
    rows = [_row(1, note="old"), _row(2), _row(1, note="newest")]
    with engine.begin() as conn:
        db.upsert_rows(conn, probe, rows, KEYS)
    assert _all(engine)["k001"]["note"] == "newest"


def test_keys_differing_only_in_case_are_distinct_rows(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        db.upsert_rows(conn, probe, [_row(1, key="Abc"), _row(2, key="abc")], KEYS)
    assert set(_all(engine)) == {"Abc", "abc"}


def test_insert_ignore_counts_only_new_rows(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        assert db.insert_ignore_rows(conn, probe, [_row(i) for i in range(20)], KEYS) == 20
    with engine.begin() as conn:
        batch = [_row(i, note="ignored") for i in range(15, 30)]
        assert db.insert_ignore_rows(conn, probe, batch, KEYS) == 10
        assert db.insert_ignore_rows(conn, probe, [], KEYS) == 0
    stored = _all(engine)
    assert len(stored) == 30
    assert stored["k015"]["note"] is None
    assert stored["k025"]["note"] == "ignored"


def test_merge_rows_matches_upsert(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "COPY_THRESHOLD", 1)  # PostgreSQL takes the COPY path
    with engine.begin() as conn:
        db.merge_rows(conn, probe, [_row(i) for i in range(25)], KEYS)
        db.merge_rows(conn, probe, [_row(i, counter=9) for i in range(20, 30)], KEYS)
        db.merge_rows(conn, probe, [_row(1, note="a"), _row(1, note="b")], KEYS, ["note"])
    stored = _all(engine)
    assert len(stored) == 30
    assert stored["k000"] == _row(0)
    assert stored["k001"]["note"] == "b"
    assert stored["k019"]["counter"] == 1
    assert stored["k029"]["counter"] == 9


def test_copy_rows_is_postgresql_only(engine: sa.Engine) -> None:
    rows = [_row(i) for i in range(12)]
    with engine.begin() as conn:
        if conn.dialect.name != "postgresql":
            with pytest.raises(ValueError, match="PostgreSQL"):
                db.copy_rows(conn, probe, rows, list(rows[0]))
            return
        assert db.copy_rows(conn, probe, iter(rows), list(rows[0])) == 12
    assert _all(engine)["k011"] == rows[11]
