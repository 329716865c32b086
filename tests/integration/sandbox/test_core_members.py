"""Members through the official SDK and mailchimp3 against the real-socket sandbox: identity,
the status state machine, archive/forget rules, input rejection, merge-field validation,
response shape (validated against the OpenAPI schemas), tags and list filters."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
from mailchimp3.mailchimpclient import MailChimpError
from mailchimp_marketing.api_client import ApiClientError

from campaign_bridge.sandbox.mailchimp.control import simulate_bounce, simulate_unsubscribe
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle
from tests.integration.sandbox.schema import assert_matches

ANY_OF = "Data did not match any of the schemas described in anyOf."


def h(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def sdk_error(call: Any, *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Run an official-SDK call expected to fail; its ``.text`` is the raw problem JSON."""
    with pytest.raises(ApiClientError) as info:
        call(*args, **kwargs)
    return info.value.status_code, json.loads(info.value.text)


def test_add_get_and_full_shape(mc: SandboxHandle, official: Any) -> None:
    official.lists.add_list_merge_field(mc.list_id, {"name": "Score", "type": "number"})
    cat = official.lists.create_list_interest_category(
        mc.list_id, {"title": "Topics", "type": "checkboxes"}
    )
    news = official.lists.create_interest_category_interest(mc.list_id, cat["id"], {"name": "News"})
    other = official.lists.create_interest_category_interest(mc.list_id, cat["id"], {"name": "X"})
    member = official.lists.add_list_member(
        mc.list_id,
        {
            "email_address": "Ada@Real.org",
            "status": "subscribed",
            "merge_fields": {"FNAME": "Ada", "UNKNOWN": "dropped", "MMERGE5": "42"},
            "interests": {news["id"]: True},
            "language": "fr",
            "vip": True,
            "tags": ["founder"],
        },
    )
    assert member["id"] == h("ada@real.org")
    assert member["email_address"] == "Ada@Real.org"
    assert member["merge_fields"] == {
        "FNAME": "Ada",
        "LNAME": "",
        "ADDRESS": "",
        "PHONE": "",
        "MMERGE5": 42,
    }
    assert member["interests"] == {news["id"]: True, other["id"]: False}
    assert member["source"] == "API - Generic"
    assert member["timestamp_signup"] == ""
    assert member["timestamp_opt"] != ""
    assert member["ip_opt"] == "127.0.0.1"
    assert member["language"] == "fr"
    assert member["vip"] is True
    assert member["tags"] == [{"id": member["tags"][0]["id"], "name": "founder"}]
    assert member["tags_count"] == 1
    assert len(member["unique_email_id"]) == 10
    assert int(member["unique_email_id"], 16) >= 0
    assert isinstance(member["web_id"], int)
    assert member["location"]["latitude"] == 0
    assert member["stats"] == {"avg_open_rate": 0, "avg_click_rate": 0}
    assert member["list_id"] == mc.list_id
    assert_matches(member, f"/lists/{mc.list_id}/members", "POST")
    fetched = official.lists.get_list_member(mc.list_id, member["id"])
    assert fetched == member
    assert_matches(fetched, f"/lists/{mc.list_id}/members/{member['id']}")
    listed = official.lists.get_list_members_info(mc.list_id)
    assert_matches(listed, f"/lists/{mc.list_id}/members")


def test_post_existing_address_is_member_exists(mc: SandboxHandle, official: Any) -> None:
    body = {"email_address": "dup@real.org", "status": "subscribed"}
    official.lists.add_list_member(mc.list_id, body)
    status, problem = sdk_error(official.lists.add_list_member, mc.list_id, body)
    assert (status, problem["title"]) == (400, "Member Exists")
    assert problem["detail"] == (
        "dup@real.org is already a list member. Use PUT to insert or update list members."
    )
    official.lists.delete_list_member(mc.list_id, h("dup@real.org"))  # archived: still exists
    status, problem = sdk_error(official.lists.add_list_member, mc.list_id, body)
    assert problem["title"] == "Member Exists"


