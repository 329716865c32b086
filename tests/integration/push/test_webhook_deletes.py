"""An ``unsubscribe``/``action=delete`` webhook is an archive or a permanent delete: the
provider is asked which, so the ledger records the change that happened (and only that one)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from campaign_bridge.providers.base import MemberStatus
from campaign_bridge.sandbox.mailchimp.control import (
    simulate_archive,
    simulate_delete_permanent,
    simulate_signup,
)
from campaign_bridge.status_changes import StatusChange
from campaign_bridge.webhook_deletes import confirm_archives
from tests.integration.push.conftest import Sandbox, push_settings


def _archived(email: str, list_id: str) -> StatusChange:
    return StatusChange(
        provider="mailchimp",
        list_id=list_id,
        email=email,
        status=MemberStatus.ARCHIVED,
        occurred_at=dt.datetime.now(dt.UTC),
        origin="webhook",
    )


def test_an_erased_member_is_recorded_as_forgotten_an_archived_one_as_archived(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    for email in ("kept@mail.test", "erased@mail.test", "back@mail.test"):
        simulate_signup(state, list_id, {"email_address": email})
    simulate_archive(state, list_id, "kept@mail.test")
    simulate_delete_permanent(state, list_id, "erased@mail.test")
    simulate_archive(state, list_id, "back@mail.test")
    simulate_signup(state, list_id, {"email_address": "back@mail.test"})  # signed up again since
    sync = push_settings(tmp_path, "sqlite://", sandbox).syncs["crm"]
    changes = [
        _archived(e, list_id) for e in ("kept@mail.test", "erased@mail.test", "back@mail.test")
    ]
    confirmed = confirm_archives(sync, changes)
    assert [c.status for c in confirmed] == [
        MemberStatus.ARCHIVED,
        MemberStatus.FORGOTTEN,
        MemberStatus.ARCHIVED,  # the archive happened; the later signup comes as its own event
    ]


def test_when_the_provider_cannot_be_asked_the_webhook_stands(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    settings = push_settings(tmp_path, "sqlite://", sandbox)
    sync = settings.syncs["crm"]
    sync.destination.base_url = "http://127.0.0.1:9/3.0"  # nothing listens on the discard port
    changes = [_archived("someone@mail.test", sandbox.handle.list_id)]
    assert confirm_archives(sync, changes) == changes
