"""Email campaigns (create, list, get, sendNow), the activity a send generates, and statistics.

Sending a campaign (``POST /emailCampaigns/{id}/sendNow``) picks its recipients — members of
``recipients.listIds``, minus ``exclusionListIds``, minus blocklisted contacts and those who
unsubscribed from that list — and generates their activity deterministically: each recipient's
outcome comes from a random source seeded with ``(config.seed, campaign id, contact id)``, so
the same account sent the same campaign gives the same events. Outcomes follow ``RATES``
(changeable with the control API): a hard or soft bounce, else delivered, then maybe opened,
clicked, unsubscribed or marked as spam. Event times fall within the first hours after the
send; they are visible at once. Unsubscriptions, hard bounces and complaints blocklist the
contact (``emailBlacklisted``), as Brevo's default unsubscribe link and bounce handling do.

Per-contact events: ``GET /contacts/{identifier}/campaignStats`` and the ``statistics`` of
``GET /contacts/{identifier}``; per campaign: ``statistics`` on ``GET /emailCampaigns[/{id}]``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from typing import Any

from campaign_bridge.sandbox.brevo.contacts import resolve, set_blacklisted, stats_window
from campaign_bridge.sandbox.brevo.model import BrevoSandbox, Contact
from campaign_bridge.sandbox.brevo.wire import (
    ApiRequest,
    BrevoError,
    Reply,
    Route,
    invalid,
    missing,
    not_found,
    paging,
    parse_day,
    qbool,
    stamp,
)

__all__ = [
    "RATES",
    "Activity",
    "Campaign",
    "book",
    "contact_statistics",
    "record_event",
    "routes",
    "send_campaign",
]

#: default outcome probabilities: bounces of recipients; the rest of delivered ones, except
#: ``click`` (of openers)
RATES: dict[str, float] = {
    "hard_bounce": 0.02,
    "soft_bounce": 0.03,
    "open": 0.45,
    "click": 0.3,
    "unsubscribe": 0.02,
    "spam": 0.005,
}
STATUSES = (
    "draft",
    "sent",
    "archive",
    "queued",
    "suspended",
    "in_process",
    "in_review",
    "cancelling",
    "cancelled",
)
SENDING_IP = "185.41.28.109"
LINK = "https://www.example.org/offer"
_STATE = "campaigns"


@dataclass
class Campaign:
    id: int
    name: str
    subject: str
    sender: dict[str, Any]
    html_content: str
    created_at: float
    modified_at: float
    tag: str = ""
    reply_to: str = ""
    list_ids: list[int] = field(default_factory=list)
    exclusion_list_ids: list[int] = field(default_factory=list)
    status: str = "draft"
    scheduled_at: str = ""
    sent_at: float | None = None


@dataclass(slots=True)
class Activity:
    """One event: ``kind`` is ``sent``, ``delivered``, ``opened``, ``clicked``,
    ``hard_bounce``, ``soft_bounce``, ``unsubscribed``, ``spam`` or ``admin_unsubscribed``."""

    kind: str
    campaign_id: int
    contact_id: int
    email: str
    at: float
    list_ids: list[int] = field(default_factory=list)
    ip: str = ""
    url: str = ""
    reason: str = ""


@dataclass
class CampaignBook:
    campaigns: dict[int, Campaign] = field(default_factory=dict)
    events: list[Activity] = field(default_factory=list)
    #: contact id -> positions in ``events``; campaign id -> positions in ``events``
    by_contact: dict[int, list[int]] = field(default_factory=dict)
    by_campaign: dict[int, list[int]] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=lambda: dict(RATES))
    #: (campaign id, list id or None) -> (number of the campaign's events, statistics)
    stats_cache: dict[tuple[int, int | None], tuple[int, dict[str, Any]]] = field(
        default_factory=dict
    )
    #: campaign id -> (number of its events, its events of each kind by time and contact)
    order_cache: dict[int, tuple[int, dict[str, list[Activity]]]] = field(default_factory=dict)


def book(sandbox: BrevoSandbox) -> CampaignBook:
    found = sandbox.extensions.get(_STATE)
    if found is None:
        found = sandbox.extensions[_STATE] = CampaignBook()
    assert isinstance(found, CampaignBook)
    return found


def record_event(sandbox: BrevoSandbox, event: Activity, campaign: Campaign | None) -> None:
    """Keep the event and tell the webhooks (``extensions["marketing_event"]``)."""
    ledger = book(sandbox)
    ledger.by_contact.setdefault(event.contact_id, []).append(len(ledger.events))
    ledger.by_campaign.setdefault(event.campaign_id, []).append(len(ledger.events))
    ledger.events.append(event)
    hook = sandbox.extensions.get("marketing_event")
    if callable(hook):
        hook(event, campaign)


# --- sending -------------------------------------------------------------------------------------


def recipients(sandbox: BrevoSandbox, campaign: Campaign) -> list[Contact]:
    excluded: set[int] = set()
    for list_id in campaign.exclusion_list_ids:
        lst = sandbox.lists.get(list_id)
        if lst is not None:
            excluded.update(lst.members)
    chosen: dict[int, Contact] = {}
    for list_id in campaign.list_ids:
        lst = sandbox.lists.get(list_id)
        if lst is None:
            continue
        for cid in lst.members:
            contact = sandbox.contacts[cid]
            if (
                cid in excluded
                or cid in chosen
                or contact.email_blacklisted
                or not contact.email
                or (contact.list_unsubscribed and list_id in contact.list_unsubscribed)
            ):
                continue
            chosen[cid] = contact
    return sorted(chosen.values(), key=lambda c: c.id)


def send_campaign(sandbox: BrevoSandbox, campaign: Campaign) -> int:
    """Send now: generate every recipient's activity; returns the number of recipients."""
    if campaign.status == "sent":
        raise BrevoError(400, "campaign_sent", "Campaign has already been sent")
    if not campaign.subject or not campaign.html_content:
        raise invalid("Campaign subject and content are required to send it")
    if not campaign.list_ids:
        raise invalid("Campaign recipients are missing")
    people = recipients(sandbox, campaign)
    now = sandbox.now()
    campaign.status, campaign.sent_at, campaign.modified_at = "sent", now, now
    rates = book(sandbox).rates
    for contact in people:
        _outcome(sandbox, campaign, contact, now, rates)
    return len(people)


