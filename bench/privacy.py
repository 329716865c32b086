"""Privacy benchmark on PostgreSQL: erasing many people, and purging a large activity table.

Prints figures; it is not a test. In a fresh PostgreSQL database (rows made with
generate_series, so setup is quick):

  erasure  --people N of --contacts M: every person has a contact state, a member status, a
           ledger row, --activity-per-person activity rows and one webhook delivery; the
           sandbox (real HTTP) holds them as members. ``erasure_bulk.forget_many`` deletes them
           at the provider and in every table, ``--batch`` people per transaction.
  purge    --rows activity rows past retention (plus --keep recent ones); ``retention.purge``
           deletes them ``--batch-rows`` per transaction.

For both, "longest transaction" is the longest any single transaction (and so any lock it
took) lasted: what a concurrent push, pull or webhook could have waited for at worst.

Usage:
  .venv/bin/python bench/privacy.py                               # 10,000 people; 10,000,000 rows
  .venv/bin/python bench/privacy.py --people 1000 --rows 200000   # a quick run
  .venv/bin/python bench/privacy.py --only purge --rows 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaign_bridge import erasure_bulk, migrations
from campaign_bridge.config import RetentionConfig, Settings
from campaign_bridge.db import create_engine
from campaign_bridge.retention import purge

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    name = f"cb_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield sa.make_url(ADMIN).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def timed(label: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = fn()
    print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)
    return result


def email(i: int) -> str:
    return f"person{i}@bench.test"


# --- erasure ----------------------------------------------------------------------------------

_PEOPLE_SQL = """
INSERT INTO cb_contact_state (sync_name, source_key, email_hash, content_hash, provider_status,
                              managed, last_run_id)
SELECT 'crm', g::text, md5('person' || g || '@bench.test'), md5(g::text), 'subscribed', true, NULL
FROM generate_series(0, :m - 1) g;
INSERT INTO cb_member_status (provider, list_id, member_id, email, status, updated_at)
SELECT 'mailchimp', :list, md5('person' || g || '@bench.test'), 'person' || g || '@bench.test',
       'subscribed', now()
FROM generate_series(0, :m - 1) g;
INSERT INTO cb_consent_ledger (sync_name, provider, email_hash, source_key, old_status,
                               new_status, origin, reason, occurred_at)
SELECT 'crm', 'mailchimp', md5('person' || g || '@bench.test'), g::text, NULL, 'subscribed',
       'push', 'consent given', now()
FROM generate_series(0, :m - 1) g;
INSERT INTO cb_email_activity (event_id, provider, campaign_id, member_id, action, occurred_at,
                               url_hash, seq, email, pulled_at)
SELECT md5('e' || g || '-' || k), 'mailchimp', 'c' || k, md5('person' || g || '@bench.test'),
       'open', now() - make_interval(days => k), '', 0, 'person' || g || '@bench.test', now()
FROM generate_series(0, :m - 1) g, generate_series(1, :per) k;
INSERT INTO cb_webhook_events (provider, dedupe_key, event_type, list_id, received_at, payload,
                               applied_at)
SELECT 'mailchimp', md5('w' || g), 'profile', CAST(:list AS text), now(),
       '{"type":"profile","data":{"email":"person' || g || '@bench.test","list_id":"'
       || CAST(:list AS text) || '"}}', now()
