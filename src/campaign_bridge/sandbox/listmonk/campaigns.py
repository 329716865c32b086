"""Campaigns: ``/api/campaigns`` (create, list, get, update, delete, status) and
``/api/campaigns/analytics/{views|clicks|bounces|links}``.

A campaign set ``running`` picks its recipients as listmonk's send query does (subscriber not
blocklisted; on double opt-in lists only ``confirmed``, on single opt-in lists anything but
``unsubscribed``) and is ``finished`` ``campaign_send_seconds`` later on the sandbox clock.
Finishing generates its activity from the seed: each recipient bounces, views and clicks with
the probabilities in ``sandbox.rates`` (a seeded generator per campaign, so a campaign's
activity does not depend on what else happened). Bounces go through the bounce actions.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from typing import Any

from campaign_bridge.sandbox.listmonk.bounces import record_bounce
from campaign_bridge.sandbox.listmonk.model import Campaign, ListmonkSandbox
from campaign_bridge.sandbox.listmonk.wire import (
    ApiRequest,
    ListmonkError,
    Reply,
    Route,
    bad,
    data,
    ids_of,
    not_found,
    paged,
    parse_when,
    path_id,
    stamp,
)

__all__ = ["create_campaign", "finish_due", "recipients", "routes", "set_status"]

CONTENT_TYPES = ("richtext", "html", "markdown", "plain", "visual")
CAMPAIGN_STATUSES = ("draft", "scheduled", "running", "paused", "cancelled", "finished")
_HREF = re.compile(r"""href=["']([^"']+)["']""")
DEFAULT_FROM = "listmonk <noreply@listmonk.yoursite.com>"


def recipients(sandbox: ListmonkSandbox, campaign: Campaign) -> list[int]:
    out: dict[int, None] = {}
    for list_id in campaign.list_ids:
        lst = sandbox.lists.get(list_id)
        if lst is None:
            continue
        for sub_id in lst.members:
            sub = sandbox.subscribers[sub_id]
            status = sub.lists[list_id].status
            if sub.status == "blocklisted":
                continue
            if (lst.optin == "double" and status == "confirmed") or (
                lst.optin != "double" and status != "unsubscribed"
            ):
                out[sub_id] = None
    return sorted(out)


def render(sandbox: ListmonkSandbox, c: Campaign, *, body: bool = True) -> dict[str, Any]:
    bounces = sum(1 for b in sandbox.bounces.values() if b.campaign_id == c.id)
    return {
        "id": c.id,
        "created_at": stamp(c.created_at),
        "updated_at": stamp(c.updated_at),
        "views": len(c.views),
        "clicks": len(c.clicks),
        "bounces": bounces,
        "lists": [
            {"id": i, "name": sandbox.lists[i].name} for i in c.list_ids if i in sandbox.lists
        ],
        "media": [],
        "started_at": stamp(c.started_at) if c.started_at else None,
        "to_send": c.to_send,
        "sent": c.sent,
        "uuid": c.uuid,
        "type": c.type,
        "name": c.name,
        "subject": c.subject,
        "from_email": c.from_email,
        "body": c.body if body else "",
        "altbody": c.altbody,
        "send_at": stamp(c.send_at) if c.send_at else None,
        "status": c.status,
        "content_type": c.content_type,
        "tags": list(c.tags),
        "headers": list(c.headers),
        "template_id": c.template_id,
        "messenger": c.messenger,
        "archive": False,
        "archive_slug": None,
        "archive_template_id": None,
        "archive_meta": {},
        "attribs": {},
    }


def _fields(sandbox: ListmonkSandbox, body: dict[str, Any]) -> dict[str, Any]:
    """listmonk's ``validateCampaignFields``, in its order."""
    from_email = str(body.get("from_email") or "") or DEFAULT_FROM
    if "@" not in from_email:
        raise bad("Invalid `from_email`.")
    name = str(body.get("name") or "")
    if not 1 <= len(name) <= 200:
        raise bad("Invalid length for name.")
    subject = str(body.get("subject") or "")
    if not 1 <= len(subject) <= 5000:
        raise bad("Invalid length for subject.")
    content_type = str(body.get("content_type") or "richtext")
    if content_type not in CONTENT_TYPES:
        raise ListmonkError(
            500,
            f'Error creating Campaign: invalid input value for enum content_type: "{content_type}"',
        )
    send_at = None
    if body.get("send_at"):
        send_at = parse_when(str(body["send_at"]))
        if send_at is None or send_at < sandbox.now():
            raise bad("Scheduled date should be in the future.")
    lists = body.get("lists") or []
    if not isinstance(lists, list) or not lists:
        raise bad("Invalid list IDs.")
    messenger = str(body.get("messenger") or "email")
    if messenger != "email":
        raise bad(f"Unknown messenger {messenger}.")
    return {
        "name": name,
        "subject": subject,
        "from_email": from_email,
        "content_type": content_type,
        "body": str(body.get("body") or ""),
        "altbody": body.get("altbody"),
        "send_at": send_at,
        "list_ids": [int(i) for i in lists],
        "tags": [str(t) for t in body.get("tags") or []],
        "template_id": int(body.get("template_id") or 1),
        "messenger": messenger,
        "headers": list(body.get("headers") or []),
    }