def test_put_upserts_and_requires_status_if_new(mc: SandboxHandle, official: Any) -> None:
    status, problem = sdk_error(
        official.lists.set_list_member,
        mc.list_id,
        h("new@real.org"),
        {"email_address": "new@real.org", "status": "subscribed"},
    )
    assert (status, problem["title"]) == (400, "Invalid Resource")
    assert problem["errors"] == [
        {"field": "", "message": "Required fields were not provided: status_if_new"}
    ]
    created = official.lists.set_list_member(
        mc.list_id, h("new@real.org"), {"email_address": "new@real.org", "status_if_new": "pending"}
    )
    assert created["status"] == "pending"
    assert created["timestamp_signup"] != ""
    updated = official.lists.set_list_member(
        mc.list_id,
        h("new@real.org"),
        {"email_address": "new@real.org", "status_if_new": "unsubscribed", "status": "subscribed"},
    )
    assert updated["status"] == "subscribed"  # status_if_new is ignored for an existing member
    assert_matches(updated, f"/lists/{mc.list_id}/members/{updated['id']}", "PUT")


def test_put_with_hash_of_another_address_onto_existing_is_member_exists(
    mc: SandboxHandle, official: Any
) -> None:
    for email in ("one@real.org", "two@real.org"):
        official.lists.add_list_member(mc.list_id, {"email_address": email, "status": "subscribed"})
    status, problem = sdk_error(
        official.lists.set_list_member,
        mc.list_id,
        h("one@real.org"),
        {"email_address": "two@real.org", "status_if_new": "subscribed"},
    )
    assert (status, problem["title"]) == (400, "Member Exists")
    # hashing without lower-casing is the classic bug that lands here too
    wrong_hash = hashlib.md5(b"Two@Real.org").hexdigest()
    status, problem = sdk_error(
        official.lists.set_list_member,
        mc.list_id,
        wrong_hash,
        {"email_address": "Two@Real.org", "status_if_new": "subscribed"},
    )
    assert problem["title"] == "Member Exists"


def test_email_change_through_patch_moves_the_member(mc: SandboxHandle, official: Any) -> None:
    official.lists.add_list_member(
        mc.list_id, {"email_address": "old@real.org", "status": "subscribed"}
    )
    moved = official.lists.update_list_member(
        mc.list_id, h("old@real.org"), {"email_address": "fresh@real.org"}
    )
    assert moved["id"] == h("fresh@real.org")
    assert official.lists.get_list_member(mc.list_id, h("fresh@real.org"))["status"] == "subscribed"
    status, _ = sdk_error(official.lists.get_list_member, mc.list_id, h("old@real.org"))
    assert status == 404


@pytest.mark.parametrize("how", ["user-unsubscribe", "cleaned"])
def test_compliance_state_blocks_subscribe_but_allows_pending(
    mc: SandboxHandle, official: Any, mc3: Any, how: str
) -> None:
    email = "gone@real.org"
    official.lists.add_list_member(mc.list_id, {"email_address": email, "status": "subscribed"})
    if how == "cleaned":
        simulate_bounce(mc.sandbox, mc.list_id, email)
    else:
        simulate_unsubscribe(mc.sandbox, mc.list_id, email)
    detail = (
        f"{email} is in a compliance state due to unsubscribe, bounce, or compliance review "
        "and cannot be subscribed."
    )
    for call, body in (
        (official.lists.update_list_member, {"status": "subscribed"}),
        (official.lists.set_list_member, {"email_address": email, "status": "subscribed"}),
    ):
        status, problem = sdk_error(call, mc.list_id, h(email), body)
        assert (status, problem["title"], problem["detail"]) == (
            400,
            "Member In Compliance State",
            detail,
        )
    with pytest.raises(MailChimpError) as info:
        mc3.lists.members.update(mc.list_id, h(email), {"status": "subscribed"})
    assert info.value.args[0]["title"] == "Member In Compliance State"
    unchanged = official.lists.get_list_member(mc.list_id, h(email))
    assert unchanged["status"] == ("cleaned" if how == "cleaned" else "unsubscribed")
    pending = official.lists.update_list_member(mc.list_id, h(email), {"status": "pending"})
    assert pending["status"] == "pending"


def test_api_unsubscribed_member_can_be_resubscribed(mc: SandboxHandle, official: Any) -> None:
    email = "back@real.org"
    official.lists.add_list_member(mc.list_id, {"email_address": email, "status": "subscribed"})
    official.lists.update_list_member(mc.list_id, h(email), {"status": "unsubscribed"})
    again = official.lists.update_list_member(mc.list_id, h(email), {"status": "subscribed"})
    assert again["status"] == "subscribed"
    # an admin unsubscribe (web app) is not a compliance state either
    simulate_unsubscribe(mc.sandbox, mc.list_id, email, source="admin")
    again = official.lists.update_list_member(mc.list_id, h(email), {"status": "subscribed"})
    assert again["status"] == "subscribed"


