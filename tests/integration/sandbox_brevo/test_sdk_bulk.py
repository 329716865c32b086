"""The official SDK drives the sandbox's bulk endpoints: import + processes, and batch."""

from __future__ import annotations

import httpx
import pytest
from brevo import Brevo
from brevo.contacts import UpdateBatchContactsRequestContactsItem
from brevo.errors import BadRequestError, NotFoundError

from campaign_bridge.sandbox.brevo import BrevoHandle


def test_json_import_is_asynchronous_and_reports_rejected_rows(
    sdk: Brevo, brevo_sandbox: BrevoHandle, control: httpx.Client
) -> None:
    control.post("/limits", json={"import_queue_seconds": 5, "import_process_seconds": 10})
    sdk.contacts.create_contact(
        email="old@example.org", attributes={"FIRSTNAME": "Old", "LASTNAME": "Kept"}
    )
    rows = [
        {"email": "new@example.org", "attributes": {"FIRSTNAME": "New", "NICKNAME": "ignored"}},
        {"email": "old@example.org", "attributes": {"FIRSTNAME": "Updated", "LASTNAME": ""}},
        {"email": "not-an-address", "attributes": {}},
        {"email": "New@example.org", "attributes": {"FIRSTNAME": "Twice"}},
    ]
    started = sdk.contacts.import_contacts(json_body=rows, list_ids=[brevo_sandbox.list_id])
    process_id = started.process_id
    assert sdk.process.get_process(process_id).status == "queued"
    with pytest.raises(NotFoundError):  # not applied yet
        sdk.contacts.get_contact_info("new@example.org")
    control.post("/clock", json={"advance": 6})
    assert sdk.process.get_process(process_id).status == "in_process"
    control.post("/clock", json={"advance": 10})
    done = sdk.process.get_process(process_id)
    assert done.status == "completed"
    assert done.name == "IMPORTUSER"
    reports = done.info.import_  # type: ignore[union-attr]
    assert reports is not None
    assert reports.duplicate_ext_id is None
    invalid = httpx.get(reports.invalid_emails or "").text
    assert invalid == "LINE;IDENTIFIER;REASON\n3;not-an-address;invalid email address\n"
    duplicates = httpx.get(reports.duplicate_email_id or "").text
    assert duplicates == "LINE;IDENTIFIER;REASON\n4;new@example.org;duplicate of line 1\n"

    new = sdk.contacts.get_contact_info("new@example.org")
    assert new.attributes.dict() == {"FIRSTNAME": "New"}  # unknown attributes ignored on import
    assert new.list_ids == [brevo_sandbox.list_id]
    old = sdk.contacts.get_contact_info("old@example.org")
    # an empty cell does not erase without emptyContactsAttributes
    assert old.attributes.dict() == {"FIRSTNAME": "Updated", "LASTNAME": "Kept"}
    listing = sdk.process.get_processes()
    assert [p.id for p in listing.processes] == [process_id]
    with pytest.raises(NotFoundError) as unknown:
        sdk.process.get_process(999)
    assert unknown.value.body == {"code": "invalid_parameter", "message": "processId is invalid"}


def test_csv_import_options(sdk: Brevo, brevo_sandbox: BrevoHandle) -> None:
    sdk.contacts.create_contact(
        email="a@example.org", attributes={"FIRSTNAME": "A", "LASTNAME": "Aa"}
    )
    folder_id = next(iter(brevo_sandbox.sandbox.folders))
    started = sdk.contacts.import_contacts(
        file_body="EMAIL;FIRSTNAME;LASTNAME\na@example.org;Ann;\nb@example.org;Bob;Bb\n",
        new_list={"list_name": "Imported", "folder_id": folder_id},
        empty_contacts_attributes=True,
        email_blacklist=True,
    )
    assert sdk.process.get_process(started.process_id).status == "completed"
    a = sdk.contacts.get_contact_info("a@example.org")
    assert a.attributes.dict() == {"FIRSTNAME": "Ann"}  # the blank cell erased LASTNAME
    assert a.email_blacklisted is True
    imported = [lst for lst in sdk.contacts.get_lists().lists if lst.name == "Imported"]
    assert len(imported) == 1
    assert sdk.contacts.get_contacts_from_list(imported[0].id).count == 2

    kept = sdk.contacts.import_contacts(
        json_body=[{"email": "a@example.org", "attributes": {"FIRSTNAME": "Nope"}}],
        list_ids=[brevo_sandbox.list_id],
        update_existing_contacts=False,
    )
    assert sdk.process.get_process(kept.process_id).status == "completed"
    assert sdk.contacts.get_contact_info("a@example.org").attributes.FIRSTNAME == "Ann"  # type: ignore[attr-defined]


def test_import_keeps_a_blocklisted_contact_blocked(sdk: Brevo, brevo_sandbox: BrevoHandle) -> None:
    sdk.contacts.create_contact(email="out@example.org", email_blacklisted=True)
    started = sdk.contacts.import_contacts(
        json_body=[{"email": "out@example.org", "attributes": {"FIRSTNAME": "Back"}}],
        list_ids=[brevo_sandbox.list_id],
    )
    sdk.process.get_process(started.process_id)
    contact = sdk.contacts.get_contact_info("out@example.org")
    assert contact.email_blacklisted is True
    assert contact.attributes.FIRSTNAME == "Back"  # type: ignore[attr-defined]


