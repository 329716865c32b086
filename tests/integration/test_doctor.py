"""doctor: every check passes on a healthy environment and fails, with its fix, on a broken one.

Each test builds the broken environment for real (a database that refuses a password, a missing
table, a TLS server with an untrusted certificate, a port in use, ...) and asserts the message.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from campaign_bridge import migrations
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.doctor import (
    CheckResult,
    CheckStatus,
    autovacuum_result,
    check_clock,
    check_port_free,
    check_state_store,
    exit_code,
    run_checks,
    run_live_checks,
)
from campaign_bridge.errors import ConfigProblem, ConfigurationError
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle
from tests.conftest import MARIADB_ADMIN_URL


def _make_source(url: str, *, with_writeback_columns: bool = True) -> None:
    engine = create_engine(url)
    extra = (
        ", unsubscribed_at TIMESTAMP NULL, mc_status VARCHAR(20)" if with_writeback_columns else ""
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE contacts (id INTEGER PRIMARY KEY, email VARCHAR(200), "
                f"first_name VARCHAR(50), opt_in BOOLEAN{extra})"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO contacts (id, email, first_name, opt_in) VALUES (1, :e, 'Ada', :t)"
            ),
            {"e": "ada@lovelace.org", "t": True},
        )
    engine.dispose()


def _settings(
    tmp_path: Path,
    source_url: str,
    sandbox: SandboxHandle,
    *,
    port: int,
    api_key: str | None = None,
    base_url: str | None = None,
    fields: dict[str, str] | None = None,
    writeback: dict[str, Any] | None = None,
    state_url: str | None = None,
) -> Settings:
    sync: dict[str, Any] = {
        "source": {
            "url": source_url,
            "table": "contacts",
            "consent_column": "opt_in",
        },
        "destination": {
            "api_key": api_key or sandbox.api_key,
            "list_id": sandbox.list_id,
            "base_url": base_url or sandbox.base_url,
        },
        "fields": fields if fields is not None else {"FNAME": "first_name"},
    }
    if writeback is not None:
        sync["writeback"] = writeback
    return Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "state_url": state_url,
            "server": {"port": port},
            "syncs": {"customers": sync},
        }
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(settings: Settings) -> list[CheckResult]:
    return asyncio.run(run_checks(lambda: settings, environ={}))


def _run_live(settings: Settings) -> list[CheckResult]:
    return asyncio.run(run_live_checks(lambda: settings))


def _by_name(results: list[CheckResult], prefix: str) -> CheckResult:
    matches = [r for r in results if r.name.startswith(prefix)]
    assert matches, f"no check named {prefix!r} in {[r.name for r in results]}"
    return matches[0]


@pytest.fixture
def healthy(
    tmp_path: Path, sqlite_url: str, mailchimp_sandbox: SandboxHandle
) -> tuple[Path, str, SandboxHandle]:
    _make_source(sqlite_url)
    state_url = f"sqlite:///{(tmp_path / 'data' / 'state.db').as_posix()}"
    migrations.upgrade(state_url)
    return tmp_path, sqlite_url, mailchimp_sandbox


def test_healthy_environment_passes_every_check(healthy: tuple[Path, str, SandboxHandle]) -> None:
    tmp_path, source_url, sandbox = healthy
    settings = _settings(
        tmp_path,
        source_url,
        sandbox,
        port=_free_port(),
        writeback={"table": "contacts", "unsubscribed_at_column": "unsubscribed_at"},
    )
    results = _run(settings)
    failing = [r for r in results if r.status in (CheckStatus.FAIL, CheckStatus.WARN)]
    assert failing == []
    names = {r.name for r in results}
    for expected in (
        "python",
        "dependencies",
        "configuration",
        "data directory",
        "state store",
        "migrations",
        "source [customers]",
        "write-back [customers]",
        "outbound HTTPS [customers]",
        "clock",
        "provider [customers]",
        "audience [customers]",
        "merge fields [customers]",
        "serve port",
    ):
        assert expected in names
    assert exit_code(results) == 0


def test_invalid_configuration_reports_every_problem() -> None:
    def broken() -> Settings:
        raise ConfigurationError(
            [
                ConfigProblem("syncs.a.destination.list_id", "field required"),
                ConfigProblem("server.port", "must be ≤ 65535", "a port number"),
            ]
        )

    results = asyncio.run(run_checks(broken, environ={}))
    config = _by_name(results, "configuration")
    assert config.status is CheckStatus.FAIL
    assert "syncs.a.destination.list_id" in config.message
    assert "server.port" in config.message
    assert exit_code(results) == 2  # configuration invalid


@pytest.mark.mariadb
def test_wrong_database_password(
    healthy: tuple[Path, str, SandboxHandle], mariadb_url: str
) -> None:
    tmp_path, _, sandbox = healthy
    user = f"cb_doc_{uuid.uuid4().hex[:8]}"
    admin = create_engine(MARIADB_ADMIN_URL, isolation_level="AUTOCOMMIT")
    database = sa.make_url(mariadb_url).database
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'right-password'"))
        conn.execute(sa.text(f"GRANT ALL ON {database}.* TO '{user}'@'%'"))
    try:
        wrong = sa.make_url(mariadb_url).set(username=user, password="wrong-password")
        settings = _settings(
            tmp_path, wrong.render_as_string(hide_password=False), sandbox, port=_free_port()
        )
        source = _by_name(_run(settings), "source [customers]")
        assert source.status is CheckStatus.FAIL
        assert "refused the credentials" in source.message
        assert "wrong-password" not in source.message + source.fix
        assert "password" in source.fix
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP USER '{user}'@'%'"))
        admin.dispose()


def test_missing_source_table(
    tmp_path: Path, sqlite_url: str, mailchimp_sandbox: SandboxHandle
) -> None:
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE other (id INTEGER)"))
    engine.dispose()
    settings = _settings(tmp_path, sqlite_url, mailchimp_sandbox, port=_free_port())
    source = _by_name(_run(settings), "source [customers]")
    assert source.status is CheckStatus.FAIL
    assert "no such table" in source.message
    assert "create the table or view 'contacts'" in source.fix


def test_missing_sqlite_file_is_reported_and_not_created(
    tmp_path: Path, mailchimp_sandbox: SandboxHandle
) -> None:
    missing = tmp_path / "nowhere.db"
    settings = _settings(
        tmp_path,
        f"sqlite:///{missing.as_posix()}",
        mailchimp_sandbox,
        port=_free_port(),
        writeback={"table": "contacts", "unsubscribed_at_column": "unsubscribed_at"},
    )
    results = _run(settings)
    source = _by_name(results, "source [customers]")
    assert source.status is CheckStatus.FAIL
    assert f"the SQLite database file {missing} does not exist" in source.message
    assert _by_name(results, "write-back [customers]").status is CheckStatus.FAIL
    assert not missing.exists()  # doctor changes nothing


@pytest.mark.postgresql
def test_missing_writeback_column(
    tmp_path: Path, postgresql_url: str, mailchimp_sandbox: SandboxHandle
) -> None:
    _make_source(postgresql_url, with_writeback_columns=False)
    settings = _settings(
        tmp_path,
        postgresql_url,
        mailchimp_sandbox,
        port=_free_port(),
        writeback={
            "table": "contacts",
            "unsubscribed_at_column": "unsubscribed_at",
            "bounced_at_column": "bounced_at",
        },
    )
    check = _by_name(_run(settings), "write-back [customers]")
    assert check.status is CheckStatus.FAIL
    assert "has no column(s) unsubscribed_at, bounced_at" in check.message
    assert "ALTER TABLE" in check.fix


def test_missing_merge_field(healthy: tuple[Path, str, SandboxHandle]) -> None:
    tmp_path, source_url, sandbox = healthy
    settings = _settings(
        tmp_path, source_url, sandbox, port=_free_port(), fields={"SHOESIZE": "first_name"}
    )
    check = _by_name(_run(settings), "merge fields [customers]")
    assert check.status is CheckStatus.FAIL
    assert "'SHOESIZE' does not exist in the audience" in check.message
    assert "FNAME" in check.fix  # lists what the audience has


def test_wrong_data_centre(healthy: tuple[Path, str, SandboxHandle]) -> None:
    tmp_path, source_url, sandbox = healthy
    key, dc = sandbox.api_key.rsplit("-", 1)
    wrong_dc = "us1" if dc != "us1" else "us2"
    settings = _settings(
        tmp_path, source_url, sandbox, port=_free_port(), api_key=f"{key}-{wrong_dc}"
    )
    check = _by_name(_run(settings), "provider [customers]")
    assert check.status is CheckStatus.FAIL
    assert "rejected the credentials" in check.message
    assert f"data centre suffix is '{wrong_dc}'" in check.fix
    assert key not in check.message + check.fix


def test_unreachable_provider_host(healthy: tuple[Path, str, SandboxHandle]) -> None:
    tmp_path, source_url, sandbox = healthy
    closed = _free_port()  # bound and released: nothing listens there
    settings = _settings(
        tmp_path,
        source_url,
        sandbox,
        port=_free_port(),
        base_url=f"http://127.0.0.1:{closed}/3.0",
    )
    check = _by_name(_run(settings), "outbound HTTPS [customers]")
    assert check.status is CheckStatus.FAIL
    assert f"connection refused: nothing listens at 127.0.0.1:{closed}" in check.message
    assert f"`campaign-bridge sandbox serve --port {closed}`" in check.fix


def test_a_dead_proxy_is_named_with_its_own_fix(
    healthy: tuple[Path, str, SandboxHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 3: the provider is up and HTTPS_PROXY is set but dead: doctor names the proxy
    (password masked), not "set HTTPS_PROXY" nor "start the sandbox"."""
    tmp_path, source_url, sandbox = healthy
    dead = _free_port()
    proxy = f"http://squid:s3cret-pw@127.0.0.1:{dead}"
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)  # what httpx reads
    settings = _settings(tmp_path, source_url, sandbox, port=_free_port())
    results = asyncio.run(run_checks(lambda: settings, environ={"HTTP_PROXY": proxy}))
    check = _by_name(results, "outbound HTTPS [customers]")
    assert check.status is CheckStatus.FAIL
    assert f"proxy: http://squid:***@127.0.0.1:{dead} (from HTTP_PROXY)" in check.message
    assert "s3cret-pw" not in check.message + check.fix
    assert "HTTP_PROXY" in check.fix
    assert "sandbox serve" not in check.fix
    assert "set HTTPS_PROXY" not in check.fix


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _answering_ok(tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """A local server answering 200 to every GET (over TLS with ``tls``); yields its port."""
    server = HTTPServer(("127.0.0.1", 0), _Ok)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def untrusted_tls_server(tmp_path: Path) -> Iterator[int]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a self-signed certificate: apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    yield from _answering_ok(context)


def test_tls_failure_is_reported_as_such(
    healthy: tuple[Path, str, SandboxHandle], untrusted_tls_server: int
) -> None:
    tmp_path, source_url, sandbox = healthy
    settings = _settings(
        tmp_path,
        source_url,
        sandbox,
        port=_free_port(),
        base_url=f"https://127.0.0.1:{untrusted_tls_server}/3.0",
    )
    check = _by_name(_run(settings), "outbound HTTPS [customers]")
    assert check.status is CheckStatus.FAIL
    assert "TLS: the certificate presented at https://127.0.0.1" in check.message
    assert "is not trusted" in check.message
    assert "SSL_CERT_FILE" in check.fix


def test_migrations_behind(healthy: tuple[Path, str, SandboxHandle]) -> None:
    tmp_path, source_url, sandbox = healthy
    state_url = f"sqlite:///{(tmp_path / 'behind.db').as_posix()}"
    migrations.upgrade(state_url)
    migrations.downgrade(state_url, "-1")
    settings = _settings(tmp_path, source_url, sandbox, port=_free_port(), state_url=state_url)
    results = _run(settings)
    check = _by_name(results, "migrations")
    assert check.status is CheckStatus.NEXT  # the runbook's next step, not a failure
    assert f"this version needs {migrations.head()}" in check.message
    assert exit_code(results) == 0
    assert check.fix == "run `campaign-bridge migrate upgrade` before starting the new version"


def test_read_only_data_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o555)
    command = [sys.executable, "-c", _CHECK_DATA_DIR, str(data_dir)]
    if os.geteuid() == 0:
        # root writes anywhere: check without the capabilities that let it, as a service user.
        if shutil.which("setpriv") is None:
            pytest.fail(
                "setpriv is needed to drop root's file capabilities: apt-get install util-linux"
            )
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    data_dir.chmod(0o755)
    assert result["status"] == "fail"
    assert "is not writable" in result["message"]
    assert "Permission denied" in result["message"]
    assert "CAMPAIGN_BRIDGE_DATA_DIR" in result["fix"]


