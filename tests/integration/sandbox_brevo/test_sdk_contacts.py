"""The official brevo-python SDK drives the sandbox's contacts, attributes, lists and folders
over a real socket."""

from __future__ import annotations

import httpx
import pytest
from brevo import Brevo
from brevo.contacts import AddContactToListRequestBodyEmails, RemoveContactFromListRequestBodyEmails
from brevo.core.api_error import ApiError
from brevo.errors import BadRequestError, NotFoundError

from campaign_bridge.sandbox.brevo import BrevoHandle

from .conftest import sdk_client


def test_create_get_update_delete_by_each_identifier(
    sdk: Brevo, brevo_sandbox: BrevoHandle
) -> None:
    created = sdk.contacts.create_contact(
        email="Ann.Lee+news@Example.org",
        ext_id="crm-1",
        attributes={"FIRSTNAME": "Ann", "SMS": "+33612345678"},
        list_ids=[brevo_sandbox.list_id],
    )
    assert created is not None
    contact_id = created.id
    by_email = sdk.contacts.get_contact_info("ann.lee+news@example.org", identifier_type="email_id")
    assert by_email.id == contact_id
    assert by_email.email == "ann.lee+news@example.org"
    assert by_email.list_ids == [brevo_sandbox.list_id]
    assert by_email.email_blacklisted is False
    for identifier, kind in (
        (str(contact_id), "contact_id"),
        ("crm-1", "ext_id"),
        ("0033612345678", "phone_id"),
    ):
        assert sdk.contacts.get_contact_info(identifier, identifier_type=kind).id == contact_id
    # without identifierType Brevo guesses: an email, then an id
    assert sdk.contacts.get_contact_info(str(contact_id)).id == contact_id

    sdk.contacts.update_contact("crm-1", identifier_type="ext_id", attributes={"LASTNAME": "Lee"})
    after = sdk.contacts.get_contact_info(str(contact_id), identifier_type="contact_id")
    assert after.attributes.LASTNAME == "Lee"  # type: ignore[attr-defined]
    assert after.attributes.FIRSTNAME == "Ann"  # only what is sent changes

    sdk.contacts.delete_contact("ann.lee+news@example.org", identifier_type="email_id")
    with pytest.raises(NotFoundError) as missing:
        sdk.contacts.get_contact_info(str(contact_id), identifier_type="contact_id")
    assert missing.value.body == {"code": "document_not_found", "message": "Contact does not exist"}


def test_duplicate_create_and_update_enabled_upsert(sdk: Brevo, brevo_sandbox: BrevoHandle) -> None:
    sdk.contacts.create_contact(email="dup@example.org", attributes={"FIRSTNAME": "One"})
    with pytest.raises(BadRequestError) as duplicate:
        sdk.contacts.create_contact(email="DUP@example.org")
    assert duplicate.value.body == {
        "code": "duplicate_parameter",
        "message": "Unable to create contact, email is already associated with another Contact",
        "metadata": {"duplicate_identifiers": ["email"]},
    }
    # updateEnabled: Brevo's upsert, 204 with an empty body (the SDK returns None)
    answer = sdk.contacts.create_contact(
        email="dup@example.org",
        attributes={"FIRSTNAME": "Two"},
        list_ids=[brevo_sandbox.list_id],
        update_enabled=True,
    )
    assert answer is None
    contact = sdk.contacts.get_contact_info("dup@example.org")
    assert contact.attributes.FIRSTNAME == "Two"  # type: ignore[attr-defined]
    assert contact.list_ids == [brevo_sandbox.list_id]
    assert len(brevo_sandbox.sandbox.contacts) == 1


def test_blocklisted_contact_stays_blocked_until_explicitly_released(
    sdk: Brevo, brevo_sandbox: BrevoHandle
) -> None:
    sdk.contacts.create_contact(email="gone@example.org", email_blacklisted=True)
    # re-adding without the flag (upsert, update, list add) keeps the blocklisting
    sdk.contacts.create_contact(
        email="gone@example.org", update_enabled=True, attributes={"FIRSTNAME": "G"}
    )
    sdk.contacts.update_contact("gone@example.org", list_ids=[brevo_sandbox.list_id])
    assert sdk.contacts.get_contact_info("gone@example.org").email_blacklisted is True
    sdk.contacts.update_contact("gone@example.org", email_blacklisted=False)
    assert sdk.contacts.get_contact_info("gone@example.org").email_blacklisted is False
    # a new address (attributes.EMAIL) lifts a blocklisting too, as Brevo documents
    sdk.contacts.update_contact("gone@example.org", email_blacklisted=True)
    sdk.contacts.update_contact("gone@example.org", attributes={"EMAIL": "new@example.org"})
    moved = sdk.contacts.get_contact_info("new@example.org")
    assert moved.email_blacklisted is False
    with pytest.raises(NotFoundError):
        sdk.contacts.get_contact_info("gone@example.org")


