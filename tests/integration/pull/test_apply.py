"""apply_status_changes + write-back against real databases (no provider needed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.config import SyncConfig
from campaign_bridge.db import create_engine
from campaign_bridge.errors import ConfigurationError
from campaign_bridge.providers.base import MemberStatus
from campaign_bridge.state import consent_ledger, contact_state, member_status
from campaign_bridge.status_changes import StatusChange, apply_status_changes, email_hash
from campaign_bridge.writeback import WritebackTarget

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
PEOPLE = {1: "ada@analytical.org", 2: "grace@cobol.org", 3: "alan@bletchley.org"}


def sync_config(url: str, table: str = "contacts", **writeback: Any) -> SyncConfig:
    columns = {
        "table": table,
        "key_column": "id",
        "status_column": "mc_status",
        "unsubscribed_at_column": "unsubscribed_at",
        "bounced_at_column": "bounced_at",
        "consent_column": "consent",
    }
    columns.update(writeback)
    return SyncConfig.model_validate(
        {
            "source": {"url": url, "table": table},
            "destination": {"api_key": "0" * 32 + "-us1", "list_id": "L1"},
            "writeback": columns,
        }
    )


def make_contacts(engine: sa.Engine, table: str = "contacts") -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, email VARCHAR(320) NOT NULL, "
                "name VARCHAR(100), consent BOOLEAN NOT NULL, mc_status VARCHAR(32), "
                "unsubscribed_at TIMESTAMP NULL, bounced_at TIMESTAMP NULL)"
            )
        )
        conn.execute(
            sa.text(f"INSERT INTO {table} (id, email, name, consent) VALUES (:i, :e, :n, :c)"),
            [{"i": i, "e": e, "n": f"name {i}", "c": True} for i, e in PEOPLE.items()],
        )


def know_contacts(engine: sa.Engine, sync_name: str, ids: list[int]) -> None:
    with engine.begin() as conn:
        conn.execute(
            contact_state.insert(),
            [
                {
                    "sync_name": sync_name,
                    "source_key": str(i),
                    "email_hash": email_hash(PEOPLE[i]),
                    "provider_status": "subscribed",
                    "managed": True,
                }
                for i in ids
            ],
        )


@pytest.fixture
def state(database_url: str) -> Iterator[tuple[str, sa.Engine]]:
    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    make_contacts(engine)
    try:
        yield database_url, engine
    finally:
        engine.dispose()


def change(
    who: int, status: MemberStatus, *, origin: str = "pull", at: datetime = T0
) -> StatusChange:
    return StatusChange(
        provider="mailchimp",
        list_id="L1",
        email=PEOPLE[who],
        status=status,
        occurred_at=at,
        origin=origin,  # type: ignore[arg-type]
        reason="spam" if status == MemberStatus.UNSUBSCRIBED else None,
    )


def rows(engine: sa.Engine, query: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(query))]


def ledger_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(consent_ledger)).scalar_one()
        )


def test_unsubscribe_is_written_back_once(state: tuple[str, sa.Engine]) -> None:
    url, engine = state
    know_contacts(engine, "crm", [1, 2])
    target = WritebackTarget.open("crm", sync_config(url), state_url=url)
    assert target is not None
    try:
        changes = [
            change(1, MemberStatus.UNSUBSCRIBED),
            change(2, MemberStatus.CLEANED),
            change(3, MemberStatus.UNSUBSCRIBED),  # not known to the bridge
        ]
        first = apply_status_changes(engine, changes, sync_name="crm", writeback=target)
        assert first.transitions == 2
        assert first.written_back == 2
        assert first.unknown_contacts == 1
        assert first.members_changed == 3

        table = rows(
            engine,
            "SELECT id, name, consent, mc_status, unsubscribed_at, bounced_at "
            "FROM contacts ORDER BY id",
        )
        assert [(r[0], r[1], bool(r[2]), r[3]) for r in table] == [
            (1, "name 1", False, "unsubscribed"),
            (2, "name 2", True, "cleaned"),
            (3, "name 3", True, None),
        ]
        assert table[0][4] is not None
        assert table[0][5] is None
        assert table[1][4] is None
        assert table[1][5] is not None
        with engine.connect() as conn:
            statuses = {
                r[0]: r[1]
                for r in conn.execute(
                    sa.select(contact_state.c.source_key, contact_state.c.provider_status)
                )
            }
            members = {
                r[0]: r[1]
                for r in conn.execute(sa.select(member_status.c.member_id, member_status.c.status))
            }
            ledger = conn.execute(
                sa.select(
                    consent_ledger.c.source_key,
                    consent_ledger.c.old_status,
                    consent_ledger.c.new_status,
                    consent_ledger.c.origin,
                    consent_ledger.c.occurred_at,
                ).order_by(consent_ledger.c.source_key)
            ).all()
        assert statuses == {"1": "unsubscribed", "2": "cleaned"}
        assert members[email_hash(PEOPLE[3])] == "unsubscribed"
        assert [tuple(r[:4]) for r in ledger] == [
            ("1", "subscribed", "unsubscribed", "pull"),
            ("2", "subscribed", "cleaned", "pull"),
        ]
        assert ledger[0][4] == T0

        again = apply_status_changes(engine, changes, sync_name="crm", writeback=target)
        assert (again.transitions, again.written_back, again.members_changed) == (0, 0, 0)
        assert again.unchanged == 3
        assert ledger_count(engine) == 2
        assert rows(engine, "SELECT id, mc_status FROM contacts ORDER BY id") == [
            (1, "unsubscribed"),
            (2, "cleaned"),
            (3, None),
        ]
    finally:
        target.close()


def test_webhooks_then_pull_equals_pull_alone(state: tuple[str, sa.Engine]) -> None:
    url, engine = state
    make_contacts(engine, "contacts_b")
    know_contacts(engine, "a", [1, 2, 3])
    know_contacts(engine, "b", [1, 2, 3])
    target_a = WritebackTarget.open("a", sync_config(url), state_url=url)
    target_b = WritebackTarget.open("b", sync_config(url, "contacts_b"), state_url=url)
    assert target_a is not None
    assert target_b is not None
    pulled = [
        change(1, MemberStatus.UNSUBSCRIBED, at=T0),
        change(2, MemberStatus.SUBSCRIBED, at=T0 + timedelta(seconds=5)),
        change(3, MemberStatus.CLEANED, at=T0 + timedelta(seconds=1)),
    ]
    hooks = [  # 1 arrives, 2 unsubscribed then re-subscribed, 3 missed (webhook outage)
        change(1, MemberStatus.UNSUBSCRIBED, origin="webhook", at=T0),
        change(2, MemberStatus.UNSUBSCRIBED, origin="webhook", at=T0),
        change(1, MemberStatus.UNSUBSCRIBED, origin="webhook", at=T0),  # redelivered
    ]
    try:
        # sync "a": webhooks, then the pull. Lists differ so member rows do not collide.
        apply_status_changes(engine, hooks, sync_name="a", writeback=target_a)
        apply_status_changes(engine, pulled, sync_name="a", writeback=target_a)
        alone = [StatusChange(**{**vars(c), "list_id": "L2"}) for c in pulled]
        apply_status_changes(engine, alone, sync_name="b", writeback=target_b)
    finally:
        target_a.close()
        target_b.close()
    columns = "id, name, consent, mc_status, unsubscribed_at, bounced_at"
    user_a = rows(engine, f"SELECT {columns} FROM contacts ORDER BY id")
    user_b = rows(engine, f"SELECT {columns} FROM contacts_b ORDER BY id")
    # person 2 was unsubscribed by a webhook, then re-subscribed: consent comes back
    assert user_a == user_b
    assert [(r[0], bool(r[2]), r[3]) for r in user_a] == [
        (1, False, "unsubscribed"),
        (2, True, "subscribed"),
        (3, True, "cleaned"),
    ]
    member_rows = rows(
        engine,
        "SELECT list_id, member_id, email, status, last_changed FROM cb_member_status "
        "ORDER BY list_id, member_id",
    )
    per_list = {lst: [r[1:] for r in member_rows if r[0] == lst] for lst in ("L1", "L2")}
    assert per_list["L1"] == per_list["L2"]
    statuses = rows(
        engine,
        "SELECT sync_name, source_key, provider_status FROM cb_contact_state ORDER BY 1, 2",
    )
    assert [r[1:] for r in statuses if r[0] == "a"] == [r[1:] for r in statuses if r[0] == "b"]


def test_missing_writeback_columns_are_all_reported(state: tuple[str, sa.Engine]) -> None:
    url, _ = state
    config = sync_config(url, status_column="no_such_status", consent_column="no_such_consent")
    with pytest.raises(ConfigurationError) as caught:
        WritebackTarget.open("crm", config, state_url=url)
    message = str(caught.value)
    assert "2 problems" in message
    assert "no_such_status" in message
    assert "no_such_consent" in message
    with pytest.raises(ConfigurationError, match="does not exist"):
        WritebackTarget.open("crm", sync_config(url, table="nope"), state_url=url)


def test_writeback_into_a_separate_database(state: tuple[str, sa.Engine], tmp_path: Path) -> None:
    url, engine = state
    sqlite_url = f"sqlite:///{(tmp_path / 'user.db').as_posix()}"
    user_engine = create_engine(sqlite_url)
    make_contacts(user_engine)
    know_contacts(engine, "crm", [1])
    target = WritebackTarget.open("crm", sync_config(sqlite_url), state_url=url)
    assert target is not None
    assert not target.same_database
    try:
        result = apply_status_changes(
            engine, [change(1, MemberStatus.UNSUBSCRIBED)], sync_name="crm", writeback=target
        )
    finally:
        target.close()
    assert result.written_back == 1
    assert rows(user_engine, "SELECT id, consent, mc_status FROM contacts WHERE id = 1") == [
        (1, 0, "unsubscribed")
    ]
    user_engine.dispose()