def _outcome(
    sandbox: BrevoSandbox,
    campaign: Campaign,
    contact: Contact,
    sent: float,
    rates: Mapping[str, float],
) -> None:
    rng = random.Random(f"{sandbox.config.seed}:{campaign.id}:{contact.id}")
    lists = [i for i in campaign.list_ids if i in contact.list_ids]
    email = contact.email or ""

    def event(kind: str, at: float, **extra: Any) -> None:
        record_event(
            sandbox, Activity(kind, campaign.id, contact.id, email, at, lists, **extra), campaign
        )

    ip = f"203.0.113.{rng.randrange(1, 255)}"
    event("sent", sent)
    roll = rng.random()
    if roll < rates["hard_bounce"]:
        event("hard_bounce", sent + rng.randrange(1, 30), reason="550 5.1.1 mailbox unknown")
        set_blacklisted(sandbox, contact, True, reason="hard_bounce", source="user")
        return
    if roll < rates["hard_bounce"] + rates["soft_bounce"]:
        event("soft_bounce", sent + rng.randrange(1, 30), reason="452 4.2.2 mailbox full")
        return
    delivered = sent + rng.randrange(1, 60)
    event("delivered", delivered)
    if rng.random() >= rates["open"]:
        return
    opened = delivered + rng.randrange(60, 7200)
    event("opened", opened, ip=ip)
    if rng.random() < rates["click"]:
        event("clicked", opened + rng.randrange(5, 600), ip=ip, url=LINK)
    if rng.random() < rates["unsubscribe"]:
        event("unsubscribed", opened + rng.randrange(10, 900), ip=ip)
        set_blacklisted(sandbox, contact, True, reason="unsubscribe", source="user")
    elif rng.random() < rates["spam"]:
        event("spam", opened + rng.randrange(10, 900), reason="undesired")
        set_blacklisted(sandbox, contact, True, reason="spam", source="user")


