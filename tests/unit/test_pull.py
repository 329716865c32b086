"""Pull helpers without I/O: activity rows, COPY text, --since parsing."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta, timezone

import pytest

from campaign_bridge import pull
from campaign_bridge.errors import ConfigurationError
from campaign_bridge.landing import ACTIVITY_COLUMNS, event_id, url_hash
from campaign_bridge.providers.base import ActivityEvent
from campaign_bridge.pull import (
    _ActivityChunker,
    _SeqState,
    _YoungCollections,
    activity_rows,
    parse_since,
)
from campaign_bridge.status_changes import email_hash

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 2, tzinfo=UTC)


def event(email: str = "Ada@X.org ", action: str = "open", **kw: object) -> ActivityEvent:
    values: dict[str, object] = {"occurred_at": T0, **kw}
    return ActivityEvent(campaign_id="c1", email=email, action=action, **values)  # type: ignore[arg-type]


def as_dicts(rows: list[tuple[object, ...]]) -> list[dict[str, object]]:
    return [dict(zip(ACTIVITY_COLUMNS, row, strict=True)) for row in rows]


def test_rows_follow_the_column_order_and_normalise() -> None:
    other_zone = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 1, 14, 0, 0, 999_999, tzinfo=other_zone)
    rows = as_dicts(
        activity_rows(
            [event(action="click", url="https://shop/x", occurred_at=local, ip="1.2.3.4")],
            provider="mailchimp",
            pulled_at=NOW,
            state=_SeqState(),
        )
    )
    assert rows == [
        {
            "event_id": event_id(
                "mailchimp",
                "c1",
                email_hash("ada@x.org"),
                "click",
                T0,
                url_hash("https://shop/x"),
                0,
            ),
            "provider": "mailchimp",
            "campaign_id": "c1",
            "member_id": email_hash("ada@x.org"),
            "action": "click",
            "occurred_at": T0,
            "url_hash": url_hash("https://shop/x"),
            "seq": 0,
            "email": "Ada@X.org",
            "url": "https://shop/x",
            "bounce_type": None,
            "reason": None,
            "ip": "1.2.3.4",
            "pulled_at": NOW,
        }
    ]


def test_identical_events_of_one_member_are_numbered_and_replays_number_the_same() -> None:
    events = [
        event(),
        event(),
        event(action="click", url="https://a"),
        event(),
        event(email="b@x.org"),
        event(email="b@x.org"),
    ]
    first = activity_rows(events, provider="mailchimp", pulled_at=NOW, state=_SeqState())
    assert [row[7] for row in first] == [0, 1, 0, 2, 0, 1]
    replay = activity_rows(events, provider="mailchimp", pulled_at=NOW, state=_SeqState())
    assert [r[0] for r in replay] == [r[0] for r in first]
    assert len({r[0] for r in first}) == len(first)  # every key distinct


def test_url_hash_is_empty_without_url() -> None:
    assert url_hash(None) == ""
    assert url_hash("") == ""
    assert len(url_hash("https://x/" + "a" * 5000)) == 32


def test_parse_since() -> None:
    assert parse_since(None) is None
    assert parse_since("2024-01-31") == datetime(2024, 1, 31, tzinfo=UTC)
    assert parse_since("2024-01-31T10:00:00+02:00") == datetime(2024, 1, 31, 8, tzinfo=UTC)
    with pytest.raises(ConfigurationError, match="--since"):
        parse_since("last tuesday")


def test_chunks_hold_the_rows_of_one_pass_and_the_newest_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pull, "ROW_BATCH", 7)
    monkeypatch.setattr(pull, "ACTIVITY_CHUNK", 20)
    # members with several identical events each, straddling the batch boundaries
    events = [
        event(email=f"m{i // 5}@x.org", occurred_at=T0 + timedelta(seconds=i % 3, microseconds=9))
        for i in range(53)
    ]
    chunker = _ActivityChunker("mailchimp", NOW)
    chunks = [rows for rows in map(chunker.add, events) if rows is not None]
    rest = chunker.rest()
    assert [len(rows) for rows in chunks] == [21, 21]
    assert len(rest) == 11
    whole = activity_rows(events, provider="mailchimp", pulled_at=NOW, state=_SeqState())
    assert [row for rows in [*chunks, rest] for row in rows] == whole
    assert chunker.newest == T0 + timedelta(seconds=2)
    assert chunker.rest() == []


def test_young_collections_are_raised_once_and_restored_by_the_last_user() -> None:
    before = gc.get_threshold()
    collections = _YoungCollections()
    with collections.every(before[0] + 1000):
        raised = gc.get_threshold()
        with collections.every(before[0] + 5):
            assert gc.get_threshold() == raised
        assert gc.get_threshold() == raised
    assert raised == (before[0] + 1000, *before[1:])
    assert gc.get_threshold() == before


def test_young_collections_leave_automatic_collection_off() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(0, *before[1:])
        with _YoungCollections().every(20_000):
            assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)
