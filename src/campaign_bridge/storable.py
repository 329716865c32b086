"""Every value from outside made storable, in one place (pure: no database, no network).

Provider answers, webhook bodies and source rows can hold text no state store accepts:

- **NUL** (``U+0000``): PostgreSQL ``text`` cannot hold it; MariaDB and SQLite store it but many
  of their string functions stop at it. It is removed, on every engine alike.
- **Lone surrogates** (``U+D800`` to ``U+DFFF`` outside a pair, as lenient JSON decoders produce
  them): no UTF-8 encoder writes them. Each becomes ``U+FFFD``.
- **Invalid encodings** (bytes that are not UTF-8): decoded with ``U+FFFD`` for each bad byte.
- **Over-long text**: cut to the column's limit, which is read from the column's type in
  :mod:`campaign_bridge.state` (or a reflected user table), never from a second list:
  ``VARCHAR(n)`` holds ``n`` characters on every engine (SQLite does not check, the model does);
  MariaDB's ``TEXT`` holds 65,535 bytes, ``MEDIUMTEXT`` 16 MiB; PostgreSQL and SQLite ``TEXT``
  hold far more than any provider sends.

A key column (part of the primary key or of a unique constraint) is never altered: changing it
would change which record the value belongs to. Such a value raises :class:`RecordError`
(``unstorable_value``), so the caller fails that one record, keeps it with its reason and goes
on. Every change to a value is recorded once: the metric ``values_made_storable_total`` (by
table, column and fix) and one debug log line naming the table, column and fix, never the value.
"""

from __future__ import annotations

import functools
import json
import logging
import operator
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from campaign_bridge import metrics
from campaign_bridge.errors import RecordError

__all__ = [
    "UNSTORABLE",
    "Fix",
    "Limit",
    "column_limit",
    "storable_json",
    "storable_row",
    "storable_rows",
    "storable_text",
    "storable_tuple",
    "storable_tuples",
    "storable_value",
]

logger = logging.getLogger(__name__)

UNSTORABLE = "unstorable_value"

_SURROGATE = re.compile("[\ud800-\udfff]")


class Fix(StrEnum):
    """What was done to a value to make it storable."""

    NUL = "nul_removed"
    SURROGATE = "surrogate_replaced"
    ENCODING = "encoding_replaced"
    TRUNCATED = "truncated"


@dataclass(frozen=True)
class Limit:
    """How much a column holds: characters (``VARCHAR(n)``) and/or UTF-8 bytes (MariaDB TEXT)."""

    chars: int | None = None
    bytes: int | None = None


def column_limit(column_type: sa.types.TypeEngine[Any], dialect: str) -> Limit:
    """The limit of a column of ``column_type`` on ``dialect`` (``postgresql``, ``mysql``,
    ``sqlite``), read from the type itself (with its dialect variant, if any)."""
    kind = column_type
    if isinstance(kind, sa.types.TypeDecorator):
        kind = kind.impl_instance
    variants = getattr(kind, "_variant_mapping", None)
    if variants and dialect in variants:
        kind = variants[dialect]
    length = getattr(kind, "length", None)
    if dialect == "mysql":
        from sqlalchemy.dialects import mysql  # MySQL's modules load only for MySQL

        text_bytes = ((mysql.TINYTEXT, 255), (mysql.MEDIUMTEXT, 16_777_215), (mysql.LONGTEXT, None))
        for mysql_type, size in text_bytes:  # MariaDB's TEXT family holds bytes
            if isinstance(kind, mysql_type):
                return Limit(bytes=size)
        if isinstance(kind, sa.Text | mysql.TEXT):
            # TEXT(n): MariaDB picks the smallest type that holds n bytes
            return Limit(bytes=max(int(length), 255) if length else 65_535)
    if isinstance(kind, sa.String) and not isinstance(kind, sa.Text) and length:
        return Limit(chars=int(length))
    return Limit()


def storable_text(
    value: str | bytes | bytearray, limit: Limit = Limit()
) -> tuple[str, tuple[Fix, ...]]:
    """``value`` as text every engine stores within ``limit``, and the fixes that took."""
    fixes: list[Fix] = []
    if isinstance(value, bytes | bytearray):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            text = bytes(value).decode("utf-8", errors="replace")
            fixes.append(Fix.ENCODING)
    else:
        text = value
    if "\x00" in text:
        text = text.replace("\x00", "")
        fixes.append(Fix.NUL)
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", text)
        fixes.append(Fix.SURROGATE)
    if limit.chars is not None and len(text) > limit.chars:
        text = text[: limit.chars]
        fixes.append(Fix.TRUNCATED)
    if limit.bytes is not None and len(text) * 4 > limit.bytes:
        encoded = text.encode("utf-8")
        if len(encoded) > limit.bytes:  # cut on a character boundary
            text = encoded[: limit.bytes].decode("utf-8", errors="ignore")
            fixes.append(Fix.TRUNCATED)
    return text, tuple(fixes)