def test_archive_rules(mc: SandboxHandle, official: Any, api: httpx.Client) -> None:
    email = "arch@real.org"
    official.lists.add_list_member(mc.list_id, {"email_address": email, "status": "subscribed"})
    response = official.lists.delete_list_member(mc.list_id, h(email))
    assert response.status_code == 204  # the SDK hands back the raw response on an empty 204
    assert official.lists.get_list_member(mc.list_id, h(email))["status"] == "archived"
    archived = official.lists.get_list_members_info(mc.list_id, status="archived")
    assert [m["email_address"] for m in archived["members"]] == [email]
    for target in (h(email), h("nobody@real.org")):
        again = api.delete(f"/lists/{mc.list_id}/members/{target}")
        assert again.status_code == 405
        assert again.headers["allow"] == "GET, PUT"
        assert (
            again.json()["detail"] == "This list member cannot be removed.  Please contact support."
        )
    revived = official.lists.set_list_member(
        mc.list_id, h(email), {"email_address": email, "status": "pending"}
    )
    assert revived["status"] == "pending"


def test_delete_permanent_forgets_the_address(mc: SandboxHandle, official: Any, mc3: Any) -> None:
    email = "erase@real.org"
    official.lists.add_list_member(mc.list_id, {"email_address": email, "status": "subscribed"})
    response = official.lists.delete_list_member_permanent(mc.list_id, h(email))
    assert response.status_code == 204
    status, _ = sdk_error(official.lists.get_list_member, mc.list_id, h(email))
    assert status == 404
    detail = (
        f"{email} was permanently deleted and cannot be re-imported. The contact must "
        "re-subscribe to get back on the list."
    )
    status, problem = sdk_error(
        official.lists.add_list_member, mc.list_id, {"email_address": email, "status": "subscribed"}
    )
    assert (status, problem["title"], problem["detail"]) == (
        400,
        "Forgotten Email Not Subscribed",
        detail,
    )
    with pytest.raises(MailChimpError) as info:
        mc3.lists.members.create_or_update(
            mc.list_id, h(email), {"email_address": email, "status_if_new": "subscribed"}
        )
    assert info.value.args[0]["title"] == "Forgotten Email Not Subscribed"


@pytest.mark.parametrize(
    ("email", "detail"),
    [
        (
            "someone@example.com",
            "someone@example.com looks fake or invalid, please enter a real email address.",
        ),
        ("x@TEST.com", "x@TEST.com looks fake or invalid, please enter a real email address."),
        ("not-an-email", "Please provide a valid email address."),
    ],
)
def test_fake_and_invalid_addresses(
    mc: SandboxHandle, official: Any, email: str, detail: str
) -> None:
    status, problem = sdk_error(
        official.lists.add_list_member, mc.list_id, {"email_address": email, "status": "subscribed"}
    )
    assert (status, problem["title"], problem["detail"]) == (400, "Invalid Resource", detail)


def test_fake_domains_are_configurable(
    mc: SandboxHandle, control: httpx.Client, official: Any
) -> None:
    control.post("/limits", json={"fake_domains": ["mailinator.com"]})
    ok = official.lists.add_list_member(
        mc.list_id, {"email_address": "fine@example.com", "status": "subscribed"}
    )
    assert ok["status"] == "subscribed"
    _, problem = sdk_error(
        official.lists.add_list_member,
        mc.list_id,
        {"email_address": "burner@mailinator.com", "status": "subscribed"},
    )
    assert "looks fake or invalid" in problem["detail"]


def test_signup_throttle_knob(mc: SandboxHandle, control: httpx.Client, official: Any) -> None:
    control.post("/limits", json={"throttled_emails": ["busy@real.org"]})
    _, problem = sdk_error(
        official.lists.add_list_member,
        mc.list_id,
        {"email_address": "busy@real.org", "status": "subscribed"},
    )
    assert problem["detail"] == (
        "busy@real.org has signed up to a lot of lists very recently; "
        "we're not allowing more signups for now"
    )


