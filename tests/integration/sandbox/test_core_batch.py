"""Batch subscribe ``POST /lists/{id}`` through the official SDK and mailchimp3."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
from mailchimp_marketing.api_client import ApiClientError

from campaign_bridge.sandbox.mailchimp.control import simulate_unsubscribe
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle
from tests.integration.sandbox.schema import assert_matches

NOT_ACCEPTED = "Data presented is not one of the accepted values."
ANY_OF = "Data did not match any of the schemas described in anyOf."


def h(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def test_new_members_and_envelope(mc: SandboxHandle, official: Any) -> None:
    body = {
        "members": [
            {
                "email_address": f"n{i}@real.org",
                "status": "subscribed",
                "merge_fields": {"FNAME": f"N{i}"},
                "tags": ["imported"],
            }
            for i in range(3)
        ]
    }
    result = official.lists.batch_list_members(mc.list_id, body)
    assert result["total_created"] == 3
    assert result["total_updated"] == 0
    assert result["error_count"] == 0
    assert [m["email_address"] for m in result["new_members"]] == [
        f"n{i}@real.org" for i in range(3)
    ]
    assert result["new_members"][0]["tags"][0]["name"] == "imported"
    assert_matches(result, f"/lists/{mc.list_id}", "POST")


def test_existing_without_update_existing_is_contact_exists(
    mc: SandboxHandle, official: Any
) -> None:
    official.lists.add_list_member(
        mc.list_id, {"email_address": "e@real.org", "status": "subscribed"}
    )
    result = official.lists.batch_list_members(
        mc.list_id, {"members": [{"email_address": "e@real.org", "status": "unsubscribed"}]}
    )
    assert result["total_created"] == result["total_updated"] == 0
    assert result["errors"] == [
        {
            "email_address": "e@real.org",
            "error": "e@real.org is already a list member, do you want to update? please provide "
            "update_existing:true in the request body",
            "error_code": "ERROR_CONTACT_EXISTS",
        }
    ]
    assert official.lists.get_list_member(mc.list_id, h("e@real.org"))["status"] == "subscribed"


def test_update_existing_updates_status_subject_to_compliance(
    mc: SandboxHandle, official: Any
) -> None:
    for email in ("keep@real.org", "left@real.org"):
        official.lists.add_list_member(mc.list_id, {"email_address": email, "status": "subscribed"})
    official.lists.update_list_member(mc.list_id, h("keep@real.org"), {"status": "unsubscribed"})
    simulate_unsubscribe(mc.sandbox, mc.list_id, "left@real.org")
    result = official.lists.batch_list_members(
        mc.list_id,
        {
            "members": [
                {
                    "email_address": "keep@real.org",
                    "status": "subscribed",
                    "merge_fields": {"FNAME": "K"},
                },
                {"email_address": "left@real.org", "status": "subscribed"},
            ],
            "update_existing": True,
        },
    )
    assert [m["email_address"] for m in result["updated_members"]] == ["keep@real.org"]
    assert result["updated_members"][0]["status"] == "subscribed"
    assert result["updated_members"][0]["merge_fields"]["FNAME"] == "K"
    assert result["errors"] == [
        {
            "email_address": "left@real.org",
            "error": "left@real.org is in a compliance state due to unsubscribe, bounce, or "
            "compliance review and cannot be subscribed.",
            "error_code": "ERROR_GENERIC",
        }
    ]
    assert result["error_count"] == 1


def test_all_failing_is_still_http_200(mc: SandboxHandle, official: Any) -> None:
    official.lists.add_list_merge_field(
        mc.list_id, {"name": "Req", "type": "text", "tag": "REQ", "required": True}
    )
    result = official.lists.batch_list_members(
        mc.list_id,
        {
            "members": [
                {"email_address": "fake@example.com", "status": "subscribed"},
                {"email_address": "nope", "status": "subscribed"},
                {"email_address": "req@real.org", "status": "subscribed"},
                {"email_address": "new@real.org"},
            ]
        },
    )
    assert result["error_count"] == 4
    assert result["total_created"] == 0
    errors = {e["email_address"]: e for e in result["errors"]}
    assert errors["fake@example.com"]["error"] == (
        "fake@example.com looks fake or invalid, please enter a real email address."
    )
    assert errors["nope"]["error"] == "Please provide a valid email address."
    assert errors["req@real.org"]["error"] == "Your merge fields were invalid."
    assert errors["req@real.org"]["field"] == "REQ"
    assert errors["req@real.org"]["field_message"] == "Please enter a value"
    assert all(e["error_code"] == "ERROR_GENERIC" for e in result["errors"])
    assert mc.sandbox.lists[mc.list_id].members == {}
    skipped = official.lists.batch_list_members(
        mc.list_id,
        {"members": [{"email_address": "req@real.org", "status": "subscribed"}]},
        skip_merge_validation=True,
    )
    assert skipped["total_created"] == 1


def test_schema_errors_reject_the_whole_request(mc: SandboxHandle, official: Any) -> None:
    members = [
        {"email_address": "ok@real.org", "status": "subscribed"},
        {"email_address": "a@real.org", "status": "maybe", "location": {"latitude": "north"}},
        {"email_address": "b@real.org", "status": "subscribed", "vip": "yes"},
        {"email_address": "c@real.org", "status": "subscribed", "email_type": "pdf"},
        {"email_address": "d@real.org", "status": "subscribed", "interests": []},
        {"email_address": "e@real.org", "status": "subscribed", "merge_fields": {"FNAME": {}}},
    ]
    with pytest.raises(ApiClientError) as info:
        official.lists.batch_list_members(mc.list_id, {"members": members})
    assert info.value.status_code == 400
    problem = json.loads(info.value.text)
    assert problem["title"] == "Invalid Resource"
    assert problem["errors"] == [
        {"field": "members.item:1.status", "message": NOT_ACCEPTED},
        {
            "field": "members.item:1.location.latitude",
            "message": "Schema describes number, string found instead",
        },
        {
            "field": "members.item:2.vip",
            "message": "Schema describes boolean, string found instead",
        },
        {"field": "members.item:3.email_type", "message": NOT_ACCEPTED},
        {
            "field": "members.item:4.interests",
            "message": "Schema describes object, array found instead",
        },
        {"field": "members.item:5.merge_fields.FNAME", "message": ANY_OF},
    ]
    assert mc.sandbox.lists[mc.list_id].members == {}


def test_status_if_new_and_permissions_are_not_batch_member_fields(
    mc: SandboxHandle, official: Any
) -> None:
    official.lists.update_list(mc.list_id, {"marketing_permissions": True})
    lst = mc.sandbox.lists[mc.list_id]
    lst.permissions["a1b2c3d4e5"] = "Email"
    permissions = [{"marketing_permission_id": "a1b2c3d4e5", "enabled": True}]
    result = official.lists.batch_list_members(
        mc.list_id,
        {
            "members": [
                {"email_address": "only-if-new@real.org", "status_if_new": "subscribed"},
                {
                    "email_address": "perm@real.org",
                    "status": "subscribed",
                    "marketing_permissions": permissions,
                },
            ]
        },
    )
    assert result["total_created"] == 1
    assert result["errors"][0]["email_address"] == "only-if-new@real.org"
    assert result["errors"][0]["field"] == "status"
    created = result["new_members"][0]
    assert created["marketing_permissions"][0]["enabled"] is False


def test_more_than_500_is_rejected_whole(mc: SandboxHandle, official: Any) -> None:
    members = [{"email_address": f"x{i}@real.org", "status": "subscribed"} for i in range(501)]
    with pytest.raises(ApiClientError) as info:
        official.lists.batch_list_members(mc.list_id, {"members": members})
    assert info.value.status_code == 400
    assert json.loads(info.value.text)["title"] == "Invalid Resource"
    assert mc.sandbox.lists[mc.list_id].members == {}
    exactly = official.lists.batch_list_members(mc.list_id, {"members": members[:500]})
    assert exactly["total_created"] == 500


def test_duplicates_in_one_request(mc: SandboxHandle, official: Any) -> None:
    members = [
        {"email_address": "twice@real.org", "status": "subscribed"},
        {"email_address": "TWICE@real.org", "status": "unsubscribed"},
    ]
    result = official.lists.batch_list_members(mc.list_id, {"members": members})
    assert result["total_created"] == 1
    assert result["error_count"] == 1
    official.lists.delete_list_member_permanent(mc.list_id, h("twice@real.org"))
    members = [
        {"email_address": "again@real.org", "status": "subscribed"},
        {"email_address": "AGAIN@real.org", "status": "unsubscribed"},
    ]
    result = official.lists.batch_list_members(
        mc.list_id, {"members": members}, skip_duplicate_check=True
    )
    assert (result["total_created"], result["error_count"]) == (1, 0)
    assert result["new_members"][0]["status"] == "subscribed"  # the first occurrence wins


def test_sync_tags_replaces_tags_of_existing_members(mc: SandboxHandle, mc3: Any) -> None:
    mc3.lists.members.create(
        mc.list_id, {"email_address": "t@real.org", "status": "subscribed", "tags": ["a", "b"]}
    )
    kept = mc3.lists.update_members(
        mc.list_id,
        {
            "members": [{"email_address": "t@real.org", "status": "subscribed", "tags": ["c"]}],
            "update_existing": True,
        },
    )
    assert [t["name"] for t in kept["updated_members"][0]["tags"]] == ["a", "b"]
    synced = mc3.lists.update_members(
        mc.list_id,
        {
            "members": [
                {"email_address": "t@real.org", "status": "subscribed", "tags": ["b", "c"]}
            ],
            "update_existing": True,
            "sync_tags": True,
        },
    )
    assert sorted(t["name"] for t in synced["updated_members"][0]["tags"]) == ["b", "c"]


def test_forgotten_address_in_a_batch(mc: SandboxHandle, official: Any) -> None:
    official.lists.add_list_member(
        mc.list_id, {"email_address": "f@real.org", "status": "subscribed"}
    )
    official.lists.delete_list_member_permanent(mc.list_id, h("f@real.org"))
    result = official.lists.batch_list_members(
        mc.list_id,
        {
            "members": [{"email_address": "f@real.org", "status": "subscribed"}],
            "update_existing": True,
        },
    )
    assert result["errors"][0]["error"].startswith("f@real.org was permanently deleted")
    assert result["errors"][0]["error_code"] == "ERROR_GENERIC"


def test_fields_select_member_keys_of_new_and_updated_members(mc: SandboxHandle) -> None:
    members = [
        {"email_address": f"p{i}@real.org", "status": "subscribed", "merge_fields": {"FNAME": "P"}}
        for i in range(2)
    ]
    fields = "new_members.id,new_members.status,new_members.merge_fields.FNAME,total_created"
    with httpx.Client(base_url=mc.base_url, auth=("x", mc.api_key), timeout=10) as api:
        created = api.post(
            f"/lists/{mc.list_id}", params={"fields": fields}, json={"members": members}
        )
        updated = api.post(
            f"/lists/{mc.list_id}",
            params={"fields": "updated_members.email_address,updated_members._links.rel"},
            json={"members": members[:1], "update_existing": True},
        )
        full = api.get(f"/lists/{mc.list_id}/members/{h('p0@real.org')}").json()
    assert created.json() == {
        "new_members": [
            {"id": h(f"p{i}@real.org"), "status": "subscribed", "merge_fields": {"FNAME": "P"}}
            for i in range(2)
        ],
        "total_created": 2,
    }
    assert updated.json() == {
        "updated_members": [
            {
                "email_address": "p0@real.org",
                "_links": [{"rel": link["rel"]} for link in full["_links"]],
            }
        ]
    }