def storable_value(
    table: str,
    column: str,
    value: Any,
    limit: Limit = Limit(),
    *,
    key: bool = False,
) -> Any:
    """One value made storable (non-text values pass through), its fixes recorded.

    ``key``: the column identifies the record; a value that would need a fix raises
    :class:`RecordError` instead of being altered.
    """
    if not isinstance(value, str | bytes | bytearray):
        return value
    if (
        isinstance(value, str)
        and value.isascii()
        and "\x00" not in value
        and (limit.chars is None or len(value) <= limit.chars)
        and (limit.bytes is None or len(value) <= limit.bytes)
    ):
        return value  # the common case, checked in one pass
    text, fixes = storable_text(value, limit)
    if not fixes:
        return text
    if key:
        raise RecordError(
            UNSTORABLE,
            f"{table}.{column} identifies the record but cannot be stored as it is "
            f"({', '.join(fixes)})",
            field=column,
        )
    _record(table, column, fixes)
    return text


def storable_row(
    table: sa.Table, row: Mapping[str, Any], dialect: str, *, clean_keys: bool = False
) -> dict[str, Any]:
    """A row for ``table`` (column name -> value) with every text value made storable.

    A key column's value that needs a fix raises :class:`RecordError`, unless ``clean_keys``
    (for rows that describe a problem, such as a rejection, whose key may be the problem)."""
    limits = _limits(table, dialect)
    out = dict(row)
    for name, value in row.items():
        if isinstance(value, str | bytes | bytearray) and name in limits:
            limit, key = limits[name]
            out[name] = storable_value(table.name, name, value, limit, key=key and not clean_keys)
    return out


def storable_tuple(
    table: sa.Table, columns: Sequence[str], row: Sequence[Any], dialect: str
) -> tuple[Any, ...]:
    """A row given as a tuple in ``columns`` order, made storable like :func:`storable_row`."""
    limits = _limits(table, dialect)
    values = list(row)
    for index, value in enumerate(values):
        if isinstance(value, str | bytes | bytearray):
            limit, key = limits.get(columns[index], (Limit(), False))
            values[index] = storable_value(table.name, columns[index], value, limit, key=key)
    return tuple(values)


def storable_rows(
    table: sa.Table, rows: Iterable[Mapping[str, Any]], dialect: str, *, what: str = "record"
) -> list[dict[str, Any]]:
    """:func:`storable_row` over many rows; a row that cannot be stored (a key that would need
    a fix) is left out with a warning naming the table and the reason, and the rest go on.
    Checked column by column first, like :func:`storable_tuples`."""
    rows = list(rows)
    names = {name for row in rows[:1] for name in row}
    suspects = _suspect_columns(
        table, sorted(names), lambda name: operator.methodcaller("get", name), rows, dialect
    )
    if not suspects:
        return [dict(row) for row in rows]
    limits = _limits(table, dialect)
    out: list[dict[str, Any]] = []
    for row in rows:
        if all(_value_is_clean(row.get(name), limits[name][0]) for name in suspects):
            out.append(dict(row))
            continue
        try:
            out.append(storable_row(table, row, dialect))
        except RecordError as exc:
            _skipped(table.name, what, exc)
    return out


def storable_tuples(
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    dialect: str,
    *,
    what: str = "record",
    made_here: Collection[str] = (),
) -> list[tuple[Any, ...]]:
    """Rows given as tuples in ``columns`` order, made storable; a row whose key cannot be
    stored is left out with a warning.

    Checked column by column over the whole chunk first (C-level joins and ``max(map(len))``,
    under a microsecond per row): a chunk with nothing to fix, nearly every chunk, is returned
    as it is. Only the rows of a column that needs a fix go through :func:`storable_tuple`.
    The columns named in ``made_here`` are not checked: the caller made every value of them
    itself (hex digests, status names, run ids), none from a source or a provider."""
    limits = _limits(table, dialect)
    positions = {name: index for index, name in enumerate(columns)}
    checked = [name for name in columns if name not in made_here]
    named = _suspect_columns(
        table, checked, lambda name: operator.itemgetter(positions[name]), rows, dialect
    )
    suspects = [positions[name] for name in named]
    if not suspects:
        return list(map(tuple, rows))  # tuple(t) is t: no copy
    out: list[tuple[Any, ...]] = []
    for row in rows:
        if all(_value_is_clean(row[i], limits[columns[i]][0]) for i in suspects):
            out.append(tuple(row))
            continue
        try:
            out.append(storable_tuple(table, columns, row, dialect))
        except RecordError as exc:
            _skipped(table.name, what, exc)
    return out


