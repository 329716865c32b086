"""Audiences: ``/lists``, merge fields, interest categories and interests, segments and tags,
plus the account root ``/`` and ``/ping``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from campaign_bridge.sandbox.mailchimp.model import (
    AudienceList,
    Interest,
    InterestCategory,
    MergeField,
    Sandbox,
    Segment,
    subscriber_hash,
)
from campaign_bridge.sandbox.mailchimp.wire import (
    ApiRequest,
    Problem,
    Reply,
    Route,
    collection_links,
    invalid_resource,
    kept_keys,
    link,
    not_found,
    page,
    paging,
    qbool,
)

__all__ = [
    "DEFAULT_MERGE_FIELDS",
    "MERGE_TYPES",
    "add_merge_field",
    "campaign_stats",
    "create_list",
    "render_list",
    "routes",
]

MERGE_TYPES = (
    "text",
    "number",
    "address",
    "phone",
    "date",
    "url",
    "imageurl",
    "radio",
    "dropdown",
    "birthday",
    "zip",
)
DEFAULT_MERGE_FIELDS = (
    ("FNAME", "First Name", "text"),
    ("LNAME", "Last Name", "text"),
    ("ADDRESS", "Address", "address"),
    ("PHONE", "Phone Number", "phone"),
)
TAG_RE = re.compile(r"^[A-Z0-9_]{1,10}$")
CATEGORY_TYPES = ("checkboxes", "dropdown", "radio", "hidden")


def _required(body: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if body.get(n) in (None, "")]
    if missing:
        raise invalid_resource(
            errors=[
                {"field": "", "message": f"Required fields were not provided: {', '.join(missing)}"}
            ]
        )


# --- lists -----------------------------------------------------------------------------------


def create_list(
    sandbox: Sandbox, body: dict[str, Any], *, list_id: str | None = None
) -> AudienceList:
    """Create an audience with Mailchimp's default merge fields (caller holds the lock)."""
    _required(body, "name", "permission_reminder", "contact", "campaign_defaults")
    if "email_type_option" not in body:
        _required(body, "email_type_option")
    now = sandbox.clock.stamp()
    lst = AudienceList(
        id=list_id or sandbox.ids.hex10(),
        web_id=sandbox.ids.web_id(),
        name=str(body["name"]),
        date_created=now,
        contact=dict(body["contact"]),
        permission_reminder=str(body["permission_reminder"]),
        campaign_defaults=dict(body["campaign_defaults"]),
        email_type_option=bool(body.get("email_type_option", False)),
        double_optin=bool(body.get("double_optin", False)),
        marketing_permissions=bool(body.get("marketing_permissions", False)),
        visibility=str(body.get("visibility", "pub")),
    )
    sandbox.lists[lst.id] = lst
    for order, (tag, name, kind) in enumerate(DEFAULT_MERGE_FIELDS, start=1):
        add_merge_field(sandbox, lst, {"tag": tag, "name": name, "type": kind}, order=order)
    return lst


def campaign_stats(sandbox: Sandbox, list_id: str) -> Mapping[str, Any] | None:
    """The audience's campaign figures, from the campaigns module when it is installed
    (``sandbox.extensions["list_campaign_stats"]``)."""
    source = sandbox.extensions.get("list_campaign_stats")
    return None if source is None else source(list_id)


#: the stats read off every member; the others (``total_contacts`` among them) are at hand
_MEMBER_STATS = frozenset(
    {
        "member_count",
        "unsubscribe_count",
        "cleaned_count",
        "member_count_since_send",
        "unsubscribe_count_since_send",
        "cleaned_count_since_send",
        "last_sub_date",
        "last_unsub_date",
    }
)


