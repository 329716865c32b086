"""Pure pieces of the Brevo sandbox and the shared emulator helpers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaign_bridge.sandbox._common import Clock, FaultBox, Ids, Latency
from campaign_bridge.sandbox.brevo.campaigns import Activity, Campaign
from campaign_bridge.sandbox.brevo.contacts import (
    coerce_value,
    millis,
    normal_email,
    normal_sms,
)
from campaign_bridge.sandbox.brevo.limits import RateLimiter, group_of
from campaign_bridge.sandbox.brevo.model import Attribute, BrevoConfig
from campaign_bridge.sandbox.brevo.webhooks import Webhook, campaign_payload, request_parts
from campaign_bridge.sandbox.brevo.wire import parse_when, stamp


def test_identifiers() -> None:
    assert normal_email("  Ann.Lee+x@Example.ORG ") == "ann.lee+x@example.org"
    for bad in ("ann", "ann@", "a b@example.org", "ann@example", 42, None):
        assert normal_email(bad) is None
    assert normal_sms("+33 6 12 34 56 78") == normal_sms("0033612345678") == "+33612345678"
    assert normal_sms(33612345678) == "+33612345678"
    assert normal_sms("call me") is None


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("text", "x", (True, "x")),
        ("text", 5, (True, "5")),
        ("text", True, (False, None)),
        ("float", "2.5", (True, 2.5)),
        ("float", "lots", (False, None)),
        ("float", False, (False, None)),
        ("boolean", "TRUE", (True, True)),
        ("boolean", 1, (False, None)),
        ("date", "2026-02-03T10:00:00Z", (True, "2026-02-03")),
        ("date", "03/02/2026", (False, None)),
    ],
)
def test_coerce_value(kind: str, value: object, expected: tuple[bool, object]) -> None:
    assert coerce_value(Attribute("A", "normal", kind), value) == expected


def test_coerce_category_and_multiple_choice() -> None:
    plan = Attribute("PLAN", "category", "category", enumeration=[{"value": 2, "label": "pro"}])
    assert (
        coerce_value(plan, "pro") == coerce_value(plan, 2) == coerce_value(plan, "2") == (True, 2)
    )
    assert coerce_value(plan, "gold") == (False, None)
    topics = Attribute("TOPICS", "normal", "multiple-choice", options=["a", "b"])
    assert coerce_value(topics, ["a", "b"]) == (True, ["a", "b"])
    assert coerce_value(topics, ["a", "z"]) == (False, None)


def test_rate_limiter_windows() -> None:
    config = BrevoConfig(rate_limits=True, contacts_rps=2, contacts_rph=3)
    limiter = RateLimiter(config)
    assert group_of("/contacts/lists/1") == "contacts"
    assert group_of("/contactsX") == "other"
    verdicts = [limiter.check("k", "contacts", 100.2) for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert (verdicts[0].limit, verdicts[0].remaining) == (2, 1)
    assert limiter.check("k", "contacts", 101.0).allowed  # a new second
    hourly = limiter.check("k", "contacts", 102.0)  # the hour's 3 are used up
    assert not hourly.allowed
    assert hourly.limit == 3
    assert hourly.reset == 3600 - 102
    assert limiter.check("other-key", "contacts", 102.0).allowed
    config.rate_limits = False
    assert limiter.check("k", "contacts", 102.0).allowed  # counted, not refused


def test_webhook_request_parts() -> None:
    hook = Webhook(1, "https://u:p%40ss@hooks.example.org:8443/x?a=1", ["spam"])
    url, headers = request_parts(hook.url, hook)
    assert url == "https://hooks.example.org:8443/x?a=1"
    assert headers["Authorization"] == "Basic dTpwQHNz"
    hook.auth = {"type": "bearer", "token": "t"}
    hook.headers = [{"key": "X-A", "value": "b"}]
    _, headers = request_parts("https://hooks.example.org/x", hook)
    assert headers == {"Content-Type": "application/json", "Authorization": "Bearer t", "X-A": "b"}


def test_campaign_payload_shape() -> None:
    sent = datetime(2026, 6, 1, 9, 0, tzinfo=UTC).timestamp()
    campaign = Campaign(
        3, "June", "Hi", {}, "<p/>", sent, sent, tag="t", list_ids=[1], sent_at=sent
    )
    event = Activity(
        "clicked", 3, 9, "a@example.org", sent + 61, [1], ip="1.2.3.4", url="https://x"
    )
    payload = campaign_payload(Webhook(7, "https://h", ["click"]), event, campaign, "click")
    assert payload == {
        "id": 7,
        "camp_id": 3,
        "email": "a@example.org",
        "campaign name": "June",
        "date_sent": "2026-06-01 09:00:00",
        "date_event": "2026-06-01 09:01:01",
        "ts_sent": int(sent),
        "ts_event": int(sent) + 61,
        "ts": int(sent) + 61,
        "event": "click",
        "tag": "t",
        "URL": "https://x",
    }


def test_common_helpers() -> None:
    clock = Clock(datetime(2026, 1, 1, tzinfo=UTC))
    clock.advance(1.5)
    assert stamp(clock.timestamp()) == "2026-01-01T00:00:01.500Z"
    ids = Ids(3)
    assert [ids.next("a"), ids.next("a"), ids.next("b")] == [1, 2, 1]
    snapshot = ids.snapshot()
    first = ids.hex(8)
    ids.restore(snapshot)
    assert ids.hex(8) == first
    box = FaultBox(("500",), seed=1)
    with pytest.raises(ValueError, match="unknown fault kind"):
        box.add({"kind": "418"})
    box.add({"kind": "500", "path": "^/x", "count": 2})
    assert box.pick("GET", "/y") is None
    assert [box.pick("GET", "/x") is not None for _ in range(3)] == [True, True, False]
    latency = Latency(fixed=1.0, per_item=0.5, timer=lambda: 10.0)
    assert latency.wait_before_answer(arrived=9.0, items=2) == 1.0


@pytest.mark.parametrize(
    "epoch", [1_765_000_000.0, 1_765_000_000.0004, 1_765_000_000.1299994, 1_765_000_000.9999996]
)
def test_created_since_compares_the_milliseconds_a_listing_shows(epoch: float) -> None:
    """Brevo keeps milliseconds: a contact is "created after" a time when its createdAt, as
    shown, is later, so a reader resuming after the last createdAt it saw misses nothing."""
    shown = stamp(epoch)
    assert millis(parse_when(shown, "createdSince")) == millis(epoch)
    assert millis(epoch) > millis(parse_when(shown, "x") - 0.001)