def _suspect_columns(
    table: sa.Table,
    names: Sequence[str],
    getter: Callable[[str], Callable[[Any], Any]],
    rows: Sequence[Any],
    dialect: str,
) -> list[str]:
    """The text columns of ``rows`` with at least one value that needs a fix."""
    limits = _limits(table, dialect)
    not_none = functools.partial(operator.is_not, None)
    suspects = []
    for name in names:
        if name not in limits or not isinstance(_column_type(table, name), sa.String):
            continue
        values = list(filter(not_none, map(getter(name), rows)))
        if values and not _column_is_clean(values, limits[name][0]):
            suspects.append(name)
    return suspects


def _column_is_clean(values: list[Any], limit: Limit) -> bool:
    try:
        text = "".join(values)
    except TypeError:  # bytes or another type: the slow path converts or refuses it
        return False
    if "\x00" in text or (not text.isascii() and _SURROGATE.search(text)):
        return False
    longest = max(map(len, values))
    if limit.chars is not None and longest > limit.chars:
        return False
    if limit.bytes is not None and longest * 4 > limit.bytes:
        return all(
            len(v.encode("utf-8")) <= limit.bytes for v in values if len(v) * 4 > limit.bytes
        )
    return True


def _value_is_clean(value: Any, limit: Limit) -> bool:
    return value is None or _column_is_clean([value], limit)


def storable_json(
    table: str, column: str, document: Any, limit: Limit = Limit()
) -> tuple[Any, bool]:
    """A JSON document (dicts, lists, scalars) whose strings are all storable and whose compact
    serialisation fits ``limit``: the longest strings are shortened until it does. Returns the
    document and whether it changed (recorded once, as one fix of ``table.column``)."""
    fixes: set[Fix] = set()

    def clean(node: Any) -> Any:
        if isinstance(node, str):
            text, done = storable_text(node)
            fixes.update(done)
            return text
        if isinstance(node, dict):
            return {clean(k): clean(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [clean(v) for v in node]
        return node

    cleaned = clean(document)
    budget = _json_budget(limit)
    if budget is not None:
        while _json_size(cleaned) > budget:
            longest = max(_strings(cleaned), key=len, default="")
            if len(longest) < 16:
                break  # nothing long left to cut: the caller's store refuses it, as one record
            cleaned = _replace_string(cleaned, longest, longest[: len(longest) // 2])
            fixes.add(Fix.TRUNCATED)
    if fixes:
        _record(table, column, tuple(sorted(fixes)))
    return cleaned, bool(fixes)


# --- helpers ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _limits(table: sa.Table, dialect: str) -> dict[str, tuple[Limit, bool]]:
    keys = {c.name for c in table.primary_key.columns}
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            keys |= {c.name for c in constraint.columns}
    return {c.name: (column_limit(c.type, dialect), c.name in keys) for c in table.columns}


def _column_type(table: sa.Table, name: str) -> sa.types.TypeEngine[Any] | None:
    column = table.c.get(name)
    if column is None:
        return None
    kind = column.type
    return kind.impl_instance if isinstance(kind, sa.types.TypeDecorator) else kind


def _skipped(table: str, what: str, exc: RecordError) -> None:
    logger.warning(
        "a %s was not stored in %s: %s",
        what,
        table,
        exc.message,
        extra={"action": "storable", "table": table, "reason": exc.reason_code},
    )


def _record(table: str, column: str, fixes: Iterable[Fix]) -> None:
    for fix in fixes:
        metrics.record_value_made_storable(table, column, str(fix))
    logger.debug(
        "a value of %s.%s was made storable: %s",
        table,
        column,
        ", ".join(fixes),
        extra={"action": "storable", "table": table, "column": column},
    )


def _json_budget(limit: Limit) -> int | None:
    if limit.bytes is None and limit.chars is None:
        return None
    return min(x for x in (limit.bytes, limit.chars) if x is not None)


def _json_size(document: Any) -> int:
    # the form the webhook inbox stores (ASCII escapes, so it is as long as the stored text)
    return len(json.dumps(document, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def _strings(node: Any) -> Iterable[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _replace_string(node: Any, old: str, new: str) -> Any:
    if isinstance(node, str):
        return new if node is old or node == old else node
    if isinstance(node, dict):
        return {k: _replace_string(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_string(v, old, new) for v in node]
    return node
