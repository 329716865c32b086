"""Reports: ``/reports`` and the per-campaign collections, read from the generated activity.

Every figure comes from the campaign's ``CampaignActivity`` (activity.py), so the counters,
the per-email collections and the member state (changed at send time) agree exactly. Pages are
O(page): the activity is stored column-wise and indexed at send time.

Also provides the member activity feed to the core (``sandbox.extensions["activity_feed"]``):
``sent``, ``open``, ``click``, ``bounce`` and ``unsub`` items, newest first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from campaign_bridge.sandbox.mailchimp.activity import (
    CLICK,
    HARD_BOUNCE,
    OPEN,
    UNSUBSCRIBE_REASONS,
    CampaignActivity,
    iso,
)
from campaign_bridge.sandbox.mailchimp.campaigns import (
    Campaign,
    current_status,
    delivered,
    find,
    store,
)
from campaign_bridge.sandbox.mailchimp.model import Sandbox
from campaign_bridge.sandbox.mailchimp.wire import (
    ApiRequest,
    Problem,
    Reply,
    Route,
    invalid_resource,
    link,
    not_found,
    page,
    paging,
    parse_ts,
)

__all__ = ["activity_feed", "control_routes", "install", "routes"]

_ACTION = {OPEN: "open", CLICK: "click", HARD_BOUNCE: "bounce"}


def _sent(sandbox: Sandbox, campaign_id: str) -> tuple[Campaign, CampaignActivity]:
    c = find(sandbox, campaign_id)
    if c.activity is None:
        raise not_found()
    return c, c.activity


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0


def _list_bits(sandbox: Sandbox, list_id: str) -> tuple[bool, str]:
    lst = sandbox.lists.get(list_id)
    return lst is not None, (lst.name if lst is not None else "")


def _collection_links(base: str, campaign_id: str, name: str) -> list[dict[str, str]]:
    return [
        link("parent", f"{base}/reports/{campaign_id}"),
        link("self", f"{base}/reports/{campaign_id}/{name}"),
    ]


def _ts_or_blank(ts: int) -> str:
    return iso(ts) if ts else ""


def _list_stats(sandbox: Sandbox, list_id: str) -> dict[str, float]:
    sent = [
        c.activity
        for c in store(sandbox).campaigns.values()
        if c.list_id == list_id and c.activity is not None
    ]
    opens = [_rate(a.unique_opens, delivered(a)) for a in sent]
    clicks = [_rate(a.unique_subscriber_clicks, delivered(a)) for a in sent]
    unsubs = [_rate(len(a.unsubscribes), a.emails_sent) for a in sent]
    return {
        "sub_rate": 0,
        "unsub_rate": _avg(unsubs),
        "open_rate": _avg(opens),
        "click_rate": _avg(clicks),
    }


#: Mailchimp updates an audience's ``campaign_last_sent`` for sends to at least this many
_LAST_SENT_MIN_RECIPIENTS = 10


def audience_campaign_stats(sandbox: Sandbox, list_id: str) -> dict[str, Any]:
    """The campaign figures of an audience's ``stats``: campaigns in any status that use it,
    the last send to 10 or more recipients, and the average open and click rates (percent)
    of its sent campaigns."""
    campaigns = [c for c in store(sandbox).campaigns.values() if c.list_id == list_id]
    last_sent = max(
        (
            c.send_time
            for c in campaigns
            if c.activity is not None and c.activity.emails_sent >= _LAST_SENT_MIN_RECIPIENTS
        ),
        default="",
    )
    rates = _list_stats(sandbox, list_id)
    return {
        "campaign_count": len(campaigns),
        "campaign_last_sent": last_sent,
        "open_rate": rates["open_rate"],
        "click_rate": rates["click_rate"],
    }


def _avg(values: list[float]) -> float:
    return round(100 * sum(values) / len(values), 2) if values else 0


def render_report(sandbox: Sandbox, c: Campaign, a: CampaignActivity, base: str) -> dict[str, Any]:
    active, list_name = _list_bits(sandbox, c.list_id)
    base_count = delivered(a)
    return {
        "id": c.id,
        "campaign_title": c.title,
        "type": c.type,
        "list_id": c.list_id,
        "list_is_active": active,
        "list_name": list_name,
        "subject_line": c.subject,
        "preview_text": str(c.settings.get("preview_text", "")),
        "emails_sent": a.emails_sent,
        "abuse_reports": 0,
        "unsubscribed": len(a.unsubscribes),
        "send_time": c.send_time,
        "rss_last_send": "",
        "bounces": {
            "hard_bounces": a.hard_bounces,
            "soft_bounces": a.soft_bounces,
            "syntax_errors": 0,
        },
        "forwards": {"forwards_count": 0, "forwards_opens": 0},
        "opens": {
            "opens_total": a.opens_total,
            "unique_opens": a.unique_opens,
            "open_rate": _rate(a.unique_opens, base_count),
            "last_open": _ts_or_blank(a.last_open_ts),
        },
        "clicks": {
            "clicks_total": a.clicks_total,
            "unique_clicks": sum(s.unique_clicks for s in a.link_stats),
            "unique_subscriber_clicks": a.unique_subscriber_clicks,
            "click_rate": _rate(a.unique_subscriber_clicks, base_count),
            "last_click": _ts_or_blank(a.last_click_ts),
        },
        "facebook_likes": {"recipient_likes": 0, "unique_likes": 0, "facebook_likes": 0},
        "industry_stats": {
            "type": "Marketing and Advertising",
            "open_rate": 0.2,
            "click_rate": 0.02,
            "bounce_rate": 0.01,
            "unopen_rate": 0.8,
            "unsub_rate": 0.002,
            "abuse_rate": 0.0002,
        },
        "list_stats": _list_stats(sandbox, c.list_id),
        "timewarp": [],
        "timeseries": [],
        "share_report": {"share_url": "", "share_password": ""},
        "ecommerce": {
            "total_orders": 0,
            "total_spent": 0,
            "total_revenue": 0,
            "currency_code": "USD",
        },
        "delivery_status": {"enabled": False},
        "_links": [
            link("parent", f"{base}/reports", schema="Reports/CollectionResponse"),
            link("self", f"{base}/reports/{c.id}", schema="Reports/Response"),
            link("campaign", f"{base}/campaigns/{c.id}"),
            link("email-activity", f"{base}/reports/{c.id}/email-activity"),
            link("sent-to", f"{base}/reports/{c.id}/sent-to"),
            link("unsubscribed", f"{base}/reports/{c.id}/unsubscribed"),
            link("click-details", f"{base}/reports/{c.id}/click-details"),
        ],
    }


def list_reports(request: ApiRequest) -> Reply:
    sandbox, query = request.sandbox, request.query
    sent = [
        c
        for c in store(sandbox).campaigns.values()
        if c.activity is not None and current_status(sandbox, c) in ("sending", "sent")
    ]
    if query.get("type"):
        sent = [c for c in sent if c.type == query["type"]]
    if query.get("since_send_time"):
        since = parse_ts(query["since_send_time"], "since_send_time")
        sent = [c for c in sent if c.send_time >= since]
    if query.get("before_send_time"):
        before = parse_ts(query["before_send_time"], "before_send_time")
        sent = [c for c in sent if c.send_time < before]
    items, total = page(sent, query)
    return Reply(
        {
            "reports": [
                render_report(sandbox, c, c.activity, request.base_url)
                for c in items
                if c.activity is not None
            ],
            "total_items": total,
            "_links": [link("self", f"{request.base_url}/reports")],
        },
        items=len(items),
    )


def get_report(request: ApiRequest) -> Reply:
    c, a = _sent(request.sandbox, request.params["campaign_id"])
    return Reply(render_report(request.sandbox, c, a, request.base_url))


# --- email activity ------------------------------------------------------------------------------


def _email_entry(
    c: Campaign, a: CampaignActivity, i: int, active: bool, since: int | None, base: str
) -> dict[str, Any]:
    email, email_id = a.recipients.pair(i)
    return {
        "campaign_id": c.id,
        "list_id": c.list_id,
        "list_is_active": active,
        "email_id": email_id,
        "email_address": email,
        "activity": a.activity_items(i, since),
        "_links": [
            {
                "rel": "self",
                "href": f"{base}/reports/{c.id}/email-activity/{email_id}",
                "method": "GET",
            }
        ],
    }


def _since(query: Mapping[str, str]) -> int | None:
    value = query.get("since")
    if not value:
        return None
    from datetime import datetime

    return int(datetime.fromisoformat(parse_ts(value, "since")).timestamp())


def email_activity(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    c, a = _sent(sandbox, request.params["campaign_id"])
    count, offset = paging(request.query)
    since = _since(request.query)
    total, indexes = a.email_activity_page(offset, count, since)
    active, _ = _list_bits(sandbox, c.list_id)
    base = request.base_url
    return Reply(
        {
            "emails": [_email_entry(c, a, i, active, since, base) for i in indexes],
            "campaign_id": c.id,
            "total_items": total,
            "_links": _collection_links(base, c.id, "email-activity"),
        },
        items=len(indexes),
    )


def _recipient(a: CampaignActivity, raw: str) -> int:
    key = raw.lower()
    if "@" in key:
        from campaign_bridge.sandbox.mailchimp.activity import subscriber_hash

        key = subscriber_hash(key)
    index = a.recipients.index_of(key)
    if index is None:
        raise not_found()
    return index


def email_activity_member(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    c, a = _sent(sandbox, request.params["campaign_id"])
    i = _recipient(a, request.params["subscriber_hash"])
    active, _ = _list_bits(sandbox, c.list_id)
    return Reply(_email_entry(c, a, i, active, _since(request.query), request.base_url))


# --- sent-to / unsubscribed / click details -----------------------------------------------------


def _merge_fields(sandbox: Sandbox, list_id: str, email_id: str) -> tuple[dict[str, Any], bool]:
    lst = sandbox.lists.get(list_id)
    member = lst.members.get(email_id) if lst is not None else None
    if member is None or lst is None:
        return {}, False
    values = member.merge_fields
    return {f.tag: values.get(f.tag, "") for f in lst.merge_fields.values()}, member.vip


def _sent_to_entry(
    sandbox: Sandbox, c: Campaign, a: CampaignActivity, i: int, active: bool, base: str
) -> dict[str, Any]:
    email, email_id = a.recipients.pair(i)  # one address and one hash per recipient
    merges, vip = _merge_fields(sandbox, c.list_id, email_id)
    return {
        "email_id": email_id,
        "email_address": email,
        "merge_fields": merges,
        "vip": vip,
        "status": a.fate_status(i),
        "open_count": a.open_count[i],
        "last_open": _ts_or_blank(a.last_open[i]),
        "gmt_offset": 0,
        "campaign_id": c.id,
        "list_id": c.list_id,
        "list_is_active": active,
        "_links": [link("self", f"{base}/reports/{c.id}/sent-to/{email_id}")],
    }


def sent_to(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    c, a = _sent(sandbox, request.params["campaign_id"])
    count, offset = paging(request.query)
    total = a.emails_sent
    indexes = range(min(offset, total), min(offset + count, total))
    active, _ = _list_bits(sandbox, c.list_id)
    return Reply(
        {
            "sent_to": [
                _sent_to_entry(sandbox, c, a, i, active, request.base_url) for i in indexes
            ],
            "campaign_id": c.id,
            "total_items": total,
            "_links": _collection_links(request.base_url, c.id, "sent-to"),
        },
        items=len(indexes),
    )


def sent_to_member(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    c, a = _sent(sandbox, request.params["campaign_id"])
    i = _recipient(a, request.params["subscriber_hash"])
    active, _ = _list_bits(sandbox, c.list_id)
    return Reply(_sent_to_entry(sandbox, c, a, i, active, request.base_url))


def _unsub_entry(
    sandbox: Sandbox,
    c: Campaign,
    a: CampaignActivity,
    unsub: tuple[int, int, int],
    active: bool,
    base: str,
) -> dict[str, Any]:
    i, ts, reason = unsub
    email_id = a.recipients.email_id(i)
    merges, vip = _merge_fields(sandbox, c.list_id, email_id)
    return {
        "email_id": email_id,
        "email_address": a.recipients.email(i),
        "merge_fields": merges,
        "vip": vip,
        "timestamp": iso(ts),
        "reason": UNSUBSCRIBE_REASONS[reason],
        "campaign_id": c.id,
        "list_id": c.list_id,
        "list_is_active": active,
        "_links": [link("self", f"{base}/reports/{c.id}/unsubscribed/{email_id}")],
    }


def unsubscribed(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    c, a = _sent(sandbox, request.params["campaign_id"])
    items, total = page(a.unsubscribes, request.query)
    active, _ = _list_bits(sandbox, c.list_id)
    return Reply(
        {
            "unsubscribes": [
                _unsub_entry(sandbox, c, a, u, active, request.base_url) for u in items
            ],
            "campaign_id": c.id,
            "total_items": total,
            "_links": _collection_links(request.base_url, c.id, "unsubscribed"),
        },
        items=len(items),
    )


def unsubscribed_member(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    c, a = _sent(sandbox, request.params["campaign_id"])
    i = _recipient(a, request.params["subscriber_hash"])
    found = a.unsubscribe_of(i)
    if found is None:
        raise not_found()
    active, _ = _list_bits(sandbox, c.list_id)
    return Reply(_unsub_entry(sandbox, c, a, (i, found[0], found[1]), active, request.base_url))


def _link_id(c: Campaign, index: int) -> str:
    # stable 10-hex id per (campaign, link)
    import hashlib

    return hashlib.md5(f"{c.id}:{index}".encode(), usedforsecurity=False).hexdigest()[:10]


def _click_entry(c: Campaign, a: CampaignActivity, index: int, base: str) -> dict[str, Any]:
    stats = a.link_stats[index]
    link_id = _link_id(c, index)
    total_unique = sum(s.unique_clicks for s in a.link_stats)
    return {
        "id": link_id,
        "url": stats.url,
        "total_clicks": stats.total_clicks,
        "click_percentage": _rate(stats.total_clicks, a.clicks_total),
        "unique_clicks": stats.unique_clicks,
        "unique_click_percentage": _rate(stats.unique_clicks, total_unique),
        "last_click": _ts_or_blank(stats.last_click),
        "ab_split": {
            "a": {
                "total_clicks_a": 0,
                "click_percentage_a": 0,
                "unique_clicks_a": 0,
                "unique_click_percentage_a": 0,
            },
            "b": {
                "total_clicks_b": 0,
                "click_percentage_b": 0,
                "unique_clicks_b": 0,
                "unique_click_percentage_b": 0,
            },
        },
        "campaign_id": c.id,
        "_links": [
            link("self", f"{base}/reports/{c.id}/click-details/{link_id}"),
            link("members", f"{base}/reports/{c.id}/click-details/{link_id}/members"),
        ],
    }


def click_details(request: ApiRequest) -> Reply:
    c, a = _sent(request.sandbox, request.params["campaign_id"])
    order = list(range(len(a.links)))
    sort_field = request.query.get("sort_field")
    if sort_field:
        if sort_field not in ("total_clicks", "unique_clicks"):
            raise invalid_resource(
                errors=[{"field": "sort_field", "message": "Value is not one of the enum values"}]
            )
        descending = request.query.get("sort_dir", "ASC").upper() == "DESC"
        order.sort(key=lambda k: getattr(a.link_stats[k], sort_field), reverse=descending)
    items, total = page(order, request.query)
    return Reply(
        {
            "urls_clicked": [_click_entry(c, a, k, request.base_url) for k in items],
            "campaign_id": c.id,
            "total_items": total,
            "_links": _collection_links(request.base_url, c.id, "click-details"),
        },
        items=len(items),
    )


def _link_index(c: Campaign, a: CampaignActivity, link_id: str) -> int:
    for k in range(len(a.links)):
        if _link_id(c, k) == link_id:
            return k
    raise not_found()


def click_detail(request: ApiRequest) -> Reply:
    c, a = _sent(request.sandbox, request.params["campaign_id"])
    k = _link_index(c, a, request.params["link_id"])
    return Reply(_click_entry(c, a, k, request.base_url))


def click_members(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    c, a = _sent(sandbox, request.params["campaign_id"])
    k = _link_index(c, a, request.params["link_id"])
    link_id = request.params["link_id"]
    items, total = page(a.link_stats[k].clickers, request.query)
    active, _ = _list_bits(sandbox, c.list_id)
    members = []
    lst = sandbox.lists.get(c.list_id)
    for i, clicks in items:
        email_id = a.recipients.email_id(i)
        merges, vip = _merge_fields(sandbox, c.list_id, email_id)
        member = lst.members.get(email_id) if lst is not None else None
        members.append(
            {
                "email_id": email_id,
                "email_address": a.recipients.email(i),
                "merge_fields": merges,
                "vip": vip,
                "clicks": clicks,
                "campaign_id": c.id,
                "url_id": link_id,
                "list_id": c.list_id,
                "list_is_active": active,
                "contact_status": member.status if member is not None else "",
                "_links": [
                    link(
                        "self",
                        f"{request.base_url}/reports/{c.id}/click-details/{link_id}/members/{email_id}",
                    )
                ],
            }
        )
    return Reply(
        {
            "members": members,
            "campaign_id": c.id,
            "total_items": total,
            "_links": _collection_links(request.base_url, c.id, f"click-details/{link_id}"),
        },
        items=len(members),
    )


routes = [
    Route("GET", "/reports", list_reports),
    Route("GET", "/reports/{campaign_id}", get_report),
    Route("GET", "/reports/{campaign_id}/email-activity", email_activity),
    Route("GET", "/reports/{campaign_id}/email-activity/{subscriber_hash}", email_activity_member),
    Route("GET", "/reports/{campaign_id}/sent-to", sent_to),
    Route("GET", "/reports/{campaign_id}/sent-to/{subscriber_hash}", sent_to_member),
    Route("GET", "/reports/{campaign_id}/unsubscribed", unsubscribed),
    Route("GET", "/reports/{campaign_id}/unsubscribed/{subscriber_hash}", unsubscribed_member),
    Route("GET", "/reports/{campaign_id}/click-details", click_details),
    Route("GET", "/reports/{campaign_id}/click-details/{link_id}", click_detail),
    Route("GET", "/reports/{campaign_id}/click-details/{link_id}/members", click_members),
]


# --- member activity feed ---------------------------------------------------------------------


def activity_feed(sandbox: Sandbox, list_id: str, email_id: str) -> list[dict[str, Any]]:
    """The member's campaign activity (activity-feed item shape), newest first."""
    items: list[tuple[int, int, dict[str, Any]]] = []
    for c in store(sandbox).campaigns.values():
        a = c.activity
        if a is None or c.list_id != list_id:
            continue
        i = a.recipients.index_of(email_id)
        if i is None:
            continue
        common = {"campaign_id": c.id, "campaign_title": c.title}
        seq = 0
        items.append(
            (
                a.send_ts,
                seq,
                {"activity_type": "sent", "created_at_timestamp": iso(a.send_ts)} | common,
            )
        )
        opened = False
        for e in a.events(i):
            seq += 1
            item: dict[str, Any] = {"created_at_timestamp": iso(e.ts)} | common
            if e.kind == OPEN:
                opened = True
                item["activity_type"] = "open"
            elif e.kind == CLICK:
                item["activity_type"] = "click"
                item["link_clicked"] = a.links[e.link]
            else:
                item["activity_type"] = "bounce"
                item["bounce_type"] = "hard" if e.kind == HARD_BOUNCE else "soft"
                item["bounce_has_open_activity"] = opened
            items.append((e.ts, seq, {"activity_type": item.pop("activity_type")} | item))
        unsub = a.unsubscribe_of(i)
        if unsub is not None:
            items.append(
                (
                    unsub[0],
                    seq + 1,
                    {"activity_type": "unsub", "created_at_timestamp": iso(unsub[0])}
                    | common
                    | {
                        "is_admin_unsubscribed": False,
                        "unsubscribe_reason": UNSUBSCRIBE_REASONS[unsub[1]],
                    },
                )
            )
    items.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [item for _, _, item in items]


