"""Migrations on SQLite, PostgreSQL and MariaDB: up, down, up again, and no drift from the model."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.db import create_engine
from campaign_bridge.errors import StateStoreError


def _all_tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    """Our tables and the version table (procrastinate's job queue tables aside)."""
    return {t for t in _all_tables(url) if not t.startswith("procrastinate_")}


PROCRASTINATE_TABLES = {
    "procrastinate_jobs",
    "procrastinate_events",
    "procrastinate_periodic_defers",
    "procrastinate_workers",
}


def _execute(url: str, sql: str) -> None:
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_round_trip_without_drift(database_url: str) -> None:
    model_tables = set(migrations.target_metadata().tables)
    assert "cb_member_status" in model_tables

    assert migrations.current(database_url) is None
    assert not migrations.is_current(database_url)

    migrations.upgrade(database_url)
    assert migrations.current(database_url) == migrations.head()
    assert migrations.is_current(database_url)
    assert _tables(database_url) == model_tables | {migrations.VERSION_TABLE}
    assert migrations.drift(database_url) == []  # the migrations produce exactly the model
    # procrastinate's job queue (worker mode) exists on PostgreSQL only, and is not drift
    queue_tables = _all_tables(database_url) & PROCRASTINATE_TABLES
    postgres = database_url.startswith("postgresql")
    assert queue_tables == (PROCRASTINATE_TABLES if postgres else set())

    migrations.downgrade(database_url, "base")
    assert migrations.current(database_url) is None
    assert _all_tables(database_url) == {migrations.VERSION_TABLE}

    migrations.upgrade(database_url)
    assert migrations.is_current(database_url)
    assert migrations.drift(database_url) == []


def test_drift_reports_differences_and_ignores_foreign_tables(database_url: str) -> None:
    # A table of the application sharing the database is not ours and is never drift.
    _execute(database_url, "CREATE TABLE app_customers (id INTEGER PRIMARY KEY)")
    added = {line.split()[1] for line in migrations.drift(database_url) if "add_table" in line}
    assert added == set(migrations.target_metadata().tables)

    migrations.upgrade(database_url)
    assert migrations.drift(database_url) == []

    _execute(database_url, "ALTER TABLE cb_locks ADD note VARCHAR(20)")
    _execute(database_url, "CREATE TABLE cb_stray (id INTEGER PRIMARY KEY)")
    differences = migrations.drift(database_url)
    assert any("remove_column" in line and "cb_locks.note" in line for line in differences)
    assert any(line == "remove_table cb_stray" for line in differences)


def test_upgrade_creates_parent_directories_for_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "data" / "nested" / "state.db"
    url = f"sqlite:///{path.as_posix()}"
    assert migrations.current(url) is None
    assert not path.parent.exists()  # asking for the revision creates nothing
    migrations.upgrade(url)
    assert path.is_file()
    assert migrations.is_current(url)


def test_upgrade_to_a_named_revision_and_unknown_revisions(sqlite_url: str) -> None:
    migrations.upgrade(sqlite_url, "0001")
    assert migrations.current(sqlite_url) == "0001"
    with pytest.raises(StateStoreError, match="newer campaign-bridge"):
        migrations.upgrade(sqlite_url, "9999")


def test_database_newer_than_the_package_is_explained(sqlite_url: str) -> None:
    migrations.upgrade(sqlite_url)
    _execute(sqlite_url, f"UPDATE {migrations.VERSION_TABLE} SET version_num = '9999'")
    assert migrations.current(sqlite_url) == "9999"
    assert not migrations.is_current(sqlite_url)
    with pytest.raises(StateStoreError, match="upgrade campaign-bridge"):
        migrations.upgrade(sqlite_url)


def test_unreachable_server_is_a_state_store_error_without_password() -> None:
    url = "postgresql://bridge:s3cret-pw@127.0.0.1:1/state"
    with pytest.raises(StateStoreError) as caught:
        migrations.upgrade(url)
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert "127.0.0.1:1" in message
    assert "Check that the server is running" in message


def test_missing_server_database_is_a_state_store_error(postgresql_url: str) -> None:
    url = sa.make_url(postgresql_url).set(database="cb_no_such_database").render_as_string(False)
    with pytest.raises(StateStoreError, match="cb_no_such_database"):
        migrations.current(url)


def test_an_unusable_url_is_a_state_store_error() -> None:
    for url in ("not a url", "oracle+nosuchdriver://u@h/db"):
        with pytest.raises(StateStoreError, match="not a database URL"):
            migrations.upgrade(url)
        with pytest.raises(StateStoreError, match="not a database URL"):
            migrations.current(url)


def test_concurrent_upgrades_are_serialised(database_url: str) -> None:
    """Two services starting at once both migrate; neither fails, the schema is made once."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def upgrade() -> None:
        try:
            barrier.wait()
            migrations.upgrade(database_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert migrations.is_current(database_url)
    assert migrations.drift(database_url) == []


def test_consent_ownership_migration_keeps_ownership_only_where_the_ledger_shows_it(
    database_url: str,
) -> None:
    """0004: ``managed`` becomes "the bridge created it" (from the ledger's create rows), and
    ``last_consent`` comes from the consent mark ending each content hash."""
    migrations.upgrade(database_url, "0003")
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            for key, digest, mark in (
                ("1", "a" * 32, "t"),
                ("2", "b" * 32, "f"),
                ("3", "c" * 32, "n"),
            ):
                conn.execute(
                    sa.text(
                        "INSERT INTO cb_contact_state (sync_name, source_key, email_hash, "
                        "content_hash, managed) VALUES ('crm', :k, :h, :c, :m)"
                    ),
                    {"k": key, "h": digest, "c": "x" * 32 + mark, "m": True},
                )
            conn.execute(
                sa.text(
                    "INSERT INTO cb_consent_ledger (sync_name, provider, email_hash, source_key, "
                    "old_status, new_status, origin, occurred_at) VALUES ('crm', 'mailchimp', "
                    ":h, '1', NULL, 'subscribed', 'push', :t)"
                ),
                {"h": "a" * 32, "t": dt.datetime(2026, 1, 1)},
            )
        migrations.upgrade(database_url)
        with engine.connect() as conn:
            found = conn.execute(
                sa.text(
                    "SELECT source_key, managed, last_consent FROM cb_contact_state "
                    "ORDER BY source_key"
                )
            ).all()
    finally:
        engine.dispose()
    as_values = [(k, bool(m), None if c is None else bool(c)) for k, m, c in found]
    assert as_values == [("1", True, True), ("2", False, False), ("3", False, None)]


def test_head_and_revisions_read_without_alembic_agree_with_alembic() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations._config(None))
    assert migrations.head() == script.get_current_head()
    assert migrations.known_revisions() == {r.revision for r in script.walk_revisions()}


def test_current_revision_is_read_with_one_query(database_url: str) -> None:
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            assert migrations.current_revision(conn) is None
        migrations.upgrade(database_url, "0002")
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": migrations.VERSION_TABLE}
            )
            assert migrations.current_revision(conn) == context.get_current_revision() == "0002"
    finally:
        engine.dispose()


def test_operate_history_fills_the_address_hash_of_stored_webhook_events(
    database_url: str,
) -> None:
    import hashlib
    import json
    from datetime import datetime

    migrations.upgrade(database_url, "0004_consent_ownership")
    engine = create_engine(database_url, poolclass=sa.pool.NullPool)
    events = sa.table(
        "cb_webhook_events",
        *(sa.column(name) for name in ("id", "provider", "dedupe_key", "event_type")),
        *(sa.column(name) for name in ("received_at", "payload", "email_hash")),
    )
    payloads = {
        "a": {"type": "unsubscribe", "data": {"email": " Ann@Example.com "}},
        "b": {"type": "upemail", "data": {"old_email": "x@y.z", "new_email": "new@y.z"}},
        "c": {"type": "campaign", "data": {"id": "c1"}},
        "d": "not json",
    }
    try:
        with engine.begin() as conn:
            conn.execute(
                events.insert(),
                [
                    {
                        "provider": "mailchimp",
                        "dedupe_key": key,
                        "event_type": "x",
                        "received_at": datetime(2026, 1, 1),
                        "payload": value if isinstance(value, str) else json.dumps(value),
                    }
                    for key, value in payloads.items()
                ],
            )
        migrations.upgrade(database_url)
        with engine.connect() as conn:
            found = dict(conn.execute(sa.select(events.c.dedupe_key, events.c.email_hash)).all())
    finally:
        engine.dispose()

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    assert found == {"a": md5("ann@example.com"), "b": md5("new@y.z"), "c": None, "d": None}


def test_push_intents_left_by_a_crashed_run_survive_0010_both_ways(database_url: str) -> None:
    """0010 regroups per-member intent rows into one row per provider call and back: an
    interrupted run's intents are still there for the next run to settle."""
    from campaign_bridge._push_state import PushState

    migrations.upgrade(database_url, "0009_member_identity")
    when = "'2026-12-01 10:00:00'"
    for digest, key, new, run in (
        ("a" * 32, "1", "subscribed", "r1"),
        ("b" * 32, "2", "pending", "r1"),
    ):
        _execute(
            database_url,
            "INSERT INTO cb_push_intents (sync_name, email_hash, source_key, old_status, "
            f"new_status, reason, consent, run_id, created_at) VALUES ('crm', '{digest}', "
            f"'{key}', NULL, '{new}', 'new contact', true, '{run}', {when})",
        )
    migrations.upgrade(database_url)
    store = PushState(database_url)
    try:
        intents = sorted(store.load_intents("crm"), key=lambda i: i.email_hash)
    finally:
        store.close()
    assert [(i.email_hash, i.source_key, i.new_status, i.consent) for i in intents] == [
        ("a" * 32, "1", "subscribed", True),
        ("b" * 32, "2", "pending", True),
    ]
    assert len({i.slice_id for i in intents}) == 1  # one run, one time: one row
    assert intents[0].created_at == dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC)
    migrations.downgrade(database_url, "0009_member_identity")
    engine = create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT email_hash, new_status, run_id FROM cb_push_intents ORDER BY 1")
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("a" * 32, "subscribed", "r1"), ("b" * 32, "pending", "r1")]


