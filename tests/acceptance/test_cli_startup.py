"""Start-up stays light: ``--version`` loads no CLI library, ``--help`` loads no database,
settings or terminal-rendering library (bench/startup.py times them; this guards what they load).
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pydantic", "sqlalchemy", "rich", "asyncio", "alembic", "httpx", "jinja2", "apprise")


def loaded_after(code: str) -> list[str]:
    probe = (
        "import contextlib, io, json, sys\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    {code}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(result.stdout))


def test_version_loads_no_cli_library() -> None:
    loaded = loaded_after(
        "sys.argv = ['campaign-bridge', '--version']; "
        "from campaign_bridge._entry import main; main()"
    )
    assert "campaign_bridge" in loaded
    assert [m for m in (*HEAVY, "typer", "click") if m in loaded] == []


def test_help_loads_nothing_heavy() -> None:
    loaded = loaded_after("from campaign_bridge.cli import run; run(['--help'])")
    assert "typer" in loaded
    assert [m for m in HEAVY if m in loaded] == []


def test_a_command_still_loads_what_it_needs() -> None:
    loaded = loaded_after("from campaign_bridge.cli import run; run(['config', 'show', '--json'])")
    assert "pydantic" in loaded


def test_a_push_loads_no_unused_library() -> None:
    """httpx loads its own CLI (click, rich, pygments) when click is installed and httpcore
    loads trio when trio is installed; the console script declines both, and metrics come
    only with a server."""
    loaded = loaded_after(
        "sys.argv = ['campaign-bridge', '-c', '/nonexistent/bridge.toml', 'push']; "
        "from campaign_bridge._entry import main; main()"
    )
    assert {"httpx", "sqlalchemy", "campaign_bridge"} <= set(loaded)  # the push was reached
    assert [m for m in ("trio", "pygments", "prometheus_client") if m in loaded] == []