def test_import_request_validation(
    sdk: Brevo, http: httpx.Client, brevo_sandbox: BrevoHandle
) -> None:
    with pytest.raises(BadRequestError) as no_list:
        sdk.contacts.import_contacts(json_body=[{"email": "x@example.org"}])
    assert no_list.value.body == {
        "code": "missing_parameter",
        "message": "Please provide either listIds or newList",
    }
    with pytest.raises(BadRequestError) as two_sources:
        sdk.contacts.import_contacts(
            json_body=[{"email": "x@example.org"}],
            file_body="EMAIL\ny@example.org",
            list_ids=[brevo_sandbox.list_id],
        )
    assert two_sources.value.body["code"] == "missing_parameter"
    big = {
        "jsonBody": [
            {"email": f"u{i}@example.org", "attributes": {"FIRSTNAME": "x" * 200}}
            for i in range(50_000)
        ],
        "listIds": [brevo_sandbox.list_id],
    }
    too_big = http.post("/contacts/import", json=big)
    assert too_big.status_code == 400
    assert (
        too_big.json()["message"] == "Request body is too large. The maximum allowed size is 10 MB"
    )
    assert brevo_sandbox.sandbox.contacts == {}


def test_batch_updates_all_or_nothing(sdk: Brevo, brevo_sandbox: BrevoHandle) -> None:
    first = sdk.contacts.create_contact(email="one@example.org")
    sdk.contacts.create_contact(email="two@example.org", attributes={"SMS": "+33600000002"})
    assert first is not None
    sdk.contacts.update_batch_contacts(
        contacts=[
            UpdateBatchContactsRequestContactsItem(
                email="one@example.org", attributes={"FIRSTNAME": "Uno"}
            ),
            UpdateBatchContactsRequestContactsItem(
                sms="+33600000002", list_ids=[brevo_sandbox.list_id]
            ),
            UpdateBatchContactsRequestContactsItem(id=first.id, email_blacklisted=True),
        ]
    )
    one = sdk.contacts.get_contact_info("one@example.org")
    assert one.attributes.FIRSTNAME == "Uno"  # type: ignore[attr-defined]
    assert one.email_blacklisted is True
    assert sdk.contacts.get_contact_info("two@example.org").list_ids == [brevo_sandbox.list_id]
    with pytest.raises(BadRequestError) as unknown:
        sdk.contacts.update_batch_contacts(
            contacts=[
                UpdateBatchContactsRequestContactsItem(
                    email="two@example.org", attributes={"FIRSTNAME": "Dos"}
                ),
                UpdateBatchContactsRequestContactsItem(
                    email="nobody@example.org", attributes={"FIRSTNAME": "X"}
                ),
            ]
        )
    assert unknown.value.body == {
        "code": "document_not_found",
        "message": "Contact does not exist: contacts[1]",
    }
    assert "FIRSTNAME" not in sdk.contacts.get_contact_info("two@example.org").attributes.dict()
    with pytest.raises(BadRequestError):
        sdk.contacts.update_batch_contacts(
            contacts=[
                UpdateBatchContactsRequestContactsItem(email="one@example.org") for _ in range(101)
            ]
        )


def test_concurrent_imports_are_applied_in_order_without_loss(
    brevo_sandbox: BrevoHandle,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from .conftest import sdk_client

    def run(part: int) -> int:
        with sdk_client(brevo_sandbox.base_url, brevo_sandbox.api_key) as sdk:
            rows = [{"email": f"c{part}-{i}@example.org"} for i in range(1000)]
            started = sdk.contacts.import_contacts(json_body=rows, list_ids=[brevo_sandbox.list_id])
            assert sdk.process.get_process(started.process_id).status == "completed"
            return started.process_id

    with ThreadPoolExecutor(4) as pool:
        ids = sorted(pool.map(run, range(4)))
    assert ids == [1, 2, 3, 4]
    sandbox = brevo_sandbox.sandbox
    assert len(sandbox.contacts) == 4000
    assert len(sandbox.lists[brevo_sandbox.list_id].members) == 4000
    assert sorted(sandbox.contacts) == list(range(1, 4001))


def test_the_sdk_recovers_from_429_when_retry_after_is_sent() -> None:
    from campaign_bridge.sandbox.brevo import BrevoConfig, run_in_thread

    from .conftest import sdk_client

    # a running clock (the windows are the sandbox clock's; a frozen one never moves on)
    config = BrevoConfig(rate_limits=True, contacts_rps=2, retry_after=True)
    with run_in_thread(config=config) as handle:
        # the SDK's own retries (2 by default) wait Retry-After, then the next second's window
        with sdk_client(handle.base_url, handle.api_key, max_retries=2) as sdk:
            for i in range(4):
                sdk.contacts.create_contact(email=f"rl{i}@example.org")
        assert len(handle.sandbox.contacts) == 4
        assert handle.sandbox.extensions["rate_limiter"].rejected >= 1