def test_0012_forgets_provider_ids_that_are_only_the_address_hash(database_url: str) -> None:
    """Rows an earlier adapter saved with the address's hash as the provider's id (listmonk
    before it stored subscriber ids) get NULL there; real provider ids are kept."""
    migrations.upgrade(database_url, "0011_member_status_count")
    legacy, other = "a" * 32, "b" * 32
    when = "'2026-12-01 10:00:00'"
    for provider, key, pid in (("listmonk", legacy, legacy), ("listmonk", other, "42")):
        _execute(
            database_url,
            "INSERT INTO cb_member_status (provider, list_id, member_id, email, status, "
            f"updated_at, provider_member_id) VALUES ('{provider}', '1', '{key}', "
            f"'{key}@example.org', 'subscribed', {when}, '{pid}')",
        )
    for source_key, key, pid in (("1", legacy, legacy), ("2", other, "42")):
        _execute(
            database_url,
            "INSERT INTO cb_contact_state (sync_name, source_key, email_hash, "
            f"provider_member_id, managed) VALUES ('crm', '{source_key}', '{key}', '{pid}', "
            "true)",
        )
    migrations.upgrade(database_url)
    engine = create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            members = conn.execute(
                sa.text("SELECT member_id, provider_member_id FROM cb_member_status ORDER BY 1")
            ).all()
            contacts = conn.execute(
                sa.text("SELECT source_key, provider_member_id FROM cb_contact_state ORDER BY 1")
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in members] == [(legacy, None), (other, "42")]
    assert [tuple(r) for r in contacts] == [("1", None), ("2", "42")]