def test_typed_attributes(sdk: Brevo) -> None:
    sdk.contacts.create_attribute("normal", "SCORE", type="float")
    sdk.contacts.create_attribute("normal", "JOINED", type="date")
    sdk.contacts.create_attribute("normal", "VIP", type="boolean")
    sdk.contacts.create_attribute(
        "category",
        "PLAN",
        enumeration=[{"value": 1, "label": "free"}, {"value": 2, "label": "pro"}],
    )
    names = {a.name: a for a in sdk.contacts.get_attributes().attributes}
    assert names["SCORE"].type == "float"
    assert names["PLAN"].category == "category"
    with pytest.raises(BadRequestError) as twice:
        sdk.contacts.create_attribute("normal", "SCORE", type="float")
    assert twice.value.body["code"] == "duplicate_parameter"

    sdk.contacts.create_contact(
        email="typed@example.org",
        attributes={"SCORE": "12.5", "JOINED": "2026-02-03", "VIP": True, "PLAN": "pro"},
    )
    got = sdk.contacts.get_contact_info("typed@example.org").attributes
    assert (got.SCORE, got.JOINED, got.VIP, got.PLAN) == (12.5, "2026-02-03", True, 2)  # type: ignore[attr-defined]
    # values that do not fit the type are ignored (the SDK's documented rule)
    sdk.contacts.update_contact("typed@example.org", attributes={"SCORE": "lots", "VIP": "maybe"})
    got = sdk.contacts.get_contact_info("typed@example.org").attributes
    assert (got.SCORE, got.VIP) == (12.5, True)  # type: ignore[attr-defined]
    # an attribute the account does not have is refused
    with pytest.raises(BadRequestError) as unknown:
        sdk.contacts.update_contact("typed@example.org", attributes={"NICKNAME": "T"})
    assert unknown.value.body == {
        "code": "invalid_parameter",
        "message": "Attribute(s) not found: NICKNAME",
    }
    sdk.contacts.delete_attribute("normal", "SCORE")
    assert "SCORE" not in sdk.contacts.get_contact_info("typed@example.org").attributes.dict()


def test_lists_folders_and_membership(sdk: Brevo) -> None:
    folder = sdk.contacts.create_folder(name="Newsletters")
    assert folder is not None
    assert folder.id is not None
    first = sdk.contacts.create_list(name="Weekly", folder_id=folder.id)
    second = sdk.contacts.create_list(name="Offers", folder_id=folder.id)
    with pytest.raises(BadRequestError) as no_folder:
        sdk.contacts.create_list(name="Orphan", folder_id=999)
    assert no_folder.value.body == {
        "code": "invalid_parameter",
        "message": "Folder ID does not exist",
    }
    for i in range(3):
        sdk.contacts.create_contact(email=f"m{i}@example.org")
    added = sdk.contacts.add_contact_to_list(
        first.id,
        request=AddContactToListRequestBodyEmails(
            emails=["m0@example.org", "m1@example.org", "x@example.org"]
        ),
    )
    assert added.contacts.success == ["m0@example.org", "m1@example.org"]
    assert added.contacts.failure == ["x@example.org"]
    with pytest.raises(BadRequestError) as nothing:
        sdk.contacts.add_contact_to_list(
            first.id, request=AddContactToListRequestBodyEmails(emails=["m0@example.org"])
        )
    assert nothing.value.body == {
        "code": "invalid_parameter",
        "message": "Contact already in list and/or does not exist",
    }
    with pytest.raises(BadRequestError):
        sdk.contacts.add_contact_to_list(
            second.id,
            request=AddContactToListRequestBodyEmails(
                emails=[f"{i}@example.org" for i in range(151)]
            ),
        )
    members = sdk.contacts.get_contacts_from_list(first.id, sort="asc")
    assert [c.email for c in members.contacts] == ["m0@example.org", "m1@example.org"]
    assert members.count == 2
    detail = sdk.contacts.get_list(first.id)
    assert (detail.name, detail.folder_id, detail.unique_subscribers) == ("Weekly", folder.id, 2)
    removed = sdk.contacts.remove_contact_from_list(
        first.id, request=RemoveContactFromListRequestBodyEmails(emails=["m1@example.org"])
    )
    assert removed.contacts.success == ["m1@example.org"]
    assert sdk.contacts.get_contact_info("m1@example.org").list_ids == []
    in_folder = sdk.contacts.get_folder_lists(folder.id)
    assert sorted(lst.name for lst in in_folder.lists) == ["Offers", "Weekly"]
    assert sdk.contacts.get_lists(limit=50).count == 3  # with the account's first list
    with pytest.raises(BadRequestError) as too_many:
        sdk.contacts.get_lists(limit=51)
    assert too_many.value.body["code"] == "out_of_range"
    sdk.contacts.delete_list(second.id)
    with pytest.raises(NotFoundError):
        sdk.contacts.get_list(second.id)