# --- statistics ----------------------------------------------------------------------------------


def _stats(events: Iterable[Activity]) -> dict[str, Any]:
    """The statistics object of ``events``, in one pass (recipients per kind, and views)."""
    who: dict[str, set[int]] = {}
    views = 0
    for e in events:
        found = who.get(e.kind)
        if found is None:
            found = who[e.kind] = set()
        found.add(e.contact_id)
        if e.kind == "opened":
            views += 1

    def unique(kind: str) -> int:
        return len(who.get(kind, ()))

    delivered = unique("delivered")
    opens = unique("opened")
    return {
        "sent": unique("sent"),
        "delivered": delivered,
        "hardBounces": unique("hard_bounce"),
        "softBounces": unique("soft_bounce"),
        "uniqueViews": opens,
        "viewed": views,
        "trackableViews": opens,
        "trackableViewsRate": round(100 * opens / delivered, 2) if delivered else 0,
        "estimatedViews": opens,
        "opensRate": round(100 * opens / delivered, 2) if delivered else 0,
        "appleMppOpens": 0,
        "uniqueClicks": unique("clicked"),
        "clickers": unique("clicked"),
        "unsubscriptions": unique("unsubscribed"),
        "complaints": unique("spam"),
        "deferred": 0,
        "returnBounce": 0,
    }


def _cached_stats(sandbox: BrevoSandbox, campaign_id: int, list_id: int | None) -> dict[str, Any]:
    """``_stats`` of the campaign's events (those of ``list_id`` if given). A campaign's events
    are only ever appended, so their number tells whether a cached result still holds."""
    ledger = book(sandbox)
    positions = ledger.by_campaign.get(campaign_id, ())
    key = (campaign_id, list_id)
    cached = ledger.stats_cache.get(key)
    if cached is not None and cached[0] == len(positions):
        return dict(cached[1])
    events = (ledger.events[i] for i in positions)
    stats = _stats(events if list_id is None else (e for e in events if list_id in e.list_ids))
    ledger.stats_cache[key] = (len(positions), stats)
    return dict(stats)


def _campaign_events(sandbox: BrevoSandbox, campaign_id: int) -> list[Activity]:
    ledger = book(sandbox)
    return [ledger.events[i] for i in ledger.by_campaign.get(campaign_id, ())]


def campaign_statistics(
    sandbox: BrevoSandbox, campaign: Campaign, which: str | None
) -> dict[str, Any]:
    if which == "globalStats":
        return {"globalStats": _cached_stats(sandbox, campaign.id, None)}
    if which == "statsByDomain":
        return {"statsByDomain": {}}
    links: dict[str, int] = {}
    for e in _campaign_events(sandbox, campaign.id):
        if e.kind == "clicked":
            links[e.url] = links.get(e.url, 0) + 1
    if which == "linksStats":
        return {"linksStats": links}
    return {
        "globalStats": _cached_stats(sandbox, campaign.id, None),
        "campaignStats": [
            {"listId": list_id, **_cached_stats(sandbox, campaign.id, list_id)}
            for list_id in campaign.list_ids
        ],
        "mirrorClick": 0,
        "remaining": 0,
        "linksStats": links,
        "statsByDomain": {},
        "statsByDevice": {},
        "statsByBrowser": {},
    }


def list_campaign_stats(sandbox: BrevoSandbox, list_id: int) -> list[dict[str, Any]]:
    return [
        {"campaignId": campaign.id, "stats": _cached_stats(sandbox, campaign.id, list_id)}
        for campaign in book(sandbox).campaigns.values()
        if campaign.status == "sent" and list_id in campaign.list_ids
    ]