_LEGACY_ACTION = {
    "sent": "sent",
    "open": "open",
    "click": "click",
    "bounce": "bounce",
    "unsub": "unsub",
}


def member_activity(sandbox: Sandbox, list_id: str, email_id: str) -> list[dict[str, Any]]:
    """The same events in the older ``/activity`` shape (``action``, ``timestamp``, ...)."""
    out = []
    for item in activity_feed(sandbox, list_id, email_id):
        entry: dict[str, Any] = {
            "action": _LEGACY_ACTION[item["activity_type"]],
            "timestamp": item["created_at_timestamp"],
            "campaign_id": item["campaign_id"],
            "title": item["campaign_title"],
        }
        if "link_clicked" in item:
            entry["url"] = item["link_clicked"]
        if "bounce_type" in item:
            entry["type"] = item["bounce_type"]
        out.append(entry)
    return out


def install(sandbox: Sandbox) -> None:
    sandbox.extensions["list_campaign_stats"] = lambda list_id: audience_campaign_stats(
        sandbox, list_id
    )
    sandbox.extensions["activity_feed"] = lambda list_id, email_id: activity_feed(
        sandbox, list_id, email_id
    )
    sandbox.extensions["member_activity"] = lambda list_id, email_id: member_activity(
        sandbox, list_id, email_id
    )


control_routes: list[Route] = []
_ = Problem
