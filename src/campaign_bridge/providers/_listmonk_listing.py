"""Pages of ``GET /api/subscribers`` decoded straight into what the adapter keeps.

listmonk renders every subscriber with each of its lists in full (about 670 bytes of JSON a
subscriber), and the push reads back every subscriber an upload created, so decoding these
pages was most of the adapter's CPU per contact. A typed partial decoder (msgspec) reads only
the fields the adapter uses and skips the rest without building it:

- the subscriber's ``id``, ``email``, ``name``, ``attribs``, ``status`` and ``updated_at``;
- each list's ``id``, ``subscription_status``, ``optin`` and ``subscription_updated_at``.

Its structs are not tracked by the cyclic garbage collector (they hold no cycles): a page
allocates fewer tracked objects than orjson's dicts, so collections come less often.

It takes only the shape listmonk sends: an object with ``data.results``, each result an object
whose fields hold the JSON types listmonk gives them (or ``null``), each list an object. Any
other body (a field of another type, a list entry that is not an object, text that is not
UTF-8, an integer orjson would read as a float, nesting deeper than the interpreter's recursion
limit) makes :func:`made_page` and :func:`existing_page` return ``None``, and the caller reads
the body as any other answer (orjson, then the reductions :func:`made_rows` and
:func:`~campaign_bridge.providers._listmonk_wire.existing_from` of plain values). So a page
decodes to the same values either way; ``attribs``, of any JSON shape, is decoded by orjson in
both (from its own bytes here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, NamedTuple

import msgspec
import orjson

from campaign_bridge.providers._listmonk_wire import (
    Existing,
    existing_from,
    parse_time,
    subscription_for,
)

__all__ = ["Made", "existing_page", "made_page", "made_rows"]

# orjson reads an integer beyond 64 bits as a float, msgspec as an int: an id outside a signed
# 64-bit integer (listmonk's ids are one) is left to the generic path, which reads it as orjson
_OrjsonInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class Made(NamedTuple):
    """A subscriber read back after an upload, reduced to what tells whether the upload made
    it as sent (small: an upload's read-back can hold thousands)."""

    id: int
    name: str
    attribs: object
    blocklisted: bool
    subscription: str | None  # the status on the upload's list; None: not on it


class _Subscription(msgspec.Struct, gc=False):
    """One of a subscriber's lists, as far as the adapter reads it."""

    id: _OrjsonInt | None = None
    subscription_status: str | None = None
    optin: str | None = None
    subscription_updated_at: str | None = None


class _Subscriber(msgspec.Struct, gc=False):
    id: _OrjsonInt
    email: str | None = None
    name: str | None = None
    attribs: msgspec.Raw = msgspec.Raw()  # its JSON text (empty when absent), read by orjson
    status: str | None = None
    updated_at: str | None = None
    lists: list[_Subscription] | None = None


class _Results(msgspec.Struct):
    results: list[_Subscriber] | None = None


class _Answer(msgspec.Struct):
    data: _Results | None = None


_DECODER = msgspec.json.Decoder(_Answer)
# what makes a body other than the usual shape; RecursionError: nesting deeper than msgspec
# follows (the interpreter's recursion limit), which orjson may still read; UnicodeDecodeError:
# msgspec 0.18 raises it (not DecodeError, as 0.23 does) for a string that is not UTF-8
_UNUSUAL = (msgspec.DecodeError, orjson.JSONDecodeError, RecursionError, UnicodeDecodeError)
Page = tuple[dict[str, Made], Existing | None]


def made_page(content: bytes, list_id: int) -> Page | None:
    """A read-back page: its subscribers reduced to :class:`Made`, by address, and the last
    one as :class:`Existing`; ``None`` for a body that is not the usual shape (module
    docstring), which :func:`made_rows` reads instead."""
    try:
        subscribers = _subscribers(content)
        found: dict[str, Made] = {}
        for sub in subscribers:
            entry = _subscription(sub, list_id)
            found[str(sub.email)] = Made(
                sub.id,
                sub.name or "",
                _attribs(sub) or {},
                sub.status == "blocklisted",
                str(entry.subscription_status) if entry is not None else None,
            )
        last = _existing(subscribers[-1], list_id) if subscribers else None
    except _UNUSUAL:
        return None
    return found, last


def existing_page(content: bytes, list_id: int) -> list[Existing] | None:
    """A listing's subscribers as :class:`Existing`, in order; ``None`` for a body that is not
    the usual shape (module docstring), which ``existing_from`` reads instead."""
    try:
        return [_existing(sub, list_id) for sub in _subscribers(content)]
    except _UNUSUAL:
        return None


def made_rows(rows: Sequence[Mapping[str, Any]], list_id: int) -> Page:
    """:func:`made_page` of a page decoded as plain values (its rows, the objects of
    ``data.results``)."""
    found: dict[str, Made] = {}
    for row in rows:
        entry = subscription_for(row, list_id)
        found[str(row.get("email"))] = Made(
            int(row["id"]),
            str(row.get("name") or ""),
            row.get("attribs") or {},
            row.get("status") == "blocklisted",
            str(entry.get("subscription_status")) if entry is not None else None,
        )
    return found, existing_from(rows[-1], list_id) if rows else None


def _subscribers(content: bytes) -> list[_Subscriber]:
    answer = _DECODER.decode(content)
    return (answer.data.results if answer.data is not None else None) or []


def _subscription(sub: _Subscriber, list_id: int) -> _Subscription | None:
    for entry in sub.lists or ():
        if entry.id == list_id:
            return entry
    return None


def _attribs(sub: _Subscriber) -> object:
    """``attribs`` as orjson reads it; ``None`` when absent."""
    return orjson.loads(memoryview(sub.attribs)) if sub.attribs else None


def _existing(sub: _Subscriber, list_id: int) -> Existing:
    """``existing_from`` of a typed subscriber."""
    entry = _subscription(sub, list_id)
    changed = parse_time(sub.updated_at)
    if entry is not None:
        sub_changed = parse_time(entry.subscription_updated_at)
        if sub_changed is not None and (changed is None or sub_changed > changed):
            changed = sub_changed
    attribs = _attribs(sub)
    return Existing(
        id=sub.id,
        email=sub.email or "",
        name=sub.name or "",
        attribs=attribs if isinstance(attribs, dict) else {},
        blocklisted=sub.status == "blocklisted",
        subscription=str(entry.subscription_status) if entry is not None else None,
        double_opt_in=entry is not None and entry.optin == "double",
        changed=changed,
    )
