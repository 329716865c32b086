"""doctor in stages: a correct fresh deployment passes before start; what only a running service
can show is checked by `--live`; data checks read source rows through the real mapping; security
checks warn the way Django's `check --deploy` does. Every environment is built for real."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from pydantic import SecretStr

from campaign_bridge import migrations
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.doctor import (
    CheckResult,
    CheckStatus,
    exit_code,
    run_checks,
    run_live_checks,
)
from campaign_bridge.doctor._security import database_tls_result, is_loopback
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle
from campaign_bridge.server import create_app
from tests.integration.serve.conftest import serving
from tests.integration.test_doctor import _by_name, _free_port, _make_source, _settings

STRONG_TOKEN = "V3ry-l0ng_and-Varied-webhook-token-4c7f2a9e"


def _run(settings: Settings, environ: dict[str, str] | None = None) -> list[CheckResult]:
    return asyncio.run(run_checks(lambda: settings, environ=environ or {}))


def _with_server(settings: Settings, **server: Any) -> Settings:
    return settings.model_copy(update={"server": settings.server.model_copy(update=server)})


def _failures(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.status is CheckStatus.FAIL]


# --- defect 1: a correct fresh deployment passes pre-start doctor ----------------------------


def test_fresh_install_with_webhooks_passes_before_migrate_and_start(
    tmp_path: Path, sqlite_url: str, mailchimp_sandbox: SandboxHandle
) -> None:
    _make_source(sqlite_url)
    settings = _with_server(
        _settings(tmp_path, sqlite_url, mailchimp_sandbox, port=_free_port()),
        public_url="https://bridge.example.invalid",  # served only after start
        webhook_tokens=[SecretStr(STRONG_TOKEN)],
    )
    results = _run(settings)
    assert _failures(results) == []
    pending = _by_name(results, "migrations")
    assert pending.status is CheckStatus.NEXT
    assert "no revision (a fresh install)" in pending.message
    assert "migrate upgrade" in pending.fix
    assert not [r for r in results if r.name.startswith("webhook")]
    assert exit_code(results) == 0

    migrations.upgrade(settings.effective_state_url())
    assert _by_name(_run(settings), "migrations").status is CheckStatus.OK


# --- defect 3: a NUMBER merge field mapped to a column of words ------------------------------


def _add_number_field(sandbox: SandboxHandle, tag: str) -> None:
    response = httpx.post(
        f"{sandbox.base_url}/lists/{sandbox.list_id}/merge-fields",
        json={"tag": tag, "name": tag.title(), "type": "number"},
        auth=("doctor-test", sandbox.api_key),
    )
    response.raise_for_status()


def _words_source(url: str, ages: list[str]) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE contacts (id INTEGER PRIMARY KEY, email VARCHAR(200), "
                "first_name VARCHAR(50), opt_in BOOLEAN, age VARCHAR(20))"
            )
        )
        for index, age in enumerate(ages, 1):
            conn.execute(
                sa.text("INSERT INTO contacts VALUES (:i, :e, 'Ada', :t, :a)"),
                {"i": index, "e": f"person{index}@example.org", "t": True, "a": age},
            )
    engine.dispose()


def test_number_field_mapped_to_words_fails_with_counts_and_push_agrees(
    tmp_path: Path, sqlite_url: str, mailchimp_sandbox: SandboxHandle
) -> None:
    from campaign_bridge.push import run_push

    _add_number_field(mailchimp_sandbox, "AGE")
    _words_source(sqlite_url, ["forty", "thirty-one", "young", "17"])
    settings = _settings(
        tmp_path,
        sqlite_url,
        mailchimp_sandbox,
        port=_free_port(),
        fields={"FNAME": "first_name", "AGE": "age"},
    )
    migrations.upgrade(settings.effective_state_url())
    results = _run(settings)
    assert _by_name(results, "merge fields [customers]").status is CheckStatus.OK  # tags fine
    sample = _by_name(results, "data sample [customers]")
    assert sample.status is CheckStatus.FAIL
    assert "3 of 4 rows: invalid_type in AGE (NUMBER field) from column 'age'" in sample.message
    assert "expected a number" in sample.message
    assert "forty" not in sample.message
    assert "@" not in sample.message
    assert "map AGE (NUMBER field) from column 'age'" in sample.fix
    assert exit_code(results) == 1

    # The real push rejects exactly what doctor predicted, for the same reason.
    summary = asyncio.run(run_push(settings, "customers"))
    assert summary.rejected == {"invalid_type": 3}


def test_a_few_bad_rows_are_a_warning_with_counts(
    tmp_path: Path, sqlite_url: str, mailchimp_sandbox: SandboxHandle
) -> None:
    _add_number_field(mailchimp_sandbox, "AGE")
    _words_source(sqlite_url, ["40", "31", "n/a", "17", "52"])
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE contacts SET email = 'not-an-address' WHERE id = 2"))
        conn.execute(sa.text("UPDATE contacts SET email = 'person1@example.org' WHERE id = 4"))
    engine.dispose()
    settings = _settings(
        tmp_path,
        sqlite_url,
        mailchimp_sandbox,
        port=_free_port(),
        fields={"FNAME": "first_name", "AGE": "age"},
    )
    sample = _by_name(_run(settings), "data sample [customers]")
    assert sample.status is CheckStatus.WARN
    assert "1 of 5 rows: invalid_type in AGE (NUMBER field) from column 'age'" in sample.message
    assert "1 of 5 rows: invalid_email in email" in sample.message
    assert "1 of 5 rows: duplicate_email in email" in sample.message


# --- security checks (defect 4's doctor half) ------------------------------------------------


def test_security_checks_warn_and_fail_with_the_fix(
    tmp_path: Path, sqlite_url: str, mailchimp_sandbox: SandboxHandle
) -> None:
    _make_source(sqlite_url)
    secret = tmp_path / "api_key"
    secret.write_text(mailchimp_sandbox.api_key, encoding="utf-8")
    secret.chmod(0o644)
    base = _settings(tmp_path, sqlite_url, mailchimp_sandbox, port=_free_port())
    migrations.upgrade(base.effective_state_url())
    exposed = _with_server(
        base,
        host="0.0.0.0",
        public_url="http://bridge.example.org",
        webhook_tokens=[SecretStr("changeme-changeme-changeme")],
    ).model_copy(update={"log_emails": True})
    env = {"CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__DESTINATION__API_KEY_FILE": str(secret)}
    results = _run(exposed, env)
    status_page = _by_name(results, "security: status page")
    assert status_page.status is CheckStatus.FAIL
    assert "ADMIN_TOKEN_FILE" in status_page.fix
    assert "--public-status" in status_page.fix
    assert _by_name(results, "security: metrics").status is CheckStatus.WARN
    assert _by_name(results, "security: public URL").status is CheckStatus.WARN
    weak = _by_name(results, "security: webhook token")
    assert weak.status is CheckStatus.WARN
    assert "changeme" not in weak.message + weak.fix  # the token itself is never shown
    assert _by_name(results, "security: addresses in logs").status is CheckStatus.WARN
    files = _by_name(results, "security: secret files")
    assert files.status is CheckStatus.WARN
    assert f"{secret} (CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__DESTINATION__API_KEY_FILE, mode 644)" in (
        files.message
    )
    assert exit_code(results) == 1

    secret.chmod(0o400)
    safe = _with_server(
        exposed,
        admin_token=SecretStr(STRONG_TOKEN + "-admin"),
        public_url="https://bridge.example.org",
        webhook_tokens=[SecretStr(STRONG_TOKEN)],
    ).model_copy(update={"log_emails": False})
    fixed = _run(safe, env)
    for name in (
        "security: status page",
        "security: public URL",
        "security: webhook token",
        "security: addresses in logs",
        "security: secret files",
    ):
        assert _by_name(fixed, name).status is CheckStatus.OK, name


def test_database_tls_is_asked_of_the_server(postgresql_url: str, mariadb_url: str) -> None:
    from campaign_bridge.doctor._security import connection_encrypted

    for url in (postgresql_url, mariadb_url):
        engine = create_engine(url)
        with engine.connect() as conn:
            encrypted = connection_encrypted(conn)
        engine.dispose()
        assert encrypted is False  # the test servers speak plain TCP on loopback
        assert database_tls_result("state store", "127.0.0.1", encrypted).status is (CheckStatus.OK)
        remote = database_tls_result("state store", "db.internal.example", encrypted)
        assert remote.status is CheckStatus.WARN
        assert "sslmode=verify-full" in remote.fix
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert is_loopback(None)
    assert not is_loopback("10.0.0.5")
    assert not is_loopback("db.example.org")


# --- exit codes through the installed command ------------------------------------------------


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("campaign-bridge")), *args]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    return subprocess.run(
        command, env={**clean, **env}, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_exit_codes_a_runbook_can_rely_on(
    tmp_path: Path, sqlite_url: str, mailchimp_sandbox: SandboxHandle
) -> None:
    _make_source(sqlite_url)
    sync = "CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__"
    env = {
        "CAMPAIGN_BRIDGE_DATA_DIR": str(tmp_path / "data"),
        "CAMPAIGN_BRIDGE_SERVER__PORT": str(_free_port()),
        sync + "SOURCE__URL": sqlite_url,
        sync + "SOURCE__TABLE": "contacts",
        sync + "SOURCE__CONSENT_COLUMN": "opt_in",
        sync + "DESTINATION__API_KEY": mailchimp_sandbox.api_key,
        sync + "DESTINATION__LIST_ID": mailchimp_sandbox.list_id,
        sync + "DESTINATION__BASE_URL": mailchimp_sandbox.base_url,
        sync + "FIELDS__FNAME": "first_name",
    }
    fresh = _cli(["doctor", "--json"], env, tmp_path)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    statuses = {row["name"]: row["status"] for row in json.loads(fresh.stdout)}
    assert statuses["migrations"] == "next"

    broken = _cli(["doctor", "--json"], {**env, sync + "SOURCE__TABLE": "nowhere"}, tmp_path)
    assert broken.returncode == 1
    rows = {row["name"]: row for row in json.loads(broken.stdout)}
    assert rows["source [customers]"]["status"] == "fail"

    invalid = _cli(["doctor", "--json"], {**env, "CAMPAIGN_BRIDGE_SERVER__PORT": "99999"}, tmp_path)
    assert invalid.returncode == 2
    assert "server.port" in invalid.stdout + invalid.stderr


# --- doctor --live ---------------------------------------------------------------------------


def test_live_checks_the_running_service_webhooks_locks_and_runs(
    tmp_path: Path, sqlite_url: str, mailchimp_sandbox: SandboxHandle
) -> None:
    from campaign_bridge.providers import create_provider
    from campaign_bridge.state import locks, sync_runs

    _make_source(sqlite_url)
    base = _settings(tmp_path, sqlite_url, mailchimp_sandbox, port=_free_port())
    state_url = base.effective_state_url()
    migrations.upgrade(state_url)

    def live(settings: Settings, url: str) -> list[CheckResult]:
        return asyncio.run(run_live_checks(lambda: settings, url=url))

    down = live(base, f"http://127.0.0.1:{_free_port()}")
    assert _by_name(down, "service").status is CheckStatus.FAIL
    assert "--url" in _by_name(down, "service").fix

    with serving(create_app(base)) as root:
        settings = _with_server(base, public_url=root, webhook_tokens=[SecretStr(STRONG_TOKEN)])
        with serving(create_app(settings)) as served:
            settings = _with_server(settings, public_url=served)
            results = live(settings, served)
            assert _by_name(results, "service").status is CheckStatus.OK
            assert _by_name(results, "service ready").status is CheckStatus.OK
            assert _by_name(results, "webhook URL").status is CheckStatus.OK
            unregistered = _by_name(results, "webhook registered [customers]")
            assert unregistered.status is CheckStatus.FAIL
            assert STRONG_TOKEN not in unregistered.message
            assert _by_name(results, "scheduler locks").status is CheckStatus.OK
            assert _by_name(results, "last push [customers]").status is CheckStatus.SKIP

            async def register() -> None:
                provider = create_provider(settings.syncs["customers"].destination)
                try:
                    url = f"{served}/webhooks/mailchimp/{STRONG_TOKEN}"
                    await provider.register_webhook(mailchimp_sandbox.list_id, url)
                finally:
                    await provider.aclose()

            asyncio.run(register())
            engine = create_engine(state_url)
            now = datetime.now(UTC)
            with engine.begin() as conn:
                conn.execute(
                    sa.insert(locks).values(
                        name="sync:customers",
                        owner="host-a:123",
                        acquired_at=now - timedelta(hours=2),
                        expires_at=now - timedelta(hours=1),
                    )
                )
                conn.execute(
                    sa.insert(sync_runs).values(
                        id="00000000-0000-4000-8000-000000000001",
                        sync_name="customers",
                        direction="push",
                        started_at=now - timedelta(minutes=5),
                        finished_at=now - timedelta(minutes=4),
                        status="failed",
                        counts={},
                        error_summary="provider said no",
                    )
                )
            engine.dispose()
            again = live(settings, served)
    assert _by_name(again, "webhook registered [customers]").status is CheckStatus.OK
    stale = _by_name(again, "scheduler locks")
    assert stale.status is CheckStatus.WARN
    assert "sync:customers by host-a:123" in stale.message
    failed = _by_name(again, "last push [customers]")
    assert failed.status is CheckStatus.WARN
    assert "failed" in failed.message
    assert exit_code(again) == 0  # warnings only


def test_a_configuration_file_holding_a_secret_must_not_be_world_readable(
    tmp_path: Path, sqlite_url: str, mailchimp_sandbox: SandboxHandle
) -> None:
    _make_source(sqlite_url)
    config = tmp_path / "campaign-bridge.toml"
    config.write_text(
        f'data_dir = "{(tmp_path / "data").as_posix()}"\n'
        "[server]\n"
        f"port = {_free_port()}\n"
        "[syncs.customers.source]\n"
        f'url = "{sqlite_url}"\ntable = "contacts"\n'
        "[syncs.customers.destination]\n"
        f'api_key = "{mailchimp_sandbox.api_key}"\n'
        f'list_id = "{mailchimp_sandbox.list_id}"\n'
        f'base_url = "{mailchimp_sandbox.base_url}"\n',
        encoding="utf-8",
    )
    config.chmod(0o644)
    done = _cli(["-c", str(config), "doctor", "--json"], {}, tmp_path)
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    files = rows["security: secret files"]
    assert files["status"] == "warn"
    assert f"{config} (the configuration file, mode 644)" in files["message"]
    assert mailchimp_sandbox.api_key not in done.stdout
    config.chmod(0o600)
    again = _cli(["-c", str(config), "doctor", "--json"], {}, tmp_path)
    rows = {row["name"]: row for row in json.loads(again.stdout)}
    assert rows["security: secret files"]["status"] == "ok"


def test_the_port_of_a_running_bridge_is_a_warning_not_a_failure(sqlite_url: str) -> None:
    from campaign_bridge.doctor import check_port_free
    from tests.integration.serve.test_operations import settings_for

    migrations.upgrade(sqlite_url)
    with serving(create_app(settings_for(sqlite_url), checks={})) as root:
        port = int(root.rsplit(":", 1)[1])
        upgrade = check_port_free("127.0.0.1", port)
    assert upgrade.status is CheckStatus.WARN
    assert "served by a running campaign-bridge" in upgrade.message
