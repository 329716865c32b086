"""storable.py: every value from outside made storable, limits read from the model's types."""

from __future__ import annotations

import json
import logging

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign_bridge.errors import RecordError
from campaign_bridge.landing import campaigns, email_activity
from campaign_bridge.metrics import Metrics
from campaign_bridge.state import member_status, rejected_records, webhook_events
from campaign_bridge.storable import (
    UNSTORABLE,
    Fix,
    Limit,
    column_limit,
    storable_json,
    storable_row,
    storable_text,
    storable_tuples,
)

DIALECTS = ("postgresql", "mysql", "sqlite")


def test_limits_come_from_the_column_types() -> None:
    for dialect in DIALECTS:
        assert column_limit(member_status.c.email.type, dialect) == Limit(chars=320)
        assert column_limit(rejected_records.c.source_key.type, dialect) == Limit(chars=255)
    assert column_limit(member_status.c.unsubscribe_reason.type, "mysql") == Limit(bytes=65_535)
    assert column_limit(member_status.c.unsubscribe_reason.type, "postgresql") == Limit()
    assert column_limit(
        sa.Text().with_variant(sa.dialects.mysql.MEDIUMTEXT(), "mysql"), "mysql"
    ) == Limit(bytes=16_777_215)
    assert column_limit(sa.Integer(), "mysql") == Limit()


def test_each_fix() -> None:
    assert storable_text("a\x00b") == ("ab", (Fix.NUL,))
    assert storable_text("a\ud800b") == ("a\ufffdb", (Fix.SURROGATE,))
    assert storable_text(b"a\xffb") == ("a\ufffdb", (Fix.ENCODING,))
    assert storable_text("abcdef", Limit(chars=3)) == ("abc", (Fix.TRUNCATED,))
    # bytes limit: cut on a character boundary (é is two bytes)
    assert storable_text("é" * 5, Limit(bytes=5)) == ("éé", (Fix.TRUNCATED,))
    assert storable_text("plain 😀 ‏text") == ("plain 😀 ‏text", ())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec=None)), st.sampled_from([None, 1, 5, 64]))
def test_any_text_comes_out_storable_and_stays_put(text: str, bound: int | None) -> None:
    limit = Limit(chars=bound, bytes=bound)
    out, fixes = storable_text(text, limit)
    out.encode("utf-8")  # no lone surrogate left
    assert "\x00" not in out
    if bound is not None:
        assert len(out) <= bound
        assert len(out.encode("utf-8")) <= bound
    assert storable_text(out, limit) == (out, ())  # idempotent
    assert bool(fixes) == (out != text)


def test_a_row_is_fixed_and_every_fix_is_counted_once_without_the_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    row = {"provider": "mailchimp", "list_id": "l1", "member_id": "m" * 32,
           "email": "who@example.org", "status": "unsubscribed",
           "unsubscribe_reason": "secret\x00reason " * 10_000}  # fmt: skip
    with caplog.at_level(logging.DEBUG, logger="campaign_bridge.storable"):
        fixed = storable_row(member_status, row, "mysql")
    assert "\x00" not in fixed["unsubscribe_reason"]
    assert len(fixed["unsubscribe_reason"].encode()) <= 65_535
    assert fixed["email"] == row["email"]
    text = metrics.exposition().decode()
    for fix in ("nul_removed", "truncated"):
        assert (
            'campaign_bridge_values_made_storable_total{column="unsubscribe_reason",'
            f'fix="{fix}",table="cb_member_status"}} 1.0'
        ) in text
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["a value of cb_member_status.unsubscribe_reason was made storable: "
                     "nul_removed, truncated"]  # fmt: skip
    assert "secret" not in lines[0]


def test_a_key_is_never_altered_it_fails_the_record() -> None:
    row = {"provider": "mailchimp", "campaign_id": "c\x001", "title": "t", "subject": "s"}
    with pytest.raises(RecordError) as caught:
        storable_row(campaigns, row, "postgresql")
    assert caught.value.reason_code == UNSTORABLE
    assert "cb_campaigns.campaign_id" in caught.value.message
    cleaned = storable_row(campaigns, row, "postgresql", clean_keys=True)
    assert cleaned["campaign_id"] == "c1"


def test_tuples_skip_a_row_whose_key_cannot_be_stored_and_keep_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    columns = [c.name for c in email_activity.columns]
    good = tuple("x" if c.name not in ("seq",) else 0 for c in email_activity.columns)
    bad = tuple(
        "y\x00" if c.name == "member_id" else v
        for c, v in zip(email_activity.columns, good, strict=True)
    )
    fixable = tuple(
        "r\x00" if c.name == "reason" else v
        for c, v in zip(email_activity.columns, good, strict=True)
    )
    with caplog.at_level(logging.WARNING):
        out = storable_tuples(email_activity, columns, [good, bad, fixable], "postgresql")
    assert out[0] == good
    assert len(out) == 2
    assert out[1][columns.index("reason")] == "r"
    assert "cb_email_activity" in caplog.text


def test_a_json_payload_is_shortened_until_it_fits() -> None:
    document = {"type": "profile", "data": {"merges": {"NOTE": "ß" * 200_000, "FNAME": "Ann\x00"}}}
    limit = column_limit(webhook_events.c.payload.type, "mysql")
    fixed, changed = storable_json("cb_webhook_events", "payload", document, limit)
    assert changed
    encoded = json.dumps(fixed, sort_keys=True, separators=(",", ":"))
    assert len(encoded.encode()) <= 65_535
    assert fixed["data"]["merges"]["FNAME"] == "Ann"
    assert fixed["type"] == "profile"
