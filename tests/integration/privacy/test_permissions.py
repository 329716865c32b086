"""GDPR marketing permissions both ways, against the sandbox: push, pull, ledger, doctor."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaign_bridge.cli import run
from campaign_bridge.config import load_settings
from campaign_bridge.db import create_engine
from campaign_bridge.doctor import check_marketing_permissions
from campaign_bridge.providers import create_provider
from campaign_bridge.sandbox.mailchimp.control import seed, simulate_profile_change
from tests.integration.privacy.conftest import migrated, write_config
from tests.integration.push.conftest import Sandbox, make_source

EMAIL = "person1@mail.test"
MD5 = hashlib.md5(EMAIL.encode(), usedforsecurity=False).hexdigest()


def sandbox_permissions(sandbox: Sandbox) -> dict[str, bool]:
    return dict(sandbox.members[EMAIL].marketing_permissions)


def stored(url: str) -> tuple[dict[str, tuple[str | None, bool]], list[tuple[str, str, str]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT permission_id, text, enabled FROM cb_marketing_permissions"
                    " WHERE member_id = :m"
                ),
                {"m": MD5},
            ).all()
            ledger = conn.execute(
                sa.text(
                    "SELECT origin, new_status, reason FROM cb_consent_ledger"
                    " WHERE email_hash = :m AND new_status LIKE 'permission%' ORDER BY id"
                ),
                {"m": MD5},
            ).all()
    finally:
        engine.dispose()
    return {pid: (text, bool(on)) for pid, text, on in rows}, [tuple(r) for r in ledger]


def test_permissions_round_trip_with_the_ledger(
    database_url: str, tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    state_url = migrated(database_url)
    list_id = sandbox.handle.list_id
    seed(
        sandbox.handle.sandbox,
        {
            "lists": [
                {
                    "id": list_id,
                    "permissions": [
                        {"id": "perm_email", "text": "Email"},
                        {"id": "perm_mail", "text": "Direct mail"},
                    ],
                    # Mailchimp shows an audience's permission ids only on its members: an
                    # audience without one cannot be mapped (see docs/privacy.md).
                    "members": [{"email_address": "signup@form.test", "status": "subscribed"}],
                }
            ]
        },
    )
    source_url = f"sqlite:///{(tmp_path / 'source.db').as_posix()}"
    source = make_source(source_url, rows=2)
    config = write_config(
        tmp_path / "cb.toml",
        state_url=state_url,
        source_url=source_url,
        box=sandbox,
        extra='marketing_permissions = { perm_email = "consent", perm_mail = "vip" }',
    )

    # Push: the source's columns become the member's permissions.
    assert run(["-c", str(config), "push"]) == 0
    assert sandbox_permissions(sandbox) == {"perm_email": True, "perm_mail": False}
    table, ledger = stored(state_url)
    assert table == {"perm_email": (None, True), "perm_mail": (None, False)}
    assert [(o, s) for o, s, _ in ledger] == [("push", "permission_granted")]
    assert "perm_email" in ledger[0][2]

    # The subscriber grants direct mail in Mailchimp: the pull brings it back, with the wording.
    simulate_profile_change(
        sandbox.handle.sandbox,
        list_id,
        EMAIL,
        {"marketing_permissions": [{"marketing_permission_id": "perm_mail", "enabled": True}]},
    )
    assert run(["-c", str(config), "pull"]) == 0
    table, ledger = stored(state_url)
    assert table == {"perm_email": ("Email", True), "perm_mail": ("Direct mail", True)}
    assert [(o, s) for o, s, _ in ledger][1:] == [("pull", "permission_granted")]
    assert "Direct mail" in ledger[1][2]

    # The source withdraws it (the row changes; vip is still false): push sends the withdrawal.
    source.update(1, first_name="Changed")
    assert run(["-c", str(config), "push"]) == 0
    assert sandbox_permissions(sandbox) == {"perm_email": True, "perm_mail": False}
    table, ledger = stored(state_url)
    assert table["perm_mail"] == ("Direct mail", False)
    assert [(o, s) for o, s, _ in ledger][2:] == [("push", "permission_withdrawn")]

    # A pull that sees nothing new adds nothing to the ledger.
    assert run(["-c", str(config), "pull"]) == 0
    assert len(stored(state_url)[1]) == 3

    # doctor: mapped permissions exist; an unknown id fails with the ids that do.
    settings = load_settings(config, environ={})
    sync = settings.syncs["crm"]

    async def audience_check(mapping: dict[str, str]) -> tuple[str, str]:
        provider = create_provider(sync.destination)
        try:
            audience = await provider.audience(list_id)
        finally:
            await provider.aclose()
        result = check_marketing_permissions(
            "crm", sync.model_copy(update={"marketing_permissions": mapping}), audience
        )
        return result.status.value, result.fix

    assert asyncio.run(audience_check(dict(sync.marketing_permissions)))[0] == "ok"
    status, fix = asyncio.run(audience_check({"nope": "vip"}))
    assert status == "fail"
    assert "perm_email" in fix


def test_push_maps_permissions_onto_an_audience_without_members_with_a_warning(
    sqlite_url: str, tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mailchimp shows an audience's permission ids only on its members, so a first push into a
    new GDPR audience cannot check the mapping: it warns, as doctor does, and goes on; the
    members it creates carry their permissions, and the next push checks the ids."""
    state_url = migrated(sqlite_url)
    list_id = sandbox.handle.list_id
    seed(
        sandbox.handle.sandbox,
        {"lists": [{"id": list_id, "permissions": [{"id": "perm_email", "text": "Email"}]}]},
    )
    source_url = f"sqlite:///{(tmp_path / 'source.db').as_posix()}"
    source = make_source(source_url, rows=2)
    config = write_config(
        tmp_path / "cb.toml",
        state_url=state_url,
        source_url=source_url,
        box=sandbox,
        extra='marketing_permissions = { perm_email = "consent" }',
    )
    capsys.readouterr()
    assert run(["-c", str(config), "push"]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 marketing permission(s) mapped but audience" in err
    assert sandbox_permissions(sandbox) == {"perm_email": True}
    table, ledger = stored(state_url)
    assert table == {"perm_email": (None, True)}
    assert [(o, s) for o, s, _ in ledger] == [("push", "permission_granted")]

    # Now the audience shows its ids: checked, no warning; an unknown id is refused again.
    source.update(1, first_name="Changed")
    assert run(["-c", str(config), "push"]) == 0
    assert "warning" not in capsys.readouterr().err
    wrong = write_config(
        tmp_path / "wrong.toml",
        state_url=state_url,
        source_url=source_url,
        box=sandbox,
        extra='marketing_permissions = { nope = "consent" }',
    )
    assert run(["-c", str(wrong), "push"]) == 2
    assert "marketing permission 'nope' does not exist" in capsys.readouterr().err
