"""State store benchmark: bulk writes and lookups on SQLite, PostgreSQL and MariaDB.

Prints figures; it is not a test. For each engine reachable, in a fresh database:

  - save_contact_states: N new contact states (multi-row upsert), then the same N again (update)
  - load_contact_states: N keys by chunked IN lookups
  - merge_rows (PostgreSQL: COPY into a temp table + one INSERT ... SELECT ... ON CONFLICT)
  - naive baseline: one INSERT ... ON CONFLICT statement per row, for 2,000 rows
  - webhook insert: one durable, deduplicated insert per delivery (webhook_inbox.insert_rows,
    as serve's inbox does when deliveries come one at a time)

Usage:
  .venv/bin/python bench/state_store.py                 # 100,000 contacts
  .venv/bin/python bench/state_store.py --contacts 20000 --engines sqlite postgresql
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.db import create_engine, merge_rows, upsert_rows
from campaign_bridge.state import contact_state
from campaign_bridge.store import ContactState, StateStore
from campaign_bridge.webhook_inbox import InboxRow, insert_rows

SERVERS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/",
}
KEY = ["sync_name", "source_key"]


@contextlib.contextmanager
def fresh_database(engine_name: str) -> Iterator[str]:
    if engine_name == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{Path(directory) / 'state.db'}"
        return
    admin = create_engine(SERVERS[engine_name], isolation_level="AUTOCOMMIT")
    name = f"cb_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield sa.make_url(SERVERS[engine_name]).set(database=name).render_as_string(False)
    finally:
        force = " WITH (FORCE)" if engine_name == "postgresql" else ""
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


def states(count: int, sync: str, content: str) -> list[ContactState]:
    now = datetime.now(UTC)
    return [
        ContactState(
            sync_name=sync,
            source_key=f"customer-{i:08d}",
            email_hash=f"{i:032x}",
            provider_member_id=f"{i:032x}",
            content_hash=content,
            pushed_at=now,
            provider_status="subscribed",
            managed=True,
            managed_tags=("customer", "newsletter"),
            last_run_id="bench",
        )
        for i in range(count)
    ]


def rate(label: str, count: int, seconds: float, unit: str = "rows") -> None:
    print(f"  {label:<44} {count:>9,} {unit} in {seconds:6.2f} s = {count / seconds:>9,.0f}/s")


def timed(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def bench(engine_name: str, contacts: int, webhooks: int) -> None:
    print(f"{engine_name}:")
    with fresh_database(engine_name) as url:
        migrations.upgrade(url)
        with StateStore(url) as store:
            first = states(contacts, "bench", "v1")
            rate("save_contact_states (insert)", contacts, timed(store.save_contact_states, first))
            second = states(contacts, "bench", "v2")
            rate("save_contact_states (update)", contacts, timed(store.save_contact_states, second))
            keys = [state.source_key for state in first]
            rate("load_contact_states", contacts, timed(store.load_contact_states, "bench", keys))

            rows = [asdict(state) | {"sync_name": "merge"} for state in second]
            for row in rows:
                row["managed_tags"] = list(row["managed_tags"])

            def merge() -> None:
                with store.engine.begin() as conn:
                    merge_rows(conn, contact_state, rows, KEY)

            label = "merge_rows (COPY + merge)" if engine_name == "postgresql" else "merge_rows"
            rate(label, contacts, timed(merge))

            naive = rows[:2000]

            def one_by_one() -> None:
                with store.engine.begin() as conn:
                    for row in naive:
                        upsert_rows(conn, contact_state, [row | {"sync_name": "naive"}], KEY)

            rate("naive baseline: one upsert per row", len(naive), timed(one_by_one))

            def deliveries() -> None:
                now = datetime.now(UTC)
                with store.engine.connect() as conn:
                    if engine_name == "postgresql":  # as the inbox connects
                        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                    for i in range(webhooks):
                        row = InboxRow(
                            "mailchimp", f"{i:064x}", "unsubscribe", "L1", None, now, "{}"
                        )
                        insert_rows(conn, [row])

            rate("webhook insert (1 commit each)", webhooks, timed(deliveries), "events")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--webhooks", type=int, default=2_000)
    parser.add_argument(
        "--engines", nargs="+", default=["sqlite", "postgresql", "mariadb"],
        choices=["sqlite", "postgresql", "mariadb"],
    )  # fmt: skip
    options = parser.parse_args()
    for engine_name in options.engines:
        bench(engine_name, options.contacts, options.webhooks)


if __name__ == "__main__":
    main()
