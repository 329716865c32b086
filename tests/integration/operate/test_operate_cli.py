"""`runs`, `rejected`, `rejected retry`, `history` and `state` against a real push, a real
webhook delivery stored and applied, on SQLite, PostgreSQL and MariaDB state stores."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from campaign_bridge import migrations
from campaign_bridge.cli import run
from campaign_bridge.db import create_engine
from campaign_bridge.status_changes import apply_status_changes, email_hash
from campaign_bridge.webhook_inbox import insert_rows
from tests.integration.push.conftest import Sandbox, make_source
from tests.webhook_rows import mailchimp_change, mailchimp_row


class _Terminal(io.StringIO):
    """Standard input as a person at a terminal types it."""

    def isatty(self) -> bool:
        return True


def _config(path: Path, source_url: str, state_url: str, sandbox: Sandbox) -> Path:
    handle = sandbox.handle
    path.write_text(
        f"""
state_url = "{state_url}"
[syncs.crm]
fields = {{ FNAME = "first_name" }}
[syncs.crm.source]
url = "{source_url}"
table = "contacts"
consent_column = "consent"
updated_at_column = "updated_at"
[syncs.crm.destination]
api_key = "{handle.api_key}"
list_id = "{handle.list_id}"
base_url = "{handle.base_url}"
"""
    )
    return path


def _json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    assert run(list(argv)) == code, capsys.readouterr()
    return json.loads(capsys.readouterr().out)


def _unsubscribe_by_webhook(state_url: str, list_id: str, email: str) -> None:
    """What serve does with a delivery: store it (the real insert), then apply it."""
    form = {
        "type": "unsubscribe",
        "fired_at": "2030-01-02 03:04:05",
        "data[email]": email,
        "data[list_id]": list_id,
        "data[action]": "unsub",
        "data[reason]": "manual",
    }
    engine = create_engine(state_url)
    try:
        with engine.connect() as conn:  # as InboxStore connects: PostgreSQL in autocommit
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            insert_rows(conn, [mailchimp_row(form)])
        change = mailchimp_change(form)
        assert change is not None
        apply_status_changes(engine, [change], sync_name="crm")
    finally:
        engine.dispose()


def test_operator_commands_tell_the_story(
    sqlite_url: str,
    database_url: str,
    tmp_path: Path,
    sandbox: Sandbox,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = make_source(sqlite_url, rows=3)
    source.update(3, email="not an address")
    migrations.upgrade(database_url)
    config = str(_config(tmp_path / "cb.toml", sqlite_url, database_url, sandbox))

    dry = _json(capsys, "-c", config, "push", "--dry-run", "--json")
    assert dry["dry_run"] is True
    real = _json(capsys, "-c", config, "push", "--json")
    assert (real["created"], real["rejected_total"]) == (2, 1)

    runs = _json(capsys, "-c", config, "runs", "--json")
    assert [(r["direction"], r["status"], r["dry_run"]) for r in runs] == [
        ("push", "succeeded", False),
        ("push", "succeeded", True),
    ]
    assert runs[0]["counts"]["created"] == 2
    assert runs[0]["seconds"] is not None
    assert [
        r["id"] for r in _json(capsys, "-c", config, "runs", "crm", "--limit", "1", "--json")
    ] == [runs[0]["id"]]
    assert run(["-c", config, "runs"]) == 0
    table = capsys.readouterr().out
    assert "DRY RUN" in table
    assert table.count("DRY RUN") == 1

    rejected = _json(capsys, "-c", config, "rejected", "--json")
    assert [(r["sync"], r["source_key"], r["attempts"]) for r in rejected] == [("crm", "3", 1)]
    reason = rejected[0]["reason"]
    assert reason == "invalid_email"
    assert run(["-c", config, "rejected"]) == 0
    assert "invalid_email" in capsys.readouterr().out
    assert _json(capsys, "-c", config, "rejected", "crm", "--reason", reason, "--json") == rejected
    assert _json(capsys, "-c", config, "rejected", "--reason", "no-such", "--json") == []

    # Why was number 3 not sent? Its rejection, by source key.
    story = _json(capsys, "-c", config, "history", "3", "--json")
    assert story["found"] is True
    assert any("not sent (crm)" in a and reason in a for a in story["answers"])
    assert [e["kind"] for e in story["events"]] == ["rejected"]

    # Unchanged: the next push does not send it again; after `rejected retry` it does.
    again = _json(capsys, "-c", config, "push", "--json")
    assert (again["read"], again["rejected_total"]) == (0, 0)
    assert run(["-c", config, "rejected", "retry", "crm"]) == 0
    assert "crm: 1 rejected record(s) will be sent again" in capsys.readouterr().out
    nothing = _json(capsys, "-c", config, "rejected", "retry", "--reason", "no-such", "--json")
    assert nothing == {"retry": {"crm": 0}}
    retried = _json(capsys, "-c", config, "push", "--json")
    assert (retried["read"], retried["unchanged"], retried["rejected_total"]) == (3, 2, 1)
    assert "rejected_unchanged" not in retried["skipped"]
    after = _json(capsys, "-c", config, "push", "--json")
    assert (after["read"], after["rejected_total"]) == (0, 0)
    assert _json(capsys, "-c", config, "rejected", "--json")[0]["attempts"] == 2

    # Why is person 1 unsubscribed? The webhook, the ledger entry and who made it.
    _unsubscribe_by_webhook(database_url, sandbox.handle.list_id, "Person1@Mail.test")
    story = _json(capsys, "-c", config, "history", "person1@mail.test", "--json")
    assert story["email_hash"] == email_hash("person1@mail.test")
    assert story["source_keys"] == [{"sync": "crm", "source_key": "1"}]
    kinds = [e["kind"] for e in story["events"]]
    assert kinds == ["ledger", "push", "webhook", "status", "ledger"]
    assert "none -> subscribed by push" in story["events"][0]["text"]
    ledger = story["events"][-1]
    assert "subscribed -> unsubscribed by webhook" in ledger["text"]
    assert "reason: manual" in ledger["text"]
    assert any(a.startswith("unsubscribed since 2030-01-02T03:04:05") for a in story["answers"])
    assert story["current"][0]["provider_status"] == "unsubscribed"
    by_key = _json(capsys, "-c", config, "history", "1", "--json")
    assert by_key["events"] == story["events"]
    assert run(["-c", config, "history", "person1@mail.test"]) == 0
    assert "why: unsubscribed since" in capsys.readouterr().out

    assert run(["-c", config, "history", "nobody@mail.test"]) == 1
    assert "nothing recorded" in capsys.readouterr().out

    # Why was number 4 not sent? It has no consent, and new contacts need it.
    source.insert([{"id": 4, "consent": False}])
    assert _json(capsys, "-c", config, "push", "--json")["skipped"] == {"unconsented_new": 1}
    story = _json(capsys, "-c", config, "history", "4", "--json")
    assert story["found"] is False
    assert story["answers"] == [
        "never sent (crm): the row is in the source but no push recorded it: a new contact is "
        "added only when its consent column says yes; `campaign-bridge push crm --dry-run` "
        "shows what a push would do"
    ]
    story = _json(capsys, "-c", config, "history", "999", "--json")
    assert story["answers"] == ["never sent (crm): no row with id = '999' in the source"]

    # Cursors: shown, kept when the confirmation is refused, reset with --yes.
    assert run(["-c", config, "state", "show", "crm"]) == 0
    assert "push:source" in capsys.readouterr().out
    cursors = _json(capsys, "-c", config, "state", "show", "crm", "--json")
    streams = {c["stream"] for c in cursors}
    assert {"push:members", "push:source"} <= streams
    assert run(["-c", config, "state", "reset", "crm"]) == 2  # not a terminal: --yes needed
    assert "pass --yes" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", _Terminal("n\n"))
    assert run(["-c", config, "state", "reset", "crm"]) == 2  # refused at the prompt
    assert "nothing changed" in capsys.readouterr().out
    assert len(_json(capsys, "-c", config, "state", "show", "crm", "--json")) == len(cursors)
    assert run(["-c", config, "state", "reset", "crm", "--stream", "push:source", "--yes"]) == 0
    assert "reset 1 cursor(s)" in capsys.readouterr().out
    left = _json(capsys, "-c", config, "state", "show", "crm", "--json")
    assert {c["stream"] for c in left} == streams - {"push:source"}
    monkeypatch.setattr(sys, "stdin", _Terminal("y\n"))
    assert run(["-c", config, "state", "reset", "crm"]) == 0
    assert "reset 1 cursor(s) of crm (push:members)?" in capsys.readouterr().out
    assert _json(capsys, "-c", config, "state", "show", "crm", "--json") == []
    assert run(["-c", config, "state", "show", "other"]) == 2