def test_merge_field_validation(mc: SandboxHandle, official: Any) -> None:
    official.lists.add_list_merge_field(
        mc.list_id, {"name": "Company", "type": "text", "tag": "COMPANY", "required": True}
    )
    official.lists.add_list_merge_field(mc.list_id, {"name": "Age", "type": "number", "tag": "AGE"})
    base = {"email_address": "m@real.org", "status": "subscribed"}
    _, problem = sdk_error(official.lists.add_list_member, mc.list_id, base)
    assert problem["detail"] == "Your merge fields were invalid."
    assert problem["errors"] == [{"field": "COMPANY", "message": "Please enter a value"}]
    _, problem = sdk_error(
        official.lists.add_list_member,
        mc.list_id,
        {**base, "merge_fields": {"COMPANY": "C", "AGE": "old", "ADDRESS": {"addr1": "1 Way"}}},
    )
    assert sorted(problem["errors"], key=lambda e: e["field"]) == [
        {"field": "ADDRESS", "message": "Please enter a complete address"},
        {"field": "AGE", "message": "Please enter a number"},
    ]
    skipped = official.lists.add_list_member(mc.list_id, base, skip_merge_validation=True)
    assert skipped["merge_fields"]["COMPANY"] == ""
    # an update of a member still lacking the required value fails the same way
    _, problem = sdk_error(
        official.lists.update_list_member,
        mc.list_id,
        skipped["id"],
        {"merge_fields": {"FNAME": "M"}},
    )
    assert problem["errors"] == [{"field": "COMPANY", "message": "Please enter a value"}]
    address = {"addr1": "1 Way", "city": "Atlanta", "state": "GA", "zip": "30308"}
    full = official.lists.update_list_member(
        mc.list_id,
        h("m@real.org"),
        {"merge_fields": {"COMPANY": "C", "ADDRESS": address, "AGE": 7}},
    )
    assert full["merge_fields"]["ADDRESS"] == {**address, "addr2": "", "country": "US"}
    assert full["merge_fields"]["AGE"] == 7


def test_default_value_and_interest_errors(mc: SandboxHandle, official: Any) -> None:
    official.lists.add_list_merge_field(
        mc.list_id, {"name": "Plan", "type": "text", "tag": "PLAN", "default_value": "free"}
    )
    member = official.lists.add_list_member(
        mc.list_id, {"email_address": "d@real.org", "status": "subscribed"}
    )
    assert member["merge_fields"]["PLAN"] == "free"
    _, problem = sdk_error(
        official.lists.update_list_member,
        mc.list_id,
        member["id"],
        {"interests": {"0123456789": True}},
    )
    assert problem["detail"] == "Invalid interest ID: '0123456789'."


def _schema_problem(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["title"] == "Invalid Resource"
    assert problem["detail"].startswith("The resource submitted could not be validated.")
    return list(problem["errors"])


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (
            {"location": {"latitude": "north", "longitude": 2}},
            {
                "field": "location.latitude",
                "message": "Schema describes number, string found instead",
            },
        ),
        (
            {"location": "Paris"},
            {"field": "location", "message": "Schema describes object, string found instead"},
        ),
        (
            {"merge_fields": {"FNAME": {"first": "Ada"}}},
            {
                "field": "merge_fields.FNAME",
                "message": ANY_OF,
            },
        ),
        (
            {"merge_fields": {"FNAME": True}},
            {
                "field": "merge_fields.FNAME",
                "message": ANY_OF,
            },
        ),
        (
            {"email_type": "pdf"},
            {"field": "email_type", "message": "Data presented is not one of the accepted values."},
        ),
        (
            {"vip": "yes"},
            {"field": "vip", "message": "Schema describes boolean, string found instead"},
        ),
        (
            {"interests": []},
            {"field": "interests", "message": "Schema describes object, array found instead"},
        ),
    ],
)
def test_json_types_are_checked_on_add_update_and_upsert(
    mc: SandboxHandle, api: httpx.Client, fields: dict[str, Any], error: dict[str, str]
) -> None:
    path = f"/lists/{mc.list_id}/members"
    new = {"email_address": "typed@real.org", "status": "subscribed", **fields}
    assert _schema_problem(api.post(path, json=new)) == [error]
    assert "typed@real.org" not in {
        m.email_address for m in mc.sandbox.lists[mc.list_id].members.values()
    }
    api.post(
        path, json={"email_address": "typed@real.org", "status": "subscribed"}
    ).raise_for_status()
    member = f"{path}/{h('typed@real.org')}"
    assert _schema_problem(api.patch(member, json=fields)) == [error]
    upsert = {"email_address": "typed@real.org", "status_if_new": "subscribed", **fields}
    assert _schema_problem(api.put(member, json=upsert)) == [error]
    assert api.get(member).json()["merge_fields"]["FNAME"] == ""


