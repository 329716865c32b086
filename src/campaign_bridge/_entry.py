"""The ``campaign-bridge`` console script: answers ``--version`` before loading the CLI.

Everything else goes to :func:`campaign_bridge.cli.main`. Kept outside the ``cli`` package,
whose import loads every command group (Typer and click: most of the start-up time).

The process also declines two imports it never uses and that other libraries make only because
the modules are installed: httpx loads its own command-line tool (click, rich, pygments: about
0.1 s) whenever click is installed, and httpcore loads trio (about 0.1 s) when trio is installed
(a test dependency), although the bridge runs on asyncio. Each is imported inside a ``try``
that falls back gracefully, so declining them changes nothing but the start-up time.

Imports allocate several hundred thousand long-lived objects, and with the default thresholds
the cyclic garbage collector walks them again and again while they load (about a tenth of the
import time). The process starts with the thresholds a batch job runs with
(:data:`GC_THRESHOLDS`, kept by :func:`campaign_bridge.cli._common.tune_garbage_collector`).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

__all__ = ["GC_THRESHOLDS", "main"]

#: young objects are collected every 50,000 allocations (not 700); full collections are rare
GC_THRESHOLDS = (50_000, 20, 100)

UNUSED = frozenset({"httpx._main", "trio"})


class _Decline:
    """A meta path finder that refuses the modules in :data:`UNUSED`."""

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name in UNUSED:
            raise ModuleNotFoundError(f"campaign-bridge does not use {name}", name=name)
        return None


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:] == ["--version"]:
        from campaign_bridge import __version__

        sys.stdout.write(f"campaign-bridge {__version__}\n")
        sys.exit(0)
    gc.set_threshold(*GC_THRESHOLDS)
    sys.meta_path.insert(0, _Decline())
    from campaign_bridge.cli import main as cli_main

    cli_main()
