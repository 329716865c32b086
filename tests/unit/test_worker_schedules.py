"""Sync schedules as procrastinate's cron: the job queue fires at the moments serve would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter
from hypothesis import given
from hypothesis import strategies as st

from campaign_bridge.errors import ConfigurationError
from campaign_bridge.scheduler import parse_schedule
from campaign_bridge.worker import to_cron

EVENLY = ["every 5s", "every 30s", "every 1m", "every 15m", "every 20m", "every 1h", "every 6h"]
EVENLY += ["every 1d", "0 6 * * mon-fri", "@hourly", "*/10 * * * *"]


@given(
    text=st.sampled_from(EVENLY),
    moment=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    ),
)
def test_the_queue_fires_when_the_in_process_scheduler_would(text: str, moment: datetime) -> None:
    ours = parse_schedule(text).next_after(moment)
    queue = croniter(to_cron(text), moment).get_next(datetime)
    if parse_schedule(text).expected_gap() >= timedelta(minutes=1):
        assert queue == ours
    else:  # sub-minute: the seconds field; ours is epoch-aligned to the second as well
        assert queue.replace(microsecond=0) == ours


@pytest.mark.parametrize("text", ["every 7m", "every 90m", "every 2d", "every 1w", "every 45s"])
def test_intervals_that_do_not_divide_an_hour_or_day_are_refused_with_advice(text: str) -> None:
    with pytest.raises(ConfigurationError, match="cannot run on the job queue"):
        to_cron(text)