_CHECK_DATA_DIR = (
    "import json, pathlib, sys\n"
    "from campaign_bridge.doctor import check_data_dir\n"
    "print(json.dumps(check_data_dir(pathlib.Path(sys.argv[1])).as_dict()))\n"
)


def test_port_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = int(sock.getsockname()[1])
        check = check_port_free("127.0.0.1", port)
    assert check.status is CheckStatus.FAIL
    assert f"127.0.0.1:{port} is not free" in check.message
    assert "CAMPAIGN_BRIDGE_SERVER__PORT" in check.fix
    assert check_port_free("127.0.0.1", port).status is CheckStatus.OK  # released again


def test_clock_skew_thresholds() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert check_clock(now - timedelta(seconds=5), now).status is CheckStatus.OK
    assert check_clock(now - timedelta(seconds=90), now).status is CheckStatus.WARN
    skewed = check_clock(now + timedelta(minutes=10), now)
    assert skewed.status is CheckStatus.FAIL
    assert "600 s" in skewed.message
    assert check_clock(None, now).status is CheckStatus.SKIP


@pytest.fixture
def webhook_receiver() -> Iterator[int]:
    yield from _answering_ok()


def test_webhook_url_reachable_but_not_registered_then_registered(
    healthy: tuple[Path, str, SandboxHandle], webhook_receiver: int
) -> None:
    from campaign_bridge.providers import create_provider

    tmp_path, source_url, sandbox = healthy
    base = _settings(tmp_path, source_url, sandbox, port=_free_port())
    settings = base.model_copy(
        update={
            "server": base.server.model_copy(
                update={
                    "public_url": f"http://127.0.0.1:{webhook_receiver}",
                    "webhook_tokens": [SecretStr("tok-" + "x" * 28)],
                }
            )
        }
    )
    assert not [r for r in _run(settings) if r.name.startswith("webhook")]  # after start only
    results = _run_live(settings)
    assert _by_name(results, "webhook URL").status is CheckStatus.OK
    missing = _by_name(results, "webhook registered [customers]")
    assert missing.status is CheckStatus.FAIL
    assert missing.fix == "run `campaign-bridge webhooks register customers`"
    assert "tok-" not in missing.message  # the token is a secret

    async def register() -> None:
        provider = create_provider(settings.syncs["customers"].destination)
        try:
            url = f"http://127.0.0.1:{webhook_receiver}/webhooks/mailchimp/tok-{'x' * 28}"
            await provider.register_webhook(sandbox.list_id, url)
        finally:
            await provider.aclose()

    asyncio.run(register())
    registered = _by_name(_run_live(settings), "webhook registered [customers]")
    assert registered.status is CheckStatus.OK


