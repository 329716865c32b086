"""The ``query`` subset: generated expressions agree with the same condition written in Python,
and what the sandbox does not support is refused with listmonk's 400 message."""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaign_bridge.sandbox.listmonk.model import Subscriber, Subscription
from campaign_bridge.sandbox.listmonk.query import compile_query
from campaign_bridge.sandbox.listmonk.wire import ListmonkError

BASE = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
PEOPLE = [
    Subscriber(
        id=i + 1,
        uuid=f"00000000-0000-4000-8000-{i:012d}",
        email=f"user{i}@example.org",
        name=f"User {i}",
        attribs={"city": ("Oslo", "Bergen", "O'Hara")[i % 3], "n": i},
        status=("enabled", "disabled", "blocklisted")[i % 3],
        created_at=BASE + i * 3600,
        updated_at=BASE + i * 5400,
    )
    for i in range(12)
]
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _stamp(hours: int) -> str:
    return datetime.fromtimestamp(BASE + hours * 3600, UTC).isoformat()


condition = st.one_of(
    st.tuples(st.just("id"), st.sampled_from(list(OPS)), st.integers(0, 13)).map(
        lambda t: (f"subscribers.id {t[1]} {t[2]}", lambda s: OPS[t[1]](s.id, t[2]))
    ),
    st.tuples(st.sampled_from(list(OPS)), st.integers(0, 20)).map(
        lambda t: (
            f"subscribers.updated_at {t[0]} '{_stamp(t[1])}'",
            lambda s: OPS[t[0]](s.updated_at, BASE + t[1] * 3600),
        )
    ),
    st.sampled_from(["Oslo", "Bergen", "O'Hara", "Paris"]).map(
        lambda c: (
            "subscribers.attribs->>'city' = '" + c.replace("'", "''") + "'",
            lambda s: s.attribs["city"] == c,
        )
    ),
    st.sampled_from(["enabled", "blocklisted"]).map(
        lambda v: (f"subscribers.status <> '{v}'", lambda s: s.status != v)
    ),
)


@st.composite
def expression(draw: st.DrawFn, depth: int = 0) -> tuple[str, Callable[[Subscriber], bool]]:
    if depth >= 2 or draw(st.booleans()):
        return draw(condition)
    left = draw(expression(depth + 1))
    right = draw(expression(depth + 1))
    joiner = draw(st.sampled_from(["AND", "OR", "AND NOT"]))
    if joiner == "AND":
        return f"({left[0]}) AND ({right[0]})", lambda s: left[1](s) and right[1](s)
    if joiner == "OR":
        return f"({left[0]}) OR ({right[0]})", lambda s: left[1](s) or right[1](s)
    return f"({left[0]}) AND NOT ({right[0]})", lambda s: left[1](s) and not right[1](s)


@given(expression())
def test_expressions_match_python(pair: tuple[str, Callable[[Subscriber], bool]]) -> None:
    text, expected = pair
    predicate = compile_query(text)
    assert [s.id for s in PEOPLE if predicate(s)] == [s.id for s in PEOPLE if expected(s)], text


def test_in_like_lower_and_null() -> None:
    def ids(text: str) -> list[int]:
        predicate = compile_query(text)
        return [s.id for s in PEOPLE if predicate(s)]

    assert ids("subscribers.id IN (2, 4) OR id NOT IN (1,2,3,4,5,6,7,8,9,10,11)") == [2, 4, 12]
    assert ids("LOWER(subscribers.name) LIKE 'user 1_'") == [11, 12]
    assert ids("email ILIKE 'USER1%'") == [2, 11, 12]
    assert ids("subscribers.attribs->>'missing' IS NULL AND id = 3") == [3]
    assert ids("subscribers.attribs->>'n' = '7'") == [8]


@pytest.mark.parametrize(
    "text",
    [
        "subscribers.id IN (SELECT subscriber_id FROM subscriber_lists)",
        "subscriber_lists.status = 'unsubscribed'",
        "subscribers.updated_at > NOW()",
        "subscribers.created_at > 'yesterday'",
        "subscribers.email = ",
        "subscribers.email = 'a' garbage",
        "1=1; DROP TABLE subscribers",
    ],
)
def test_unsupported_is_refused_with_listmonks_message(text: str) -> None:
    with pytest.raises(ListmonkError) as caught:
        compile_query(text)
    assert caught.value.status == 400
    assert caught.value.message.startswith("Error preparing subscriber query: ")


