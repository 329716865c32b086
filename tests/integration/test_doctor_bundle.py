"""`doctor --bundle FILE`: everything support needs, and no secret and no address.

Secrets and addresses are seeded everywhere they could leak from: the configuration (API key,
tokens, a database password), the state store (run errors, rejection messages, webhook errors
and payloads) and the environment (a proxy with credentials)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.db import create_engine
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle
from campaign_bridge.state import rejected_records, sync_runs, webhook_events

DB_PASSWORD = "Db-Pa55word-never-shown"
WEBHOOK_TOKEN = "hook-secret-token-never-shown-0a9b8c7d"
ADMIN_TOKEN = "admin-secret-token-never-shown-1f2e3d4c"
PROXY_PASSWORD = "proxy-pa55-never-shown"
ADDRESSES = ["grace.hopper@navy.example.org", "ada@lovelace.example.net"]


def _seed_state(url: str, api_key: str) -> None:
    now = datetime.now(UTC)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(sync_runs).values(
                id="run-1",
                sync_name="customers",
                direction="push",
                started_at=now,
                finished_at=now,
                status="failed",
                counts={"created": 1},
                error_summary=f"provider refused {ADDRESSES[0]} with key {api_key}",
            )
        )
        conn.execute(
            sa.insert(rejected_records).values(
                sync_name="customers",
                source_key="7",
                email_hash="0" * 32,
                reason_code="invalid_type",
                message=f"AGE: expected a number for {ADDRESSES[1]}",
                attempts=1,
                first_seen=now,
                last_seen=now,
            )
        )
        conn.execute(
            sa.insert(webhook_events).values(
                provider="mailchimp",
                dedupe_key="1" * 32,
                event_type="unsubscribe",
                received_at=now,
                payload=f"data[email]={ADDRESSES[0]}",
                error=f"no contact for {ADDRESSES[0]}",
            )
        )
    engine.dispose()


def test_bundle_has_what_support_needs_and_no_secret_or_address(
    tmp_path: Path, postgresql_url: str, mariadb_url: str, mailchimp_sandbox: SandboxHandle
) -> None:
    state_url = str(sa.make_url(postgresql_url).set(password=DB_PASSWORD).render_as_string(False))
    migrations.upgrade(state_url)
    _seed_state(state_url, mailchimp_sandbox.api_key)
    source = create_engine(mariadb_url)
    with source.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customers (id INT PRIMARY KEY, email VARCHAR(200))"))
        conn.execute(sa.text("INSERT INTO customers VALUES (1, :e)"), {"e": ADDRESSES[1]})
    source.dispose()
    key_file = tmp_path / "api_key"
    key_file.write_text(mailchimp_sandbox.api_key, encoding="utf-8")
    key_file.chmod(0o600)
    sync = "CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    env = {
        **clean,
        "CAMPAIGN_BRIDGE_DATA_DIR": str(tmp_path / "data"),
        "CAMPAIGN_BRIDGE_STATE_URL": state_url,
        "CAMPAIGN_BRIDGE_SERVER__WEBHOOK_TOKENS": json.dumps([WEBHOOK_TOKEN]),
        "CAMPAIGN_BRIDGE_SERVER__ADMIN_TOKEN": ADMIN_TOKEN,
        sync + "SOURCE__URL": mariadb_url,
        sync + "SOURCE__TABLE": "customers",
        sync + "DESTINATION__API_KEY_FILE": str(key_file),
        sync + "DESTINATION__LIST_ID": mailchimp_sandbox.list_id,
        sync + "DESTINATION__BASE_URL": mailchimp_sandbox.base_url,
        "HTTPS_PROXY": f"http://support:{PROXY_PASSWORD}@proxy.internal.example:3128",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    target = tmp_path / "bundle.json"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("campaign-bridge")), "doctor", "--bundle", str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert target.exists(), done.stdout + done.stderr
    assert f"support bundle written to {target}" in done.stdout
    assert target.stat().st_mode & 0o077 == 0  # readable by its owner only
    text = target.read_text(encoding="utf-8")
    for secret in (
        mailchimp_sandbox.api_key,
        DB_PASSWORD,
        WEBHOOK_TOKEN,
        ADMIN_TOKEN,
        PROXY_PASSWORD,
        *ADDRESSES,
    ):
        assert secret not in text, f"{secret!r} leaked into the bundle"
    # No address of any kind; the database URLs' user@host are not contact data.
    assert set(re.findall(r"[\w.+-]+@[\w-]+\.[\w.-]+", text)) <= {"root@127.0.0.1"}

    data = json.loads(text)
    assert data["campaign_bridge"]
    assert data["packages"]["sqlalchemy"]
    assert data["packages"]["psycopg"]
    assert data["packages"]["pymysql"]
    assert data["platform"]["python"] == sys.version.split()[0]
    state = data["databases"]["state store"]
    assert state["dialect"] == "postgresql"
    assert {"server_version", "TimeZone", "server_encoding"} <= set(state["settings"])
    assert "***" in state["url"]
    mariadb = data["databases"]["source [customers]"]["settings"]
    assert {"sql_mode", "time_zone", "character_set_server", "version"} <= set(mariadb)
    proxy = data["environment"]["network"]["HTTPS_PROXY"]
    assert proxy.startswith("http://support:*")
    assert proxy.endswith("@proxy.internal.example:3128")
    assert (
        "CAMPAIGN_BRIDGE_SERVER__ADMIN_TOKEN"
        in data["environment"]["campaign_bridge_variables_set"]
    )
    settings = {row["key"]: row for row in data["configuration"]["settings"]}
    key = settings["syncs.customers.destination.api_key"]
    assert key["value"] == "********"
    assert key["source"] == f"env-file:{sync}DESTINATION__API_KEY_FILE"
    checks = {row["name"]: row["status"] for row in data["doctor"]}
    assert checks["provider [customers]"] == "ok"
    [run] = data["recent"]["runs"]
    assert run["status"] == "failed"
    assert "email:" in run["error_summary"]  # the address is replaced by its hash
    assert data["recent"]["open_rejections"] == [
        {"sync": "customers", "reason": "invalid_type", "count": 1}
    ]
    assert data["recent"]["webhook_errors"][0]["count"] == 1
    assert data["rehearsal"] is None
