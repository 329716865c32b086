"""Issue 11: a write the provider confirmed is recorded even when a later call about the same
member fails. Mailchimp sets an existing member's tags with a call of its own after the upsert;
when it refuses that call, the status change the upsert made has its ledger row (with the state
it explains), and the tags become a kept rejection the next run retries. On SQLite, PostgreSQL
and MariaDB state stores, the sandbox over real HTTP (its control API refuses the tag call)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from campaign_bridge.config import Settings
from campaign_bridge.providers.mailchimp import MailchimpProvider
from campaign_bridge.push import run_push
from campaign_bridge.sandbox.mailchimp.control import seed, simulate_signup
from tests.integration.push.conftest import Sandbox, make_source
from tests.integration.push.test_push_consent import ledger, push, rows, settings_for

pytestmark = pytest.mark.anyio


def md5(email: str) -> str:
    return hashlib.md5(email.encode()).hexdigest()


async def control(sandbox: Sandbox, method: str, path: str, body: object = None) -> None:
    """A call to the sandbox's control API, over HTTP."""
    async with httpx.AsyncClient(base_url=sandbox.handle.control_url) as client:
        answer = await client.request(method, path, json=body)
        answer.raise_for_status()


async def fail_tags_of(sandbox: Sandbox, kind: str, *emails: str, count: int | None = 1) -> None:
    """The next tag call about each of ``emails`` fails with the fault ``kind`` (``400``:
    Mailchimp's Invalid Resource refusal; ``count`` None: every call)."""
    for email in emails:
        path = f"/members/{md5(email)}/tags$"
        fault = {"kind": kind, "method": "POST", "path": path, "count": count}
        await control(sandbox, "POST", "/faults", fault)


def open_rejections(settings: Settings) -> list[tuple[str, str]]:
    return [
        (str(key), str(reason))
        for key, reason in rows(
            settings,
            "SELECT source_key, reason_code FROM cb_rejected_records "
            "WHERE resolved_at IS NULL ORDER BY source_key",
        )
    ]