def contact_statistics(
    sandbox: BrevoSandbox, contact: Contact, start: float | None, end: float | None
) -> dict[str, Any]:
    """The contact's marketing events in [start, end) (default: the last 90 days); keys
    without events are left out, so a contact with no history gives ``{}``."""
    ledger = book(sandbox)
    if start is None or end is None:
        now = sandbox.now()
        start, end = now - 90 * 86400, now + 7200
    out: dict[str, Any] = {}
    opened: dict[int, dict[str, Any]] = {}
    clicked: dict[int, dict[str, Any]] = {}
    for position in ledger.by_contact.get(contact.id, ()):
        e = ledger.events[position]
        if not start <= e.at < end:
            continue
        when = stamp(e.at)
        simple = {
            "sent": "messagesSent",
            "delivered": "delivered",
            "hard_bounce": "hardBounces",
            "soft_bounce": "softBounces",
            "spam": "complaints",
        }
        if e.kind in simple:
            out.setdefault(simple[e.kind], []).append(
                {"campaignId": e.campaign_id, "eventTime": when}
            )
        elif e.kind == "opened":
            item = opened.setdefault(
                e.campaign_id,
                {"campaignId": e.campaign_id, "count": 0, "eventTime": when, "ip": e.ip},
            )
            item["count"] += 1
        elif e.kind == "clicked":
            item = clicked.setdefault(e.campaign_id, {"campaignId": e.campaign_id, "links": []})
            item["links"].append({"count": 1, "eventTime": when, "ip": e.ip, "url": e.url})
        elif e.kind == "unsubscribed":
            unsubs = out.setdefault(
                "unsubscriptions", {"userUnsubscription": [], "adminUnsubscription": []}
            )
            unsubs["userUnsubscription"].append(
                {"campaignId": e.campaign_id, "eventTime": when, "ip": e.ip}
            )
        elif e.kind == "admin_unsubscribed":
            unsubs = out.setdefault(
                "unsubscriptions", {"userUnsubscription": [], "adminUnsubscription": []}
            )
            unsubs["adminUnsubscription"].append({"eventTime": when, "ip": e.ip})
    if opened:
        out["opened"] = list(opened.values())
    if clicked:
        out["clicked"] = list(clicked.values())
    return out


# --- rendering and handlers ----------------------------------------------------------------------


def render_campaign(
    sandbox: BrevoSandbox, campaign: Campaign, *, statistics: str | None, html: bool = True
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": campaign.id,
        "name": campaign.name,
        "subject": campaign.subject,
        "type": "classic",
        "status": campaign.status,
        "scheduledAt": campaign.scheduled_at,
        "testSent": False,
        "header": "[DEFAULT_HEADER]",
        "footer": "[DEFAULT_FOOTER]",
        "sender": dict(campaign.sender),
        "replyTo": campaign.reply_to or campaign.sender.get("email", ""),
        "toField": "",
        "shareLink": "",
        "tag": campaign.tag,
        "createdAt": stamp(campaign.created_at),
        "modifiedAt": stamp(campaign.modified_at),
        "inlineImageActivation": False,
        "mirrorActive": False,
        "recipients": {
            "lists": list(campaign.list_ids),
            "exclusionLists": list(campaign.exclusion_list_ids),
        },
        "statistics": campaign_statistics(sandbox, campaign, statistics),
    }
    if html:
        out["htmlContent"] = campaign.html_content
    if campaign.sent_at is not None:
        out["sentDate"] = stamp(campaign.sent_at)
    return out


def _campaign(request: ApiRequest) -> Campaign:
    raw = request.params["campaign_id"]
    found = book(request.sandbox).campaigns.get(int(raw)) if raw.isdigit() else None
    if found is None:
        raise not_found("Campaign ID does not exist")
    return found


