"""listmonk's subscriber pages: the typed decoder reads what the plain JSON values gave.

The reference is the reading the adapter did before the typed decoder (and still does for a body
it does not take): ``decode_json`` of the body, ``data.results``, then ``made_rows`` (the
read-back) or ``existing_from`` (lookups and listings). Whatever listmonk may send — fields
missing, ``null``, of another type, ``attribs`` of any JSON shape, unknown fields, list entries
that are not objects — the typed decoder gives the same values or declines (``None``), and then
the session reads the body the reference way (tested through the session at the end).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaign_bridge.errors import ProviderError
from campaign_bridge.providers._http import ApiClient, RetryPolicy, decode_json
from campaign_bridge.providers._listmonk_listing import (
    Made,
    Page,
    existing_page,
    made_page,
    made_rows,
)
from campaign_bridge.providers._listmonk_session import ListmonkSession, listmonk_retriable
from campaign_bridge.providers._listmonk_wire import Existing, existing_from

LIST = 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def reference_data(body: bytes) -> Any:
    payload = decode_json(httpx.Response(200, content=body))
    return payload.get("data") if isinstance(payload, Mapping) else payload


def reference_made(body: bytes) -> Page:
    data = reference_data(body) or {}
    return made_rows([r for r in data.get("results") or () if isinstance(r, dict)], LIST)


def reference_existing(body: bytes) -> list[Existing]:
    data = reference_data(body)
    return [existing_from(r, LIST) for r in (data or {}).get("results") or ()]


def page(*rows: object, **data: object) -> bytes:
    return json.dumps({"data": {"results": list(rows), "total": len(rows), **data}}).encode()


def sub(**fields: object) -> dict[str, object]:
    """A subscriber as listmonk renders it (a list entry in full), with ``fields`` replaced."""
    row: dict[str, object] = {
        "id": 41,
        "created_at": "2026-12-07T10:00:00.123456Z",
        "updated_at": "2026-12-07T10:00:00.123456Z",
        "uuid": "35bf992d-c9e9-4616-a12e-7696a6cecc1b",
        "email": "ann@example.org",
        "name": "Ann",
        "attribs": {"city": "Oslo", "n": 1},
        "status": "enabled",
        "lists": [
            {
                "id": LIST,
                "created_at": "2026-12-01T00:00:00Z",
                "updated_at": "2026-12-01T00:00:00Z",
                "uuid": "1e2feb89-414c-443c-9027-c4d1c386bbc4",
                "name": "News",
                "type": "private",
                "optin": "double",
                "status": "active",
                "tags": ["test"],
                "description": "",
                "subscription_status": "unconfirmed",
                "subscription_created_at": "2026-12-07T10:00:00Z",
                "subscription_updated_at": "2026-12-07T11:00:00+01:00",
                "subscription_meta": {},
            }
        ],
    }
    row.update(fields)
    return row


def assert_same(body: bytes, *, typed: bool) -> None:
    """Both readings of ``body`` agree; ``typed``: the typed decoder took it."""
    made, existing = made_page(body, LIST), existing_page(body, LIST)
    assert (made is not None, existing is not None) == (typed, typed)
    if made is not None:
        assert made == reference_made(body)
    if existing is not None:
        assert existing == reference_existing(body)


def test_a_usual_page_is_read_by_the_typed_decoder_as_plain_values_read_it() -> None:
    rows = [sub(id=i, email=f"u{i}@example.org", name=f"U {i}") for i in range(1, 5)]
    rows[1]["status"] = "blocklisted"
    rows[2]["lists"] = []
    body = page(*rows)
    assert_same(body, typed=True)
    found, last = made_page(body, LIST) or ({}, None)
    assert found["u1@example.org"] == Made(1, "U 1", {"city": "Oslo", "n": 1}, False, "unconfirmed")
    assert found["u2@example.org"].blocklisted
    assert found["u3@example.org"].subscription is None
    assert last is not None
    assert (last.id, last.double_opt_in) == (4, True)
    assert last.changed == datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "row",
    [
        {"id": 7},  # every other field missing
        sub(email=None, name=None, attribs=None, status=None, updated_at=None, lists=None),
        # the first entry with the list's id counts
        sub(
            lists=[
                {"subscription_status": "confirmed"},
                {"id": None, "subscription_status": "unsubscribed"},
                {"id": LIST, "subscription_status": "unconfirmed", "optin": "double"},
                {"id": LIST, "subscription_status": "confirmed", "optin": "single"},
            ]
        ),
        sub(lists=[{"id": LIST, "subscription_status": None, "optin": None}]),
        sub(lists=[{"id": 9, "subscription_status": "confirmed"}, sub()["lists"][0]]),  # type: ignore[index]
        sub(attribs=[1, "two", {"3": None}]),
        sub(attribs="text"),
        sub(attribs=0),
        sub(attribs=12.5),
        sub(attribs=True),
        sub(attribs={}),
        sub(attribs={"deep": [[{"x": [1, 2.5, None, False]}]], "empty": "", "é": "ü"}),
        sub(attribs={"big": 2**70, "small": -(2**70), "edge": 2**64 - 1}),  # orjson: floats
        sub(surprise={"nested": [1, 2]}, another=None),  # unknown fields
        sub(lists=[{"id": LIST, "subscription_status": "confirmed", "extra": [1, {"a": 2}]}]),
        sub(updated_at="not a time", lists=[{"id": LIST, "subscription_updated_at": "2026-13-01"}]),
        sub(updated_at="2026-12-07T10:00:00"),  # no offset: read as UTC
        sub(name="Zoë \u2603 \U0001f600", email="zoë@example.org"),
        sub(id=2**63 - 1),
    ],
)
def test_what_listmonk_may_send_is_read_by_the_typed_decoder_as_before(
    row: dict[str, object],
) -> None:
    assert_same(page(row), typed=True)


@pytest.mark.parametrize(
    "row",
    [
        sub(lists=[sub()["lists"][0], "3", 3, None, [3]]),  # type: ignore[index]
        sub(lists={"id": LIST}),
        sub(lists="3"),
        sub(id="41"),
        sub(id=41.0),
        sub(id=True),
        sub(id=2**64),  # orjson reads a float, which int() truncates
        sub(name=5),
        sub(email=["a@example.org"]),
        sub(status={"blocklisted": True}),
        sub(updated_at=20261207),
        sub(lists=[{"id": "3", "subscription_status": "confirmed"}]),
        sub(lists=[{"id": LIST, "subscription_status": 1, "optin": ["double"]}]),
        sub(lists=[{"id": 3.0, "subscription_status": "confirmed"}]),
    ],
)
def test_other_types_are_left_to_the_plain_reading(row: dict[str, object]) -> None:
    assert_same(page(row), typed=False)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b'{"data": null}',
        b'{"data": []}',
        b'{"data": {"results": null}}',
        b'{"data": {"results": {}}}',
        b'{"data": {"results": ""}}',
        b'{"nothing": 1}',
    ],
)
def test_answers_without_subscribers_read_as_before(body: bytes) -> None:
    made, existing = made_page(body, LIST), existing_page(body, LIST)
    assert made in (None, reference_made(body))
    assert existing in (None, reference_existing(body))


def test_a_page_with_a_result_that_is_not_an_object_is_left_to_the_plain_reading() -> None:
    body = page(sub(), "a subscriber?", 5)
    assert made_page(body, LIST) is None
    assert existing_page(body, LIST) is None
    assert list(reference_made(body)[0]) == ["ann@example.org"]  # the read-back skips them
    with pytest.raises(AttributeError):  # a lookup never got such a page from listmonk
        reference_existing(body)


@pytest.mark.parametrize(
    "body",
    [
        # text that is not UTF-8, and a lone surrogate: orjson refuses, the json module reads
        # them leniently (docs/push.md); the typed decoder declines
        page(sub()).replace(b'"Ann"', b'"An\xffn"'),
        page(sub(name="An\ud800n")),
        page(sub(attribs={"note": "\ud800"})),
        # duplicate keys: the last one counts, in both readings
        page(sub()).replace(b'"id": 41,', b'"id": 40, "id": 41,'),
        page(sub()).replace(b'"name": "Ann"', b'"name": "Bob", "name": "Ann"'),
        # a number orjson refuses (the json module reads infinity)
        page(sub()).replace(b'"n": 1', b'"n": 1e400'),
        # nesting deeper than either decoder follows
        page(sub()).replace(b'"n": 1', b'"n": ' + b"[" * 1100 + b"]" * 1100),
        page(sub()).replace(b'"n": 1', b'"n": ' + b"[" * 1010 + b"]" * 1010),
    ],
)
def test_unusual_text_reads_as_before(body: bytes) -> None:
    """Either reading may decline or raise; when the typed one answers, it is the same."""
    try:
        expected: object = (reference_made(body), reference_existing(body))
    except (ValueError, RecursionError) as exc:
        expected = type(exc)
    made, existing = made_page(body, LIST), existing_page(body, LIST)
    if made is not None or existing is not None:
        assert (made, existing) == expected


# --- any JSON in any field -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
absent = st.just(None).map(lambda _: ...)  # the field is left out


def field(usual: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(absent, st.none(), usual, json_values)


entries = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "id": field(st.sampled_from([LIST, 1, 2])),
            "subscription_status": field(st.sampled_from(["confirmed", "unconfirmed"])),
            "optin": field(st.sampled_from(["single", "double"])),
            "subscription_updated_at": field(st.sampled_from(["2026-12-07T10:00:00Z", "x"])),
            "name": json_values,
        },
    ),
)
rows = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(min_value=1, max_value=10**6), json_values)},
    optional={
        "email": field(st.emails()),
        "name": field(st.text(max_size=8)),
        "attribs": json_values,
        "status": field(st.sampled_from(["enabled", "blocklisted", "disabled"])),
        "updated_at": field(st.sampled_from(["2026-12-07T10:00:00.5Z", "2026-12-07"])),
        "lists": st.one_of(json_values, st.lists(entries, max_size=3)),
        "uuid": json_values,
    },
)


def without_absent(value: object) -> object:
    if isinstance(value, dict):
        return {k: without_absent(v) for k, v in value.items() if v is not ...}
    if isinstance(value, list):
        return [without_absent(v) for v in value]
    return value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows, max_size=4))
def test_any_json_in_any_field_reads_as_before(generated: list[dict[str, object]]) -> None:
    body = page(*(without_absent(r) for r in generated))
    try:
        made: object = reference_made(body)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        made = type(exc)
    try:
        existing: object = reference_existing(body)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        existing = type(exc)
    typed_made, typed_existing = made_page(body, LIST), existing_page(body, LIST)
    if typed_made is not None:
        assert typed_made == made
    if typed_existing is not None:
        assert typed_existing == existing


# --- through the session: the plain reading when the typed one declines ---------------------


def session_answering(body: bytes) -> ListmonkSession:
    async def sleep(_: float) -> None:
        return None

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/subscribers"
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    api = ApiClient(
        base_url="http://listmonk.test",
        api_key="u:k",
        headers={},
        provider="listmonk",
        concurrency=2,
        timeout_seconds=5.0,
        retry=RetryPolicy(max_retries=0),
        retriable=listmonk_retriable,
        transport=httpx.MockTransport(answer),
        sleep=sleep,
    )
    return ListmonkSession(api, page_size=1000, import_poll=0.0, import_timeout=1.0, sleep=sleep)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "row",
    [
        sub(),  # typed
        sub(lists=["3", sub()["lists"][0]]),  # type: ignore[index]
        sub(id="41"),
        sub(attribs={"big": 2**70}),
    ],
)
async def test_the_session_reads_every_listing_as_before(row: dict[str, object]) -> None:
    body = page(row)
    session = session_answering(body)
    try:
        assert await session.subscribers([("query", "x")], LIST) == reference_existing(body)
        found = await session._created_in(40, 41, LIST)
    finally:
        await session.http.aclose()
    assert found == reference_made(body)[0]
    last = reference_made(body)[1]
    assert last is not None
    assert session.newest_write == last.changed


@pytest.mark.anyio
async def test_a_body_that_is_not_json_is_still_a_provider_error() -> None:
    session = session_answering(b"<html>proxy error</html>")
    try:
        with pytest.raises(ProviderError, match="not JSON for GET /subscribers"):
            await session.subscribers([("query", "x")], LIST)
        with pytest.raises(ProviderError, match="not JSON for GET /subscribers"):
            await session._created_in(0, 5, LIST)
    finally:
        await session.http.aclose()


def test_orjson_reads_attribs_as_the_page_would() -> None:
    """The typed decoder reads ``attribs`` from its own bytes with orjson: as the whole page."""
    attribs = {"big": 2**70, "f": 0.1, "s": "a\u0000b"}
    body = page(sub(attribs=attribs))
    found, _ = made_page(body, LIST) or ({}, None)
    assert found["ann@example.org"].attribs == orjson.loads(json.dumps(attribs))
