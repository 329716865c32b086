"""What does the listmonk sandbox spend answering a push's refresh query? Prints figures; not a
test.

A push reads the members changed since its last run with one query shape
(``ListmonkProvider.members_changed_since``): ``GET /api/subscribers?list_id=T&query=
subscribers.id > N AND (subscribers.updated_at > X OR subscribers.id IN (SELECT subscriber_id
FROM subscriber_lists WHERE list_id = T AND updated_at > X))&order_by=id&order=asc&per_page=P``.
This fills one in-process sandbox with ``--members`` subscribers on one list (through the
store's own write paths), then times the handler's CPU (``time.process_time``) for that query
when nothing changed after X, when ``--changed`` profiles changed after X, and when as many
list unsubscribes did (they move only ``subscriber_lists.updated_at``), each first page and
every page of the keyset walk; and a list's rendering with its per-status counts (``GET
/api/lists/{id}``, which a push asks twice).

Run:  .venv/bin/python bench/sandbox_listmonk_refresh.py [--members 1000000] [--changed 10000]
      [--per-page 1000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from campaign_bridge.sandbox.listmonk import subscribers
from campaign_bridge.sandbox.listmonk.lists import create_list
from campaign_bridge.sandbox.listmonk.model import ListmonkConfig, ListmonkSandbox
from campaign_bridge.sandbox.listmonk.wire import ApiRequest


def _fill(members: int) -> tuple[ListmonkSandbox, int]:
    sandbox = ListmonkSandbox(ListmonkConfig(start_time=datetime(2026, 12, 7, tzinfo=UTC)))
    list_id = create_list(sandbox, "bench").id
    for n in range(members):
        subscribers.insert_subscriber(
            sandbox, f"m{n}@example.com", f"M {n}", "enabled", {"n": n}, [list_id], True
        )
        if n % 1000 == 0:
            sandbox.clock.advance(0.001)
    return sandbox, list_id


def _request(
    sandbox: ListmonkSandbox, list_id: int, after: int, since: str, per_page: int
) -> ApiRequest:
    query = (
        f"subscribers.id > {after} AND (subscribers.updated_at > '{since}' OR subscribers.id IN "
        f"(SELECT subscriber_id FROM subscriber_lists WHERE list_id = {list_id} AND "
        f"updated_at > '{since}'))"
    )
    pairs = [
        ("list_id", str(list_id)),
        ("query", query),
        ("order_by", "id"),
        ("order", "asc"),
        ("page", "1"),
        ("per_page", str(per_page)),
    ]
    return ApiRequest(sandbox, "GET", "/api/subscribers", dict(pairs), pairs, None)


def _walk(
    sandbox: ListmonkSandbox, list_id: int, since: str, per_page: int
) -> tuple[float, float, int, int]:
    """CPU seconds of the first page and of every page; pages and members read."""
    first = total = 0.0
    after = pages = found = 0
    while True:
        start = time.process_time()
        reply = subscribers._query(_request(sandbox, list_id, after, since, per_page))
        spent = time.process_time() - start
        total += spent
        first = first or spent
        pages += 1
        results = reply.body["data"]["results"] if isinstance(reply.body, dict) else []
        found += len(results)
        if len(results) < per_page:
            return first, total, pages, found
        after = results[-1]["id"]


def _since(sandbox: ListmonkSandbox) -> str:
    moment = sandbox.now()
    sandbox.clock.advance(1)
    return datetime.fromtimestamp(moment, UTC).isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--changed", type=int, default=10_000)
    parser.add_argument("--per-page", type=int, default=1000, help="the adapter's: 1000, 10000")
    args = parser.parse_args()
    start = time.process_time()
    sandbox, list_id = _fill(args.members)
    print(f"filled {args.members:,} members in {time.process_time() - start:.1f}s CPU")
    start = time.process_time()
    subscribers.render_list(sandbox, list_id)
    spent = time.process_time() - start
    print(f"GET /api/lists/{list_id} (status counts): {spent * 1000:.0f} ms CPU")
    step = max(1, args.members // args.changed)
    ids = list(sandbox.subscribers)

    since = _since(sandbox)
    report("nothing changed", _walk(sandbox, list_id, since, args.per_page))

    since = _since(sandbox)
    for sub_id in ids[::step]:
        sub = sandbox.subscribers[sub_id]
        sub.name, sub.updated_at = f"{sub.name}+", sandbox.now()
    report(f"{len(ids[::step]):,} profiles changed", _walk(sandbox, list_id, since, args.per_page))

    since = _since(sandbox)
    picked = [sandbox.subscribers[i] for i in ids[step // 2 :: step]]
    subscribers.unsubscribe_lists(sandbox, picked, [list_id])
    report(f"{len(picked):,} list unsubscribes", _walk(sandbox, list_id, since, args.per_page))


def report(name: str, figures: tuple[float, float, int, int]) -> None:
    first, total, pages, found = figures
    print(
        f"{name}: first page {first * 1000:.0f} ms CPU; all {pages} pages {total * 1000:.0f} ms"
        f" CPU; {found:,} members"
    )


if __name__ == "__main__":
    main()
