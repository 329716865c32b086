"""PostgreSQL refuses NUL in text: the binary COPY writer lands such an event without it."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from campaign_bridge import landing, migrations
from campaign_bridge.db import create_engine
from campaign_bridge.providers.base import ActivityEvent
from campaign_bridge.pull import _SeqState, activity_rows

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_text_with_nul_lands_without_it_on_first_write_and_on_replay(postgresql_url: str) -> None:
    migrations.upgrade(postgresql_url)
    engine = create_engine(postgresql_url)
    evs = [
        ActivityEvent("c1", "a@nul.org", "open", T0),
        ActivityEvent("c1", "a@nul.org", "unsubscribe", T0, reason="bad\x00reason"),
    ]
    rows = activity_rows(evs, provider="mailchimp", pulled_at=T0, state=_SeqState())
    try:
        with engine.begin() as conn:  # a new chunk: straight COPY
            assert landing.insert_activity(conn, rows[1:]) == 1
        with engine.begin() as conn:  # one row already there: the ON CONFLICT path
            assert landing.insert_activity(conn, rows) == 1
        with engine.begin() as conn:
            assert landing.insert_activity(conn, rows) == 0
        with engine.connect() as conn:
            reasons = conn.execute(
                sa.select(landing.email_activity.c.reason).order_by(landing.email_activity.c.action)
            ).scalars()
            assert list(reasons) == [None, "badreason"]
    finally:
        engine.dispose()
