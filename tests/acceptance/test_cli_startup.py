"""Start-up stays light: ``--version`` loads no CLI library, ``--help`` loads no database,
settings or terminal-rendering library, and a push where nothing changed loads only what it uses
(bench/startup.py times them; this guards what they load).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

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


def test_the_console_script_starts_with_the_batch_gc_thresholds() -> None:
    """Imports run with them (the collector would otherwise walk the new objects again and
    again while they load), and so does every command after."""
    from campaign_bridge._entry import GC_THRESHOLDS

    probe = (
        "import contextlib, gc, io, sys\n"
        "sys.argv = ['campaign-bridge', '--help']\n"
        "from campaign_bridge._entry import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main()\n"
        "print(list(gc.get_threshold()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(result.stdout) == list(GC_THRESHOLDS)
    assert GC_THRESHOLDS[0] > 700  # Python's default: a young collection every 700 allocations


# What a push where nothing changed (PostgreSQL source and state store, Mailchimp) never needs:
# migrations, templates, the terminal renderer, alerts, metrics, the server, the job queue, cron
# parsing, the other databases' and providers' modules, the sandboxes.
NOT_FOR_A_PUSH = (
    "alembic",
    "jinja2",
    "rich",
    "apprise",
    "prometheus_client",
    "uvicorn",
    "starlette",
    "procrastinate",
    "croniter",
    "pymysql",
    "sqlite3",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.mysql",
    "campaign_bridge.server",
    "campaign_bridge.sandbox",
    "campaign_bridge.pull",
    "campaign_bridge.providers.brevo",
    "campaign_bridge.providers.listmonk",
)


def push_process(config: Path) -> dict[str, Any]:
    """``campaign-bridge push --json`` in its own process: its summary and the modules it had
    loaded when it finished."""
    probe = (
        "import contextlib, io, json, sys\n"
        "sys.argv = ['campaign-bridge', '-c', sys.argv[1], 'push', '--json']\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "    from campaign_bridge._entry import main\n"
        "    main()\n"
        "print(json.dumps({'summary': json.loads(out.getvalue()), 'modules': list(sys.modules)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return dict(json.loads(result.stdout))


def test_a_push_where_nothing_changed_loads_only_what_it_uses(
    postgresql_url: str, mailchimp_sandbox: Any, tmp_path: Path
) -> None:
    libpq_url = postgresql_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE contacts (id int PRIMARY KEY, email text, first_name text, "
            "consent boolean, updated_at timestamptz)"
        )
        conn.execute(
            "INSERT INTO contacts SELECT i, 'person' || i || '@mail.test', 'Person ' || i, "
            "true, now() - interval '1 day' FROM generate_series(1, 20) AS i"
        )
    config = tmp_path / "campaign-bridge.toml"
    handle = mailchimp_sandbox
    config.write_text(
        f'state_url = "{postgresql_url}"\n'
        "[syncs.crm]\n"
        'fields = { FNAME = "first_name" }\n'
        "[syncs.crm.source]\n"
        f'url = "{postgresql_url}"\n'
        'table = "contacts"\n'
        'consent_column = "consent"\n'
        'updated_at_column = "updated_at"\n'
        "[syncs.crm.destination]\n"
        f'api_key = "{handle.api_key}"\n'
        f'list_id = "{handle.list_id}"\n'
        f'base_url = "{handle.base_url}"\n'
    )
    command = [sys.executable, "-m", "campaign_bridge", "-c", str(config)]
    subprocess.run([*command, "migrate"], capture_output=True, check=True, timeout=120)
    first = push_process(config)
    assert first["summary"]["created"] == 20

    again = push_process(config)
    assert again["summary"]["status"] == "succeeded"
    assert again["summary"]["provider_writes"] == 0
    assert again["summary"]["read"] == 0  # the source cursor: nothing is newer
    loaded = set(again["modules"])
    assert {"campaign_bridge.push", "campaign_bridge.providers.mailchimp"} <= loaded
    assert [name for name in NOT_FOR_A_PUSH if name in loaded] == []
