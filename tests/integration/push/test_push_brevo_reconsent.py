"""Issue 11: on Brevo, a contact who unsubscribed (blocklisted) and consents again in the source
is asked to confirm (``POST /contacts/doubleOptinConfirmation``), but Brevo keeps the contact
blocklisted until the person clicks the link. The bridge stores what Brevo holds
(``unsubscribed``), writes no ledger row for the request (no status changed), remembers that it
asked for this consent (the next runs send nothing), asks again next run when the request failed,
and records ``unsubscribed -> subscribed`` once, as the provider's, when the person confirms.
On SQLite, PostgreSQL and MariaDB state stores, the Brevo sandbox over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from campaign_bridge.config import Settings, SyncMode
from campaign_bridge.pull import run_pull
from campaign_bridge.sandbox.brevo import BrevoHandle
from campaign_bridge.sandbox.brevo import run_in_thread as run_brevo
from tests.integration.push.conftest import SourceDb, make_source
from tests.integration.push.test_push_confirmation_retry import (
    control,
    doi_asked,
    fail_every,
    sync_settings,
)
from tests.integration.push.test_push_consent import ledger, push, rows
from tests.integration.push.test_push_tag_refusal import open_rejections

pytestmark = pytest.mark.anyio

PERSON = "person1@mail.test"
SUBSCRIBED = [(None, "subscribed", "push"), ("subscribed", "unsubscribed", "pull")]


@pytest.fixture
def brevo() -> Iterator[BrevoHandle]:
    with run_brevo() as handle:
        yield handle


def settings_with_doi(tmp_path: Path, url: str, handle: BrevoHandle) -> Settings:
    """Single opt-in for new contacts, Brevo's double opt-in template for re-consents."""
    destination = {
        "provider": "brevo",
        "api_key": handle.api_key,
        "list_id": str(handle.list_id),
        "base_url": handle.base_url,
        "double_opt_in_template_id": 1,
        "double_opt_in_redirect_url": "https://corp.test/confirmed",
    }
    return sync_settings(tmp_path, url, destination, fields={"FIRSTNAME": "first_name"})


def stored_status(settings: Settings) -> str:
    sql = "SELECT provider_status FROM cb_contact_state WHERE source_key = '1'"
    ((status,),) = rows(settings, sql)
    return str(status)


def blocklisted(handle: BrevoHandle) -> bool:
    return handle.sandbox.contacts[handle.sandbox.by_email[PERSON]].email_blacklisted


async def unsubscribed_then_consenting(
    settings: Settings, handle: BrevoHandle, source: SourceDb
) -> None:
    """Person 1 is pushed subscribed, unsubscribes through Brevo's link (blocklisted: the push's
    refresh records it, as the provider's), withdraws in the source, then consents again."""
    await push(settings)
    control(handle, "POST", f"/contacts/{PERSON}/unsubscribe", {})
    source.update(1, consent=False)
    await push(settings)
    assert ledger(settings, "1") == SUBSCRIBED
    source.update(1, consent=True)


@pytest.mark.parametrize("seen_by", ["pull", "push"])
async def test_brevo_a_reconsent_of_a_blocklisted_contact_stays_unsubscribed_until_confirmed(
    database_url: str, tmp_path: Path, brevo: BrevoHandle, seen_by: str
) -> None:
    source = make_source(database_url, rows=2)
    settings = settings_with_doi(tmp_path, database_url, brevo)
    await unsubscribed_then_consenting(settings, brevo, source)

    await push(settings)

    # Asked to confirm; Brevo still has them blocklisted, and so does the bridge: no ledger row.
    assert PERSON in doi_asked(brevo)
    assert blocklisted(brevo)
    assert stored_status(settings) == "unsubscribed"
    assert ledger(settings, "1") == SUBSCRIBED
    assert open_rejections(settings) == []

    # A pull and later pushes find nothing new, and the request is not made again.
    request = brevo.sandbox.extensions["doi_pending"].pop(PERSON)  # to see a second one
    await run_pull(settings, "crm")
    assert (await push(settings)).writes == 0
    assert PERSON not in doi_asked(brevo)
    assert ledger(settings, "1") == SUBSCRIBED
    assert stored_status(settings) == "unsubscribed"

    # The person confirms: Brevo lifts the blocklist; the next pull records it once, as Brevo's.
    brevo.sandbox.extensions["doi_pending"][PERSON] = request
    control(brevo, "POST", f"/contacts/{PERSON}/confirm", {})
    for _ in range(2):  # by pull, or by push's status refresh (Brevo's webhooks say nothing)
        if seen_by == "pull":
            await run_pull(settings, "crm")
        else:
            assert (await push(settings)).writes == 0
    assert ledger(settings, "1") == [*SUBSCRIBED, ("unsubscribed", "subscribed", "pull")]
    assert stored_status(settings) == "subscribed"
    assert (await push(settings)).writes == 0
    assert len(ledger(settings, "1")) == 3