def test_an_address_object_is_not_text(mc: SandboxHandle, api: httpx.Client) -> None:
    address = {"addr1": "1 Main St", "city": "Springfield", "state": "IL", "zip": "62701"}
    body = {"email_address": "addr@real.org", "status": "subscribed"}
    response = api.post(
        f"/lists/{mc.list_id}/members", json={**body, "merge_fields": {"FNAME": address}}
    )
    assert _schema_problem(response) == [{"field": "merge_fields.FNAME", "message": ANY_OF}]
    response = api.post(
        f"/lists/{mc.list_id}/members", json={**body, "merge_fields": {"ADDRESS": address}}
    )
    assert response.json()["merge_fields"]["ADDRESS"]["city"] == "Springfield"


def test_empty_interests_object_is_fine(mc: SandboxHandle, api: httpx.Client) -> None:
    body = {"email_address": "empty@real.org", "status": "subscribed", "interests": {}}
    api.post(f"/lists/{mc.list_id}/members", json=body).raise_for_status()
    member = f"/lists/{mc.list_id}/members/{h('empty@real.org')}"
    assert api.patch(member, json={"interests": {}}).status_code == 200


def test_marketing_permissions(mc: SandboxHandle, official: Any) -> None:
    from campaign_bridge.sandbox.mailchimp.control import seed

    seed(
        mc.sandbox,
        {"lists": [{"id": mc.list_id, "permissions": [{"id": "a1b2c3d4e5", "text": "Email"}]}]},
    )
    member = official.lists.add_list_member(
        mc.list_id,
        {
            "email_address": "gdpr@real.org",
            "status": "subscribed",
            "marketing_permissions": [{"marketing_permission_id": "a1b2c3d4e5", "enabled": True}],
        },
    )
    assert member["marketing_permissions"] == [
        {"marketing_permission_id": "a1b2c3d4e5", "text": "Email", "enabled": True}
    ]


def test_last_changed_and_since_last_changed_is_strict(mc: SandboxHandle, official: Any) -> None:
    a = official.lists.add_list_member(
        mc.list_id, {"email_address": "a@real.org", "status": "subscribed"}
    )
    mc.sandbox.clock.advance(10)
    b = official.lists.add_list_member(
        mc.list_id, {"email_address": "b@real.org", "status": "subscribed"}
    )
    assert b["last_changed"] > a["last_changed"]
    since_a = official.lists.get_list_members_info(mc.list_id, since_last_changed=a["last_changed"])
    assert [m["email_address"] for m in since_a["members"]] == ["b@real.org"]
    mc.sandbox.clock.advance(10)
    changed = official.lists.update_list_member(
        mc.list_id, a["id"], {"merge_fields": {"FNAME": "A"}}
    )
    assert changed["last_changed"] > b["last_changed"]
    since_b = official.lists.get_list_members_info(mc.list_id, since_last_changed=b["last_changed"])
    assert [m["email_address"] for m in since_b["members"]] == ["a@real.org"]
    before_b = official.lists.get_list_members_info(
        mc.list_id, before_last_changed=b["last_changed"]
    )
    assert before_b["members"] == []
    ordered = official.lists.get_list_members_info(
        mc.list_id, sort_field="last_changed", sort_dir="DESC"
    )
    assert [m["email_address"] for m in ordered["members"]] == ["a@real.org", "b@real.org"]


def test_unencoded_plus_in_a_timestamp_is_rejected(mc: SandboxHandle, api: httpx.Client) -> None:
    raw = f"{mc.base_url}/lists/{mc.list_id}/members?since_last_changed=2024-01-01T00:00:00+00:00"
    response = api.get(raw)  # the + arrives as a space, as with a client that forgets to encode
    assert response.status_code == 400
    encoded = api.get(
        f"/lists/{mc.list_id}/members", params={"since_last_changed": "2024-01-01T00:00:00+00:00"}
    )
    assert encoded.status_code == 200