def create_campaign(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    body = request.json_object()
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        raise missing("name is missing")
    sender = body.get("sender")
    if not isinstance(sender, Mapping) or not (sender.get("email") or sender.get("id")):
        raise missing("sender is missing")
    recipients_spec = body.get("recipients") or {}
    if not isinstance(recipients_spec, Mapping):
        raise invalid("recipients should be an object")
    list_ids = list(recipients_spec.get("listIds") or [])
    exclusions = list(recipients_spec.get("exclusionListIds") or [])
    for list_id in [*list_ids, *exclusions]:
        if list_id not in sandbox.lists:
            raise invalid("List ID does not exist")
    now = sandbox.now()
    campaign = Campaign(
        id=sandbox.ids.next("campaign"),
        name=body["name"].strip(),
        subject=str(body.get("subject") or ""),
        sender={k: v for k, v in sender.items() if k in ("name", "email", "id")},
        html_content=str(body.get("htmlContent") or ""),
        created_at=now,
        modified_at=now,
        tag=str(body.get("tag") or ""),
        reply_to=str(body.get("replyTo") or ""),
        list_ids=list_ids,
        exclusion_list_ids=exclusions,
        scheduled_at=str(body.get("scheduledAt") or ""),
        status="queued" if body.get("scheduledAt") else "draft",
    )
    book(sandbox).campaigns[campaign.id] = campaign
    return Reply({"id": campaign.id}, status=201)


def _statistics_param(request: ApiRequest) -> str | None:
    which = request.query.get("statistics")
    if which and which not in (
        "globalStats",
        "linksStats",
        "statsByDomain",
        "statsByDevice",
        "statsByBrowser",
    ):
        raise invalid("statistics must be globalStats, linksStats or statsByDomain")
    return which


def list_campaigns(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    limit, offset, sort = paging(request, 50, 100)
    query = request.query
    rows = list(book(sandbox).campaigns.values())
    if query.get("type") and query["type"] not in ("classic", "trigger"):
        raise invalid("type must be classic or trigger")
    if query.get("type") == "trigger":
        rows = []
    status = query.get("status")
    if status:
        wanted = {"inProcess": "in_process", "inReview": "in_review"}.get(status, status)
        if wanted not in STATUSES:
            raise invalid("status is not valid")
        rows = [c for c in rows if c.status == wanted]
    if query.get("startDate") or query.get("endDate"):
        if not (query.get("startDate") and query.get("endDate")):
            raise invalid("startDate and endDate must be passed together")
        start = parse_day(query["startDate"][:10], "startDate").timestamp()
        end = parse_day(query["endDate"][:10], "endDate").timestamp() + 86400
        rows = [c for c in rows if c.sent_at is not None and start <= c.sent_at < end]
    rows.sort(key=lambda c: (c.created_at, c.id), reverse=sort == "desc")
    chosen = rows[offset : offset + limit]
    html = not qbool(query, "excludeHtmlContent")
    which = _statistics_param(request)
    items = [render_campaign(sandbox, c, statistics=which, html=html) for c in chosen]
    return Reply({"campaigns": items, "count": len(rows)}, items=len(items))


def get_campaign(request: ApiRequest) -> Reply:
    campaign = _campaign(request)
    return Reply(render_campaign(request.sandbox, campaign, statistics=_statistics_param(request)))


def send_now(request: ApiRequest) -> Reply:
    campaign = _campaign(request)
    count = send_campaign(request.sandbox, campaign)
    return Reply(status=204, items=count)


#: recipientsType -> (event kinds that put a recipient in, kinds that keep one out)
RECIPIENT_TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "all": (("sent",), ()),
    "openers": (("opened",), ()),
    "nonOpeners": (("sent",), ("opened",)),
    "clickers": (("clicked",), ()),
    "nonClickers": (("sent",), ("clicked",)),
    "softBounces": (("soft_bounce",), ()),
    "hardBounces": (("hard_bounce",), ()),
    "unsubscribed": (("unsubscribed",), ()),
}


def recipients_csv(events: Mapping[str, list[Activity]], recipients_type: str) -> str:
    """The export file: ``CONTACT_ID;EMAIL;EVENT;EVENT_TIME``, one row per recipient (the first
    qualifying event), in event order (time, then contact: ``events`` holds each kind's events
    in that order). The layout is the sandbox's: Brevo does not document its columns."""
    wanted, unwanted = RECIPIENT_TYPES[recipients_type]
    excluded = {e.contact_id for kind in unwanted for e in events.get(kind, ())}
    chosen = [e for kind in wanted for e in events.get(kind, ())]
    if len(wanted) > 1:
        chosen.sort(key=_ORDER)
    rows: dict[int, str] = {}
    stamps: dict[float, str] = {}
    for e in chosen:
        if e.contact_id not in excluded and e.contact_id not in rows:
            when = stamps.get(e.at)
            if when is None:
                when = stamps[e.at] = stamp(e.at)
            rows[e.contact_id] = f"{e.contact_id};{e.email};{e.kind};{when}\n"
    return "CONTACT_ID;EMAIL;EVENT;EVENT_TIME\n" + "".join(rows.values())


_ORDER = attrgetter("at", "contact_id")


def _events_in_order(sandbox: BrevoSandbox, campaign_id: int) -> dict[str, list[Activity]]:
    """The campaign's events of each kind by time, then contact (kept while no event is added
    to the campaign)."""
    ledger = book(sandbox)
    positions = ledger.by_campaign.get(campaign_id, ())
    cached = ledger.order_cache.get(campaign_id)
    if cached is not None and cached[0] == len(positions):
        return cached[1]
    by_kind: dict[str, list[Activity]] = {}
    for e in sorted((ledger.events[i] for i in positions), key=_ORDER):
        by_kind.setdefault(e.kind, []).append(e)
    ledger.order_cache[campaign_id] = (len(positions), by_kind)
    return by_kind


def export_recipients(request: ApiRequest) -> Reply:
    from campaign_bridge.sandbox.brevo.imports import queue_export

    campaign = _campaign(request)
    body = request.json_object()
    kind = body.get("recipientsType")
    if kind is None:
        raise missing("recipientsType is missing")
    if kind not in RECIPIENT_TYPES:
        raise invalid(f"recipientsType must be one of {', '.join(RECIPIENT_TYPES)}")
    if campaign.status != "sent":
        raise invalid("Campaign is not sent yet")
    text = recipients_csv(_events_in_order(request.sandbox, campaign.id), kind)
    process = queue_export(request.sandbox, "CAMPAIGN_USER_DETAILS", text, body.get("notifyURL"))
    return Reply({"processId": process.id}, status=202)


def contact_campaign_stats(request: ApiRequest) -> Reply:
    contact = resolve(request)
    start, end = stats_window(request.query, request.sandbox.now())
    return Reply(contact_statistics(request.sandbox, contact, start, end))


# --- state ---------------------------------------------------------------------------------------


def _dump(sandbox: BrevoSandbox) -> Callable[[], Any]:
    def dump() -> Any:
        ledger = book(sandbox)
        return {
            "campaigns": [asdict(c) for c in ledger.campaigns.values()],
            "events": [asdict(e) for e in ledger.events],
            "rates": dict(ledger.rates),
        }

    return dump


def _load(sandbox: BrevoSandbox) -> Callable[[Any], None]:
    def load(data: Any) -> None:
        ledger = book(sandbox)
        ledger.campaigns = {c["id"]: Campaign(**c) for c in data.get("campaigns", [])}
        ledger.events, ledger.by_contact, ledger.by_campaign = [], {}, {}
        for item in data.get("events", []):
            position = len(ledger.events)
            ledger.by_contact.setdefault(item["contact_id"], []).append(position)
            ledger.by_campaign.setdefault(item["campaign_id"], []).append(position)
            ledger.events.append(Activity(**item))
        ledger.rates = {**RATES, **data.get("rates", {})}

    return load


def install(sandbox: BrevoSandbox) -> None:
    sandbox.extensions["contact_statistics"] = lambda c, s, e: contact_statistics(sandbox, c, s, e)
    sandbox.extensions["list_campaign_stats"] = lambda list_id: list_campaign_stats(
        sandbox, list_id
    )

    def reset() -> None:
        sandbox.extensions[_STATE] = CampaignBook()

    sandbox.register_state(_STATE, _dump(sandbox), _load(sandbox), reset)


routes = [
    Route("GET", "/emailCampaigns", list_campaigns),
    Route("POST", "/emailCampaigns", create_campaign),
    Route("GET", "/emailCampaigns/{campaign_id}", get_campaign),
    Route("POST", "/emailCampaigns/{campaign_id}/sendNow", send_now),
    Route("POST", "/emailCampaigns/{campaign_id}/exportRecipients", export_recipients),
    Route("GET", "/contacts/{identifier}/campaignStats", contact_campaign_stats),
]