def _stats(
    lst: AudienceList, campaigns: Mapping[str, Any] | None, keys: frozenset[str] | None = None
) -> dict[str, Any]:
    """The audience's stats; with ``keys`` (what ``fields`` keeps of them), the walk over every
    member only when one of them needs it (push and pull ask ``stats.total_contacts`` each run)."""
    campaigns = campaigns or {}
    last_sent = str(campaigns.get("campaign_last_sent", ""))
    counts = {"subscribed": 0, "unsubscribed": 0, "cleaned": 0}
    since_send = {"subscribed": 0, "unsubscribed": 0, "cleaned": 0}
    last_sub = last_unsub = ""
    walked = lst.members.values() if keys is None or keys & _MEMBER_STATS else ()
    for member in walked:
        status = member.status
        if status in counts:
            counts[status] += 1
            changed = member.timestamp_opt if status == "subscribed" else member.last_changed
            if not last_sent or changed > last_sent:
                since_send[status] += 1
        if status == "subscribed" and member.timestamp_opt > last_sub:
            last_sub = member.timestamp_opt
        if status == "unsubscribed" and member.last_changed > last_unsub:
            last_unsub = member.last_changed
    return {
        "member_count": counts["subscribed"],
        "total_contacts": len(lst.members),
        "unsubscribe_count": counts["unsubscribed"],
        "cleaned_count": counts["cleaned"],
        "member_count_since_send": since_send["subscribed"],
        "unsubscribe_count_since_send": since_send["unsubscribed"],
        "cleaned_count_since_send": since_send["cleaned"],
        "campaign_count": int(campaigns.get("campaign_count", 0)),
        "campaign_last_sent": last_sent,
        "merge_field_count": len(lst.merge_fields),
        "avg_sub_rate": 0,
        "avg_unsub_rate": 0,
        "target_sub_rate": 0,
        "open_rate": campaigns.get("open_rate", 0),
        "click_rate": campaigns.get("click_rate", 0),
        "last_sub_date": last_sub,
        "last_unsub_date": last_unsub,
    }