def test_status_and_other_filters(mc: SandboxHandle, official: Any) -> None:
    for email, status in (("s@real.org", "subscribed"), ("u@real.org", "unsubscribed")):
        official.lists.add_list_member(mc.list_id, {"email_address": email, "status": status})
    subs = official.lists.get_list_members_info(mc.list_id, status="subscribed")
    assert [m["email_address"] for m in subs["members"]] == ["s@real.org"]
    assert subs["total_items"] == 1
    status, _ = sdk_error(
        official.lists.get_list_members_info,
        mc.list_id,
        unsubscribed_since="2020-01-01T00:00:00+00:00",
    )
    assert status == 400


def test_member_tags_endpoint(mc: SandboxHandle, official: Any, api: httpx.Client) -> None:
    email = "tags@real.org"
    official.lists.add_list_member(
        mc.list_id, {"email_address": email, "status": "subscribed", "tags": ["a"]}
    )
    mc.sandbox.clock.advance(5)
    response = official.lists.update_list_member_tags(
        mc.list_id,
        h(email),
        {
            "tags": [{"name": "b", "status": "active"}, {"name": "a", "status": "inactive"}],
            "is_syncing": True,
        },
    )
    assert response.status_code == 204
    tags = official.lists.get_list_member_tags(mc.list_id, h(email))
    assert [t["name"] for t in tags["tags"]] == ["b"]
    assert tags["tags"][0]["date_added"].endswith("+00:00")
    assert tags["total_items"] == 1
    assert_matches(tags, f"/lists/{mc.list_id}/members/{h(email)}/tags")
    # tags sent in an update body of an existing member are ignored (creation only)
    official.lists.set_list_member(
        mc.list_id, h(email), {"email_address": email, "status_if_new": "subscribed", "tags": ["c"]}
    )
    assert [
        t["name"] for t in official.lists.get_list_member_tags(mc.list_id, h(email))["tags"]
    ] == ["b"]
    # a body without the "tags" wrapper is a silent no-op, as observed on Mailchimp
    nothing = api.post(
        f"/lists/{mc.list_id}/members/{h(email)}/tags", json={"name": "z", "status": "active"}
    )
    assert nothing.status_code == 204
    assert official.lists.get_list_member_tags(mc.list_id, h(email))["total_items"] == 1
    missing = api.post(
        f"/lists/{mc.list_id}/members/{h('no@real.org')}/tags",
        json={"tags": [{"name": "x", "status": "active"}]},
    )
    assert missing.status_code == 404
    found = official.lists.tag_search(mc.list_id, name="b")
    assert [t["name"] for t in found["tags"]] == ["b"]


def test_activity_feed_endpoint(mc: SandboxHandle, official: Any) -> None:
    member = official.lists.add_list_member(
        mc.list_id, {"email_address": "f@real.org", "status": "subscribed"}
    )
    feed = official.lists.get_list_member_activity_feed(mc.list_id, member["id"])
    assert feed["email_id"] == member["id"]
    assert feed["list_id"] == mc.list_id
    assert isinstance(feed["activity"], list)
    assert_matches(feed, f"/lists/{mc.list_id}/members/{member['id']}/activity-feed")


def test_mailchimp3_member_round_trip(mc: SandboxHandle, mc3: Any) -> None:
    created = mc3.lists.members.create(
        mc.list_id, {"email_address": "three@real.org", "status": "subscribed"}
    )
    assert created["id"] == h("three@real.org")
    updated = mc3.lists.members.update(mc.list_id, created["id"], {"merge_fields": {"LNAME": "T"}})
    assert updated["merge_fields"]["LNAME"] == "T"
    everyone = mc3.lists.members.all(mc.list_id, get_all=True)
    assert [m["email_address"] for m in everyone["members"]] == ["three@real.org"]
    assert mc3.lists.members.delete(mc.list_id, created["id"]) is None
    assert mc3.lists.members.get(mc.list_id, created["id"])["status"] == "archived"
    with pytest.raises(MailChimpError) as info:
        mc3.lists.members.create(
            mc.list_id, {"email_address": "three@real.org", "status": "subscribed"}
        )
    assert info.value.args[0]["title"] == "Member Exists"
