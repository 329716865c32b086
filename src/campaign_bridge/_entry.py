"""The ``campaign-bridge`` console script: answers ``--version`` before loading the CLI.

Everything else goes to :func:`campaign_bridge.cli.main`. Kept outside the ``cli`` package,
whose import loads every command group (Typer and click: most of the start-up time).
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:] == ["--version"]:
        from campaign_bridge import __version__

        sys.stdout.write(f"campaign-bridge {__version__}\n")
        sys.exit(0)
    from campaign_bridge.cli import main as cli_main

    cli_main()