def create_campaign(sandbox: ListmonkSandbox, body: dict[str, Any]) -> Campaign:
    fields = _fields(sandbox, body)
    known = [i for i in fields["list_ids"] if i in sandbox.lists]
    if not known:
        raise bad("There are no subscribers in the selected lists to create the campaign.")
    fields["list_ids"] = known
    kind = str(body.get("type") or "regular")
    if kind == "optin" and not any(sandbox.lists[i].optin == "double" for i in known):
        raise bad("No opt-in lists found to create campaign.")
    now = sandbox.now()
    campaign = Campaign(
        id=sandbox.ids.next("campaign"),
        uuid=sandbox.new_uuid(),
        type=kind,
        status="draft",
        created_at=now,
        updated_at=now,
        **fields,
    )
    sandbox.campaigns[campaign.id] = campaign
    return campaign


def set_status(sandbox: ListmonkSandbox, campaign: Campaign, status: str) -> None:
    """listmonk's ``UpdateCampaignStatus``: its transition checks, then ``update-campaign-status``
    (``running`` on a campaign with ``send_at`` becomes ``scheduled``; any other value of the
    enum, ``finished`` included, is written unchecked; a value outside it is a 500)."""
    current = campaign.status
    message = ""
    if status == "draft" and current != "scheduled":
        message = "Only scheduled campaigns can be saved as drafts."
    elif status == "scheduled":
        if current not in ("draft", "paused"):
            message = "Only draft or paused campaigns can be scheduled."
        if campaign.send_at is None:
            message = "Campaign needs a date to be scheduled."
    elif status == "running" and current not in ("paused", "draft"):
        message = "Only paused campaigns and drafts can be started."
    elif status == "paused" and current != "running":
        message = "Only active campaigns can be paused."
    elif status == "cancelled" and current not in ("running", "paused"):
        message = "Only active campaigns can be cancelled."
    if message:
        raise bad(message)
    if status not in CAMPAIGN_STATUSES:
        raise ListmonkError(
            500,
            f'Error updating Campaign: invalid input value for enum campaign_status: "{status}"',
        )
    if status == "running" and campaign.send_at is not None:
        status = "scheduled"
    now = sandbox.now()
    campaign.status = status
    campaign.updated_at = now
    if status == "running":
        if campaign.started_at is None:
            campaign.started_at = now
            campaign.to_send = len(recipients(sandbox, campaign))
        campaign.finish_at = now + sandbox.config.campaign_send_seconds
    else:
        campaign.finish_at = None


def _links(campaign: Campaign) -> list[str]:
    found = list(dict.fromkeys(_HREF.findall(campaign.body)))
    return found or [f"https://example.com/campaign/{campaign.id}"]


def _finish(sandbox: ListmonkSandbox, campaign: Campaign) -> None:
    rng = random.Random(f"{sandbox.config.seed}:{campaign.id}")
    rates = sandbox.rates
    end = campaign.finish_at or sandbox.now()
    spread = sandbox.config.activity_spread_seconds
    links = _links(campaign)
    targets = recipients(sandbox, campaign)
    campaign.to_send = max(campaign.to_send, len(targets))
    campaign.sent = len(targets)
    campaign.status = "finished"
    campaign.updated_at = end
    campaign.finish_at = None
    for sub_id in targets:
        roll = rng.random()
        hard = rng.random() < rates["hard"]
        when = end + rng.random() * spread
        if roll < rates["bounce"]:
            sub = sandbox.subscribers.get(sub_id)
            if sub is not None:
                record_bounce(
                    sandbox,
                    sub,
                    "hard" if hard else "soft",
                    campaign_id=campaign.id,
                    meta={"sandbox": True},
                    at=end,
                )
            continue
        if rng.random() < rates["view"]:
            campaign.views.append((when, sub_id))
            if rng.random() < rates["click"] / max(rates["view"], 1e-9):
                url = links[int(rng.random() * len(links))]
                campaign.clicks.append((when + 30 * rng.random(), sub_id, url))


def finish_due(sandbox: ListmonkSandbox) -> None:
    """Finish running campaigns whose time has come."""
    now = sandbox.now()
    for campaign in list(sandbox.campaigns.values()):
        if campaign.status == "running" and campaign.finish_at is not None:
            if campaign.finish_at <= now:
                _finish(sandbox, campaign)
        elif campaign.status == "scheduled" and campaign.send_at and campaign.send_at <= now:
            campaign.status = "running"
            campaign.started_at = campaign.started_at or now
            campaign.to_send = len(recipients(sandbox, campaign))
            campaign.finish_at = now + sandbox.config.campaign_send_seconds


# --- handlers ------------------------------------------------------------------------------------


def _campaign(request: ApiRequest) -> Campaign:
    campaign = request.sandbox.campaigns.get(path_id(request))
    if campaign is None:
        raise not_found("Campaign")
    return campaign