def _intents_compression(url: str) -> str:
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return str(
                conn.execute(
                    sa.text(
                        "SELECT attcompression FROM pg_attribute WHERE attname = 'intents' "
                        "AND attrelid = 'cb_push_intents'::regclass"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_0014_compresses_push_intents_with_lz4_and_back(postgresql_url: str) -> None:
    """Where the server offers LZ4, new intents documents use it; the downgrade puts the
    server's default back; a document stored under LZ4 reads back the same after both."""
    migrations.upgrade(postgresql_url)
    engine = create_engine(postgresql_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            offered = conn.execute(
                sa.text(
                    "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                    "WHERE name = 'default_toast_compression'"
                )
            ).scalar()
    finally:
        engine.dispose()
    if not offered:
        pytest.skip("this PostgreSQL server offers no LZ4 compression")
    assert _intents_compression(postgresql_url) == "l"
    entries = [[f"{i:032x}", str(i), None, "subscribed", None, True] for i in range(2000)]
    _execute(
        postgresql_url,
        "INSERT INTO cb_push_intents (sync_name, slice_id, created_at, intents) VALUES "
        f"('crm', 's1', now(), '{json.dumps(entries)}')",
    )
    migrations.downgrade(postgresql_url, "0013_source_address")
    assert _intents_compression(postgresql_url) == ""
    migrations.upgrade(postgresql_url)
    engine = create_engine(postgresql_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            method, stored = conn.execute(
                sa.text("SELECT pg_column_compression(intents), intents FROM cb_push_intents")
            ).one()
    finally:
        engine.dispose()
    assert (method, stored) == ("lz4", entries)
