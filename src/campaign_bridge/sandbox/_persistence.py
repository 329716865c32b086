"""Saving a sandbox's state while it serves: the part every emulator shares."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

__all__ = ["saving_while_serving"]

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def saving_while_serving(
    path: str | None, every_seconds: float, save: Callable[[str], None], *, label: str
) -> AsyncIterator[None]:
    """While the server runs, ``save(path)`` every ``every_seconds`` (0: never); always save
    at shutdown. Nothing happens without a ``path``."""
    task: asyncio.Task[None] | None = None
    if path and every_seconds > 0:

        async def loop() -> None:
            while True:
                await asyncio.sleep(every_seconds)
                await asyncio.to_thread(save, path)

        task = asyncio.create_task(loop())
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if path:
            save(path)
            logger.info("%s state saved to %s", label, path)
