"""Pure parts of the sandbox core: wire helpers, auth parsing, limits, clock, ids, state machine."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from campaign_bridge.sandbox.mailchimp.auth import authenticate, key_is_well_formed
from campaign_bridge.sandbox.mailchimp.control import seed_default, seed_demo
from campaign_bridge.sandbox.mailchimp.limits import FaultRule, Limits
from campaign_bridge.sandbox.mailchimp.members import member_renderer, render_member
from campaign_bridge.sandbox.mailchimp.model import (
    Clock,
    Ids,
    Sandbox,
    SandboxConfig,
    subscriber_hash,
)
from campaign_bridge.sandbox.mailchimp.wire import (
    Problem,
    Route,
    apply_fields,
    kept_keys,
    page,
    parse_ts,
    qbool,
    ts,
)


def test_subscriber_hash_lowercases_first() -> None:
    assert subscriber_hash("Ada@Example.ORG") == subscriber_hash("ada@example.org")
    assert subscriber_hash("Ada@Example.ORG") == hashlib.md5(b"ada@example.org").hexdigest()


def test_timestamps() -> None:
    moment = datetime(2021, 2, 27, 0, 30, 39, 123456, tzinfo=UTC)
    assert ts(moment) == "2021-02-27T00:30:39+00:00"
    assert parse_ts("2021-02-27T01:30:39+01:00", "x") == "2021-02-27T00:30:39+00:00"
    assert parse_ts("2021-02-27T00:30:39Z", "x") == "2021-02-27T00:30:39+00:00"
    assert parse_ts("2021-02-27", "x") == "2021-02-27T00:00:00+00:00"
    with pytest.raises(Problem):
        parse_ts("2021-02-27T00:30:39 00:00", "x")  # a '+' decoded as a space
    with pytest.raises(Problem):
        parse_ts("yesterday", "x")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("True", True), ("false", False), ("False", False), (None, False)],
)
def test_qbool(raw: str | None, expected: bool) -> None:
    query = {} if raw is None else {"flag": raw}
    assert qbool(query, "flag") is expected


def test_qbool_rejects_garbage() -> None:
    with pytest.raises(Problem) as info:
        qbool({"flag": "yes please"}, "flag")
    assert info.value.status == 400


def test_page() -> None:
    items = list(range(25))
    assert page(items, {}) == (list(range(10)), 25)
    assert page(items, {"count": "5", "offset": "22"}) == ([22, 23, 24], 25)
    with pytest.raises(Problem):
        page(items, {"count": "1001"})
    with pytest.raises(Problem):
        page(items, {"offset": "-1"})


def test_fields_keep_dot_paths_and_drop_total_items() -> None:
    body = {
        "members": [{"id": "1", "merge_fields": {"FNAME": "A", "LNAME": "B"}, "stats": {"x": 1}}],
        "total_items": 1,
        "_links": [],
    }
    assert apply_fields(body, {"fields": "members.merge_fields.FNAME"}) == {
        "members": [{"merge_fields": {"FNAME": "A"}}]
    }
    assert apply_fields(body, {"fields": "members.id,total_items"}) == {
        "members": [{"id": "1"}],
        "total_items": 1,
    }
    assert apply_fields(body, {"exclude_fields": "members.stats,_links"}) == {
        "members": [{"id": "1", "merge_fields": {"FNAME": "A", "LNAME": "B"}}],
        "total_items": 1,
    }


def test_kept_keys_names_what_fields_keeps_of_a_collection() -> None:
    query = {"fields": "new_members.id,new_members.merge_fields.FNAME,errors,total_created"}
    assert kept_keys(query, "new_members") == {"id", "merge_fields"}
    assert kept_keys(query, "updated_members") == frozenset()
    assert kept_keys({"fields": "new_members,errors"}, "new_members") is None
    assert kept_keys({"exclude_fields": "new_members._links"}, "new_members") is None
    assert kept_keys({}, "new_members") is None


def test_member_renderer_equals_the_full_member_cut_by_fields() -> None:
    sandbox = Sandbox(SandboxConfig(seed_default=False))
    seed_default(sandbox)
    seed_demo(sandbox, members=5)
    lst = sandbox.lists[sandbox.default_list_id]
    base = "http://sandbox/3.0"
    for member in lst.members.values():
        full = render_member(lst, member, base)
        selections = [{key} for key in full] + [set(full), {"id", "status", "email_address"}]
        selections += [{"status", "id", "merge_fields", "_links"}, set()]
        for keys in selections:
            rendered = member_renderer(lst, base, frozenset(keys))(member)
            assert rendered == {k: v for k, v in full.items() if k in keys}
            assert list(rendered) == [k for k in full if k in keys]
        assert member_renderer(lst, base, None)(member) == full


def test_route_templates() -> None:
    route = Route("GET", "/lists/{list_id}/members/{subscriber_hash}", lambda req: None)  # type: ignore[arg-type,return-value]
    found = route.regex.match("/lists/abc/members/def")
    assert found is not None
    assert found.groupdict() == {"list_id": "abc", "subscriber_hash": "def"}
    assert route.regex.match("/lists/abc/members/def/tags") is None
    assert route.regex.match("/lists/abc/members/def/") is not None


def _basic(secret: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"anyone:{secret}".encode()).decode()}


def test_authentication_rules() -> None:
    sandbox = Sandbox(SandboxConfig(dc="us6"))
    key = sandbox.new_api_key()
    assert key_is_well_formed(key)
    assert key.endswith("-us6")
    assert authenticate(sandbox, _basic(key)) == key
    assert authenticate(sandbox, {"authorization": f"Bearer {key}"}) == key
    for headers, title in (
        ({}, "API Key Missing"),
        (_basic(key.replace("-us6", "-us7")), "API Key Invalid"),
        (_basic("f" * 32 + "-us6"), "API Key Invalid"),
        (_basic("short-us6"), "API Key Invalid"),
        ({"authorization": "Basic !!!"}, "API Key Invalid"),
    ):
        with pytest.raises(Problem) as info:
            authenticate(sandbox, headers)
        assert (info.value.status, info.value.title) == (401, title)


def test_concurrency_slots_are_per_key() -> None:
    limits = Limits(max_concurrent=2, latency=0, latency_per_item=0, seed=1)
    assert limits.acquire("a")
    assert limits.acquire("a")
    assert not limits.acquire("a")
    assert limits.acquire("b")
    limits.release("a")
    assert limits.acquire("a")
    assert limits.rejected == 1


def test_busy_seconds_integrate_the_requests_in_flight_per_key() -> None:
    limits = Limits(max_concurrent=10, latency=0, latency_per_item=0, seed=1)
    clock = [100.0]
    limits.busy_clock = lambda: clock[0]
    assert limits.acquire("a")  # one request from 100 s...
    clock[0] = 101.0
    assert limits.acquire("a")  # ...two from 101 s
    assert limits.acquire("b")
    clock[0] = 102.5
    limits.release("a")
    clock[0] = 103.0
    assert limits.to_json()["busy_seconds"] == {"a": 1.0 + 3.0 + 0.5, "b": 2.0}
    limits.release("a")
    limits.release("b")
    clock[0] = 110.0  # idle: nothing more counted
    assert limits.to_json()["busy_seconds"] == {"a": 4.5, "b": 2.0}


def test_scripted_faults_match_and_run_out() -> None:
    limits = Limits(max_concurrent=10, latency=0, latency_per_item=0, seed=1)
    limits.add_fault(FaultRule(kind="503", method="POST", path=r"^/lists/[^/]+$", count=2))
    assert limits.pick_fault("GET", "/lists/abc") is None
    assert limits.pick_fault("POST", "/lists/abc/members") is None
    assert limits.pick_fault("POST", "/lists/abc") is not None
    assert limits.pick_fault("POST", "/lists/abc") is not None
    assert limits.pick_fault("POST", "/lists/abc") is None
    with pytest.raises(ValueError):
        FaultRule(kind="418")


def test_latency_figure() -> None:
    limits = Limits(max_concurrent=10, latency=0.1, latency_per_item=0.01, seed=1)
    assert limits.delay_for(0) == pytest.approx(0.1)
    assert limits.delay_for(50) == pytest.approx(0.6)


def test_latency_is_the_response_time_processing_included() -> None:
    limits = Limits(max_concurrent=10, latency=1.0, latency_per_item=0.002, seed=1)
    now = 100.0
    limits.timer = lambda: now
    assert limits.wait_before_answer(arrived=100.0, items=500) == pytest.approx(2.0)
    assert limits.wait_before_answer(arrived=99.7, items=500) == pytest.approx(1.7)
    assert limits.wait_before_answer(arrived=97.5, items=500) == 0.0  # processing took longer


def test_clock_is_frozen_and_advances() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    clock = Clock(start)
    assert clock.stamp() == "2024-01-01T00:00:00+00:00"
    clock.advance(90)
    assert clock.stamp() == "2024-01-01T00:01:30+00:00"
    assert clock.now() == datetime(2024, 1, 1, 0, 1, 30, tzinfo=UTC)
    for _ in range(10):
        clock.advance(0.1)
        assert clock.stamp() == ts(clock.now())
    assert clock.stamp() == "2024-01-01T00:01:31+00:00"


def test_ids_are_seeded() -> None:
    a, b, c = Ids(5), Ids(5), Ids(6)
    first = [a.hex10(), a.web_id(), a.uuid()]
    assert first == [b.hex10(), b.web_id(), b.uuid()]
    assert first != [c.hex10(), c.web_id(), c.uuid()]
    assert len(str(first[0])) == 10
    assert a.next("merge") == 1
    assert a.next("merge") == 2
