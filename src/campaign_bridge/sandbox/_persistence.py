"""Saving and loading a sandbox's JSON snapshot: the part every emulator shares. What goes into
a snapshot (and how it is read back) is each provider's ``persistence.py``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import orjson
from starlette.applications import Starlette

__all__ = [
    "Snapshots",
    "load_if_present",
    "saving_lifespan",
    "saving_while_serving",
    "write_atomically",
]

logger = logging.getLogger(__name__)

Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]


def write_atomically(path: str | os.PathLike[str], payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file renamed over it, so a reader (or
    a crash) never sees half a snapshot; the folder is created when missing."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_if_present(
    path: str | None,
    load: Callable[[Any], None],
    *,
    label: str,
    loads: Callable[[bytes], Any] = orjson.loads,
) -> bool:
    """``load`` the snapshot at ``path`` (decoded with ``loads``) when there is one; whether
    there was."""
    if not path or not Path(path).exists():
        return False
    load(loads(Path(path).read_bytes()))
    logger.info("%s state loaded from %s", label, path)
    return True


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


def saving_lifespan(
    autosave: Callable[[], contextlib.AbstractAsyncContextManager[None]],
) -> Lifespan:
    """A Starlette lifespan that runs ``autosave()`` (a provider's saving-while-serving) for
    as long as the app serves."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with autosave():
            yield

    return lifespan


class _Config(Protocol):
    state_file: str | None
    autosave_seconds: float


class _Saved(Protocol):
    @property
    def config(self) -> _Config: ...


S = TypeVar("S", bound=_Saved)


@dataclass(frozen=True)
class Snapshots(Generic[S]):
    """One provider's snapshots: ``dump`` makes the JSON-able state, ``load`` puts it back;
    ``encode``/``decode`` turn it into bytes and back; ``label`` names it in the logs."""

    dump: Callable[[S], dict[str, Any]]
    load: Callable[[S, dict[str, Any]], None]
    label: str
    encode: Callable[[dict[str, Any]], bytes] = orjson.dumps
    decode: Callable[[bytes], Any] = orjson.loads

    def save(self, sandbox: S, path: str | os.PathLike[str]) -> None:
        """Write the snapshot atomically (temp file + rename)."""
        write_atomically(path, self.encode(self.dump(sandbox)))

    def load_if_present(self, sandbox: S) -> bool:
        """Load ``config.state_file`` when it exists; whether it did."""
        return load_if_present(
            sandbox.config.state_file,
            lambda data: self.load(sandbox, data),
            label=self.label,
            loads=self.decode,
        )

    def autosave(self, sandbox: S) -> contextlib.AbstractAsyncContextManager[None]:
        """While the server runs, save every ``config.autosave_seconds``; always save at
        shutdown."""
        config = sandbox.config
        return saving_while_serving(
            config.state_file,
            config.autosave_seconds,
            lambda path: self.save(sandbox, path),
            label=self.label,
        )