# --- the sub-query on subscriber_lists ---------------------------------------------------------

#: subscribers on zero to three of lists 1..3, each subscription with its own status and change
#: time (some equal to a bound's hour, some between hours)
LISTED = [
    Subscriber(
        id=i + 1,
        uuid=f"00000000-0000-4000-8000-{i:012d}",
        email=f"user{i}@example.org",
        name=f"User {i}",
        attribs={},
        status="enabled",
        created_at=BASE,
        updated_at=BASE + i * 3600,
        lists={
            list_id: Subscription(
                ("unconfirmed", "confirmed", "unsubscribed")[(i + list_id) % 3],
                BASE,
                BASE + ((i * 7 + list_id * 5) % 13) * 1800,
            )
            for list_id in (1, 2, 3)
            if (i >> (list_id - 1)) & 1
        },
    )
    for i in range(16)
]

row_condition = st.one_of(
    st.tuples(st.sampled_from(list(OPS)), st.sampled_from(["0", "1", "2", "3", "4", "'2'"])).map(
        lambda t: (
            f"list_id {t[0]} {t[1]}",
            lambda list_id, _row: OPS[t[0]](list_id, int(t[1].strip("'"))),
        )
    ),
    st.sampled_from(["1.5", "'2.0'", "'inf'", "'nan'"]).map(
        lambda v: (f"list_id = {v}", lambda list_id, _row: list_id == float(v.strip("'")))
    ),
    st.tuples(st.sampled_from(list(OPS)), st.integers(0, 7)).map(
        lambda t: (
            f"updated_at {t[0]} '{_stamp(t[1])}'",
            lambda _list_id, row: OPS[t[0]](row.updated_at, BASE + t[1] * 3600),
        )
    ),
    st.sampled_from(["confirmed", "unsubscribed"]).map(
        lambda v: (f"status = '{v}'", lambda _list_id, row: row.status == v)
    ),
)


@given(st.lists(row_condition, min_size=1, max_size=3), st.booleans())
def test_subscriber_lists_subquery_matches_python(
    conditions: list[tuple[str, Callable[[int, Subscription], bool]]], negate: bool
) -> None:
    """Every sub-query form (a pinned ``list_id = K`` first, later, twice, or not at all, a
    non-integer K, ``NOT IN``) selects exactly the subscribers with one subscription meeting
    every condition."""
    where = " AND ".join(text for text, _check in conditions)
    inside = f"SELECT subscriber_id FROM subscriber_lists WHERE {where}"
    text = f"subscribers.id {'NOT IN' if negate else 'IN'} ({inside})"

    def expected(sub: Subscriber) -> bool:
        found = any(
            all(check(list_id, row) for _text, check in conditions)
            for list_id, row in sub.lists.items()
        )
        return found != negate

    predicate = compile_query(text)
    assert [s.id for s in LISTED if predicate(s)] == [s.id for s in LISTED if expected(s)], text


def test_refresh_shape_with_equal_and_later_times() -> None:
    """The push's refresh query: a change exactly at the bound is not after it, on either
    table; a subscription change on another list does not count."""
    bound = _stamp(3)
    text = (
        f"subscribers.id > 2 AND (subscribers.updated_at > '{bound}' OR subscribers.id IN "
        f"(SELECT subscriber_id FROM subscriber_lists WHERE list_id = 1 AND updated_at > "
        f"'{bound}'))"
    )
    moment = BASE + 3 * 3600

    def changed(sub: Subscriber) -> bool:
        row = sub.lists.get(1)
        return sub.updated_at > moment or (row is not None and row.updated_at > moment)

    predicate = compile_query(text)
    assert [s.id for s in LISTED if predicate(s)] == [
        s.id for s in LISTED if s.id > 2 and changed(s)
    ]
    # the equal cases are there: a subscriber, and a subscription on list 1
    assert any(s.id > 2 and s.updated_at == moment for s in LISTED)
    assert any(s.id > 2 and 1 in s.lists and s.lists[1].updated_at == moment for s in LISTED)
