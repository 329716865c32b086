"""Fuzz: hostile text from the provider (through the sandbox over HTTP), in webhook deliveries
and in source rows never stops a run; every other record lands. On SQLite, PostgreSQL and
MariaDB. Few examples per engine (each is a real pull or push): the budget is about a minute.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import mysql

from campaign_bridge import migrations
from campaign_bridge.config import SyncConfig
from campaign_bridge.db import create_engine
from campaign_bridge.landing import campaigns
from campaign_bridge.pull import run_pull
from campaign_bridge.push import run_push
from campaign_bridge.state import member_status
from campaign_bridge.status_changes import email_hash
from campaign_bridge.storable import column_limit, storable_text
from campaign_bridge.webhook_applier import WebhookApplier
from campaign_bridge.webhook_inbox import InboxStore
from campaign_bridge.webhook_queue import pending_events
from tests.webhook_rows import mailchimp_row

from ..pull.conftest import PEOPLE, PullEnv, email_of
from ..pull.conftest import pull_env as pull_env
from ..push.conftest import Sandbox, push_settings
from ..push.conftest import sandbox as sandbox
from .strategies import hostile_text

FUZZ = settings(
    max_examples=3,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def expected(value: str, column: sa.Column[Any], dialect: str) -> str:
    return storable_text(value, column_limit(column.type, dialect))[0]


# --- pull: member reasons and campaign subjects from the provider -------------------------


@FUZZ
@given(reason=hostile_text(), subject=hostile_text())
def test_pull_lands_hostile_provider_text(pull_env: PullEnv, reason: str, subject: str) -> None:
    env = pull_env
    dialect = env.engine.dialect.name
    who = _next_person(env)
    response = httpx.post(
        f"{env.sandbox.control_url}/lists/{env.sandbox.list_id}/members/{email_of(who)}"
        "/unsubscribe",
        json={"reason": reason},
        timeout=60,
    )
    response.raise_for_status()
    campaign = env.control(
        "POST",
        "/campaigns/seed",
        {"list_id": env.sandbox.list_id, "seed": who, "subject": subject, "recipients": 5},
    )["id"]

    summary = asyncio.run(run_pull(env.settings, "crm"))

    assert summary.status == "succeeded", summary.error
    stored = env.scalar("SELECT subject FROM cb_campaigns WHERE campaign_id = :c", c=campaign)
    assert stored == expected(subject, campaigns.c.subject, dialect)
    assert env.scalar("SELECT COUNT(*) FROM cb_member_status") == PEOPLE  # everyone landed
    landed = env.scalar(
        "SELECT unsubscribe_reason FROM cb_member_status WHERE member_id = :m",
        m=email_hash(email_of(who)),
    )
    if reason:
        assert landed == expected(reason, member_status.c.unsubscribe_reason, dialect)
    assert env.scalar("SELECT mc_status FROM contacts WHERE id = :i", i=who) == "unsubscribed"


_people: dict[str, itertools.count[int]] = {}


def _next_person(env: PullEnv) -> int:
    counter = _people.setdefault(env.url, itertools.count(1))
    who = next(counter)
    assert who < PEOPLE, "more examples than people"
    return who


# --- webhooks: hostile fields, raw bad %-escapes ---------------------------------------------

LIST_ID = "a6b5da1054"


def _form(fields: list[tuple[str, str | bytes]]) -> bytes:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in fields).encode()


@FUZZ
@given(
    reason=hostile_text(surrogates=True),
    fname=hostile_text(surrogates=True),
    list_id=hostile_text(huge=False),
)
def test_webhooks_with_hostile_fields_are_all_applied(
    database_url: str, reason: str, fname: str, list_id: str
) -> None:
    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    try:
        bodies = [
            _form(
                [
                    ("type", "unsubscribe"),
                    ("fired_at", stamp),
                    ("data[list_id]", LIST_ID),
                    ("data[email]", f"fuzz{i}@hooks.test"),
                    ("data[reason]", reason.encode("utf-8", "surrogatepass")),
                ]
            )
            + (b"&data[merges][FNAME]=%ff%fe" if i == 1 else b"")
            for i in range(3)
        ]
        bodies.append(
            _form(
                [
                    ("type", "profile"),
                    ("fired_at", stamp),
                    ("data[list_id]", list_id.encode("utf-8", "surrogatepass")),
                    ("data[email]", "profile@hooks.test"),
                    ("data[merges][FNAME]", fname.encode("utf-8", "surrogatepass")),
                ]
            )
        )
        rows = [mailchimp_row(b) for b in bodies]
        inbox = InboxStore(engine)

        async def put() -> list[bool]:
            try:
                return await inbox(rows)
            finally:
                await inbox.aclose()

        assert len(asyncio.run(put())) == len(rows)
        sync = SyncConfig.model_validate(
            {
                "source": {"url": "sqlite://", "table": "contacts"},
                "destination": {"api_key": "0" * 32 + "-us6", "list_id": LIST_ID},
            }
        )
        applier = WebhookApplier(engine, {"crm": sync}, retry_pause=0.01)
        chunk = applier.apply_pending_once()
        applier.close()
        assert chunk.failed == 0
        assert pending_events(engine, 100) == []
        with engine.connect() as conn:
            unsubscribed = conn.execute(
                sa.select(sa.func.count()).where(
                    member_status.c.member_id.in_(
                        [email_hash(f"fuzz{i}@hooks.test") for i in range(3)]
                    ),
                    member_status.c.status == "unsubscribed",
                )
            ).scalar_one()
        assert unsubscribed == 3
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM cb_webhook_events"))
            conn.execute(sa.text("DELETE FROM cb_member_status"))
        engine.dispose()


# --- push: hostile source rows ---------------------------------------------------------------


def _source_table(url: str) -> tuple[sa.Engine, sa.Table]:
    engine = create_engine(url)
    big = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")
    table = sa.Table(
        "contacts",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", big),
        sa.Column("first_name", big),
        sa.Column("nick", big),
        sa.Column("age", sa.String(40)),
        sa.Column("consent", sa.Boolean),
        sa.Column("vip", sa.Boolean),
        sa.Column("tag_list", big),
        sa.Column("updated_at", sa.DateTime),
    )
    table.metadata.create_all(engine)
    return engine, table


@FUZZ
@given(
    values=st.lists(
        st.tuples(
            st.sampled_from(["first_name", "nick", "tag_list", "email"]),
            hostile_text(nul=False),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_push_goes_on_past_hostile_source_rows(
    database_url: str, tmp_path: Path, sandbox: Sandbox, values: list[tuple[str, str]]
) -> None:
    state = tmp_path / "push-state"
    state.mkdir(exist_ok=True)
    engine, table = _source_table(database_url)
    base = 1 + 100 * len(list(state.iterdir()))
    (state / str(base)).touch()
    good = [base + i for i in range(4)]
    bad = [base + 10 + i for i in range(len(values))]
    now = datetime.now(UTC).replace(tzinfo=None)
    rows: list[dict[str, Any]] = [
        {"id": i, "email": f"good{i}@fuzz.test", "first_name": f"Good {i}", "consent": True,
         "vip": False, "updated_at": now}
        for i in good
    ]  # fmt: skip
    for key, (column, text) in zip(bad, values, strict=True):
        row = {"id": key, "email": f"bad{key}@fuzz.test", "first_name": "Bad", "consent": True,
               "vip": False, "updated_at": now}  # fmt: skip
        row[column] = text
        rows.append(row)
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    engine.dispose()
    config = push_settings(tmp_path, database_url, sandbox)

    summary = asyncio.run(run_push(config, "crm"))

    assert summary.status == "succeeded", summary.error
    members = sandbox.members
    for key in good:
        assert f"good{key}@fuzz.test" in members  # every good row landed
    state_engine = create_engine(config.effective_state_url())
    try:
        with state_engine.connect() as conn:
            rejected = {
                int(k)
                for (k,) in conn.execute(sa.text("SELECT source_key FROM cb_rejected_records"))
            }
    finally:
        state_engine.dispose()
    for key in bad:  # each hostile row either landed or is kept with its reason
        assert (
            f"bad{key}@fuzz.test" in members
            or key in rejected
            or any(m.startswith(f"bad{key}") for m in members)
        )
