"""Schedule strings: intervals and cron expressions, and when they fire next (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from campaign_bridge.scheduler import Cron, Interval, ScheduleError, parse_schedule


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("every 15m", 900),
        ("15m", 900),
        ("every 1h30m", 5400),
        ("EVERY 45s", 45),
        ("every 2d", 172800),
        ("every 1w", 604800),
        ("every 1h 5m", 3900),
    ],
)
def test_intervals(text: str, seconds: int) -> None:
    assert parse_schedule(text) == Interval(seconds)


def test_interval_ticks_are_epoch_aligned() -> None:
    every_15m = parse_schedule("every 15m")
    assert every_15m.next_after(at("2026-01-01T10:07:12")) == at("2026-01-01T10:15:00")
    assert every_15m.next_after(at("2026-01-01T10:15:00")) == at("2026-01-01T10:30:00")
    assert every_15m.expected_gap() == timedelta(minutes=15)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/10 * * * *", "2026-01-01T10:07:12", "2026-01-01T10:10:00"),
        ("0 6 * * *", "2026-01-01T06:00:00", "2026-01-02T06:00:00"),
        ("@hourly", "2026-01-01T06:59:59", "2026-01-01T07:00:00"),
        ("@daily", "2026-12-31T23:30:00", "2027-01-01T00:00:00"),
        ("30 2 1 * *", "2026-01-15T00:00:00", "2026-02-01T02:30:00"),
        ("0 9 * * mon-fri", "2026-11-27T10:00:00", "2026-11-30T09:00:00"),  # Fri -> Mon
        ("0 9 * * 0", "2026-11-27T10:00:00", "2026-11-29T09:00:00"),  # Sunday
        ("0 9 * * 7", "2026-11-27T10:00:00", "2026-11-29T09:00:00"),  # 7 is Sunday too
        ("0 0 29 feb *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
        ("0 0 13 * fri", "2026-11-01T00:00:00", "2026-11-06T00:00:00"),  # day OR weekday
        ("5,35 1-2 * jan *", "2026-01-01T01:40:00", "2026-01-01T02:05:00"),
    ],
)
def test_cron_next_firing(expression: str, after: str, expected: str) -> None:
    schedule = parse_schedule(expression)
    assert isinstance(schedule, Cron)
    assert schedule.next_after(at(after)) == at(expected)


def test_cron_expected_gap_is_the_widest_gap() -> None:
    assert parse_schedule("*/20 * * * *").expected_gap() == timedelta(minutes=20)
    assert parse_schedule("0 9 * * mon-fri").expected_gap() == timedelta(days=3)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "every",
        "every 0m",
        "every 5 minutes",
        "* * * *",
        "61 * * * *",
        "0 0 * * funday",
        "*/0 * * * *",
        "0 0 31 feb *",
        "* * * * * */5",  # six fields (seconds) are for the job queue's own tasks only
    ],
)
def test_bad_schedules_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(text)


def test_a_wrapping_range_is_read_as_croniter_and_procrastinate_read_it() -> None:
    """croniter (procrastinate's parser, and now ours) reads ``55-5`` as 55..59 then 0..5."""
    schedule = parse_schedule("55-5 * * * *")
    assert schedule.next_after(at("2026-01-01T10:58:00")) == at("2026-01-01T10:59:00")
    assert schedule.next_after(at("2026-01-01T10:59:00")) == at("2026-01-01T11:00:00")
    assert schedule.next_after(at("2026-01-01T11:05:00")) == at("2026-01-01T11:55:00")
