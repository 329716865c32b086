"""The member index answers filtered listings exactly as a scan of every member does."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from campaign_bridge.sandbox.mailchimp.control import seed, seed_default
from campaign_bridge.sandbox.mailchimp.members import (
    STATUSES,
    _filter_members,
    archive_member,
    change_email,
    create_member,
    forget_member,
    set_status,
    set_tags,
    update_member,
)
from campaign_bridge.sandbox.mailchimp.model import AudienceList, Sandbox, SandboxConfig
from campaign_bridge.sandbox.mailchimp.wire import Problem, ts

START = datetime(2026, 1, 1, tzinfo=UTC)


def _audience(size: int) -> tuple[Sandbox, AudienceList]:
    sandbox = Sandbox(SandboxConfig(start_time=START, fake_domains=frozenset()))
    seed_default(sandbox)
    lst = sandbox.lists[sandbox.default_list_id]
    for i in range(size):
        create_member(sandbox, lst, f"m{i}@mail.test", STATUSES[i % 4], {}, trusted=True)
    return sandbox, lst


def _queries(sandbox: Sandbox, rng: random.Random) -> list[dict[str, str]]:
    now = sandbox.clock.now()
    bounds = [ts(now - timedelta(seconds=s)) for s in (0, 1, 5, 30, 600)]
    bounds.append(ts(START - timedelta(days=1)))
    queries = []
    for status in (*STATUSES, "archived", ""):
        for since in [*rng.sample(bounds, 3), ""]:
            query = {"status": status, "since_last_changed": since, "sort_field": "last_changed"}
            query["sort_dir"] = rng.choice(["ASC", "DESC"])
            queries.append({k: v for k, v in query.items() if v})
    queries.append({"status": "subscribed", "vip_only": "true"})
    queries.append({"since_last_changed": bounds[2], "email_type": "text"})
    queries.append({"status": "pending"})
    return queries


def _assert_same_answers(sandbox: Sandbox, lst: AudienceList, rng: random.Random) -> None:
    for query in _queries(sandbox, rng):
        indexed = _filter_members(lst, query, sandbox.clock.stamp())
        scanned = _filter_members(lst, query)
        assert [m.id for m in indexed] == [m.id for m in scanned], query


def _random_change(sandbox: Sandbox, lst: AudienceList, rng: random.Random, n: int) -> None:
    members = list(lst.members.values())
    member = rng.choice(members)
    action = rng.randrange(9)
    try:
        if action == 0:
            create_member(sandbox, lst, f"new{n}@mail.test", rng.choice(STATUSES), {})
        elif action == 1:
            set_status(sandbox, lst, member, rng.choice(STATUSES), source="admin")
        elif action == 2:
            archive_member(sandbox, lst, member)
        elif action == 3:
            forget_member(sandbox, lst, member)
        elif action == 4:
            change_email(sandbox, lst, member, f"moved{n}@mail.test")
        elif action == 5:
            set_tags(sandbox, lst, member, [(f"tag{n % 3}", rng.random() < 0.7)])
        elif action == 6:
            email_type = rng.choice(["html", "text"])
            body = {"merge_fields": {"FNAME": f"F{n}"}, "vip": n % 2 == 0, "email_type": email_type}
            update_member(sandbox, lst, member, body)
        elif action == 7:
            sandbox.clock.advance(rng.choice([1, 1, 2, 30, -45]))
        else:
            update_member(sandbox, lst, member, {}, status=rng.choice(STATUSES))
    except Problem:
        pass  # a refused change (compliance state, cannot archive, ...) changes nothing


@pytest.mark.parametrize("seed_value", [1, 2, 3])
def test_indexed_listings_equal_a_full_scan(seed_value: int) -> None:
    rng = random.Random(seed_value)
    sandbox, lst = _audience(400)
    _assert_same_answers(sandbox, lst, rng)  # builds the index
    for step in range(1500):
        _random_change(sandbox, lst, rng, step)
        if step % 50 == 0:
            _assert_same_answers(sandbox, lst, rng)
    _assert_same_answers(sandbox, lst, rng)


def test_recent_changes_come_from_the_change_log_not_a_scan() -> None:
    sandbox, lst = _audience(1000)
    since = sandbox.clock.stamp()
    index = lst.member_index()
    sandbox.clock.advance(5)
    changed = list(lst.members.values())[::100]
    for member in changed:
        update_member(sandbox, lst, member, {"merge_fields": {"FNAME": "Changed"}})
    pool = index.pool("subscribed", since, sandbox.clock.stamp())
    assert pool is not None
    assert [m.id for m in pool] == [m.id for m in changed if m.status == "subscribed"]
    assert index.pool(None, since, sandbox.clock.stamp()) == changed


def test_the_log_is_compacted_and_keeps_answering() -> None:
    sandbox, lst = _audience(10)
    index = lst.member_index()
    member = next(iter(lst.members.values()))
    for n in range(10_000):
        sandbox.clock.advance(1)
        update_member(sandbox, lst, member, {"merge_fields": {"FNAME": f"F{n}"}})
    assert len(index._log_members) <= 2 * len(lst.members) + 4096
    before = ts(sandbox.clock.now() - timedelta(seconds=1))
    assert index.pool(None, before, sandbox.clock.stamp()) == [member]


def test_a_clock_moved_back_falls_back_to_a_scan_until_it_catches_up() -> None:
    sandbox, lst = _audience(100)
    index = lst.member_index()
    members = list(lst.members.values())
    sandbox.clock.advance(60)
    update_member(sandbox, lst, members[0], {"merge_fields": {"FNAME": "Later"}})
    sandbox.clock.advance(-30)
    update_member(sandbox, lst, members[1], {"merge_fields": {"FNAME": "Earlier"}})
    since = ts(START)
    assert index.pool(None, since, sandbox.clock.stamp()) is None
    query = {"since_last_changed": since, "sort_field": "last_changed"}
    answer = _filter_members(lst, query, sandbox.clock.stamp())
    assert [m.id for m in answer] == [members[1].id, members[0].id]
    sandbox.clock.advance(31)
    assert index.pool(None, since, sandbox.clock.stamp()) == [members[0], members[1]]


def test_seeded_last_changed_in_the_past_is_found() -> None:
    sandbox, lst = _audience(50)
    lst.member_index()
    old = ts(START - timedelta(days=3))
    seed(
        sandbox,
        {
            "lists": [
                {
                    "id": lst.id,
                    "members": [{"email_address": "old@mail.test", "last_changed": old}],
                }
            ]
        },
    )
    query = {"since_last_changed": ts(START - timedelta(days=4)), "sort_field": "last_changed"}
    indexed = _filter_members(lst, query, sandbox.clock.stamp())
    assert indexed[0].email_address == "old@mail.test"
    assert indexed == _filter_members(lst, query)


def test_members_removed_behind_the_hooks_rebuild_the_index() -> None:
    sandbox, lst = _audience(20)
    index = lst.member_index()
    lst.members.pop(next(iter(lst.members)))  # not through forget_member
    assert lst.member_index() is not index
    query = {"status": "subscribed"}
    assert _filter_members(lst, query, sandbox.clock.stamp()) == _filter_members(lst, query)
