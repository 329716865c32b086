"""Seeded campaign activity: deterministic, consistent counters, O(page) reads."""

from __future__ import annotations

import pytest

from campaign_bridge.sandbox.mailchimp.activity import (
    CLICK,
    HARD_BOUNCE,
    OPEN,
    SOFT_BOUNCE,
    ActivityRates,
    CampaignActivity,
    ListRecipients,
    SyntheticRecipients,
    extract_links,
    iso,
    subscriber_hash,
)

LINKS = ("https://shop.example.org/a", "https://shop.example.org/b")
SEND = 1_700_000_000


def build(
    n: int = 2000, seed: int = 7, cid: str = "c0ffee0001", **rates: float
) -> CampaignActivity:
    emails = [f"person{i}@mail.example.org" for i in range(n)]
    return CampaignActivity(cid, seed, SEND, LINKS, ActivityRates(**rates), ListRecipients(emails))


def snapshot(a: CampaignActivity) -> list[object]:
    return [
        (a.fate_status(i), [(e.kind, e.ts, e.link) for e in a.events(i)], a.unsubscribe_of(i))
        for i in range(len(a))
    ]


def test_same_seed_same_activity_and_other_seed_differs() -> None:
    assert snapshot(build()) == snapshot(build())
    assert snapshot(build()) != snapshot(build(seed=8))
    assert snapshot(build()) != snapshot(build(cid="c0ffee0002"))


def test_a_recipients_fate_does_not_depend_on_who_else_was_sent_to() -> None:
    big = build(500)
    small = CampaignActivity(
        "c0ffee0001", 7, SEND, LINKS, ActivityRates(), ListRecipients(["person42@mail.example.org"])
    )
    assert snapshot(small)[0] == snapshot(big)[42]


def test_counters_agree_with_the_per_recipient_events() -> None:
    a = build(3000)
    opens = clicks = hard = soft = uo = uc = 0
    link_unique = [0, 0]
    for i in range(len(a)):
        events = list(a.events(i))
        kinds = [e.kind for e in events]
        opens += kinds.count(OPEN)
        clicks += kinds.count(CLICK)
        hard += kinds.count(HARD_BOUNCE)
        soft += kinds.count(SOFT_BOUNCE)
        uo += OPEN in kinds
        uc += CLICK in kinds
        for link in {e.link for e in events if e.kind == CLICK}:
            link_unique[link] += 1
        if a.fate_status(i) != "sent":
            assert OPEN not in kinds
            assert CLICK not in kinds
        assert [e.ts for e in events] == sorted(e.ts for e in events)
        assert all(SEND < e.ts <= SEND + a.rates.window_seconds for e in events)
    assert (opens, clicks, hard, soft) == (
        a.opens_total,
        a.clicks_total,
        a.hard_bounces,
        a.soft_bounces,
    )
    assert (uo, uc) == (a.unique_opens, a.unique_subscriber_clicks)
    assert [s.unique_clicks for s in a.link_stats] == link_unique
    assert sum(s.total_clicks for s in a.link_stats) == clicks
    # the default rates produce every kind of outcome on 3000 people
    assert min(a.hard_bounces, a.soft_bounces, a.unique_opens, a.unique_subscriber_clicks) > 0
    assert a.unsubscribes


def test_rates_shape_the_outcome() -> None:
    nothing = build(300, hard_bounce=0, soft_bounce=0, open=0, unsubscribe=0)
    assert nothing.opens_total == nothing.hard_bounces == len(nothing.unsubscribes) == 0
    everyone = build(300, hard_bounce=0, soft_bounce=0, open=1, click=1, unsubscribe=1)
    assert (
        everyone.unique_opens
        == everyone.unique_subscriber_clicks
        == len(everyone.unsubscribes)
        == 300
    )
    bounced = build(300, hard_bounce=1, soft_bounce=0)
    assert (bounced.hard_bounces, bounced.opens_total) == (300, 0)


def test_email_activity_is_capped_at_1000_opens_and_1000_clicks() -> None:
    a = build(
        3,
        hard_bounce=0,
        soft_bounce=0,
        open=1,
        click=1,
        unsubscribe=0,
        extra_opens_mean=100_000,
        extra_clicks_mean=100_000,
        max_opens=1500,
        max_clicks=1200,
    )
    for i in range(3):
        kinds = [e.kind for e in a.events(i)]
        assert (kinds.count(OPEN), kinds.count(CLICK)) == (1000, 1000)
    assert a.opens_total > 3000  # counters keep counting past the listing cap


def test_since_pages_only_recipients_with_later_activity() -> None:
    a = build(1000)
    since = SEND + 3600
    total, first = a.email_activity_page(0, 10_000, since)
    expected = [i for i in range(len(a)) if any(e.ts > since for e in a.events(i))]
    assert total == len(expected)
    assert sorted(first) == expected
    pages = [a.email_activity_page(off, 37, since)[1] for off in range(0, total, 37)]
    assert [i for p in pages for i in p] == first
    assert all(e.ts > since for i in first for e in a.events(i, since))


def test_paging_without_since_walks_every_recipient_in_order() -> None:
    a = build(95)
    assert a.email_activity_page(90, 10) == (95, [90, 91, 92, 93, 94])
    assert a.email_activity_page(200, 10) == (95, [])


def test_synthetic_recipients_are_computed_on_demand() -> None:
    r = SyntheticRecipients(1_000_000)
    assert len(r) == 1_000_000
    assert r.email(999_999) == "recipient999999@bench.invalid"
    assert r.email_id(5) == subscriber_hash("recipient5@bench.invalid")


def test_rates_are_validated() -> None:
    with pytest.raises(ValueError, match="open"):
        ActivityRates(open=1.5)
    with pytest.raises(ValueError, match="unknown"):
        ActivityRates.from_mapping({"opens": 0.5})
    assert ActivityRates.from_mapping({"open": 0.5}).open == 0.5


def test_links_come_from_hrefs_then_bare_urls() -> None:
    html = (
        "<a href=\"https://a.org/x\">x</a> <a href='http://b.org/y?q=1'>y</a> "
        '<a href="*|UNSUB|*">u</a> <a href="https://a.org/x">again</a>'
    )
    assert extract_links(html) == ("https://a.org/x", "http://b.org/y?q=1")
    assert extract_links("", "Visit https://c.org/z now") == ("https://c.org/z",)
    assert iso(0) == "1970-01-01T00:00:00+00:00"