async def test_a_refused_tag_update_keeps_the_status_change_and_retries_the_tags(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = make_source(database_url, rows=3)
    settings = settings_for(tmp_path, database_url, sandbox)
    await push(settings)
    state, list_id = sandbox.handle.sandbox, sandbox.handle.list_id
    # Row 4's address signed up through a form before the source had it: the bridge finds it.
    simulate_signup(state, list_id, {"email_address": "person4@mail.test"})
    source.insert([{"id": 4, "vip": True}])
    source.update(1, consent=False, vip=True)  # an unsubscribe, and a tag to add
    await fail_tags_of(sandbox, "400", "person1@mail.test", "person4@mail.test")

    second = await push(settings)

    # The provider made the change: it is recorded, with the state it explains.
    assert sandbox.members["person1@mail.test"].status == "unsubscribed"
    assert ledger(settings, "1")[-1] == ("subscribed", "unsubscribed", "push")
    assert ledger(settings, "4") == [(None, "subscribed", "pull")]
    statuses = rows(
        settings, "SELECT source_key, provider_status FROM cb_contact_state ORDER BY source_key"
    )
    assert statuses == [
        ("1", "unsubscribed"),
        ("2", "subscribed"),
        ("3", "subscribed"),
        ("4", "subscribed"),
    ]
    assert rows(settings, "SELECT count(*) FROM cb_push_intents") == [(0,)]
    assert second.consent["unsubscribe"] == 1
    # The tags were not set: a kept rejection with its reason, and the run says it retries.
    assert sandbox.tags_of("person1@mail.test") == set()
    assert open_rejections(settings) == [("1", "invalid_resource"), ("4", "invalid_resource")]
    assert second.rejected == {"invalid_resource": 2}
    assert second.retry_later == 2

    third = await push(settings)  # nothing changed in the source: the tags are sent again

    assert sandbox.tags_of("person1@mail.test") == {"VIP"}
    assert sandbox.tags_of("person4@mail.test") == {"VIP"}
    assert open_rejections(settings) == []
    assert third.resolved == 2
    assert third.retry_later == 0
    # Each status change has exactly one ledger row: the retry added none.
    assert ledger(settings, "1")[-1] == ("subscribed", "unsubscribed", "push")
    assert len(ledger(settings, "1")) == 2
    assert ledger(settings, "4") == [(None, "subscribed", "pull")]
    assert sandbox.members["person1@mail.test"].status == "unsubscribed"
    assert (await push(settings)).writes == 0  # settled: the next run sends nothing


async def test_a_tag_call_that_keeps_failing_stops_the_run_and_the_next_records_the_change(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    """A tag call that still fails after the adapter's retries (a 500) stops the run after the
    upsert changed the status: the intent written before the call makes the next run record
    that change, once, as the push's, and the tags are set then."""
    source = make_source(database_url, rows=2)
    settings = settings_for(tmp_path, database_url, sandbox)
    await push(settings)
    source.update(1, consent=False, vip=True)
    await fail_tags_of(sandbox, "500", "person1@mail.test", count=None)
    destination = settings.syncs["crm"].destination.model_copy(update={"max_retries": 0})
    impatient = MailchimpProvider(destination)
    try:
        failed = await run_push(settings, "crm", provider=impatient)
    finally:
        await impatient.aclose()
    await control(sandbox, "DELETE", "/faults")
    assert failed.status == "failed"
    assert "server_error_500" in str(failed.error)
    assert sandbox.members["person1@mail.test"].status == "unsubscribed"

    await push(settings)

    assert [r[:2] for r in ledger(settings, "1")] == [
        (None, "subscribed"),
        ("subscribed", "unsubscribed"),
    ]
    assert ledger(settings, "1")[-1][2] == "push"
    assert sandbox.tags_of("person1@mail.test") == {"VIP"}
    assert rows(settings, "SELECT count(*) FROM cb_push_intents") == [(0,)]
    assert open_rejections(settings) == []


async def test_a_refused_gdpr_follow_up_keeps_the_create_and_retries_the_permissions(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    """Mailchimp's batch subscribe cannot carry GDPR permissions: a member created with them is
    PUT again to set them. When that PUT is refused the member was still created: it has its
    ledger row and is the bridge's own (mirror may archive it), and the permissions are sent
    again by the next run."""
    seed(
        sandbox.handle.sandbox,
        {
            "lists": [
                {
                    "id": sandbox.handle.list_id,
                    "permissions": [{"id": "perm_email", "text": "Email"}],
                    "members": [{"email_address": "existing@mail.test", "status": "subscribed"}],
                }
            ]
        },
    )
    make_source(database_url, rows=2)
    settings = settings_for(
        tmp_path, database_url, sandbox, marketing_permissions={"perm_email": "consent"}
    )
    refused = {"kind": "400", "method": "PUT", "path": f"/members/{md5('person1@mail.test')}$"}
    await control(sandbox, "POST", "/faults", {**refused, "count": 1})

    first = await push(settings)

    assert sandbox.members["person1@mail.test"].status == "subscribed"
    assert not sandbox.members["person1@mail.test"].marketing_permissions.get("perm_email")
    assert ledger(settings, "1") == [(None, "subscribed", "push")]  # no permission granted
    assert (None, "permission_granted", "push") in ledger(settings, "2")
    owned = rows(settings, "SELECT source_key, managed FROM cb_contact_state ORDER BY source_key")
    assert [(key, bool(managed)) for key, managed in owned] == [("1", True), ("2", True)]
    assert open_rejections(settings) == [("1", "invalid_resource")]
    assert (first.created, first.retry_later) == (2, 1)

    second = await push(settings)

    assert sandbox.members["person1@mail.test"].marketing_permissions.get("perm_email") is True
    assert ledger(settings, "1") == ledger(settings, "2")  # the permission's row, now
    assert open_rejections(settings) == []
    assert (second.resolved, second.retry_later) == (1, 0)
    assert (await push(settings)).writes == 0
