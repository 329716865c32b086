"""The engine factory's pure helpers and the SQL the bulk fast paths write, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from campaign_bridge import db
from campaign_bridge.state import JSONDocument, UTCDateTime, exact_string

DIALECTS = {
    "sqlite": sqlite.pysqlite.dialect(),
    "postgresql": postgresql.psycopg.dialect(),
    "mysql": mysql.pymysql.dialect(),
}

TABLE = sa.Table(
    "cb_probe",
    sa.MetaData(),
    sa.Column("k", sa.String(20), primary_key=True),
    sa.Column("n", sa.Integer),
    sa.Column("note", sa.Text),
)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("mysql://u@h/db", "mysql+pymysql"),
        ("mariadb://u@h/db", "mysql+pymysql"),
        ("sqlite:///x.db", "sqlite"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
    ],
)
def test_normalize_url_picks_our_drivers(url: str, driver: str) -> None:
    assert db.normalize_url(url).drivername == driver


def test_mysql_urls_get_utf8mb4_unless_told_otherwise() -> None:
    assert db.normalize_url("mysql://u@h/db").query["charset"] == "utf8mb4"
    assert db.normalize_url("mysql://u@h/db?charset=latin1").query["charset"] == "latin1"


def test_dialect_of_groups_mariadb_with_mysql() -> None:
    assert db.dialect_of("mariadb://u@h/db") == "mysql"
    assert db.dialect_of("postgres://u@h/db") == "postgresql"
    assert db.dialect_of("sqlite://") == "sqlite"


def test_describe_database_error_never_shows_the_password() -> None:
    url = "postgresql://bridge:pa55word@db.internal:5432/state"
    exc = RuntimeError('password "pa55word" rejected for user "bridge"\nsecond line')
    message = db.describe_database_error(url, "reach", exc)
    assert "pa55word" not in message
    assert "db.internal:5432" in message
    assert "second line" not in message
    assert message.startswith("cannot reach the database at postgresql://bridge:***@db.internal")


# --- the SQL of the bulk paths ------------------------------------------------------------


def test_upsert_sql_per_dialect() -> None:
    lite = db._bulk_sql(DIALECTS["sqlite"], TABLE, ("k", "n"), 2, ("k",), ("n",), "upsert")
    assert lite == (
        "INSERT INTO cb_probe (k, n) VALUES (?, ?), (?, ?) "
        "ON CONFLICT (k) DO UPDATE SET n = excluded.n"
    )
    my = db._bulk_sql(DIALECTS["mysql"], TABLE, ("k", "n"), 1, ("k",), ("+n",), "upsert")
    assert my == (
        "INSERT INTO cb_probe (k, n) VALUES (%s, %s) "
        "ON DUPLICATE KEY UPDATE n = cb_probe.n + VALUES(n)"
    )
    pg = db._unnest_sql(DIALECTS["postgresql"], TABLE, ("k", "n"), ("k",), ("n",), "upsert")
    assert pg == (
        "INSERT INTO cb_probe (k, n) SELECT * FROM unnest(%s::VARCHAR(20)[], %s::INTEGER[]) "
        "ON CONFLICT (k) DO UPDATE SET n = excluded.n"
    )


def test_insert_ignore_sql_per_dialect() -> None:
    my = db._bulk_sql(DIALECTS["mysql"], TABLE, ("k",), 2, ("k",), (), "ignore")
    assert my == "INSERT IGNORE INTO cb_probe (k) VALUES (%s), (%s)"
    lite = db._bulk_sql(DIALECTS["sqlite"], TABLE, ("k",), 1, ("k",), (), "ignore")
    assert lite == "INSERT INTO cb_probe (k) VALUES (?) ON CONFLICT (k) DO NOTHING"
    # An upsert with nothing to update must not use IGNORE on MySQL: it would hide errors.
    noop = db._bulk_sql(DIALECTS["mysql"], TABLE, ("k", "n"), 1, ("k",), (), "upsert")
    assert noop.endswith("ON DUPLICATE KEY UPDATE k = VALUES(k)")
    assert "IGNORE" not in noop


def _rows(count: int, note: str = "") -> list[dict[str, object]]:
    return [{"k": f"k{i}", "n": i, "note": note} for i in range(count)]


def test_chunks_respect_the_sqlite_parameter_limit() -> None:
    wide = [{f"c{j}": j for j in range(100)} for _ in range(1000)]
    chunks = list(db._chunks(DIALECTS["sqlite"], wide, 100))
    assert [len(chunk) for chunk in chunks] == [327, 327, 327, 19]
    assert all(len(chunk) * 100 <= 32766 for chunk in chunks)


def test_chunks_cap_rows_per_statement() -> None:
    chunks = list(db._chunks(DIALECTS["postgresql"], _rows(4500), 3))
    assert [len(chunk) for chunk in chunks] == [2000, 2000, 500]


def test_mysql_chunks_stay_under_the_packet_budget() -> None:
    rows = _rows(50, note="x" * 200_000)  # about 10 MB in all
    chunks = list(db._chunks(DIALECTS["mysql"], rows, 3))
    assert sum(len(chunk) for chunk in chunks) == 50
    assert len(chunks) == 3
    for chunk in chunks:
        assert sum(len(str(v)) for row in chunk for v in row.values()) <= 4 * 1024 * 1024


def test_a_single_oversized_row_still_gets_its_own_chunk() -> None:
    chunks = list(db._chunks(DIALECTS["mysql"], _rows(2, note="x" * 5_000_000), 3))
    assert [len(chunk) for chunk in chunks] == [1, 1]


def test_duplicate_keys_collapse_to_the_last_row_in_first_seen_order() -> None:
    rows = [{"k": "a", "n": 1}, {"k": "b", "n": 2}, {"k": "a", "n": 3}]
    assert db._last_per_key(rows, ["k"]) == [{"k": "a", "n": 3}, {"k": "b", "n": 2}]


def test_rows_must_share_their_columns() -> None:
    with pytest.raises(ValueError, match="same columns"):
        db._columns([{"k": "a", "n": 1}, {"k": "b", "note": "x"}])
    with pytest.raises(ValueError, match="not present"):
        db._update_columns(["k", "n"], ["k"], ["note"])
    assert db._update_columns(["k", "n", "note"], ["k"], None) == ["n", "note"]


# --- the state store's column types ---------------------------------------------------------


@pytest.mark.parametrize("name", ["sqlite", "postgresql", "mysql"])
def test_utc_datetime_stores_utc_and_refuses_naive_values(name: str) -> None:
    dialect = DIALECTS[name]
    column = UTCDateTime()
    local = datetime(2026, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=-4)))
    stored = column.process_bind_param(local, dialect)
    assert stored is not None
    assert stored.replace(tzinfo=UTC) == datetime(2026, 5, 1, 14, 0, tzinfo=UTC)
    assert (stored.tzinfo is not None) == (name == "postgresql")
    with pytest.raises(ValueError, match="naive"):
        column.process_bind_param(datetime(2026, 5, 1, 10, 0), dialect)
    with pytest.raises(TypeError):
        column.process_bind_param("2026-05-01", dialect)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["sqlite", "postgresql", "mysql"])
def test_utc_datetime_always_reads_back_aware_utc(name: str) -> None:
    dialect = DIALECTS[name]
    column = UTCDateTime()
    naive = column.process_result_value(datetime(2026, 5, 1, 14, 0), dialect)
    assert naive == datetime(2026, 5, 1, 14, 0, tzinfo=UTC)
    assert naive is not None
    assert naive.tzinfo is UTC
    shifted = datetime(2026, 5, 1, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    converted = column.process_result_value(shifted, dialect)
    assert converted is not None
    assert converted.tzinfo is UTC
    assert converted.hour == 14
    assert column.process_result_value(None, dialect) is None


def test_column_types_per_dialect() -> None:
    def ddl(type_: sa.types.TypeEngine[object], name: str) -> str:
        return type_.compile(dialect=DIALECTS[name])

    assert ddl(UTCDateTime(), "postgresql") == "TIMESTAMP WITH TIME ZONE"
    assert ddl(UTCDateTime(), "mysql") == "DATETIME(6)"
    assert ddl(JSONDocument(), "mysql") == "LONGTEXT"
    assert ddl(JSONDocument(), "postgresql") == "JSON"
    assert "utf8mb4_bin" in ddl(exact_string(255), "mysql")
    assert ddl(exact_string(255), "postgresql") == "VARCHAR(255)"


def test_json_document_serialises_itself_on_mysql_only() -> None:
    column = JSONDocument()
    value = {"b": [1, 2], "a": None}
    assert column.process_bind_param(value, DIALECTS["mysql"]) == '{"a":null,"b":[1,2]}'
    assert column.process_result_value('{"a":null,"b":[1,2]}', DIALECTS["mysql"]) == value
    assert column.process_bind_param(value, DIALECTS["postgresql"]) is value


def test_a_refused_value_is_not_blamed_on_the_connection() -> None:
    """Defect 1: a NUL refused by PostgreSQL was reported as "check the server is running"."""
    import psycopg
    import sqlalchemy as sa

    from campaign_bridge.db import describe_database_error

    refused = sa.exc.DataError(
        "INSERT ...",
        {},
        psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
    )
    text = describe_database_error("postgresql://u:pw@db/x", "write to", refused)
    assert "refused a value" in text
    assert "running" not in text
    down = sa.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused"))
    assert "Check that the server is running" in describe_database_error(
        "postgresql://u:pw@db/x", "reach", down
    )
