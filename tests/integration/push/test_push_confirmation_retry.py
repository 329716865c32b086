"""Issue 11: a contact made pending whose confirmation e-mail could not be asked for is recorded
as the provider made it, and the e-mail is asked for again by the next run, only while the
contact still waits to confirm. Brevo creates a double opt-in contact, then asks for its
confirmation (``POST /contacts/doubleOptinConfirmation``); listmonk sets a re-confirmed
subscription to unconfirmed, then asks for its opt-in e-mail (``POST
/api/subscribers/{id}/optin``). When that second call fails, the run goes on: the change has its
ledger row as the push's (the bridge owns what it created), the other members of the batch are
saved, and a kept rejection makes the next run ask again. On SQLite, PostgreSQL and MariaDB state
stores, each sandbox over real HTTP (its control API makes the call fail)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaign_bridge import migrations
from campaign_bridge.config import Settings
from campaign_bridge.sandbox.brevo import BrevoHandle
from campaign_bridge.sandbox.brevo import run_in_thread as run_brevo
from campaign_bridge.sandbox.listmonk import ListmonkHandle
from campaign_bridge.sandbox.listmonk import run_in_thread as run_listmonk
from tests.integration.push.conftest import make_source
from tests.integration.push.test_push_consent import ledger, push, rows
from tests.integration.push.test_push_tag_refusal import open_rejections

pytestmark = pytest.mark.anyio

OPT_IN_LIST = "2"  # the listmonk sandbox's double opt-in list


@pytest.fixture
def brevo() -> Iterator[BrevoHandle]:
    with run_brevo() as handle:
        yield handle


@pytest.fixture
def listmonk() -> Iterator[ListmonkHandle]:
    with run_listmonk() as handle:
        yield handle


def control(handle: BrevoHandle | ListmonkHandle, method: str, path: str, body: Any = None) -> Any:
    """A call to the sandbox's control API, over HTTP."""
    answer = httpx.request(method, handle.control_url + path, json=body, timeout=30)
    answer.raise_for_status()
    return answer.json() if answer.content else None


def fail_every(
    handle: BrevoHandle | ListmonkHandle, path: str, count: int | None, kind: str = "500"
) -> None:
    """The next ``count`` POSTs to ``path`` (None: every one) get the sandbox's fault ``kind``
    (``500``: the provider's JSON error, not retried: ``max_retries`` 0; ``400``: a refusal)."""
    fault = {"kind": kind, "method": "POST", "path": path, "count": count}
    control(handle, "POST", "/faults", fault)


def sync_settings(tmp_path: Path, url: str, destination: dict[str, Any], **sync: Any) -> Settings:
    if not url.startswith("sqlite"):
        migrations.upgrade(url)
    config = {
        "source": {
            "url": url,
            "table": "contacts",
            "consent_column": "consent",
            "updated_at_column": "updated_at",
        },
        "destination": {**destination, "max_retries": 0},
        **sync,
    }
    return Settings.model_validate(
        {"data_dir": str(tmp_path / "data"), "state_url": url, "syncs": {"crm": config}}
    )


def brevo_settings(tmp_path: Path, url: str, brevo: BrevoHandle) -> Settings:
    destination = {
        "provider": "brevo",
        "api_key": brevo.api_key,
        "list_id": str(brevo.list_id),
        "base_url": brevo.base_url,
        "double_opt_in_template_id": 1,
        "double_opt_in_redirect_url": "https://corp.test/confirmed",
    }
    fields = {"FIRSTNAME": "first_name"}
    return sync_settings(tmp_path, url, destination, fields=fields, double_opt_in=True)


def listmonk_settings(tmp_path: Path, url: str, listmonk: ListmonkHandle, **sync: Any) -> Settings:
    destination = {
        "provider": "listmonk",
        "base_url": listmonk.base_url,
        "api_user": listmonk.api_user,
        "api_token": listmonk.api_token,
        "list_id": OPT_IN_LIST,
    }
    fields = {"name": "first_name"}
    return sync_settings(tmp_path, url, destination, fields=fields, double_opt_in=True, **sync)


def doi_asked(brevo: BrevoHandle) -> set[str]:
    """The addresses Brevo holds a double opt-in request for (not yet confirmed)."""
    return set(brevo.sandbox.extensions.get("doi_pending", {}))


def optins_of(listmonk: ListmonkHandle, email: str) -> int:
    """How many opt-in e-mails listmonk sent ``email``."""
    return sum(
        1 for mail in control(listmonk, "GET", "/optins")["optins"] if mail["email"] == email
    )


def owned(settings: Settings) -> list[tuple[str, bool]]:
    found = rows(settings, "SELECT source_key, managed FROM cb_contact_state ORDER BY source_key")
    return [(str(key), bool(managed)) for key, managed in found]