@pytest.mark.parametrize("fault", ["500", "400"], ids=["failing", "refused"])
async def test_brevo_a_failed_reconfirmation_request_of_a_blocklisted_contact_is_asked_again(
    database_url: str, tmp_path: Path, brevo: BrevoHandle, fault: str
) -> None:
    source = make_source(database_url, rows=2)
    settings = settings_with_doi(tmp_path, database_url, brevo)
    await unsubscribed_then_consenting(settings, brevo, source)
    fail_every(brevo, "^/contacts/doubleOptinConfirmation$", count=1, kind=fault)

    failed = await push(settings)

    assert PERSON not in doi_asked(brevo)
    assert open_rejections(settings) == [("1", "confirmation_not_sent")]
    assert failed.retry_later == 1
    assert stored_status(settings) == "unsubscribed"
    assert ledger(settings, "1") == SUBSCRIBED

    retried = await push(settings)

    # Asked again (Brevo still has them blocklisted, the source still consents); no ledger row.
    assert PERSON in doi_asked(brevo)
    assert blocklisted(brevo)
    assert (retried.resolved, retried.retry_later) == (1, 0)
    assert open_rejections(settings) == []
    assert ledger(settings, "1") == SUBSCRIBED
    assert stored_status(settings) == "unsubscribed"
    brevo.sandbox.extensions["doi_pending"].pop(PERSON)
    assert (await push(settings)).writes == 0  # settled: not asked a third time
    assert PERSON not in doi_asked(brevo)


async def test_brevo_an_archived_contact_back_with_consent_is_pending_until_confirmed(
    database_url: str, tmp_path: Path, brevo: BrevoHandle
) -> None:
    """Mirror mode archives (unlists) a contact the bridge created when its row leaves the
    source; back with consent, it is asked to re-confirm. Brevo shows that as pending
    (``DOUBLE_OPT-IN`` = 2, off the list): the push's ledger row is the only one until the
    person confirms, and the confirmation is recorded once, as Brevo's."""
    source = make_source(database_url, rows=2)
    settings = settings_with_doi(tmp_path, database_url, brevo)
    mirror = settings.model_copy(deep=True)
    mirror.syncs["crm"].mode = SyncMode.MIRROR
    await push(mirror)
    source.delete(1)
    await push(mirror)
    source.insert([{"id": 1}])

    await push(mirror)

    assert PERSON in doi_asked(brevo)
    assert stored_status(mirror) == "pending"
    archived = [(None, "subscribed", "push"), ("subscribed", "archived", "push")]
    assert ledger(mirror, "1") == [*archived, ("archived", "pending", "push")]
    await run_pull(mirror, "crm")
    assert (await push(mirror)).writes == 0
    assert stored_status(mirror) == "pending"  # what Brevo holds, read back by pull and push
    assert ledger(mirror, "1") == [*archived, ("archived", "pending", "push")]

    control(brevo, "POST", f"/contacts/{PERSON}/confirm", {})
    await run_pull(mirror, "crm")
    await run_pull(mirror, "crm")
    assert ledger(mirror, "1")[3:] == [("pending", "subscribed", "pull")]
    assert stored_status(mirror) == "subscribed"
