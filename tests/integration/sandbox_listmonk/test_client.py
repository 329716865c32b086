"""The PyPI ``listmonk`` client (0.6.32, unmodified) drives the sandbox over a real socket, for
every endpoint family it supports: health/login, lists, subscribers (create, get by id, uuid and
e-mail, query pages, update, disable/enable/blocklist, bulk list add, opt-in confirm, delete)
and campaigns (create, list, get, update, status, delete)."""

from __future__ import annotations

from types import ModuleType

import httpx
import httpx2
import listmonk
import pytest

from campaign_bridge.sandbox.listmonk import ListmonkHandle


def test_login_checks_credentials_against_the_server(listmonk_sandbox: ListmonkHandle) -> None:
    listmonk.set_url_base(listmonk_sandbox.base_url)
    assert listmonk.login(listmonk_sandbox.api_user, "wrong-token") is False
    assert listmonk.login(listmonk_sandbox.api_user, listmonk_sandbox.api_token) is True
    assert listmonk.verify_login() is True
    assert listmonk.is_healthy() is True


def test_lists_crud(client: ModuleType) -> None:
    defaults = client.lists()
    assert [(x.name, x.type, x.optin) for x in defaults] == [
        ("Default list", "private", "single"),
        ("Opt-in list", "public", "double"),
    ]
    created = client.create_list("Newsletter", list_type="public", optin="double", tags=["news"])
    assert created.optin == "double"
    assert created.tags == ["news"]
    assert created.subscriber_count == 0
    fetched = client.list_by_id(created.id)
    assert fetched.uuid == created.uuid
    renamed = client.update_list(created.id, list_name="Weekly")
    assert renamed.name == "Weekly"
    assert client.delete_list(created.id) is True
    with pytest.raises(httpx2.HTTPStatusError) as caught:
        client.list_by_id(created.id)
    assert caught.value.response.status_code == 400
    assert caught.value.response.json() == {"message": "List not found"}


def test_subscriber_lifecycle(client: ModuleType, listmonk_sandbox: ListmonkHandle) -> None:
    sub = client.create_subscriber(
        "Ann.Lee@Example.org", "", {1}, pre_confirm=True, attribs={"city": "Oslo"}
    )
    assert sub.email == "ann.lee@example.org"
    assert sub.name == "Ann Lee"  # made from the local part, as listmonk does
    assert sub.lists[0]["subscription_status"] == "confirmed"
    assert client.subscriber_by_email("ann.lee@example.org").id == sub.id
    assert client.subscriber_by_id(sub.id).uuid == sub.uuid
    assert client.subscriber_by_uuid(sub.uuid).email == sub.email
    assert client.subscriber_by_email("nobody@example.org") is None

    with pytest.raises(httpx2.HTTPStatusError) as caught:
        client.create_subscriber("ann.lee@example.org", "Again", {1})
    assert caught.value.response.status_code == 409
    assert caught.value.response.json() == {"message": "E-mail already exists."}

    sub.attribs["city"] = "Bergen"
    moved = client.update_subscriber(sub, add_to_lists={2}, remove_from_lists={1})
    assert moved.attribs == {"city": "Bergen"}
    assert [(x["id"], x["subscription_status"]) for x in moved.lists] == [(2, "confirmed")]

    disabled = client.disable_subscriber(moved)
    assert disabled.status == "disabled"
    blocked = client.block_subscriber(client.enable_subscriber(disabled))
    assert blocked.status == "blocklisted"
    assert {x["subscription_status"] for x in blocked.lists} == {"unsubscribed"}
    # re-enabling does not re-subscribe: the unsubscribed status is kept
    again = client.enable_subscriber(blocked)
    assert again.status == "enabled"
    assert {x["subscription_status"] for x in again.lists} == {"unsubscribed"}

    assert client.delete_subscriber(email="ann.lee@example.org") is True
    assert client.subscriber_by_id(sub.id) is None
    assert listmonk_sandbox.sandbox.subscribers == {}


def test_subscribers_pages_and_filters(client: ModuleType) -> None:
    for i in range(7):
        client.create_subscriber(f"p{i}@example.org", f"P {i}", {1} if i % 2 else {2})
    on_first = client.subscribers(list_id=1)
    assert sorted(s.email for s in on_first) == [
        "p1@example.org",
        "p3@example.org",
        "p5@example.org",
    ]
    queried = client.subscribers(query_text="subscribers.email LIKE 'p%' AND subscribers.id > 5")
    assert sorted(s.email for s in queried) == ["p5@example.org", "p6@example.org"]
    assert len(client.subscribers()) == 7


def test_bulk_add_to_lists_and_optin_confirm(
    client: ModuleType, listmonk_sandbox: ListmonkHandle
) -> None:
    subs = [client.create_subscriber(f"b{i}@example.org", "", {1}) for i in range(3)]
    assert client.add_subscribers_to_lists([s.id for s in subs], [2], status="unconfirmed")
    optin = next(x for x in client.lists() if x.optin == "double")
    assert optin.subscriber_statuses is not None
    assert optin.subscriber_count == 3
    first = client.subscriber_by_id(subs[0].id)
    assert client.confirm_optin(first.uuid, optin.uuid) is True
    statuses = {x["id"]: x["subscription_status"] for x in client.subscriber_by_id(first.id).lists}
    assert statuses == {1: "unconfirmed", 2: "confirmed"}
    assert client.confirm_optin("00000000-0000-4000-8000-000000000000", optin.uuid) is False


def test_campaign_lifecycle(
    client: ModuleType, listmonk_sandbox: ListmonkHandle, http: httpx.Client
) -> None:
    for i in range(40):
        client.create_subscriber(f"c{i}@example.org", "", {1}, pre_confirm=True)
    campaign = client.create_campaign(
        name="June news",
        subject="Hello",
        list_ids={1},
        body='<p>Read <a href="https://example.org/a">this</a></p>',
    )
    assert campaign.status == "draft"
    assert campaign.template_id == 1
    assert [c.id for c in client.campaigns()] == [campaign.id]
    campaign.subject = "Hello again"
    assert client.update_campaign(campaign).subject == "Hello again"
    started = client.start_campaign(campaign.id)
    assert started is not None
    assert started.status == "running"
    assert started.to_send == 40
    done = client.campaign_by_id(campaign.id)  # the next request finishes it
    assert done is not None
    assert done.status == "finished"
    assert done.sent == 40
    assert done.views > 0
    assert done.clicks > 0
    with pytest.raises(httpx2.HTTPStatusError) as caught:
        client.update_campaign(done)
    assert caught.value.response.json() == {
        "message": "Cannot update a running or a finished campaign."
    }
    assert client.delete_campaign(campaign.id) is True
    # the client expects None for an unknown campaign, but listmonk answers 400 (as the sandbox)
    with pytest.raises(httpx2.HTTPStatusError) as gone:
        client.campaign_by_id(campaign.id)
    assert gone.value.response.status_code == 400
    assert gone.value.response.json() == {"message": "Campaign not found"}