def test_listing_pages_sorts_and_filters_by_modification(
    sdk: Brevo, brevo_sandbox: BrevoHandle, control: httpx.Client
) -> None:
    for i in range(5):
        sdk.contacts.create_contact(email=f"p{i}@example.org")
        control.post("/clock", json={"advance": 60})
    newest_first = sdk.contacts.get_contacts(limit=2)
    assert [c.email for c in newest_first.contacts] == ["p4@example.org", "p3@example.org"]
    assert newest_first.count == 5
    page = sdk.contacts.get_contacts(limit=2, offset=2, sort="asc")
    assert [c.email for c in page.contacts] == ["p2@example.org", "p3@example.org"]
    since = control.get("/clock").json()["now"]
    control.post("/clock", json={"advance": 1})
    sdk.contacts.update_contact("p1@example.org", attributes={"FIRSTNAME": "Changed"})
    changed = sdk.contacts.get_contacts(modified_since=since)
    assert [c.email for c in changed.contacts] == ["p1@example.org"]
    with pytest.raises(BadRequestError) as over:
        sdk.contacts.get_contacts(limit=1001)
    assert over.value.body == {
        "code": "out_of_range",
        "message": "Limit exceeds max value. Maximum allowed limit is 1000",
    }
    both = sdk.contacts.get_contacts(ids=[1, 3])
    assert sorted(c.id for c in both.contacts) == [1, 3]


def test_double_opt_in_adds_the_contact_only_when_confirmed(
    sdk: Brevo, brevo_sandbox: BrevoHandle, control: httpx.Client
) -> None:
    sdk.contacts.create_doi_contact(
        email="doi@example.org",
        include_list_ids=[brevo_sandbox.list_id],
        redirection_url="https://example.org/thanks",
        template_id=7,
        attributes={"FIRSTNAME": "Dee"},
    )
    with pytest.raises(NotFoundError):
        sdk.contacts.get_contact_info("doi@example.org")
    confirmed = control.post("/contacts/doi@example.org/confirm")
    assert confirmed.status_code == 200
    contact = sdk.contacts.get_contact_info("doi@example.org")
    assert contact.list_ids == [brevo_sandbox.list_id]
    assert contact.attributes.FIRSTNAME == "Dee"  # type: ignore[attr-defined]
    assert control.post("/contacts/doi@example.org/confirm").status_code == 404


def test_per_list_unsubscription(
    sdk: Brevo, brevo_sandbox: BrevoHandle, control: httpx.Client
) -> None:
    sdk.contacts.create_contact(email="pl@example.org", list_ids=[brevo_sandbox.list_id])
    answer = control.post(
        "/contacts/pl@example.org/unsubscribe", json={"listId": brevo_sandbox.list_id}
    )
    assert answer.status_code == 200
    contact = sdk.contacts.get_contact_info("pl@example.org")
    assert contact.list_unsubscribed == [brevo_sandbox.list_id]
    assert contact.list_ids == []
    assert contact.email_blacklisted is False  # per-list, not account-wide


def test_sdk_errors_carry_brevo_bodies(brevo_sandbox: BrevoHandle) -> None:
    with (
        sdk_client(brevo_sandbox.base_url, "xkeysib-wrong") as wrong,
        pytest.raises(ApiError) as denied,
    ):
        wrong.contacts.get_contacts()
    assert denied.value.status_code == 401
    assert denied.value.body == {"message": "Key not found", "code": "unauthorized"}