def _create(request: ApiRequest) -> Reply:
    campaign = create_campaign(request.sandbox, request.json_object())
    return data(render(request.sandbox, campaign))


def _query(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    q = request.query
    statuses = [v for k, v in request.pairs if k == "status"]
    tags = [v for k, v in request.pairs if k == "tag"]
    text = q.get("query", "").strip().lower()
    chosen = [
        c
        for c in sandbox.campaigns.values()
        if (not statuses or c.status in statuses)
        and (not tags or any(t in c.tags for t in tags))
        and (not text or text in c.name.lower() or text in c.subject.lower())
    ]
    chosen.sort(key=lambda c: (c.created_at, c.id), reverse=q.get("order", "desc") != "asc")
    page = paged(chosen, q)
    no_body = q.get("no_body") == "true"
    page["results"] = [render(sandbox, c, body=not no_body) for c in page["results"]]
    return data(page)


def _get(request: ApiRequest) -> Reply:
    campaign = _campaign(request)
    return data(render(request.sandbox, campaign, body=request.query.get("no_body") != "true"))


def _update(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    campaign = _campaign(request)
    if campaign.status in ("running", "finished", "cancelled"):
        raise bad("Cannot update a running or a finished campaign.")
    merged = {**render(sandbox, campaign), "lists": campaign.list_ids, **request.json_object()}
    if campaign.send_at and merged.get("send_at") == stamp(campaign.send_at):
        merged["send_at"] = None if campaign.send_at < sandbox.now() else merged["send_at"]
    for name, value in _fields(sandbox, merged).items():
        setattr(campaign, name, value)
    campaign.updated_at = sandbox.now()
    return data(render(sandbox, campaign))


def _status(request: ApiRequest) -> Reply:
    campaign = _campaign(request)
    set_status(request.sandbox, campaign, str(request.json_object().get("status") or ""))
    return data(render(request.sandbox, campaign))


def _delete(request: ApiRequest) -> Reply:
    campaign = _campaign(request)
    request.sandbox.campaigns.pop(campaign.id, None)
    return data(True)


def _bounds(request: ApiRequest) -> tuple[float, float]:
    raw_from, raw_to = request.query.get("from", ""), request.query.get("to", "")
    if not 10 <= len(raw_from) <= 30 or not 10 <= len(raw_to) <= 30:
        raise bad("Invalid `from` or `to` dates.")
    start, end = parse_when(raw_from), parse_when(raw_to)
    if start is None or end is None:
        raise ListmonkError(
            500, "Error fetching Analytics: invalid input syntax for type timestamp"
        )
    return start, end


def _analytics(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    ids = ids_of(request.pairs, "id")
    if not ids:
        raise bad("Missing field(s): `id`")
    kind = request.params["type"]
    start, end = _bounds(request)
    if kind not in ("views", "clicks", "bounces", "links"):
        raise bad("Invalid data")
    unique = sandbox.config.individual_tracking
    campaigns = [sandbox.campaigns[i] for i in ids if i in sandbox.campaigns]
    if kind == "links":
        counts: dict[str, set[int] | list[int]] = {}
        for c in campaigns:
            for when, sub_id, url in c.clicks:
                if start <= when <= end:
                    bucket = counts.setdefault(url, set() if unique else [])
                    bucket.add(sub_id) if isinstance(bucket, set) else bucket.append(sub_id)
        ranked = sorted(counts.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:50]
        return data([{"count": len(v), "url": url} for url, v in ranked])
    unit = 86400 if (end - start) / 86400 >= 7 else 3600
    grouped: dict[tuple[float, int], set[int] | list[int]] = {}
    for c in campaigns:
        if kind == "views":
            events = [(w, s) for w, s in c.views]
        elif kind == "clicks":
            events = [(w, s) for w, s, _u in c.clicks]
        else:
            events = [
                (b.created_at, b.subscriber_id)
                for b in sandbox.bounces.values()
                if b.campaign_id == c.id
            ]
        for when, sub_id in events:
            if start <= when <= end:
                key = (when - when % unit, c.id)
                bucket = grouped.setdefault(key, set() if unique and kind != "bounces" else [])
                bucket.add(sub_id) if isinstance(bucket, set) else bucket.append(sub_id)
    out = [
        {
            "campaign_id": cid,
            "count": len(v),
            "timestamp": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for (ts, cid), v in sorted(grouped.items())
    ]
    return data(out)


routes = [
    Route("GET", "/campaigns", _query, "campaigns:get_all|campaigns:get"),
    Route("POST", "/campaigns", _create, "campaigns:manage_all|campaigns:manage"),
    Route("GET", "/campaigns/analytics/{type}", _analytics, "campaigns:get_analytics"),
    Route("GET", "/campaigns/{id}", _get, "campaigns:get_all|campaigns:get"),
    Route("PUT", "/campaigns/{id}", _update, "campaigns:manage_all|campaigns:manage"),
    Route("PUT", "/campaigns/{id}/status", _status, "campaigns:send"),
    Route("DELETE", "/campaigns/{id}", _delete, "campaigns:manage_all|campaigns:manage"),
]
