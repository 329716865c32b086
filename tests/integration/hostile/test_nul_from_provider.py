"""Defect 1: one NUL from the provider stopped every pull and push (PostgreSQL text has no NUL).

Each hostile value travels the real way: seeded in the sandbox through its control API, read by
the adapter over HTTP, written to a real PostgreSQL state store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.db import create_engine
from campaign_bridge.pull import run_pull
from campaign_bridge.push import run_push
from campaign_bridge.status_changes import email_hash

from ..pull.conftest import PullEnv, email_of
from ..pull.conftest import pull_env as pull_env
from ..push.conftest import Sandbox, make_source, push_settings
from ..push.conftest import sandbox as sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def database_url(postgresql_url: str) -> str:
    return postgresql_url


def _unsubscribe(control_url: str, list_id: str, email: str, reason: str) -> None:
    response = httpx.post(
        f"{control_url}/lists/{list_id}/members/{email}/unsubscribe",
        json={"reason": reason},
        timeout=30,
    )
    response.raise_for_status()


async def test_pull_lands_an_unsubscribe_reason_and_a_subject_holding_nul(
    pull_env: PullEnv,
) -> None:
    env = pull_env
    who = email_of(3)
    _unsubscribe(env.sandbox.control_url, env.sandbox.list_id, who, "no\x00more")
    campaign = env.control(
        "POST",
        "/campaigns/seed",
        {"list_id": env.sandbox.list_id, "seed": 1, "subject": "Hi\x00there"},
    )["id"]

    summary = await run_pull(env.settings, "crm")

    assert summary.status == "succeeded"
    reason = env.scalar(
        "SELECT unsubscribe_reason FROM cb_member_status WHERE member_id = :m", m=email_hash(who)
    )
    assert reason == "nomore"
    subject = env.scalar("SELECT subject FROM cb_campaigns WHERE campaign_id = :c", c=campaign)
    assert subject == "Hithere"
    # the withdrawal reached the user's table and the ledger
    assert env.scalar("SELECT mc_status FROM contacts WHERE id = 3") == "unsubscribed"
    ledger = env.rows(
        "SELECT new_status FROM cb_consent_ledger WHERE email_hash = :m", m=email_hash(who)
    )
    assert ledger == [("unsubscribed",)]


async def test_push_goes_on_when_a_member_reason_holds_nul(
    postgresql_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    handle = sandbox.handle
    migrations.upgrade(postgresql_url)
    make_source(postgresql_url, rows=5)
    settings = push_settings(tmp_path, postgresql_url, sandbox, state_url=postgresql_url)
    first = await run_push(settings, "crm")
    assert first.status == "succeeded", first.error
    _unsubscribe(handle.control_url, handle.list_id, "person2@mail.test", "stop\x00it")

    second: Any = await run_push(settings, "crm")

    assert second.status == "succeeded", second.error


async def test_a_source_key_too_long_for_the_store_is_rejected_not_fatal(
    postgresql_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    migrations.upgrade(postgresql_url)
    make_source(postgresql_url, rows=4)
    query = (
        "SELECT CASE WHEN id = 2 THEN repeat('k', 300) ELSE id::text END AS id, email, "
        "first_name, nick, age, consent, vip, tag_list, updated_at FROM contacts"
    )
    settings = push_settings(
        tmp_path,
        postgresql_url,
        sandbox,
        state_url=postgresql_url,
        source={"table": None, "query": query},
    )

    summary = await run_push(settings, "crm")

    assert summary.status == "succeeded", summary.error
    assert summary.rejected == {"unstorable_value": 1}
    assert summary.created == 3
    engine = create_engine(postgresql_url)
    try:
        with engine.connect() as conn:
            kept = conn.execute(
                sa.text("SELECT source_key, reason_code, message FROM cb_rejected_records")
            ).all()
    finally:
        engine.dispose()
    assert [(len(k), r) for k, r, _m in kept] == [(255, "unstorable_value")]
    assert "cb_contact_state.source_key" in kept[0][2]
