"""Campaigns: ``/campaigns`` create/list/get/patch/delete, content, and ``actions/send``.

Sending snapshots the list's subscribed members, then draws each recipient's activity from a
seed (see activity.py): sent to all; opens; clicks on the links of the campaign's content;
soft and hard bounces (a hard bounce cleans the member, ``reason=hard``); unsubscribes (the
member unsubscribes themselves, with a survey reason and the campaign id). Member changes go
through the core's state machine (``members.set_status``, source ``user``), so the member, the
webhooks and the reports agree. Status moves ``save → sending → sent``; the sending phase lasts
``send_duration`` sandbox seconds (0 by default), so advance the clock to see it end.

Control API (under ``/_sandbox``):

- ``PUT /campaigns/settings`` ``{"seed": 1, "rates": {...}, "send_duration": 0}`` — defaults;
- ``PUT /campaigns/{id}/activity`` ``{"seed": 3, "rates": {"open": 0.5}}`` — before sending;
- ``POST /campaigns/seed`` ``{"list_id", "recipients": N, "subject", "links", "seed", "rates"}``
  — a sent campaign in one call; with ``recipients`` it is sent to N synthetic addresses that
  are not audience members (fast, for benchmarks), without it to the list's subscribers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from campaign_bridge.sandbox.mailchimp import members as core_members
from campaign_bridge.sandbox.mailchimp import webhooks
from campaign_bridge.sandbox.mailchimp.activity import (
    STATUS_HARD,
    UNSUBSCRIBE_REASONS,
    ActivityRates,
    CampaignActivity,
    ListRecipients,
    Recipients,
    SyntheticRecipients,
    extract_links,
    iso,
)
from campaign_bridge.sandbox.mailchimp.model import AudienceList, Sandbox
from campaign_bridge.sandbox.mailchimp.wire import (
    ApiRequest,
    Problem,
    Reply,
    Route,
    collection_links,
    invalid_resource,
    link,
    not_found,
    page,
    parse_ts,
    qbool,
)

__all__ = [
    "Campaign",
    "CampaignStore",
    "control_routes",
    "install",
    "routes",
    "send_campaign",
    "store",
]

TYPES = ("regular", "plaintext", "absplit", "rss", "variate")
STATUSES = ("save", "paused", "schedule", "sending", "sent")
NOT_READY = "Your Campaign is not ready to send."
_STATE = "campaigns"

SETTINGS_DEFAULTS: dict[str, Any] = {
    "subject_line": "",
    "preview_text": "",
    "title": "",
    "from_name": "",
    "reply_to": "",
    "use_conversation": False,
    "to_name": "",
    "folder_id": "",
    "authenticate": True,
    "auto_footer": False,
    "inline_css": False,
    "auto_tweet": False,
    "auto_fb_post": [],
    "fb_comments": True,
    "timewarp": False,
    "template_id": 0,
    "drag_and_drop": False,
}
TRACKING_DEFAULTS: dict[str, Any] = {
    "opens": True,
    "html_clicks": True,
    "text_clicks": False,
    "goal_tracking": False,
    "ecomm360": False,
    "google_analytics": "",
    "clicktale": "",
}


@dataclass
class Campaign:
    id: str
    web_id: int
    type: str
    create_time: str
    list_id: str
    settings: dict[str, Any]
    tracking: dict[str, Any]
    status: str = "save"
    send_time: str = ""
    html: str = ""
    plain_text: str = ""
    seed: int | None = None
    rates: ActivityRates | None = None
    sending_until: str = ""  # sandbox time at which "sending" becomes "sent"
    activity: CampaignActivity | None = None
    #: what rebuilds ``activity`` after a restart: emails, or a synthetic count
    recipient_emails: list[str] | None = None
    synthetic_count: int = 0

    @property
    def subject(self) -> str:
        return str(self.settings.get("subject_line", ""))

    @property
    def title(self) -> str:
        return str(self.settings.get("title", ""))


@dataclass
class CampaignStore:
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    seed: int | None = None  # None: the sandbox seed
    rates: ActivityRates = field(default_factory=ActivityRates)
    send_duration: float = 0.0

    def reset(self) -> None:
        self.campaigns.clear()
        self.seed, self.rates, self.send_duration = None, ActivityRates(), 0.0

    def dump(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "rates": vars(self.rates),
            "send_duration": self.send_duration,
            "campaigns": [_dump_campaign(c) for c in self.campaigns.values()],
        }

    def load(self, data: Any) -> None:
        data = data or {}
        self.seed = data.get("seed")
        self.rates = ActivityRates.from_mapping(dict(data.get("rates") or {}))
        self.send_duration = float(data.get("send_duration", 0.0))
        self.campaigns = {}
        for raw in data.get("campaigns", []):
            campaign = _load_campaign(raw)
            self.campaigns[campaign.id] = campaign


def _dump_campaign(c: Campaign) -> dict[str, Any]:
    out = {k: v for k, v in vars(c).items() if k not in ("activity", "rates")}
    out["rates"] = vars(c.rates) if c.rates is not None else None
    if c.activity is not None:
        out["send_ts"] = c.activity.send_ts
        out["used_seed"] = c.activity.seed
        out["used_rates"] = vars(c.activity.rates)
        out["links"] = list(c.activity.links)
    return out


def _load_campaign(raw: Mapping[str, Any]) -> Campaign:
    fields = {k: v for k, v in raw.items() if k in Campaign.__dataclass_fields__}
    rates = fields.pop("rates", None)
    campaign = Campaign(**fields)
    campaign.rates = ActivityRates.from_mapping(rates) if rates else None
    if "send_ts" in raw:
        recipients: Recipients
        if campaign.recipient_emails is not None:
            recipients = ListRecipients(campaign.recipient_emails)
        else:
            recipients = SyntheticRecipients(campaign.synthetic_count)
        campaign.activity = CampaignActivity(
            campaign.id,
            int(raw["used_seed"]),
            int(raw["send_ts"]),
            raw.get("links", []),
            ActivityRates.from_mapping(dict(raw["used_rates"])),
            recipients,
        )
    return campaign


def store(sandbox: Sandbox) -> CampaignStore:
    found = sandbox.extensions.get(_STATE)
    if found is None:
        found = CampaignStore()
        sandbox.extensions[_STATE] = found
    assert isinstance(found, CampaignStore)
    return found


def install(sandbox: Sandbox) -> None:
    st = store(sandbox)
    sandbox.register_state(_STATE, st.dump, st.load, st.reset)


def current_status(sandbox: Sandbox, c: Campaign) -> str:
    """``sending`` turns into ``sent`` once the sandbox clock passes the end of the send."""
    if c.status == "sending" and c.sending_until and sandbox.clock.stamp() >= c.sending_until:
        c.status = "sent"
    return c.status


def find(sandbox: Sandbox, campaign_id: str) -> Campaign:
    found = store(sandbox).campaigns.get(campaign_id)
    if found is None:
        raise not_found()
    return found


# --- rendering ---------------------------------------------------------------------------------


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0


def delivered(a: CampaignActivity) -> int:
    return a.emails_sent - a.hard_bounces - a.soft_bounces


def report_summary(a: CampaignActivity) -> dict[str, Any]:
    base = delivered(a)
    return {
        "opens": a.opens_total,
        "unique_opens": a.unique_opens,
        "open_rate": _rate(a.unique_opens, base),
        "clicks": a.clicks_total,
        "subscriber_clicks": a.unique_subscriber_clicks,
        "click_rate": _rate(a.unique_subscriber_clicks, base),
        "ecommerce": {"total_orders": 0, "total_spent": 0, "total_revenue": 0},
    }


def _recipient_count(sandbox: Sandbox, c: Campaign) -> int:
    if c.activity is not None:
        return c.activity.emails_sent
    lst = sandbox.lists.get(c.list_id)
    if lst is None:
        return 0
    return sum(m.status == "subscribed" for m in lst.members.values())


#: tracking integrations the schema lists (deprecated, always off here)
_TRACKING_CRM: dict[str, Any] = {
    "salesforce": {"campaign": False, "notes": False},
    "capsule": {"notes": False},
}
_RESEND_TARGETS = ("to_non_openers", "to_new_subscribers", "to_non_clickers", "to_non_purchasers")


def resend_shortcut_eligibility(sandbox: Sandbox, c: Campaign) -> dict[str, Any]:
    """``resend_shortcut_eligibility`` (only with ``include_resend_shortcuts=true``): resends
    are not emulated, so no campaign is eligible, and the reason says so."""
    sent = current_status(sandbox, c) == "sent"
    reason = "Resending is not emulated by the sandbox." if sent else "Campaign not sent."
    return {target: {"is_eligible": False, "reason": reason} for target in _RESEND_TARGETS}


def render(
    sandbox: Sandbox, c: Campaign, base: str, *, resend_shortcuts: bool = False
) -> dict[str, Any]:
    lst = sandbox.lists.get(c.list_id)
    path = f"{base}/campaigns/{c.id}"
    body: dict[str, Any] = {
        "id": c.id,
        "web_id": c.web_id,
        "parent_campaign_id": "",
        "type": c.type,
        "create_time": c.create_time,
        "archive_url": f"http://eepurl.com/{c.id[:6]}",
        "long_archive_url": f"https://us6.campaign-archive.com/?u=sandbox&id={c.id}",
        "status": current_status(sandbox, c),
        "emails_sent": c.activity.emails_sent if c.activity is not None else 0,
        "send_time": c.send_time,
        "content_type": "template",
        "needs_block_refresh": False,
        "resendable": False,
        "recipients": {
            "list_id": c.list_id,
            "list_is_active": lst is not None,
            "list_name": lst.name if lst is not None else "",
            "segment_text": "",
            "recipient_count": _recipient_count(sandbox, c),
        },
        "settings": dict(c.settings),
        "tracking": {**_TRACKING_CRM, **c.tracking},
        "delivery_status": {"enabled": False},
        "_links": [
            link("parent", f"{base}/campaigns", schema="Campaigns/CollectionResponse"),
            link("self", path, schema="Campaigns/Response"),
            link("delete", path, "DELETE"),
            link("send", f"{path}/actions/send", "POST"),
            link("content", f"{path}/content", schema="Campaigns/Content/Response"),
        ],
    }
    if resend_shortcuts:
        body["resend_shortcut_eligibility"] = resend_shortcut_eligibility(sandbox, c)
    if c.activity is not None:
        body["report_summary"] = report_summary(c.activity)
        body["_links"].append(link("reports", f"{base}/reports/{c.id}"))
    return body


# --- validation ----------------------------------------------------------------------------------


def _error(field_name: str, message: str) -> Problem:
    return invalid_resource(errors=[{"field": field_name, "message": message}])


def _merge_object(
    current: Mapping[str, Any], given: Any, defaults: Mapping[str, Any], name: str
) -> dict[str, Any]:
    if given is None:
        return dict(current)
    if not isinstance(given, Mapping):
        raise _error(name, f"Schema describes object, {type(given).__name__} found instead")
    out = dict(current)
    for key, value in given.items():
        if key not in defaults:
            continue  # unknown keys are dropped, as Mailchimp does
        expected = type(defaults[key])
        if expected is bool and not isinstance(value, bool):
            raise _error(
                f"{name}.{key}", f"Schema describes boolean, {type(value).__name__} found instead"
            )
        if expected is str and not isinstance(value, str):
            raise _error(
                f"{name}.{key}", f"Schema describes string, {type(value).__name__} found instead"
            )
        out[key] = value
    return out


def _list_id(sandbox: Sandbox, recipients: Any) -> str:
    if not isinstance(recipients, Mapping):
        raise _error("recipients", "Schema describes object, NULL found instead")
    list_id = recipients.get("list_id")
    if not isinstance(list_id, str) or list_id not in sandbox.lists:
        raise _error("recipients.list_id", "The list you selected does not exist.")
    return list_id


# --- handlers ---------------------------------------------------------------------------------


def create_campaign(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    body = request.json_object()
    kind = body.get("type")
    if kind is None:
        raise _error("", "Required fields were not provided: type")
    if kind not in TYPES:
        raise _error("type", "Data did not match any of the schemas described in anyOf.")
    list_id = _list_id(sandbox, body.get("recipients")) if "recipients" in body else ""
    lst = sandbox.lists.get(list_id)
    settings = dict(SETTINGS_DEFAULTS)
    if lst is not None:
        defaults = lst.campaign_defaults
        settings["from_name"] = str(defaults.get("from_name", ""))
        settings["reply_to"] = str(defaults.get("from_email", ""))
        settings["subject_line"] = str(defaults.get("subject", ""))
    settings = _merge_object(settings, body.get("settings"), SETTINGS_DEFAULTS, "settings")
    tracking = _merge_object(TRACKING_DEFAULTS, body.get("tracking"), TRACKING_DEFAULTS, "tracking")
    campaign = Campaign(
        id=sandbox.ids.hex10(),
        web_id=sandbox.ids.web_id(),
        type=kind,
        create_time=sandbox.clock.stamp(),
        list_id=list_id,
        settings=settings,
        tracking=tracking,
    )
    store(sandbox).campaigns[campaign.id] = campaign
    return Reply(render(sandbox, campaign, request.base_url))


def _time_filter(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    return parse_ts(value, name) if value else None


def list_campaigns(request: ApiRequest) -> Reply:
    sandbox, query = request.sandbox, request.query
    found = list(store(sandbox).campaigns.values())
    for name in ("type", "list_id"):
        if query.get(name):
            found = [c for c in found if getattr(c, name) == query[name]]
    status = query.get("status")
    if status:
        if status not in STATUSES:
            raise _error("status", "Value is not one of the enum values")
        found = [c for c in found if current_status(sandbox, c) == status]
    bounds = {
        k: _time_filter(query, k)
        for k in ("since_create_time", "before_create_time", "since_send_time", "before_send_time")
    }
    if bounds["since_create_time"]:
        found = [c for c in found if c.create_time >= bounds["since_create_time"]]
    if bounds["before_create_time"]:
        found = [c for c in found if c.create_time < bounds["before_create_time"]]
    if bounds["since_send_time"]:
        found = [c for c in found if c.send_time and c.send_time >= bounds["since_send_time"]]
    if bounds["before_send_time"]:
        found = [c for c in found if c.send_time and c.send_time < bounds["before_send_time"]]
    member_id = query.get("member_id")
    if member_id:
        found = [
            c
            for c in found
            if c.activity is not None and c.activity.recipients.index_of(member_id) is not None
        ]
    sort_field = query.get("sort_field")
    if sort_field:
        if sort_field not in ("create_time", "send_time"):
            raise _error("sort_field", "Value is not one of the enum values")
        descending = query.get("sort_dir", "ASC").upper() == "DESC"
        position = {cid: n for n, cid in enumerate(store(sandbox).campaigns)}
        found.sort(key=lambda c: (getattr(c, sort_field), position[c.id]), reverse=descending)
    items, total = page(found, query)
    resend = qbool(query, "include_resend_shortcuts")
    return Reply(
        {
            "campaigns": [
                render(sandbox, c, request.base_url, resend_shortcuts=resend) for c in items
            ],
            "total_items": total,
            "_links": collection_links(request.base_url, "/campaigns"),
        },
        items=len(items),
    )


def get_campaign(request: ApiRequest) -> Reply:
    c = find(request.sandbox, request.params["campaign_id"])
    resend = qbool(request.query, "include_resend_shortcuts")
    return Reply(render(request.sandbox, c, request.base_url, resend_shortcuts=resend))


def _locked(sandbox: Sandbox, c: Campaign) -> None:
    if current_status(sandbox, c) in ("sending", "sent"):
        raise Problem(
            400,
            "Bad Request",
            "This campaign has already been sent and can no longer be changed.",
        )


def update_campaign(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    c = find(sandbox, request.params["campaign_id"])
    body = request.json_object()
    _locked(sandbox, c)
    if "recipients" in body:
        c.list_id = _list_id(sandbox, body["recipients"])
    c.settings = _merge_object(c.settings, body.get("settings"), SETTINGS_DEFAULTS, "settings")
    c.tracking = _merge_object(c.tracking, body.get("tracking"), TRACKING_DEFAULTS, "tracking")
    return Reply(render(sandbox, c, request.base_url))


def delete_campaign(request: ApiRequest) -> Reply:
    c = find(request.sandbox, request.params["campaign_id"])
    del store(request.sandbox).campaigns[c.id]
    return Reply(status=204)


def _content(c: Campaign, base: str) -> dict[str, Any]:
    path = f"{base}/campaigns/{c.id}/content"
    return {
        "plain_text": c.plain_text,
        "html": c.html,
        "archive_html": c.html,
        "_links": [
            link("parent", f"{base}/campaigns/{c.id}"),
            link("self", path),
            link("create", path, "PUT"),
        ],
    }


def get_content(request: ApiRequest) -> Reply:
    c = find(request.sandbox, request.params["campaign_id"])
    return Reply(_content(c, request.base_url))


def set_content(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    c = find(sandbox, request.params["campaign_id"])
    body = request.json_object()
    _locked(sandbox, c)
    for key in ("html", "plain_text"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise _error(key, f"Schema describes string, {type(value).__name__} found instead")
    if "html" in body:
        c.html = body["html"] or ""
        if "plain_text" not in body:
            c.plain_text = ""
    if "plain_text" in body:
        c.plain_text = body["plain_text"] or ""
    return Reply(_content(c, request.base_url))


# --- sending ----------------------------------------------------------------------------------


def _not_ready(reason: str = "") -> Problem:
    return Problem(400, "Bad Request", f"{NOT_READY} {reason}".strip())


def send_campaign(
    sandbox: Sandbox,
    c: Campaign,
    *,
    synthetic: int | None = None,
    links: tuple[str, ...] | None = None,
) -> CampaignActivity:
    """Send now (lock held): snapshot recipients, draw activity, apply it to the members."""
    status = current_status(sandbox, c)
    if status in ("sending", "sent"):
        raise _not_ready("This campaign has already been sent.")
    lst = sandbox.lists.get(c.list_id)
    if lst is None:
        raise _not_ready("recipients not ready")
    missing = [k for k in ("subject_line", "from_name", "reply_to") if not c.settings.get(k)]
    if missing:
        raise _not_ready(f"Missing: {', '.join(missing)}")
    if links is None:
        if not (c.html.strip() or c.plain_text.strip()):
            raise _not_ready("Missing: content")
        links = extract_links(c.html, c.plain_text)
    recipients: Recipients
    if synthetic is not None:
        recipients = SyntheticRecipients(synthetic)
        c.synthetic_count, c.recipient_emails = synthetic, None
    else:
        emails = [m.email_address for m in lst.members.values() if m.status == "subscribed"]
        if not emails:
            raise _not_ready("recipients not ready")
        recipients = ListRecipients(emails)
        c.recipient_emails = emails
    st = store(sandbox)
    seed = c.seed if c.seed is not None else st.seed if st.seed is not None else sandbox.config.seed
    now = sandbox.clock.now()
    send_ts = int(now.timestamp())
    activity = CampaignActivity(c.id, seed, send_ts, links, c.rates or st.rates, recipients)
    c.activity = activity
    c.send_time = iso(send_ts)
    c.status = "sending"
    c.sending_until = iso(send_ts + int(st.send_duration))
    current_status(sandbox, c)
    webhooks.bus(sandbox).campaign_event(lst.id, webhooks.campaign_payload(c.id, c.subject, lst.id))
    _apply_to_members(sandbox, lst, c, activity)
    return activity


def _apply_to_members(
    sandbox: Sandbox, lst: AudienceList, c: Campaign, activity: CampaignActivity
) -> None:
    """Hard bounces clean the member, unsubscribes unsubscribe them (the user did it)."""
    changes: list[tuple[int, int, str, str]] = []  # (ts, recipient, status, reason)
    for i, ts, reason_index in activity.unsubscribes:
        changes.append((ts, i, "unsubscribed", UNSUBSCRIBE_REASONS[reason_index]))
    if activity.hard_bounces:
        for i in range(len(activity)):
            if activity.status[i] == STATUS_HARD:
                first = next(iter(activity.events(i)))
                changes.append((first.ts, i, "cleaned", "hard"))
    changes.sort()
    for _ts, i, status, reason in changes:
        member = lst.members.get(activity.recipients.email_id(i))
        if member is None or member.status not in ("subscribed",):
            continue
        core_members.set_status(
            sandbox, lst, member, status, source="user", reason=reason, campaign_id=c.id
        )


def send_action(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    c = find(sandbox, request.params["campaign_id"])
    send_campaign(sandbox, c)
    return Reply(status=204, items=c.activity.emails_sent if c.activity else 0)


routes = [
    Route("POST", "/campaigns", create_campaign),
    Route("GET", "/campaigns", list_campaigns),
    Route("GET", "/campaigns/{campaign_id}", get_campaign),
    Route("PATCH", "/campaigns/{campaign_id}", update_campaign),
    Route("DELETE", "/campaigns/{campaign_id}", delete_campaign),
    Route("GET", "/campaigns/{campaign_id}/content", get_content),
    Route("PUT", "/campaigns/{campaign_id}/content", set_content),
    Route("POST", "/campaigns/{campaign_id}/actions/send", send_action),
]


# --- control API ------------------------------------------------------------------------------


def _rates(current: ActivityRates, given: Any) -> ActivityRates:
    if given is None:
        return current
    if not isinstance(given, Mapping):
        raise invalid_resource("rates must be an object")
    try:
        return ActivityRates.from_mapping(vars(current) | dict(given))
    except (TypeError, ValueError) as exc:
        raise invalid_resource(f"Bad activity rates: {exc}") from None


def settings_control(request: ApiRequest) -> Reply:
    st = store(request.sandbox)
    body = request.json_object()
    if "seed" in body:
        st.seed = None if body["seed"] is None else int(body["seed"])
    st.rates = _rates(st.rates, body.get("rates"))
    if "send_duration" in body:
        st.send_duration = max(0.0, float(body["send_duration"]))
    return Reply({"seed": st.seed, "rates": vars(st.rates), "send_duration": st.send_duration})


def activity_control(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    c = find(sandbox, request.params["campaign_id"])
    body = request.json_object()
    _locked(sandbox, c)
    if "seed" in body:
        c.seed = None if body["seed"] is None else int(body["seed"])
    if "rates" in body:
        c.rates = _rates(c.rates or store(sandbox).rates, body["rates"])
    return Reply({"seed": c.seed, "rates": vars(c.rates) if c.rates else None})


def seed_control(request: ApiRequest) -> Reply:
    """Create and send a campaign in one call (demos, tests, benchmarks)."""
    sandbox = request.sandbox
    body = request.json_object()
    list_id = body.get("list_id") or next(iter(sandbox.lists), None)
    if list_id not in sandbox.lists:
        raise _error("list_id", "The list you selected does not exist.")
    lst = sandbox.lists[list_id]
    subject = str(body.get("subject", "Sandbox campaign"))
    links = tuple(
        body.get("links") or ("https://shop.sandbox.invalid/", "https://blog.sandbox.invalid/post")
    )
    campaign = Campaign(
        id=sandbox.ids.hex10(),
        web_id=sandbox.ids.web_id(),
        type="regular",
        create_time=sandbox.clock.stamp(),
        list_id=list_id,
        settings=dict(SETTINGS_DEFAULTS)
        | {
            "subject_line": subject,
            "title": str(body.get("title", subject)),
            "from_name": str(lst.campaign_defaults.get("from_name") or "Sandbox"),
            "reply_to": str(lst.campaign_defaults.get("from_email") or "news@sandbox.invalid"),
        },
        tracking=dict(TRACKING_DEFAULTS),
        html="".join(f'<p><a href="{u}">{u}</a></p>' for u in links),
    )
    if "seed" in body:
        campaign.seed = int(body["seed"])
    if "rates" in body:
        campaign.rates = _rates(store(sandbox).rates, body["rates"])
    store(sandbox).campaigns[campaign.id] = campaign
    synthetic = body.get("recipients")
    activity = send_campaign(
        sandbox, campaign, synthetic=None if synthetic is None else int(synthetic), links=links
    )
    return Reply(
        {
            "id": campaign.id,
            "list_id": list_id,
            "emails_sent": activity.emails_sent,
            "send_time": campaign.send_time,
        }
    )


control_routes = [
    Route("PUT", "/campaigns/settings", settings_control),
    Route("POST", "/campaigns/seed", seed_control),
    Route("PUT", "/campaigns/{campaign_id}/activity", activity_control),
]
