"""What making values storable costs the bulk writers (storable.py), per row, in process.

Prints, for N rows of each shape: rows per second through ``storable_tuples`` for activity rows
(the pull's largest write: plain ASCII, then 1 % with non-ASCII text, then 1 % with a NUL) and
through ``storable_rows`` for member-status rows. No database: the figure is the CPU the check
adds before a COPY / INSERT. Not a test: run it by hand.

    .venv/bin/python bench/storable.py [N]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from campaign_bridge.landing import ACTIVITY_COLUMNS, email_activity
from campaign_bridge.state import member_status
from campaign_bridge.storable import storable_rows, storable_tuples

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def activity(n: int, odd: str | None) -> list[tuple[Any, ...]]:
    rows = []
    for i in range(n):
        reason = None
        if odd is not None and i % 100 == 0:
            reason = f"reason {odd} {i}"
        rows.append(
            (f"{i:032x}", "mailchimp", "c0ffee1234", f"{i:032x}", "open", NOW, "", 0,
             f"person{i}@example.org", None, None, reason, "203.0.113.7", NOW)
        )  # fmt: skip
    return rows


def members(n: int) -> list[dict[str, Any]]:
    return [
        {"provider": "mailchimp", "list_id": "a6b5da1054", "member_id": f"{i:032x}",
         "email": f"person{i}@example.org", "status": "subscribed",
         "unsubscribe_reason": None, "last_changed": NOW, "updated_at": NOW}
        for i in range(n)
    ]  # fmt: skip


def rate(label: str, n: int, seconds: float) -> None:
    print(f"{label:<44} {n / seconds:>12,.0f} rows/s  ({seconds * 1e6 / n:.2f} µs/row)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n", nargs="?", type=int, default=200_000)
    n = parser.parse_args().n
    for dialect in ("postgresql", "mysql"):
        for label, odd in (("ascii", None), ("1% non-ascii", "é😀"), ("1% NUL", "\x00")):
            rows = activity(n, odd)
            started = time.perf_counter()
            out = storable_tuples(email_activity, ACTIVITY_COLUMNS, rows, dialect)
            rate(f"activity {label} ({dialect})", n, time.perf_counter() - started)
            assert len(out) == n
        rows_m = members(n)
        started = time.perf_counter()
        storable_rows(member_status, rows_m, dialect)
        rate(f"member status ascii ({dialect})", n, time.perf_counter() - started)


if __name__ == "__main__":
    main()
