"""`subject-export`: one readable document with what the bridge and the sandbox hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from campaign_bridge.cli import run
from campaign_bridge.sandbox.mailchimp.control import simulate_unsubscribe
from campaign_bridge.store import StateStore
from tests.integration.privacy.conftest import migrated, write_config
from tests.integration.push.conftest import Sandbox, make_source
from tests.webhook_rows import store_event


def test_subject_export_collects_both_sides(
    database_url: str, tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    state_url = migrated(database_url)
    source_url = f"sqlite:///{(tmp_path / 'source.db').as_posix()}"
    source = make_source(source_url, rows=2)
    source.update(1, first_name="Grace", tag_list="gold")
    config = write_config(
        tmp_path / "cb.toml",
        state_url=state_url,
        source_url=source_url,
        box=sandbox,
        extra='tags_column = "tag_list"',
    )
    assert run(["-c", str(config), "push"]) == 0
    list_id = sandbox.handle.list_id
    simulate_unsubscribe(sandbox.handle.sandbox, list_id, "person1@mail.test")
    with StateStore(state_url) as store:
        store_event(
            store.engine,
            "w" * 64,
            "unsubscribe",
            list_id,
            json.dumps({"type": "unsubscribe", "data": {"email": "person1@mail.test"}}),
            fired_at=datetime.now(UTC),
        )
    assert run(["-c", str(config), "pull"]) == 0
    capsys.readouterr()

    out = tmp_path / "export.json"
    assert run(["-c", str(config), "subject-export", "1", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    document = json.loads(out.read_text(encoding="utf-8"))

    assert document["subject"]["email"] == "person1@mail.test"
    assert set(document["explanations"]) >= set(document["bridge"]) | {"provider"}
    bridge = document["bridge"]
    assert [row["source_key"] for row in bridge["contact_state"]] == ["1"]
    assert bridge["member_status"][0]["status"] == "unsubscribed"  # pulled back
    statuses = [row["new_status"] for row in bridge["consent_ledger"]]
    assert "unsubscribed" in statuses
    assert bridge["webhook_events"][0]["payload"]["data"]["email"] == "person1@mail.test"
    assert bridge["erasure"] is None
    held = document["provider"][f"crm ({list_id})"]
    assert held["member"]["email_address"] == "person1@mail.test"
    assert held["member"]["merge_fields"]["FNAME"] == "Grace"
    assert held["member"]["status"] == "unsubscribed"
    assert [tag["name"] for tag in held["tags"]] == ["gold"]
    assert isinstance(held["activity_feed"], list)
    assert held["notes"] == []
    assert "_links" not in json.dumps(held)
    # Nobody else is in it.
    assert "person2@mail.test" not in out.read_text(encoding="utf-8")
    one = tmp_path / "one.json"
    assert run(["-c", str(config), "subject-export", "1", "--sync", "crm", "--out", str(one)]) == 0
    assert list(json.loads(one.read_text(encoding="utf-8"))["provider"]) == [f"crm ({list_id})"]
