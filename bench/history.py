"""``campaign-bridge history`` lookup time on a PostgreSQL state store of 1,000,000 contacts.

Prints figures; it is not a test. Builds a fresh database, migrates it, and bulk-loads with COPY:
N contact states, N provider member statuses, a consent-ledger entry per contact (plus an
unsubscribe for one in ten), a rejection for one in a hundred and a stored webhook delivery
for one in five. Then looks up random contacts with :func:`campaign_bridge.history.contact_history`
(what the CLI and the status page call), by address and by source key, and prints the median
and the 99th percentile.

Usage:
  .venv/bin/python bench/history.py                      # 1,000,000 contacts, 500 lookups
  .venv/bin/python bench/history.py --contacts 50000 --lookups 200
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.db import create_engine
from campaign_bridge.history import SyncScope, contact_history

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SYNC = "crm"
LIST = "bench0list"
SCOPES = [SyncScope(SYNC, "mailchimp", LIST, writeback_table="customers")]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def email(i: int) -> str:
    return f"person{i}@bench.test"


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def copy(
    engine: sa.Engine, table: str, columns: list[str], rows: Iterator[tuple[object, ...]]
) -> None:
    started = time.perf_counter()
    count = 0
    raw = engine.raw_connection()
    try:
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(statement) as out:  # type: ignore[attr-defined]
            for row in rows:
                out.write_row(row)
                count += 1
        raw.commit()
    finally:
        raw.close()
    print(f"  {table}: {count:,} rows in {time.perf_counter() - started:.1f} s")


def load(engine: sa.Engine, n: int) -> None:
    run_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO cb_sync_runs (id, sync_name, direction, started_at, finished_at,"
                " status, counts) VALUES (:id, :s, 'push', :t, :t, 'succeeded', '{}')"
            ),
            {"id": run_id, "s": SYNC, "t": T0},
        )
    hashes = [md5(email(i)) for i in range(n)]
    copy(
        engine,
        "cb_contact_state",
        [
            "sync_name",
            "source_key",
            "email_hash",
            "provider_member_id",
            "content_hash",
            "pushed_at",
            "provider_status",
            "managed",
            "last_run_id",
        ],
        (
            (SYNC, f"k{i}", hashes[i], hashes[i], "c" * 32, T0, "subscribed", True, run_id)
            for i in range(n)
        ),
    )
    copy(
        engine,
        "cb_member_status",
        ["provider", "list_id", "member_id", "email", "status", "last_changed", "updated_at"],
        (
            (
                "mailchimp",
                LIST,
                hashes[i],
                email(i),
                "unsubscribed" if i % 10 == 0 else "subscribed",
                T0,
                T0,
            )
            for i in range(n)
        ),
    )

    def ledger() -> Iterator[tuple[object, ...]]:
        for i in range(n):
            yield (
                SYNC,
                "mailchimp",
                hashes[i],
                f"k{i}",
                None,
                "subscribed",
                "push",
                None,
                run_id,
                T0,
            )
            if i % 10 == 0:
                yield (
                    SYNC,
                    "mailchimp",
                    hashes[i],
                    f"k{i}",
                    "subscribed",
                    "unsubscribed",
                    "webhook",
                    "manual",
                    None,
                    T0 + timedelta(days=1),
                )

    copy(
        engine,
        "cb_consent_ledger",
        [
            "sync_name",
            "provider",
            "email_hash",
            "source_key",
            "old_status",
            "new_status",
            "origin",
            "reason",
            "run_id",
            "occurred_at",
        ],
        ledger(),
    )
    copy(
        engine,
        "cb_rejected_records",
        [
            "sync_name",
            "source_key",
            "email_hash",
            "content_hash",
            "reason_code",
            "message",
            "attempts",
            "first_seen",
            "last_seen",
            "last_run_id",
        ],
        (
            (SYNC, f"k{i}", hashes[i], "d" * 32, "invalid_email", "bench", 1, T0, T0, run_id)
            for i in range(0, n, 100)
        ),
    )
    copy(
        engine,
        "cb_webhook_events",
        [
            "provider",
            "dedupe_key",
            "event_type",
            "list_id",
            "fired_at",
            "received_at",
            "payload",
            "applied_at",
            "email_hash",
        ],
        (
            (
                "mailchimp",
                md5(f"delivery{i}") * 2,
                "unsubscribe",
                LIST,
                T0,
                T0,
                json.dumps({"type": "unsubscribe", "data": {"email": email(i)}}),
                T0,
                hashes[i],
            )
            for i in range(0, n, 5)
        ),
    )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))


def measure(engine: sa.Engine, queries: list[str], label: str) -> None:
    for query in queries[:20]:  # warm the connection pool and the plan cache
        contact_history(engine, SCOPES, query)
    times = []
    found = 0
    for query in queries:
        started = time.perf_counter()
        history = contact_history(engine, SCOPES, query)
        times.append((time.perf_counter() - started) * 1000)
        found += history.found
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"  {label}: {len(times)} lookups, median {statistics.median(times):.2f} ms, "
        f"p99 {p99:.2f} ms, max {times[-1]:.2f} ms ({found} found)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=500)
    args = parser.parse_args()
    admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    name = f"cb_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.make_url(SERVER).set(database=name).render_as_string(False)
    engine = create_engine(url)
    try:
        migrations.upgrade(url)
        print(f"loading {args.contacts:,} contacts into PostgreSQL ({name})")
        load(engine, args.contacts)
        rng = random.Random(7)
        picks = [rng.randrange(args.contacts) for _ in range(args.lookups)]
        print("contact_history (the CLI's and the status page's lookup):")
        measure(engine, [email(i) for i in picks], "by email address")
        measure(engine, [f"k{i}" for i in picks], "by source key")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


if __name__ == "__main__":
    main()
