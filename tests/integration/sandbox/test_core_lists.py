"""Audiences, merge fields, interest categories/interests and segments, via both SDKs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mailchimp_marketing.api_client import ApiClientError

from campaign_bridge.sandbox.mailchimp.control import DEFAULT_LIST
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle
from tests.integration.sandbox.schema import assert_matches


def test_lists_read_and_create(mc: SandboxHandle, official: Any, mc3: Any) -> None:
    lists = official.lists.get_all_lists()
    assert [lst["id"] for lst in lists["lists"]] == [mc.list_id]
    assert lists["total_items"] == 1
    assert_matches(lists, "/lists")
    created = official.lists.create_list(dict(DEFAULT_LIST, name="Second"))
    assert len(created["id"]) == 10
    assert created["stats"]["member_count"] == 0
    assert_matches(created, "/lists", "POST")
    assert mc3.lists.get(created["id"])["name"] == "Second"
    with pytest.raises(ApiClientError) as info:
        official.lists.create_list({"name": "incomplete"})
    assert info.value.status_code == 400
    fields = official.lists.get_list_merge_fields(created["id"])
    assert [f["tag"] for f in fields["merge_fields"]] == ["FNAME", "LNAME", "ADDRESS", "PHONE"]


def test_list_stats_follow_members(mc: SandboxHandle, official: Any) -> None:
    for email, status in (("a@real.org", "subscribed"), ("b@real.org", "unsubscribed")):
        official.lists.add_list_member(mc.list_id, {"email_address": email, "status": status})
    stats = official.lists.get_list(mc.list_id)["stats"]
    assert (stats["member_count"], stats["unsubscribe_count"], stats["total_contacts"]) == (1, 1, 2)
    cut = official.lists.get_list(mc.list_id, fields=["id", "stats.total_contacts"])
    assert cut == {"id": mc.list_id, "stats": {"total_contacts": 2}}
    both = official.lists.get_list(
        mc.list_id, fields=["stats.total_contacts", "stats.cleaned_count"]
    )
    assert both == {"stats": {"total_contacts": 2, "cleaned_count": 0}}
    counted = official.lists.get_list(mc.list_id, fields=["stats.unsubscribe_count"])
    assert counted == {"stats": {"unsubscribe_count": 1}}  # read off the members, as before
    assert official.lists.get_list(mc.list_id, fields=["id", "name"]).keys() == {"id", "name"}
    listed = official.lists.get_all_lists(fields=["lists.id", "lists.stats.member_count"])
    assert listed["lists"] == [{"id": mc.list_id, "stats": {"member_count": 1}}]
    assert_matches(official.lists.get_list(mc.list_id), f"/lists/{mc.list_id}")


def test_merge_fields_crud(mc: SandboxHandle, official: Any) -> None:
    auto = official.lists.add_list_merge_field(mc.list_id, {"name": "Shoe size", "type": "number"})
    assert auto["tag"] == f"MMERGE{auto['merge_id']}"
    assert_matches(auto, f"/lists/{mc.list_id}/merge-fields", "POST")
    choice = official.lists.add_list_merge_field(
        mc.list_id,
        {
            "name": "Plan",
            "tag": "plan",
            "type": "dropdown",
            "required": True,
            "default_value": "free",
            "options": {"choices": ["free", "pro"]},
        },
    )
    assert (choice["tag"], choice["required"], choice["default_value"]) == ("PLAN", True, "free")
    with pytest.raises(ApiClientError) as info:
        official.lists.add_list_merge_field(
            mc.list_id, {"name": "Again", "tag": "PLAN", "type": "text"}
        )
    assert info.value.status_code == 400
    with pytest.raises(ApiClientError) as info:
        official.lists.add_list_merge_field(mc.list_id, {"name": "Bad", "type": "colour"})
    assert json.loads(info.value.text)["title"] == "Invalid Resource"
    member = official.lists.add_list_member(
        mc.list_id, {"email_address": "m@real.org", "status": "subscribed"}
    )
    assert member["merge_fields"]["PLAN"] == "free"
    with pytest.raises(ApiClientError) as info:
        official.lists.update_list_member(
            mc.list_id, member["id"], {"merge_fields": {"PLAN": "gold"}}
        )
    assert json.loads(info.value.text)["errors"][0]["field"] == "PLAN"
    renamed = official.lists.update_list_merge_field(
        mc.list_id, choice["merge_id"], {"name": "Tier", "required": False}
    )
    assert (renamed["name"], renamed["required"]) == ("Tier", False)
    required = official.lists.get_list_merge_fields(mc.list_id, required=True)
    assert required["merge_fields"] == []
    assert_matches(
        official.lists.get_list_merge_fields(mc.list_id), f"/lists/{mc.list_id}/merge-fields"
    )
    official.lists.delete_list_merge_field(mc.list_id, choice["merge_id"])
    after = official.lists.get_list_member(mc.list_id, member["id"])
    assert "PLAN" not in after["merge_fields"]


def test_interest_categories_and_interests(mc: SandboxHandle, official: Any, mc3: Any) -> None:
    cat = official.lists.create_list_interest_category(
        mc.list_id, {"title": "Topics", "type": "checkboxes"}
    )
    assert_matches(cat, f"/lists/{mc.list_id}/interest-categories", "POST")
    a = official.lists.create_interest_category_interest(mc.list_id, cat["id"], {"name": "A"})
    b = mc3.lists.interest_categories.interests.create(mc.list_id, cat["id"], {"name": "B"})
    assert a["subscriber_count"] == "0"
    member = official.lists.add_list_member(
        mc.list_id,
        {"email_address": "i@real.org", "status": "subscribed", "interests": {a["id"]: True}},
    )
    assert member["interests"] == {a["id"]: True, b["id"]: False}
    listed = official.lists.list_interest_category_interests(mc.list_id, cat["id"])
    counts = {i["name"]: i["subscriber_count"] for i in listed["interests"]}
    assert counts == {"A": "1", "B": "0"}
    assert_matches(listed, f"/lists/{mc.list_id}/interest-categories/{cat['id']}/interests")
    matching = official.lists.get_list_members_info(
        mc.list_id, interest_category_id=cat["id"], interest_ids=b["id"], interest_match="any"
    )
    assert matching["members"] == []
    official.lists.delete_interest_category_interest(mc.list_id, cat["id"], a["id"])
    assert official.lists.get_list_member(mc.list_id, member["id"])["interests"] == {b["id"]: False}
    cats = official.lists.get_list_interest_categories(mc.list_id)
    assert [c["title"] for c in cats["categories"]] == ["Topics"]
    assert_matches(cats, f"/lists/{mc.list_id}/interest-categories")


def test_static_segments_and_members(mc: SandboxHandle, official: Any) -> None:
    for email in ("a@real.org", "b@real.org", "c@real.org"):
        official.lists.add_list_member(mc.list_id, {"email_address": email, "status": "subscribed"})
    seg = official.lists.create_segment(
        mc.list_id, {"name": "VIP", "static_segment": ["a@real.org", "stranger@real.org"]}
    )
    assert (seg["type"], seg["member_count"]) == ("static", 1)
    assert_matches(seg, f"/lists/{mc.list_id}/segments", "POST")
    result = official.lists.batch_segment_members(
        {"members_to_add": ["b@real.org", "zzz@real.org"], "members_to_remove": ["a@real.org"]},
        mc.list_id,
        seg["id"],
    )
    assert (result["total_added"], result["total_removed"], result["error_count"]) == (1, 1, 1)
    assert_matches(result, f"/lists/{mc.list_id}/segments/{seg['id']}", "POST")
    members = official.lists.get_segment_members_list(mc.list_id, seg["id"])
    assert [m["email_address"] for m in members["members"]] == ["b@real.org"]
    # a static segment is a tag
    tags = official.lists.get_list_member_tags(mc.list_id, members["members"][0]["id"])
    assert [t["name"] for t in tags["tags"]] == ["VIP"]
    too_many = {"members_to_add": [f"x{i}@real.org" for i in range(501)]}
    with pytest.raises(ApiClientError) as info:
        official.lists.batch_segment_members(too_many, mc.list_id, seg["id"])
    assert info.value.status_code == 400
    official.lists.create_segment_member(mc.list_id, seg["id"], {"email_address": "c@real.org"})
    assert official.lists.get_segment(mc.list_id, seg["id"])["member_count"] == 2
    official.lists.remove_segment_member(mc.list_id, seg["id"], "c@real.org")
    listed = official.lists.list_segments(mc.list_id)
    assert [s["member_count"] for s in listed["segments"]] == [1]
    assert_matches(listed, f"/lists/{mc.list_id}/segments")
