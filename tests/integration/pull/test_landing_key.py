"""Revision 0003 on each engine: cb_email_activity keyed by (provider, member_id, event_id), rows
landed under 0002 keep their identity, so a re-read after the upgrade adds nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from campaign_bridge import landing, migrations
from campaign_bridge.db import create_engine
from campaign_bridge.providers.base import ActivityEvent
from campaign_bridge.pull import _SeqState, activity_rows

T0 = datetime(2026, 5, 4, 8, 30, 0, tzinfo=UTC)


def rows(count: int) -> list[tuple[object, ...]]:
    events = [
        ActivityEvent(
            campaign_id="c7",
            email=f"m{i // 4}@key.org",
            action="open",
            occurred_at=T0 + timedelta(seconds=i // 8),
        )
        for i in range(count)
    ]
    return activity_rows(events, provider="mailchimp", pulled_at=T0, state=_SeqState())


def test_upgrade_to_0003_keeps_rows_and_their_identity(database_url: str) -> None:
    migrations.upgrade(database_url, "0002")
    engine = create_engine(database_url)
    try:
        landed = rows(200)
        with engine.begin() as conn:
            assert landing.insert_activity(conn, landed[:120]) == 120
        migrations.upgrade(database_url)
        assert migrations.drift(database_url) == []
        inspector = sa.inspect(engine)
        key = inspector.get_pk_constraint("cb_email_activity")["constrained_columns"]
        assert key == ["provider", "member_id", "event_id"]
        assert inspector.get_indexes("cb_email_activity") == []
        with engine.begin() as conn:
            assert landing.insert_activity(conn, landed) == 80
        with engine.connect() as conn:
            count = conn.execute(sa.text("SELECT COUNT(*) FROM cb_email_activity")).scalar_one()
        assert count == 200
        migrations.downgrade(database_url, "0002")
        assert sa.inspect(engine).get_pk_constraint("cb_email_activity")["constrained_columns"] == [
            "event_id"
        ]
    finally:
        engine.dispose()