FROM generate_series(0, :m - 1) g;
ANALYZE;
"""


def bench_erasure(args: argparse.Namespace) -> None:
    from campaign_bridge.sandbox.mailchimp.control import seed
    from campaign_bridge.sandbox.mailchimp.server import run_in_thread

    print(
        f"erasure: {args.people:,} of {args.contacts:,} people, {args.activity_per_person} "
        f"activity rows each, {args.batch} people per transaction"
    )
    with fresh_database() as url, run_in_thread() as handle:
        migrations.upgrade(url)
        engine = create_engine(url)
        params = {"m": args.contacts, "per": args.activity_per_person, "list": handle.list_id}
        with engine.begin() as conn:
            for statement in _PEOPLE_SQL.split(";"):
                if statement.strip():
                    label = " ".join(statement.split()[:3])
                    timed(label, lambda s=statement: conn.execute(sa.text(s), params))
        members = [{"email_address": email(i), "status": "subscribed"} for i in range(args.people)]
        timed(
            "seed the sandbox",
            lambda: seed(handle.sandbox, {"lists": [{"id": handle.list_id, "members": members}]}),
        )
        settings = Settings.model_validate(
            {
                "state_url": url,
                "syncs": {
                    "crm": {
                        "source": {"url": "sqlite://", "table": "contacts"},
                        "destination": {
                            "api_key": handle.api_key,
                            "list_id": handle.list_id,
                            "base_url": handle.base_url,
                        },
                    }
                },
            }
        )
        longest = [0.0, 0, 0.0]  # longest transaction, transactions, their total time
        inner = erasure_bulk.erase_in_store

        def measured(*a: Any, **k: Any) -> dict[str, int]:
            began = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                spent = time.perf_counter() - began
                longest[0] = max(longest[0], spent)
                longest[1] += 1
                longest[2] += spent

        erasure_bulk.erase_in_store = measured  # type: ignore[assignment]
        started = time.perf_counter()
        report = asyncio.run(
            erasure_bulk.forget_many(
                settings, [email(i) for i in range(args.people)], batch=args.batch
            )
        )
        total = time.perf_counter() - started
        erasure_bulk.erase_in_store = inner  # type: ignore[assignment]
        with engine.connect() as conn:
            left = conn.execute(
                sa.text("SELECT count(*) FROM cb_member_status WHERE email LIKE 'person%'")
            ).scalar()
        engine.dispose()
        lst = handle.sandbox.lists[handle.list_id]
        print(f"  provider: {report.provider}; sandbox forgot {len(lst.forgotten):,}")
        print(f"  removed: {report.removed}")
        print(
            f"  RESULT erasure of {args.people:,} people: {total:.1f} s "
            f"({args.people / total:,.0f} people/s); {longest[1]} store transactions "
            f"({longest[2]:.1f} s in all), the longest {longest[0] * 1000:.0f} ms; member rows "
            f"left {left:,} of "
            f"{args.contacts:,}"
        )


# --- purge ------------------------------------------------------------------------------------

_ACTIVITY_SQL = """
INSERT INTO cb_email_activity (event_id, provider, campaign_id, member_id, action, occurred_at,
                               url_hash, seq, email, pulled_at)
SELECT md5('e' || g), 'mailchimp', 'c' || (g % 50), md5('person' || (g % :members) || '@x.test'),
       'open', :at + make_interval(secs => g), '', 0, 'person' || (g % :members) || '@x.test',
       :at
FROM generate_series(:first, :last) g
"""


def bench_purge(args: argparse.Namespace) -> None:
    print(
        f"purge: {args.rows:,} activity rows past retention, {args.keep:,} kept, "
        f"{args.batch_rows:,} per transaction"
    )
    now = datetime.now(UTC)
    with fresh_database() as url:
        migrations.upgrade(url)
        engine = create_engine(url)
        old = now - timedelta(days=800)
        step = 1_000_000
        for first in range(0, args.rows, step):
            last = min(first + step, args.rows) - 1
            with engine.begin() as conn:
                timed(
                    f"rows {first:,}..{last:,}",
                    lambda f=first, t=last: conn.execute(
                        sa.text(_ACTIVITY_SQL),
                        {"first": f, "last": t, "at": old, "members": 100_000},
                    ),
                )
        with engine.begin() as conn:
            conn.execute(
                sa.text(_ACTIVITY_SQL),
                {
                    "first": args.rows,
                    "last": args.rows + args.keep - 1,
                    "at": now - timedelta(days=1),
                    "members": 100_000,
                },
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            timed(
                "VACUUM ANALYZE", lambda: conn.execute(sa.text("VACUUM ANALYZE cb_email_activity"))
            )
        retention = RetentionConfig(
            activity_days=400,
            webhook_days=0,
            rejected_days=0,
            runs_days=0,
            batch_rows=args.batch_rows,
        )
        started = time.perf_counter()
        results = purge(engine, retention, now=now)
        total = time.perf_counter() - started
        with engine.connect() as conn:
            left = conn.execute(sa.text("SELECT count(*) FROM cb_email_activity")).scalar()
        engine.dispose()
        result = results[0]
        print(
            f"  RESULT purge of {result.deleted:,} rows: {total:.1f} s "
            f"({result.deleted / total:,.0f} rows/s); {result.transactions:,} transactions, the "
            f"longest {result.longest_transaction * 1000:.0f} ms; {left:,} rows left "
            f"(expected {args.keep:,})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["erasure", "purge"], default=None)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--activity-per-person", type=int, default=10)
    parser.add_argument("--batch", type=int, default=500, help="people per transaction")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--keep", type=int, default=100_000)
    parser.add_argument("--batch-rows", type=int, default=5000)
    args = parser.parse_args()
    if args.only in (None, "erasure"):
        bench_erasure(args)
    if args.only in (None, "purge"):
        bench_purge(args)


if __name__ == "__main__":
    main()