def render_list(
    lst: AudienceList,
    base: str,
    *,
    with_stats: bool = True,
    stats_keys: frozenset[str] | None = None,
    campaigns: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The API shape of an audience; ``campaigns`` are its ``campaign_stats`` (zeros when
    ``None``); ``stats_keys``: the stats ``fields`` keeps (``None``: all)."""
    href = f"{base}/lists/{lst.id}"
    return {
        "id": lst.id,
        "web_id": lst.web_id,
        "name": lst.name,
        "contact": lst.contact,
        "permission_reminder": lst.permission_reminder,
        "use_archive_bar": False,
        "campaign_defaults": lst.campaign_defaults,
        "notify_on_subscribe": "",
        "notify_on_unsubscribe": "",
        "date_created": lst.date_created,
        "list_rating": 0,
        "email_type_option": lst.email_type_option,
        "subscribe_url_short": f"https://eepurl.com/{lst.id[:6]}",
        "subscribe_url_long": f"https://sandbox.us6.list-manage.com/subscribe?id={lst.id}",
        "beamer_address": f"us6-{lst.id}@inbound.mailchimp.com",
        "visibility": lst.visibility,
        "double_optin": lst.double_optin,
        "has_welcome": False,
        "marketing_permissions": lst.marketing_permissions,
        "modules": [],
        "stats": _stats(lst, campaigns, stats_keys) if with_stats else {},
        "_links": [
            link("self", href),
            link("parent", f"{base}/lists"),
            link("update", href, "PATCH"),
            link("batch-sub-unsub-members", href, "POST"),
            link("delete", href, "DELETE"),
            link("members", f"{href}/members"),
            link("merge-fields", f"{href}/merge-fields"),
            link("interest-categories", f"{href}/interest-categories"),
            link("segments", f"{href}/segments"),
            link("webhooks", f"{href}/webhooks"),
        ],
    }


def _get_lists(req: ApiRequest) -> Reply:
    lists = list(req.sandbox.lists.values())
    email = req.query.get("email")
    if email:
        h = subscriber_hash(email)
        lists = [lst for lst in lists if h in lst.members]
    since = req.query.get("since_date_created")
    if since:
        from campaign_bridge.sandbox.mailchimp.wire import parse_ts

        bound = parse_ts(since, "since_date_created")
        lists = [lst for lst in lists if lst.date_created >= bound]
    items, total = page(lists, req.query)
    keys = kept_keys(req.query, "lists")
    with_stats = keys is None or "stats" in keys
    return Reply(
        {
            "lists": [
                render_list(
                    lst,
                    req.base_url,
                    with_stats=with_stats,
                    campaigns=campaign_stats(req.sandbox, lst.id) if with_stats else None,
                )
                for lst in items
            ],
            "total_items": total,
            "constraints": {
                "may_create": True,
                "max_instances": 100,
                "current_total_instances": len(req.sandbox.lists),
            },
            "_links": collection_links(req.base_url, "/lists"),
        },
        items=len(items),
    )


def _post_list(req: ApiRequest) -> Reply:
    lst = create_list(req.sandbox, req.json_object())
    return Reply(render_list(lst, req.base_url, campaigns=campaign_stats(req.sandbox, lst.id)))


def _get_list(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    # the stats walk every member: skip them when ``fields`` leaves them out (as the push's
    # "id,name,double_optin,marketing_permissions" does at the start of every run), and the
    # walk when it keeps only stats at hand (push's and pull's "stats.total_contacts")
    stats_keys = kept_keys(req.query, "stats")
    with_stats = stats_keys != frozenset()
    campaigns = campaign_stats(req.sandbox, lst.id) if with_stats else None
    return Reply(
        render_list(
            lst, req.base_url, with_stats=with_stats, stats_keys=stats_keys, campaigns=campaigns
        )
    )


def _patch_list(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    body = req.json_object()
    for key in ("name", "permission_reminder", "visibility"):
        if key in body:
            setattr(lst, key, str(body[key]))
    for key in ("email_type_option", "double_optin", "marketing_permissions"):
        if key in body:
            setattr(lst, key, bool(body[key]))
    for key in ("contact", "campaign_defaults"):
        if isinstance(body.get(key), dict):
            getattr(lst, key).update(body[key])
    return Reply(render_list(lst, req.base_url, campaigns=campaign_stats(req.sandbox, lst.id)))


def _delete_list(req: ApiRequest) -> Reply:
    req.sandbox.get_list(req.params["list_id"])
    del req.sandbox.lists[req.params["list_id"]]
    return Reply(status=204)


# --- merge fields ------------------------------------------------------------------------------


def add_merge_field(
    sandbox: Sandbox, lst: AudienceList, body: dict[str, Any], *, order: int | None = None
) -> MergeField:
    """Validate and add a merge field; ``tag`` defaults to ``MMERGE<n>`` like Mailchimp."""
    _required(body, "name", "type")
    kind = str(body["type"])
    if kind not in MERGE_TYPES:
        raise invalid_resource(
            errors=[{"field": "type", "message": f"Value must be one of: {', '.join(MERGE_TYPES)}"}]
        )
    merge_id = sandbox.ids.next(f"merge:{lst.id}")
    tag = str(body.get("tag") or "").upper() or f"MMERGE{merge_id}"
    if not TAG_RE.match(tag):
        raise invalid_resource(
            errors=[{"field": "tag", "message": "Merge tags may only contain A-Z, 0-9 and _."}]
        )
    if tag in lst.merge_by_tag() or tag == "EMAIL":
        raise invalid_resource(f'A Merge Field with the tag "{tag}" already exists for this list.')
    options = dict(body.get("options") or {})
    if kind == "date":
        options.setdefault("date_format", "MM/DD/YYYY")
    if kind == "birthday":
        options.setdefault("date_format", "MM/DD")
    if kind == "phone":
        options.setdefault("phone_format", "none")
    if kind == "address":
        options.setdefault("default_country", 164)
    if kind == "text":
        options.setdefault("size", 25)
    field = MergeField(
        merge_id=merge_id,
        tag=tag,
        name=str(body["name"]),
        type=kind,
        required=bool(body.get("required", False)),
        default_value=str(body.get("default_value") or ""),
        public=bool(body.get("public", True)),
        display_order=int(body.get("display_order") or order or merge_id + 1),
        options=options,
        help_text=str(body.get("help_text") or ""),
    )
    lst.merge_fields[merge_id] = field
    lst.merge_fields_changed()
    return field


def render_merge_field(lst: AudienceList, field: MergeField, base: str) -> dict[str, Any]:
    href = f"{base}/lists/{lst.id}/merge-fields/{field.merge_id}"
    return {
        "merge_id": field.merge_id,
        "tag": field.tag,
        "name": field.name,
        "type": field.type,
        "required": field.required,
        "default_value": field.default_value,
        "public": field.public,
        "display_order": field.display_order,
        "options": field.options,
        "help_text": field.help_text,
        "list_id": lst.id,
        "_links": [
            link("self", href),
            link("parent", f"{base}/lists/{lst.id}/merge-fields"),
            link("update", href, "PATCH"),
            link("delete", href, "DELETE"),
        ],
    }


def _merge_field(req: ApiRequest) -> tuple[AudienceList, MergeField]:
    lst = req.sandbox.get_list(req.params["list_id"])
    try:
        field = lst.merge_fields[int(req.params["merge_id"])]
    except (KeyError, ValueError):
        raise not_found() from None
    return lst, field


def _get_merge_fields(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    fields = sorted(lst.merge_fields.values(), key=lambda f: (f.display_order, f.merge_id))
    if req.query.get("type"):
        fields = [f for f in fields if f.type == req.query["type"]]
    if req.query.get("required"):
        wanted = qbool(req.query, "required")
        fields = [f for f in fields if f.required == wanted]
    items, total = page(fields, req.query)
    return Reply(
        {
            "merge_fields": [render_merge_field(lst, f, req.base_url) for f in items],
            "list_id": lst.id,
            "total_items": total,
            "_links": collection_links(
                req.base_url, f"/lists/{lst.id}/merge-fields", f"/lists/{lst.id}"
            ),
        },
        items=len(items),
    )


def _post_merge_field(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    field = add_merge_field(req.sandbox, lst, req.json_object())
    return Reply(render_merge_field(lst, field, req.base_url))


def _get_merge_field(req: ApiRequest) -> Reply:
    lst, field = _merge_field(req)
    return Reply(render_merge_field(lst, field, req.base_url))


def _patch_merge_field(req: ApiRequest) -> Reply:
    lst, field = _merge_field(req)
    body = req.json_object()
    for key in ("name", "default_value", "help_text"):
        if key in body:
            setattr(field, key, str(body[key] or ""))
    for key in ("required", "public"):
        if key in body:
            setattr(field, key, bool(body[key]))
    if "display_order" in body:
        field.display_order = int(body["display_order"])
    if isinstance(body.get("options"), dict):
        field.options.update(body["options"])
    if body.get("tag") and str(body["tag"]).upper() != field.tag:
        new_tag = str(body["tag"]).upper()
        if new_tag in lst.merge_by_tag() or not TAG_RE.match(new_tag):
            raise invalid_resource(f'A Merge Field with the tag "{new_tag}" already exists.')
        for member in lst.members.values():
            if field.tag in member.merge_fields:
                member.merge_fields[new_tag] = member.merge_fields.pop(field.tag)
        field.tag = new_tag
        lst.merge_fields_changed()
    return Reply(render_merge_field(lst, field, req.base_url))


def _delete_merge_field(req: ApiRequest) -> Reply:
    lst, field = _merge_field(req)
    del lst.merge_fields[field.merge_id]
    lst.merge_fields_changed()
    for member in lst.members.values():
        member.merge_fields.pop(field.tag, None)
    return Reply(status=204)


# --- interest categories and interests -------------------------------------------------------


def render_category(lst: AudienceList, cat: InterestCategory, base: str) -> dict[str, Any]:
    href = f"{base}/lists/{lst.id}/interest-categories/{cat.id}"
    return {
        "list_id": lst.id,
        "id": cat.id,
        "title": cat.title,
        "display_order": cat.display_order,
        "type": cat.type,
        "_links": [
            link("self", href),
            link("parent", f"{base}/lists/{lst.id}/interest-categories"),
            link("update", href, "PATCH"),
            link("delete", href, "DELETE"),
            link("interests", f"{href}/interests"),
        ],
    }


def render_interest(lst: AudienceList, interest: Interest, base: str) -> dict[str, Any]:
    href = (
        f"{base}/lists/{lst.id}/interest-categories/{interest.category_id}/interests/{interest.id}"
    )
    count = sum(
        1 for m in lst.members.values() if m.interests.get(interest.id) and m.status == "subscribed"
    )
    return {
        "category_id": interest.category_id,
        "list_id": lst.id,
        "id": interest.id,
        "name": interest.name,
        "subscriber_count": str(count),
        "display_order": interest.display_order,
        "_links": [
            link("self", href),
            link("parent", href.rsplit("/", 1)[0]),
            link("update", href, "PATCH"),
            link("delete", href, "DELETE"),
        ],
    }


def add_category(sandbox: Sandbox, lst: AudienceList, body: dict[str, Any]) -> InterestCategory:
    _required(body, "title", "type")
    if body["type"] not in CATEGORY_TYPES:
        raise invalid_resource(
            errors=[
                {"field": "type", "message": f"Value must be one of: {', '.join(CATEGORY_TYPES)}"}
            ]
        )
    cat = InterestCategory(
        id=sandbox.ids.hex10(),
        title=str(body["title"]),
        type=str(body["type"]),
        display_order=int(body.get("display_order") or len(lst.categories)),
    )
    lst.categories[cat.id] = cat
    return cat


def add_interest(
    sandbox: Sandbox, lst: AudienceList, cat: InterestCategory, body: dict[str, Any]
) -> Interest:
    _required(body, "name")
    name = str(body["name"])
    if any(i.name == name and i.category_id == cat.id for i in lst.interests.values()):
        raise invalid_resource(f'Cannot add "{name}" because it already exists on the list.')
    interest = Interest(
        id=sandbox.ids.hex10(),
        category_id=cat.id,
        name=name,
        display_order=int(body.get("display_order") or 0),
    )
    lst.interests[interest.id] = interest
    return interest


def _category(req: ApiRequest) -> tuple[AudienceList, InterestCategory]:
    lst = req.sandbox.get_list(req.params["list_id"])
    cat = lst.categories.get(req.params["interest_category_id"])
    if cat is None:
        raise not_found()
    return lst, cat


def _get_categories(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    cats = list(lst.categories.values())
    if req.query.get("type"):
        cats = [c for c in cats if c.type == req.query["type"]]
    items, total = page(cats, req.query)
    return Reply(
        {
            "list_id": lst.id,
            "categories": [render_category(lst, c, req.base_url) for c in items],
            "total_items": total,
            "_links": collection_links(
                req.base_url, f"/lists/{lst.id}/interest-categories", f"/lists/{lst.id}"
            ),
        },
        items=len(items),
    )


def _post_category(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    return Reply(
        render_category(lst, add_category(req.sandbox, lst, req.json_object()), req.base_url)
    )


def _get_category(req: ApiRequest) -> Reply:
    lst, cat = _category(req)
    return Reply(render_category(lst, cat, req.base_url))


def _patch_category(req: ApiRequest) -> Reply:
    lst, cat = _category(req)
    body = req.json_object()
    if "title" in body:
        cat.title = str(body["title"])
    if body.get("type") in CATEGORY_TYPES:
        cat.type = str(body["type"])
    if "display_order" in body:
        cat.display_order = int(body["display_order"])
    return Reply(render_category(lst, cat, req.base_url))


def _delete_category(req: ApiRequest) -> Reply:
    lst, cat = _category(req)
    del lst.categories[cat.id]
    for iid in [i.id for i in lst.interests.values() if i.category_id == cat.id]:
        del lst.interests[iid]
        for member in lst.members.values():
            member.interests.pop(iid, None)
    return Reply(status=204)


def _interest(req: ApiRequest) -> tuple[AudienceList, Interest]:
    lst, cat = _category(req)
    interest = lst.interests.get(req.params["interest_id"])
    if interest is None or interest.category_id != cat.id:
        raise not_found()
    return lst, interest


def _get_interests(req: ApiRequest) -> Reply:
    lst, cat = _category(req)
    interests = [i for i in lst.interests.values() if i.category_id == cat.id]
    items, total = page(interests, req.query)
    path = f"/lists/{lst.id}/interest-categories/{cat.id}"
    return Reply(
        {
            "interests": [render_interest(lst, i, req.base_url) for i in items],
            "list_id": lst.id,
            "category_id": cat.id,
            "total_items": total,
            "_links": collection_links(req.base_url, f"{path}/interests", path),
        },
        items=len(items),
    )


def _post_interest(req: ApiRequest) -> Reply:
    lst, cat = _category(req)
    interest = add_interest(req.sandbox, lst, cat, req.json_object())
    return Reply(render_interest(lst, interest, req.base_url))


def _get_interest(req: ApiRequest) -> Reply:
    lst, interest = _interest(req)
    return Reply(render_interest(lst, interest, req.base_url))


def _patch_interest(req: ApiRequest) -> Reply:
    lst, interest = _interest(req)
    body = req.json_object()
    if "name" in body:
        interest.name = str(body["name"])
    if "display_order" in body:
        interest.display_order = int(body["display_order"])
    return Reply(render_interest(lst, interest, req.base_url))


def _delete_interest(req: ApiRequest) -> Reply:
    lst, interest = _interest(req)
    del lst.interests[interest.id]
    for member in lst.members.values():
        member.interests.pop(interest.id, None)
    return Reply(status=204)


# --- segments and tags ---------------------------------------------------------------------------


def get_or_create_tag(sandbox: Sandbox, lst: AudienceList, name: str) -> Segment:
    """Tags are static segments; create one on first use (caller holds the lock)."""
    seg = lst.tag_named(name)
    if seg is None:
        now = sandbox.clock.stamp()
        seg = Segment(
            id=sandbox.ids.next(f"segment:{lst.id}"), name=name, created_at=now, updated_at=now
        )
        lst.segments[seg.id] = seg
        lst.segments_changed()
    return seg


def render_segment(lst: AudienceList, seg: Segment, base: str) -> dict[str, Any]:
    href = f"{base}/lists/{lst.id}/segments/{seg.id}"
    return {
        "id": seg.id,
        "name": seg.name,
        "member_count": len(seg.members),
        "type": seg.type,
        "created_at": seg.created_at,
        "updated_at": seg.updated_at,
        "options": seg.options if seg.type != "static" else {},
        "list_id": lst.id,
        "_links": [
            link("self", href),
            link("parent", f"{base}/lists/{lst.id}/segments"),
            link("update", href, "PATCH"),
            link("delete", href, "DELETE"),
            link("members", f"{href}/members"),
        ],
    }


def _segment(req: ApiRequest) -> tuple[AudienceList, Segment]:
    lst = req.sandbox.get_list(req.params["list_id"])
    try:
        seg = lst.segments[int(req.params["segment_id"])]
    except (KeyError, ValueError):
        raise not_found() from None
    return lst, seg


def _tag_member(sandbox: Sandbox, lst: AudienceList, seg: Segment, h: str, now: str) -> bool:
    member = lst.members.get(h)
    if member is None or h in seg.members:
        return False
    seg.members[h] = now
    member.tags[seg.id] = now
    member.last_changed = now
    lst.member_touched(member)
    return True


def _untag_member(lst: AudienceList, seg: Segment, h: str, now: str) -> bool:
    member = lst.members.get(h)
    if member is None or seg.members.pop(h, None) is None:
        return False
    member.tags.pop(seg.id, None)
    member.last_changed = now
    lst.member_touched(member)
    return True


def _get_segments(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    segs = list(lst.segments.values())
    if req.query.get("type"):
        segs = [s for s in segs if s.type == req.query["type"]]
    items, total = page(segs, req.query)
    return Reply(
        {
            "segments": [render_segment(lst, s, req.base_url) for s in items],
            "list_id": lst.id,
            "total_items": total,
            "_links": collection_links(
                req.base_url, f"/lists/{lst.id}/segments", f"/lists/{lst.id}"
            ),
        },
        items=len(items),
    )


def _post_segment(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    body = req.json_object()
    _required(body, "name")
    now = req.sandbox.clock.stamp()
    if "static_segment" in body:
        if lst.tag_named(str(body["name"])) is not None:
            raise invalid_resource(f'Sorry, a segment named "{body["name"]}" already exists.')
        seg = get_or_create_tag(req.sandbox, lst, str(body["name"]))
        for email in body.get("static_segment") or []:
            _tag_member(req.sandbox, lst, seg, subscriber_hash(str(email)), now)
    else:
        seg = Segment(
            id=req.sandbox.ids.next(f"segment:{lst.id}"),
            name=str(body["name"]),
            type="saved",
            created_at=now,
            updated_at=now,
            options=dict(body.get("options") or {}),
        )
        lst.segments[seg.id] = seg
        lst.segments_changed()
    return Reply(render_segment(lst, seg, req.base_url))


def _get_segment(req: ApiRequest) -> Reply:
    lst, seg = _segment(req)
    return Reply(render_segment(lst, seg, req.base_url))


def _patch_segment(req: ApiRequest) -> Reply:
    lst, seg = _segment(req)
    body = req.json_object()
    now = req.sandbox.clock.stamp()
    if "name" in body:
        seg.name = str(body["name"])
        lst.segments_changed()
    if seg.type == "static" and isinstance(body.get("static_segment"), list):
        wanted = {subscriber_hash(str(e)) for e in body["static_segment"]}
        for h in list(seg.members):
            if h not in wanted:
                _untag_member(lst, seg, h, now)
        for h in wanted:
            _tag_member(req.sandbox, lst, seg, h, now)
    if isinstance(body.get("options"), dict) and seg.type != "static":
        seg.options = dict(body["options"])
    seg.updated_at = now
    return Reply(render_segment(lst, seg, req.base_url))


def _delete_segment(req: ApiRequest) -> Reply:
    lst, seg = _segment(req)
    now = req.sandbox.clock.stamp()
    for h in list(seg.members):
        _untag_member(lst, seg, h, now)
    del lst.segments[seg.id]
    lst.segments_changed()
    return Reply(status=204)


def _batch_segment(req: ApiRequest) -> Reply:
    """``POST /lists/{id}/segments/{sid}``: add/remove up to 500 emails each."""
    lst, seg = _segment(req)
    if seg.type != "static":
        raise Problem(400, "Invalid Resource", "Only static segments can have members added.")
    body = req.json_object()
    to_add = list(body.get("members_to_add") or [])
    to_remove = list(body.get("members_to_remove") or [])
    for name, values in (("members_to_add", to_add), ("members_to_remove", to_remove)):
        if len(values) > 500:
            raise invalid_resource(
                errors=[{"field": name, "message": "Too many members; the maximum is 500."}]
            )
    from campaign_bridge.sandbox.mailchimp.members import render_member

    now = req.sandbox.clock.stamp()
    added, removed, errors = [], [], []
    for email in to_add:
        h = subscriber_hash(str(email))
        if h not in lst.members:
            errors.append(
                {
                    "email_addresses": [email],
                    "error": "Email address is not subscribed to the list.",
                }
            )
            continue
        if _tag_member(req.sandbox, lst, seg, h, now):
            added.append(render_member(lst, lst.members[h], req.base_url))
    for email in to_remove:
        h = subscriber_hash(str(email))
        if _untag_member(lst, seg, h, now):
            removed.append(render_member(lst, lst.members[h], req.base_url))
        else:
            errors.append(
                {"email_addresses": [email], "error": "Email address is not in the segment."}
            )
    seg.updated_at = now
    return Reply(
        {
            "members_added": added,
            "members_removed": removed,
            "errors": errors,
            "total_added": len(added),
            "total_removed": len(removed),
            "error_count": len(errors),
            "_links": [link("self", f"{req.base_url}{req.path}", "POST")],
        },
        items=len(to_add) + len(to_remove),
    )


def _get_segment_members(req: ApiRequest) -> Reply:
    lst, seg = _segment(req)
    from campaign_bridge.sandbox.mailchimp.members import render_member

    members = [lst.members[h] for h in seg.members if h in lst.members]
    items, total = page(members, req.query)
    return Reply(
        {
            "members": [render_member(lst, m, req.base_url) for m in items],
            "total_items": total,
            "_links": collection_links(req.base_url, req.path, req.path.rsplit("/", 1)[0]),
        },
        items=len(items),
    )


def _post_segment_member(req: ApiRequest) -> Reply:
    lst, seg = _segment(req)
    body = req.json_object()
    _required(body, "email_address")
    h = subscriber_hash(str(body["email_address"]))
    if h not in lst.members:
        raise not_found()
    _tag_member(req.sandbox, lst, seg, h, req.sandbox.clock.stamp())
    from campaign_bridge.sandbox.mailchimp.members import render_member

    return Reply(render_member(lst, lst.members[h], req.base_url))


def _delete_segment_member(req: ApiRequest) -> Reply:
    lst, seg = _segment(req)
    from campaign_bridge.sandbox.mailchimp.members import member_key

    key = member_key(req.params["subscriber_hash"])
    if not _untag_member(lst, seg, key, req.sandbox.clock.stamp()):
        raise not_found()
    return Reply(status=204)


def _tag_search(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    prefix = req.query.get("name", "").lower()
    tags = [
        {"id": s.id, "name": s.name}
        for s in lst.segments.values()
        if s.type == "static" and s.name.lower().startswith(prefix)
    ]
    paging(req.query)
    return Reply({"tags": tags, "total_items": len(tags)}, items=len(tags))


# --- root and ping -----------------------------------------------------------------------------


def _root(req: ApiRequest) -> Reply:
    acc = req.sandbox.account
    total = sum(
        1
        for lst in req.sandbox.lists.values()
        for m in lst.members.values()
        if m.status == "subscribed"
    )
    return Reply(
        {
            "account_id": acc.account_id,
            "login_id": acc.account_id,
            "account_name": acc.account_name,
            "email": acc.email,
            "first_name": acc.first_name,
            "last_name": acc.last_name,
            "username": "sandbox",
            "avatar_url": "",
            "role": "owner",
            "member_since": acc.member_since,
            "pricing_plan_type": "monthly",
            "first_payment": "",
            "account_timezone": "UTC",
            "account_industry": "Software",
            "contact": {
                "company": acc.account_name,
                "addr1": "1 Sandbox Way",
                "addr2": "",
                "city": "Atlanta",
                "state": "GA",
                "zip": "30308",
                "country": "US",
            },
            "pro_enabled": False,
            "last_login": req.sandbox.clock.stamp(),
            "total_subscribers": total,
            "industry_stats": {"open_rate": 0.2, "bounce_rate": 0.01, "click_rate": 0.03},
            "_links": [link("self", req.base_url + "/"), link("lists", req.base_url + "/lists")],
        }
    )


def _ping(req: ApiRequest) -> Reply:
    return Reply({"health_status": "Everything's Chimpy!"})


routes = [
    Route("GET", "/", _root),
    Route("GET", "/ping", _ping),
    Route("GET", "/lists", _get_lists),
    Route("POST", "/lists", _post_list),
    Route("GET", "/lists/{list_id}", _get_list),
    Route("PATCH", "/lists/{list_id}", _patch_list),
    Route("DELETE", "/lists/{list_id}", _delete_list),
    Route("GET", "/lists/{list_id}/merge-fields", _get_merge_fields),
    Route("POST", "/lists/{list_id}/merge-fields", _post_merge_field),
    Route("GET", "/lists/{list_id}/merge-fields/{merge_id}", _get_merge_field),
    Route("PATCH", "/lists/{list_id}/merge-fields/{merge_id}", _patch_merge_field),
    Route("DELETE", "/lists/{list_id}/merge-fields/{merge_id}", _delete_merge_field),
    Route("GET", "/lists/{list_id}/interest-categories", _get_categories),
    Route("POST", "/lists/{list_id}/interest-categories", _post_category),
    Route("GET", "/lists/{list_id}/interest-categories/{interest_category_id}", _get_category),
    Route("PATCH", "/lists/{list_id}/interest-categories/{interest_category_id}", _patch_category),
    Route(
        "DELETE", "/lists/{list_id}/interest-categories/{interest_category_id}", _delete_category
    ),
    Route(
        "GET",
        "/lists/{list_id}/interest-categories/{interest_category_id}/interests",
        _get_interests,
    ),
    Route(
        "POST",
        "/lists/{list_id}/interest-categories/{interest_category_id}/interests",
        _post_interest,
    ),
    Route(
        "GET",
        "/lists/{list_id}/interest-categories/{interest_category_id}/interests/{interest_id}",
        _get_interest,
    ),
    Route(
        "PATCH",
        "/lists/{list_id}/interest-categories/{interest_category_id}/interests/{interest_id}",
        _patch_interest,
    ),
    Route(
        "DELETE",
        "/lists/{list_id}/interest-categories/{interest_category_id}/interests/{interest_id}",
        _delete_interest,
    ),
    Route("GET", "/lists/{list_id}/segments", _get_segments),
    Route("POST", "/lists/{list_id}/segments", _post_segment),
    Route("GET", "/lists/{list_id}/segments/{segment_id}", _get_segment),
    Route("POST", "/lists/{list_id}/segments/{segment_id}", _batch_segment),
    Route("PATCH", "/lists/{list_id}/segments/{segment_id}", _patch_segment),
    Route("DELETE", "/lists/{list_id}/segments/{segment_id}", _delete_segment),
    Route("GET", "/lists/{list_id}/segments/{segment_id}/members", _get_segment_members),
    Route("POST", "/lists/{list_id}/segments/{segment_id}/members", _post_segment_member),
    Route(
        "DELETE",
        "/lists/{list_id}/segments/{segment_id}/members/{subscriber_hash}",
        _delete_segment_member,
    ),
    Route("GET", "/lists/{list_id}/tag-search", _tag_search),
]
