"""Streaming reads of the user's source on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from campaign_bridge.config import SourceConfig
from campaign_bridge.db import create_engine
from campaign_bridge.errors import ConfigurationError, SourceError
from campaign_bridge.mapping import email_hash
from campaign_bridge.source import Source, SourceCursor

COLUMNS = ["id", "email", "first_name", "nick", "updated_at"]
BASE = dt.datetime(2025, 1, 1, 12, 0, 0)


def make_table(url: str, rows: int = 250) -> sa.Engine:
    engine = create_engine(url)
    meta = sa.MetaData()
    table = sa.Table(
        "contacts",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320)),
        sa.Column("first_name", sa.String(300)),
        sa.Column("nick", sa.LargeBinary),
        sa.Column("updated_at", sa.DateTime),
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {
                    "id": i,
                    "email": f"user{i}@mail.test",
                    "first_name": f"User {i}",
                    "nick": f"n{i}".encode(),
                    "updated_at": BASE + dt.timedelta(hours=i),
                }
                for i in range(1, rows + 1)
            ],
        )
    return engine


def config(url: str, **extra: object) -> SourceConfig:
    data: dict[str, object] = {"url": url, "table": "contacts", "chunk_size": 100}
    data.update(extra)
    return SourceConfig.model_validate(data)


def read_all(source: Source, **kwargs: object) -> tuple[list[dict[str, object]], list[object]]:
    rows: list[dict[str, object]] = []
    rejections: list[object] = []
    for chunk in source.iter_chunks(COLUMNS, **kwargs):  # type: ignore[arg-type]
        assert len(chunk.rows) + len(chunk.rejections) <= 100
        rows += chunk.rows
        rejections += chunk.rejections
    return rows, rejections


def test_streams_every_row_in_key_order_in_chunks(database_url: str) -> None:
    make_table(database_url).dispose()
    source = Source(config(database_url))
    source.check_columns(COLUMNS)
    rows, rejections = read_all(source)
    assert rejections == []
    assert [r["id"] for r in rows] == list(range(1, 251))
    assert rows[0]["nick"] == "n1"  # bytes decoded to text
    assert sorted(k for batch in source.iter_keys(batch=60) for k in batch) == sorted(
        str(i) for i in range(1, 251)
    )
    assert source.existing_keys(["1", "250", "251", "x"]) == {"1", "250"}
    source.close()


def test_incremental_scan_reads_only_rows_after_the_cursor(database_url: str) -> None:
    make_table(database_url).dispose()
    source = Source(config(database_url, updated_at_column="updated_at"))
    source.check_columns(COLUMNS)
    newest = Source.cursor_text(BASE + dt.timedelta(hours=240))
    assert newest is not None
    # A cursor written by an older version: the overlap window before `newest` is read again.
    rows, _ = read_all(source, since=SourceCursor(newest), overlap=dt.timedelta(minutes=90))
    assert [r["id"] for r in rows] == list(range(239, 251))
    # With the read time known, rows stamped at `newest` are not read again...
    read_at = Source.cursor_text(BASE + dt.timedelta(hours=1000))
    rows, _ = read_all(source, since=SourceCursor(newest, read_at))
    assert [r["id"] for r in rows] == list(range(241, 251))
    # ...but rows stamped shortly before the last read began (a late commit) are.
    read_at = Source.cursor_text(BASE + dt.timedelta(hours=240, minutes=30))
    rows, _ = read_all(source, since=SourceCursor(newest, read_at), overlap=dt.timedelta(hours=1))
    assert [r["id"] for r in rows] == list(range(240, 251))
    source.close()


def test_a_scan_records_the_source_clock_it_began_at(database_url: str) -> None:
    make_table(database_url, rows=3).dispose()
    source = Source(config(database_url, updated_at_column="updated_at"))
    source.check_columns(COLUMNS)
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    read_all(source)
    assert source.read_at is not None
    clock = dt.datetime.fromisoformat(source.read_at)
    if clock.tzinfo is not None:
        clock = clock.astimezone(dt.UTC).replace(tzinfo=None)
    # MariaDB answers in the session's time zone; allow for it and for a second's rounding.
    assert abs(clock - before) < dt.timedelta(hours=14)
    cursor = SourceCursor("2025-01-01 00:00:00", source.read_at)
    assert SourceCursor.parse(cursor.to_text()) == cursor
    assert SourceCursor.parse("2025-01-01 00:00:00") == SourceCursor("2025-01-01 00:00:00")
    source.close()


def test_query_source_and_case_insensitive_columns(database_url: str) -> None:
    make_table(database_url).dispose()
    query = "SELECT id, email, first_name, nick, updated_at FROM contacts WHERE id <= 10"
    source = Source(config(database_url, table=None, query=query + ";", key_column="ID"))
    source.check_columns(["ID", "EMAIL"])
    chunks = list(source.iter_chunks(["ID", "EMAIL"], limit=5))
    assert [r["ID"] for c in chunks for r in c.rows] == [1, 2, 3, 4, 5]
    source.close()


def test_missing_columns_are_all_reported_before_reading(database_url: str) -> None:
    make_table(database_url).dispose()
    source = Source(config(database_url))
    with pytest.raises(ConfigurationError) as caught:
        source.check_columns(["id", "mail", "nope"])
    assert len(caught.value.problems) == 2
    with pytest.raises(ConfigurationError):
        Source(config(database_url, table="contacts; drop table x")).check_columns(["id"])
    source.close()


def test_unreadable_source_is_a_source_error(sqlite_url: str) -> None:
    source = Source(config(sqlite_url, table="missing_table"))
    with pytest.raises(SourceError) as caught:
        source.check_columns(["id"])
    assert "source" in str(caught.value)


def test_bad_bytes_become_rejections_not_crashes(database_url: str) -> None:
    engine = make_table(database_url, rows=20)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE contacts SET nick = :b WHERE id = 3"), {"b": b"\xff\xfe"})
        conn.execute(sa.text("UPDATE contacts SET nick = :b WHERE id = 4"), {"b": b"a\x00b"})
        if engine.dialect.name != "postgresql":  # PostgreSQL text cannot hold NUL at all
            conn.execute(
                sa.text("UPDATE contacts SET first_name = :v WHERE id = 5"), {"v": "a\x00"}
            )
        if engine.dialect.name == "sqlite":  # SQLite text may hold any bytes
            conn.execute(
                sa.text("UPDATE contacts SET first_name = CAST(x'41ff42' AS TEXT) WHERE id = 6")
            )
    engine.dispose()
    source = Source(config(database_url))
    source.check_columns(COLUMNS)
    rows, rejections = read_all(source)
    rejected = {r.key: r for r in rejections}  # type: ignore[attr-defined]
    expected = {"3", "4"} | ({"5"} if "postgresql" not in database_url else set())
    if database_url.startswith("sqlite"):
        expected.add("6")
    assert set(rejected) == expected
    assert {r.reason_code for r in rejected.values()} == {"invalid_encoding"}
    assert len(rows) == 20 - len(expected)
    source.close()


def test_a_lookup_by_address_compares_addresses_as_the_bridge_does(database_url: str) -> None:
    """Mirror mode asks which members' present addresses a source row still holds (F21). A
    row holds an address whatever its case or surrounding whitespace, Unicode spaces included
    (the bridge trims and lowercases); an address inside other text, or one whose letter is
    accented, is not held; more than one query's worth of addresses is looked up in batches."""
    engine = make_table(database_url, rows=1500)
    table = sa.table("contacts", sa.column("id"), sa.column("email"))
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == 1).values(email="  User1@Mail.TEST\t"))
        conn.execute(table.update().where(table.c.id == 2).values(email="\xa0user2@mail.test\r\n"))
        conn.execute(table.update().where(table.c.id == 3).values(email="xuser3@mail.test"))
        conn.execute(table.update().where(table.c.id == 4).values(email="user 4@mail.test"))
        conn.execute(table.update().where(table.c.id == 5).values(email=None))
        conn.execute(table.update().where(table.c.id == 6).values(email="\u3000user6@mail.test"))
        conn.execute(table.update().where(table.c.id == 8).values(email="us\u00e9r8@mail.test"))
    engine.dispose()
    source = Source(config(database_url))
    source.check_columns(COLUMNS)
    asked = [f"user{i}@mail.test" for i in range(1, 1601)]  # 1500 held, 100 not
    held = source.addresses_present(asked)
    expected = {email_hash(a) for a in asked[5:1500]} - {email_hash("user8@mail.test")} | {
        email_hash("user1@mail.test"),
        email_hash("user2@mail.test"),
    }
    assert held == expected
    assert source.addresses_present(["USER7@mail.test "]) == {email_hash("user7@mail.test")}
    assert source.addresses_present([]) == set()
    source.close()


def test_a_lookup_by_key_gives_each_rows_present_address(database_url: str) -> None:
    """Push asks where the rows holding some keys are now (F22: is another row renaming its
    member away?). The address is hashed as the bridge hashes addresses (trimmed,
    lowercased); a row with no address says None; keys not in the source are left out; more
    than one query's worth of keys is looked up in batches."""
    engine = make_table(database_url, rows=1200)
    table = sa.table("contacts", sa.column("id"), sa.column("email"))
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == 1).values(email="  User1@Mail.TEST\t"))
        conn.execute(table.update().where(table.c.id == 2).values(email=None))
    engine.dispose()
    source = Source(config(database_url))
    source.check_columns(COLUMNS)
    found = source.addresses_of_keys([str(i) for i in range(1, 1301)] + ["x"])
    assert len(found) == 1200
    assert found["1"] == email_hash("user1@mail.test")
    assert found["2"] is None
    assert found["1100"] == email_hash("user1100@mail.test")
    assert source.addresses_of_keys([]) == {}
    source.close()
