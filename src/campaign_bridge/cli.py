"""Command-line interface (placeholder until the foundation CLI lands)."""

from __future__ import annotations

import sys

from campaign_bridge import __version__


def main() -> None:
    if "--version" in sys.argv[1:]:
        print(f"campaign-bridge {__version__}")
        return
    print("campaign-bridge: the command-line interface is being built", file=sys.stderr)
    sys.exit(2)
