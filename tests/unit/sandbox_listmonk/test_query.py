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

from campaign_bridge.sandbox.listmonk.model import Subscriber
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
