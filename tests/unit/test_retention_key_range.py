"""The purge's key range selects exactly the rows between two keys, in key order."""

from __future__ import annotations

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign_bridge.retention import _key_range

KEY = st.tuples(st.sampled_from("ab"), st.sampled_from("abc"), st.sampled_from("xyz"))


@settings(max_examples=200, deadline=None)
@given(rows=st.sets(KEY, min_size=1, max_size=30), ends=st.tuples(KEY, KEY))
def test_key_range_is_exactly_the_rows_between_the_ends(
    rows: set[tuple[str, str, str]], ends: tuple[tuple[str, str, str], tuple[str, str, str]]
) -> None:
    first, last = sorted(ends)
    meta = sa.MetaData()
    table = sa.Table(
        "t",
        meta,
        sa.Column("a", sa.String(1), primary_key=True),
        sa.Column("b", sa.String(1), primary_key=True),
        sa.Column("c", sa.String(1), primary_key=True),
    )
    engine = sa.create_engine("sqlite://")
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [dict(zip("abc", row, strict=True)) for row in rows])
        keys = list(table.primary_key.columns)
        found = {
            tuple(r) for r in conn.execute(sa.select(*keys).where(_key_range(keys, first, last)))
        }
    assert found == {row for row in rows if first <= row <= last}