@pytest.mark.parametrize(
    ("fault", "left_meanwhile"),
    [("500", False), ("400", False), ("500", True)],
    ids=["failing-still-pending", "refused-still-pending", "failing-unsubscribed"],
)
async def test_brevo_a_failed_confirmation_request_keeps_the_create_and_is_asked_again(
    database_url: str, tmp_path: Path, brevo: BrevoHandle, fault: str, left_meanwhile: bool
) -> None:
    make_source(database_url, rows=2)
    settings = brevo_settings(tmp_path, database_url, brevo)
    fail_every(brevo, "^/contacts/doubleOptinConfirmation$", count=1, kind=fault)

    first = await push(settings)

    # One request failed, the other went out; both contacts were created pending, by the push.
    asked = doi_asked(brevo)
    assert len(asked) == 1
    failed = "1" if "person2@mail.test" in asked else "2"
    other = "2" if failed == "1" else "1"
    assert set(brevo.sandbox.by_email) == {"person1@mail.test", "person2@mail.test"}
    assert ledger(settings, failed) == [(None, "pending", "push")]
    assert ledger(settings, other) == [(None, "pending", "push")]
    assert owned(settings) == [("1", True), ("2", True)]  # the bridge's own: mirror may archive
    assert rows(settings, "SELECT count(*) FROM cb_push_intents") == [(0,)]
    assert open_rejections(settings) == [(failed, "confirmation_not_sent")]
    (message,) = rows(settings, "SELECT message FROM cb_rejected_records")[0]
    assert ("invalid_parameter" if fault == "400" else "server_error_500") in str(message)
    assert (first.created, first.retry_later) == (2, 1)

    email = f"person{failed}@mail.test"
    if left_meanwhile:  # the person unsubscribed through Brevo before the next run
        control(brevo, "POST", f"/contacts/{email}/unsubscribe", {})

    second = await push(settings)

    # Asked again only while the contact still waits to confirm; never once it left.
    assert (email in doi_asked(brevo)) is not left_meanwhile
    contact = brevo.sandbox.contacts[brevo.sandbox.by_email[email]]
    assert contact.email_blacklisted is left_meanwhile
    assert open_rejections(settings) == []
    assert (second.resolved, second.retry_later) == (1, 0)
    pushed = [row for row in ledger(settings, failed) if row[2] == "push"]
    assert pushed == [(None, "pending", "push")]  # the retry added no status change of its own
    assert (await push(settings)).writes == 0  # settled: the next run sends nothing


@pytest.mark.parametrize("left_meanwhile", [False, True], ids=["still-pending", "unsubscribed"])
async def test_listmonk_a_failed_opt_in_mail_keeps_the_reconfirmation_and_is_sent_again(
    database_url: str, tmp_path: Path, listmonk: ListmonkHandle, left_meanwhile: bool
) -> None:
    source = make_source(database_url, rows=2)
    settings = listmonk_settings(tmp_path, database_url, listmonk)
    await push(settings)
    assert optins_of(listmonk, "person1@mail.test") == 1  # asked when created
    source.update(1, consent=False)
    await push(settings)  # the bridge unsubscribes them
    source.update(1, consent=True)  # and asks them to confirm again
    source.update(2, first_name="Renamed 2")  # another member of the same batch
    fail_every(listmonk, "^/subscribers/[0-9]+/optin$", count=None)

    third = await push(settings)

    control(listmonk, "DELETE", "/faults")
    sub = listmonk.sandbox.subscriber_by("person1@mail.test")
    assert sub is not None
    assert sub.lists[int(OPT_IN_LIST)].status == "unconfirmed"
    assert optins_of(listmonk, "person1@mail.test") == 1  # the e-mail was not sent
    assert ledger(settings, "1")[-1] == ("unsubscribed", "pending", "push")
    assert rows(settings, "SELECT count(*) FROM cb_push_intents") == [(0,)]
    assert open_rejections(settings) == [("1", "optin_not_sent")]
    assert third.retry_later == 1
    # The batch's other member was saved as pushed: the next run does not send it again.
    renamed = listmonk.sandbox.subscriber_by("person2@mail.test")
    assert renamed is not None
    assert renamed.name == "Renamed 2"
    assert third.updated == 2
    changes = len(ledger(settings, "1"))

    if left_meanwhile:  # the person unsubscribed through listmonk before the next run
        control(listmonk, "POST", "/subscribers/person1@mail.test/unsubscribe", {})

    fourth = await push(settings)

    # Sent again only while the subscription still waits for confirmation; never once it left.
    assert optins_of(listmonk, "person1@mail.test") == (1 if left_meanwhile else 2)
    status = listmonk.sandbox.subscriber_by("person1@mail.test").lists[int(OPT_IN_LIST)].status
    assert status == ("unsubscribed" if left_meanwhile else "unconfirmed")
    assert open_rejections(settings) == []
    assert (fourth.resolved, fourth.retry_later, fourth.updated) == (1, 0, 1)
    # The retry itself changed no status: no ledger row of its own (an unsubscribe meanwhile
    # has exactly one, whoever saw it).
    assert len(ledger(settings, "1")) == changes + (1 if left_meanwhile else 0)
    assert (await push(settings)).writes == 0
