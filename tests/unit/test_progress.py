"""The push progress bar: log lines go above it (not through it), and the ETA waits for real
progress before promising anything."""

from __future__ import annotations

import io
import logging

from rich.console import Console

from campaign_bridge.cli.push import SETTLE_SECONDS, progress_bar
from campaign_bridge.logs import configure_logging


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_logs_go_through_the_bar_console_while_it_is_live() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", stream=stream)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    log = logging.getLogger("campaign_bridge.test")
    with progress_bar(True, console) as update:
        assert update is not None
        update(10, 100)
        log.warning("halfway there, key %s", "k1")
    assert "halfway there, key k1" in screen.getvalue()
    assert stream.getvalue() == ""  # not written beside the bar
    log.warning("after the bar")
    assert "after the bar" in stream.getvalue()
    assert "after the bar" not in screen.getvalue()


def test_eta_waits_for_settled_progress() -> None:
    configure_logging("INFO", "text", stream=io.StringIO())
    clock = Clock()
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160, color_system=None)
    with progress_bar(True, console, clock=clock) as update:
        assert update is not None
        from rich.progress import Progress

        update(0, 1000)  # preparing: nothing done yet
        clock.now += 20  # a long preparation does not count as progress time
        update(100, 1000)
        bar = update.bar  # type: ignore[attr-defined]
        assert isinstance(bar, Progress)
        assert _eta(bar) == "ETA -:--:--"
        clock.now += SETTLE_SECONDS - 1
        update(200, 1000)
        assert _eta(bar) == "ETA -:--:--"  # too early to tell
        clock.now += 2
        update(300, 1000)  # 200 contacts in 4 s since the first: 50/s, 700 left
        assert _eta(bar) == "ETA 0:00:14"


def _eta(bar: object) -> str:
    from rich.progress import Progress

    assert isinstance(bar, Progress)
    column = bar.columns[-1]
    return str(column.render(bar.tasks[0]))  # type: ignore[union-attr]
