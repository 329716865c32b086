"""The landing writers on each engine: a replayed or overlapping chunk adds only what is new."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from campaign_bridge import landing, migrations
from campaign_bridge.db import create_engine
from campaign_bridge.providers.base import ActivityEvent
from campaign_bridge.pull import _SeqState, activity_rows

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def events(start: int, stop: int) -> list[ActivityEvent]:
    return [
        ActivityEvent(
            campaign_id="c1",
            email=f"p{i // 3}@landing.org",
            action="click" if i % 3 == 2 else "open",
            occurred_at=T0 + timedelta(seconds=i // 2),
            url="https://x.org/a\tb\\c" if i % 3 == 2 else None,  # needs COPY escaping
            reason="tab\there, new\nline" if i == 5 else None,
        )
        for i in range(start, stop)
    ]


def rows_of(evs: list[ActivityEvent]) -> list[tuple[object, ...]]:
    return activity_rows(evs, provider="mailchimp", pulled_at=T0, state=_SeqState())


def test_insert_activity_is_idempotent_and_adds_only_new_rows(database_url: str) -> None:
    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    try:
        first = rows_of(events(0, 300))
        with engine.begin() as conn:
            assert landing.insert_activity(conn, first) == 300
        with engine.begin() as conn:
            assert landing.insert_activity(conn, first) == 0
        overlapping = rows_of(events(0, 450))  # 300 already there, 150 new
        with engine.begin() as conn:
            assert landing.insert_activity(conn, overlapping) == 150
        with engine.connect() as conn:
            count = conn.execute(sa.text("SELECT COUNT(*) FROM cb_email_activity")).scalar_one()
            url, reason, when = conn.execute(
                sa.select(
                    landing.email_activity.c.url,
                    landing.email_activity.c.reason,
                    landing.email_activity.c.occurred_at,
                ).where(landing.email_activity.c.reason.is_not(None))
            ).one()
            clicked = conn.execute(
                sa.select(sa.func.count()).where(
                    landing.email_activity.c.url == "https://x.org/a\tb\\c"
                )
            ).scalar_one()
        assert count == 450
        assert (url, reason, when) == (
            "https://x.org/a\tb\\c",
            "tab\there, new\nline",
            T0 + timedelta(seconds=2),
        )
        assert clicked == 150
    finally:
        engine.dispose()