def test_webhook_url_unreachable(healthy: tuple[Path, str, SandboxHandle]) -> None:
    tmp_path, source_url, sandbox = healthy
    base = _settings(tmp_path, source_url, sandbox, port=_free_port())
    settings = base.model_copy(
        update={
            "server": base.server.model_copy(
                update={
                    "public_url": f"http://127.0.0.1:{_free_port()}",
                    "webhook_tokens": [SecretStr("tok-" + "y" * 28)],
                }
            )
        }
    )
    check = _by_name(_run_live(settings), "webhook URL")
    assert check.status is CheckStatus.FAIL
    assert "is not reachable" in check.message
    assert "tok-" not in check.message


def test_postgresql_autovacuum_is_checked(postgresql_url: str) -> None:
    migrations.upgrade(postgresql_url)
    results = check_state_store(postgresql_url)
    engine = create_engine(postgresql_url)
    with engine.connect() as conn:
        setting = str(conn.execute(sa.text("SHOW autovacuum")).scalar())
    engine.dispose()
    check = _by_name(results, "state store autovacuum")
    expected = CheckStatus.OK if setting == "on" else CheckStatus.WARN
    assert check.status is expected
    assert autovacuum_result("on").status is CheckStatus.OK
    off = autovacuum_result("off")
    assert off.status is CheckStatus.WARN
    assert "autovacuum = on" in off.fix
