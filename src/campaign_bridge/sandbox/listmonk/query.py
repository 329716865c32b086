"""The subset of listmonk's ``query`` expressions the sandbox evaluates.

Real listmonk pastes ``query`` into ``WHERE`` of a read-only SQL statement over subscribers
and related tables. The sandbox parses a subset instead and refuses the rest with listmonk's
400 ``Error preparing subscriber query: …`` (the reason after the colon is the sandbox's own;
PostgreSQL's would differ). Supported:

- columns ``subscribers.{id,uuid,email,name,status,created_at,updated_at}`` (the
  ``subscribers.`` prefix is optional) and ``subscribers.attribs->>'key'``;
  ``LOWER(column)``, ``MD5(column)``;
- ``subscribers.id IN (SELECT subscriber_id FROM subscriber_lists WHERE …)`` with comparisons
  of ``list_id``, ``status``, ``created_at``, ``updated_at`` joined by ``AND`` (how a sync
  finds list unsubscribes, which move only ``subscriber_lists.updated_at``);
- comparisons ``= != <> < <= > >=`` with a quoted string or a number, ``[NOT] IN (…)``,
  ``[NOT] ILIKE/LIKE '…'`` (``%`` and ``_``), ``IS [NOT] NULL``;
- ``AND``, ``OR``, ``NOT`` and parentheses. Timestamps compare as instants.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable
from typing import Any

from campaign_bridge.sandbox.listmonk.model import Subscriber
from campaign_bridge.sandbox.listmonk.wire import bad, parse_when

__all__ = ["Predicate", "compile_query"]

Predicate = Callable[[Subscriber], bool]
#: a condition of a ``subscriber_lists`` sub-query on one ``(list_id, row)``
_RowCheck = Callable[[Any, Any], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><>|!=|<=|>=|->>|[=<>(),])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
_COLUMNS = ("id", "uuid", "email", "name", "status", "created_at", "updated_at")
_TIMES = ("created_at", "updated_at")


def _refuse(reason: str) -> Exception:
    return bad(f"Error preparing subscriber query: {reason}")


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if found is None or found.end() == pos:
            raise _refuse(f"syntax error at or near {text[pos : pos + 10]!r}")
        kind = found.lastgroup or ""
        value = found.group(kind)
        if kind == "str":
            value = value[1:-1].replace("''", "'")
        out.append((kind, value))
        pos = found.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.pos += 1
        return token

    def keyword(self, *words: str) -> bool:
        kind, value = self.peek()
        if kind == "word" and value.upper() in words:
            self.pos += 1
            return True
        return False

    def expect(self, value: str) -> None:
        _kind, got = self.take()
        if got != value:
            raise _refuse(f"syntax error at or near {got or 'end of input'!r}")

    def parse(self) -> Predicate:
        pred = self.disjunction()
        if self.peek()[0] != "end":
            raise _refuse(f"syntax error at or near {self.peek()[1]!r}")
        return pred

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while self.keyword("OR"):
            parts.append(self.conjunction())
        return _any_of(parts)

    def conjunction(self) -> Predicate:
        parts = [self.negation()]
        while self.keyword("AND"):
            parts.append(self.negation())
        return _all_of(parts)

    def negation(self) -> Predicate:
        if self.keyword("NOT"):
            inner = self.negation()
            return lambda s: not inner(s)
        if self.peek() == ("op", "("):
            self.take()
            inner = self.disjunction()
            self.expect(")")
            return inner
        return self.comparison()

    def column(self) -> tuple[str, Callable[[Subscriber], Any]]:
        kind, word = self.take()
        if kind == "word" and word.upper() in _FUNCTIONS and self.peek() == ("op", "("):
            self.take()
            name, getter = self.column()
            self.expect(")")
            apply = _FUNCTIONS[word.upper()]
            return name, lambda s: apply(v) if isinstance(v := getter(s), str) else v
        if kind != "word":
            raise _refuse(f"syntax error at or near {word!r}")
        name = word.lower().removeprefix("subscribers.")
        if name == "attribs" and self.peek() == ("op", "->>"):
            self.take()
            key_kind, key = self.take()
            if key_kind != "str":
                raise _refuse("->> needs a quoted key")
            return "attribs", lambda s: _text(s.attribs.get(key))
        if name not in _COLUMNS:
            raise _refuse(f"column {word!r} is not supported by the sandbox")
        return name, operator.attrgetter(name)

    def literal(self, column: str) -> Any:
        kind, value = self.take()
        if kind == "num":
            return float(value) if column != "attribs" else value
        if kind == "word" and value.upper() in ("NOW", "NOW()"):
            raise _refuse("functions are not supported by the sandbox")
        if kind != "str":
            raise _refuse(f"syntax error at or near {value or 'end of input'!r}")
        if column in _TIMES:
            when = parse_when(value)
            if when is None:
                raise _refuse(f'invalid input syntax for type timestamp with time zone: "{value}"')
            return when
        if column == "id":
            try:
                return float(value)
            except ValueError:
                raise _refuse(f'invalid input syntax for type integer: "{value}"') from None
        return value

    def comparison(self) -> Predicate:
        column, getter = self.column()
        negate = self.keyword("NOT")
        if self.keyword("IN"):
            self.expect("(")
            if column == "id" and self.keyword("SELECT"):
                inner = self.subscriber_lists()
                return lambda s: inner(s) != negate
            values = [self.literal(column)]
            while self.peek() == ("op", ","):
                self.take()
                values.append(self.literal(column))
            self.expect(")")
            members = set(values)
            return lambda s: (getter(s) in members) != negate
        if self.keyword("LIKE", "ILIKE"):
            fold = self.tokens[self.pos - 1][1].upper() == "ILIKE"
            pattern = _like(str(self.literal("text")), fold)
            return lambda s: (
                (isinstance(v := getter(s), str) and pattern.fullmatch(v) is not None) != negate
            )
        if negate:
            raise _refuse("NOT must precede IN, LIKE or ILIKE here")
        if self.keyword("IS"):
            is_not = self.keyword("NOT")
            if not self.keyword("NULL"):
                raise _refuse("IS must be followed by [NOT] NULL")
            return lambda s: (getter(s) is None) == (not is_not)
        kind, op = self.take()
        if kind != "op" or op not in ("=", "!=", "<>", "<", "<=", ">", ">="):
            raise _refuse(f"syntax error at or near {op or 'end of input'!r}")
        value = self.literal(column)
        compare = _COMPARE[op]

        def check(sub: Subscriber) -> bool:
            got = getter(sub)
            if got is None:
                return False
            try:
                return compare(got, value)
            except TypeError:
                return False

        return check

    def subscriber_lists(self) -> Predicate:
        """``SELECT subscriber_id FROM subscriber_lists WHERE a AND b …)``: a subscriber with a
        subscription matching every condition."""
        for word in ("SUBSCRIBER_ID", "FROM", "SUBSCRIBER_LISTS", "WHERE"):
            if not self.keyword(word):
                raise _refuse(f"syntax error at or near {self.peek()[1] or 'end of input'!r}")
        conditions = [self.subscription_condition()]
        while self.keyword("AND"):
            conditions.append(self.subscription_condition())
        self.expect(")")
        every = _all_rows([c for _key, c in conditions])
        keys = [key for key, _c in conditions if key is not None]
        if keys:  # ``list_id = K``: a subscriber has one subscription per list, K's or none
            if not keys[0].is_integer():
                return lambda _sub: False  # no list id equals it
            key = int(keys[0])

            def on_list(sub: Subscriber) -> bool:
                row = sub.lists.get(key)
                return row is not None and every(key, row)

            return on_list

        def on_any(sub: Subscriber) -> bool:
            return any(every(list_id, row) for list_id, row in sub.lists.items())

        return on_any

    def subscription_condition(self) -> tuple[float | None, _RowCheck]:
        """One condition on a subscription row, with the list id it pins (``list_id = K``)."""
        kind, word = self.take()
        name = word.lower().removeprefix("subscriber_lists.")
        if kind != "word" or name not in ("list_id", "status", "created_at", "updated_at"):
            raise _refuse(f"column {word!r} of subscriber_lists is not supported by the sandbox")
        op_kind, op = self.take()
        if op_kind != "op" or op not in _COMPARE:
            raise _refuse(f"syntax error at or near {op or 'end of input'!r}")
        value = self.literal(name if name != "list_id" else "id")
        compare = _COMPARE[op]
        if name == "list_id":
            pinned = value if op == "=" else None
            return pinned, lambda list_id, _row: compare(list_id, value)
        read = operator.attrgetter(name)
        return None, lambda _list_id, row: compare(read(row), value)


def _all_of(parts: list[Predicate]) -> Predicate:
    """``a AND b AND …`` as nested closures (a generator per row costs more than the tests)."""
    if len(parts) == 1:
        return parts[0]
    first, rest = parts[0], _all_of(parts[1:])
    return lambda s: first(s) and rest(s)


def _any_of(parts: list[Predicate]) -> Predicate:
    """``a OR b OR …`` as nested closures."""
    if len(parts) == 1:
        return parts[0]
    first, rest = parts[0], _any_of(parts[1:])
    return lambda s: first(s) or rest(s)


def _all_rows(parts: list[_RowCheck]) -> _RowCheck:
    """Every condition of a ``subscriber_lists`` sub-query, on one ``(list_id, row)``."""
    if len(parts) == 1:
        return parts[0]
    first, rest = parts[0], _all_rows(parts[1:])
    return lambda list_id, row: first(list_id, row) and rest(list_id, row)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


_FUNCTIONS: dict[str, Callable[[str], str]] = {"LOWER": str.lower, "MD5": _md5}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    import orjson

    return orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)


def _like(pattern: str, fold: bool) -> re.Pattern[str]:
    body = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile(body, re.IGNORECASE | re.DOTALL if fold else re.DOTALL)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def compile_query(text: str) -> Predicate:
    """A predicate for ``text``; 400 with listmonk's message for what the sandbox refuses."""
    return _Parser(text).parse()
