"""The control API under ``/_sandbox`` — for tests and demos, not part of Mailchimp's surface.

No Mailchimp auth; when ``config.control_token`` is set, send it as ``X-Sandbox-Token``.
See docs/sandbox.md for the reference. Everything here is also callable in-process
(``seed``, ``seed_default``, ``simulate_*``) for white-box tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from campaign_bridge.sandbox._control import body_of
from campaign_bridge.sandbox.mailchimp import persistence
from campaign_bridge.sandbox.mailchimp.lists import (
    add_category,
    add_interest,
    add_merge_field,
    campaign_stats,
    create_list,
    render_list,
)
from campaign_bridge.sandbox.mailchimp.members import (
    archive_member,
    create_member,
    find_member,
    forget_member,
    render_member,
    set_status,
    update_member,
)
from campaign_bridge.sandbox.mailchimp.model import AudienceList, Sandbox, Source, subscriber_hash
from campaign_bridge.sandbox.mailchimp.wire import (
    ApiRequest,
    Problem,
    Reply,
    Route,
    invalid_resource,
)

__all__ = [
    "DEFAULT_LIST",
    "control_routes",
    "seed",
    "seed_default",
    "seed_demo",
    "simulate_archive",
    "simulate_bounce",
    "simulate_confirm",
    "simulate_delete_permanent",
    "simulate_email_change",
    "simulate_signup",
    "simulate_unsubscribe",
]

DEFAULT_LIST: dict[str, Any] = {
    "name": "Sandbox Audience",
    "permission_reminder": "You signed up on our sandbox site.",
    "email_type_option": False,
    "contact": {
        "company": "Sandbox Inc.",
        "address1": "1 Sandbox Way",
        "address2": "",
        "city": "Atlanta",
        "state": "GA",
        "zip": "30308",
        "country": "US",
        "phone": "",
    },
    "campaign_defaults": {
        "from_name": "Sandbox",
        "from_email": "news@sandbox.invalid",
        "subject": "",
        "language": "en",
    },
}


def seed_default(sandbox: Sandbox) -> tuple[str, str]:
    """Seed one API key and one audience; returns ``(api_key, list_id)``."""
    with sandbox.lock:
        key = sandbox.new_api_key(label="default")
        lst = create_list(sandbox, dict(DEFAULT_LIST))
        sandbox.default_api_key, sandbox.default_list_id = key, lst.id
        return key, lst.id


DEMO_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Radia")
DEMO_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton")


def seed_demo(sandbox: Sandbox, members: int = 25) -> dict[str, Any]:
    """Demo content on the default audience: extra merge fields, interests, members, tags."""
    statuses = ["subscribed"] * 6 + ["unsubscribed", "pending", "cleaned"]
    people = []
    for i in range(members):
        first, last = DEMO_FIRST[i % len(DEMO_FIRST)], DEMO_LAST[i % len(DEMO_LAST)]
        people.append(
            {
                "email_address": f"{first}.{last}{i}@demo.sandbox.invalid".lower(),
                "status": statuses[i % len(statuses)],
                "merge_fields": {"FNAME": first, "LNAME": last, "PLAN": ("free", "pro")[i % 2]},
                "tags": ["demo"] + (["vip"] if i % 5 == 0 else []),
            }
        )
    if not sandbox.default_list_id:
        seed_default(sandbox)
    spec = {
        "id": sandbox.default_list_id,
        "merge_fields": [
            {
                "tag": "PLAN",
                "name": "Plan",
                "type": "dropdown",
                "options": {"choices": ["free", "pro"]},
            },
            {"tag": "SCORE", "name": "Score", "type": "number"},
        ],
        "interest_categories": [
            {"title": "Topics", "type": "checkboxes", "interests": ["News", "Product", "Events"]}
        ],
        "members": people,
    }
    return seed(sandbox, {"lists": [spec]})


def _seed_list(sandbox: Sandbox, spec: Mapping[str, Any]) -> AudienceList:
    lst = sandbox.lists.get(str(spec.get("id", "")))
    if lst is None:
        body = {**DEFAULT_LIST, **{k: v for k, v in spec.items() if k in DEFAULT_LIST}}
        for key in ("double_optin", "marketing_permissions", "visibility"):
            if key in spec:
                body[key] = spec[key]
        lst = create_list(sandbox, body, list_id=spec.get("id"))
    for field in spec.get("merge_fields", []):
        if field.get("tag") and field["tag"].upper() in lst.merge_by_tag():
            continue
        add_merge_field(sandbox, lst, dict(field))
    for cat_spec in spec.get("interest_categories", []):
        cat = add_category(
            sandbox, lst, {"title": cat_spec["title"], "type": cat_spec.get("type", "checkboxes")}
        )
        for name in cat_spec.get("interests", []):
            add_interest(sandbox, lst, cat, {"name": name})
    for perm in spec.get("permissions", []):
        lst.permissions[str(perm.get("id") or sandbox.ids.hex10())] = str(perm.get("text", ""))
        lst.marketing_permissions = True
    for item in spec.get("members", []):
        _seed_member(sandbox, lst, item)
    return lst


def _seed_member(sandbox: Sandbox, lst: AudienceList, item: Mapping[str, Any]) -> None:
    status = item.get("status", "subscribed")
    origin = str(item.get("unsubscribe_origin") or "admin")
    member = create_member(
        sandbox,
        lst,
        item.get("email_address"),
        status,
        item,
        source="admin",
        trusted=True,
        tags=item.get("tags"),
    )
    if status in ("unsubscribed", "cleaned"):
        member.unsubscribe_origin = origin
        member.compliance = status == "cleaned" or origin == "user"
    if item.get("last_changed"):
        member.last_changed = str(item["last_changed"])
        lst.member_touched(member)


def seed_problems(body: object) -> list[str]:
    """What is wrong with a ``POST /_sandbox/seed`` body's shape, checked before anything is
    seeded (so a bad body seeds nothing); member-level rules are the API's own and answer 400
    as the API does."""
    if not isinstance(body, Mapping):
        return ["the body must be a JSON object with api_keys, oauth_tokens and/or lists"]
    problems = [
        f"{name} must be a list of strings"
        for name in ("api_keys", "oauth_tokens")
        if not _list_of(body.get(name, []), str)
    ]
    lists = body.get("lists", [])
    if not _list_of(lists, Mapping):
        return [*problems, "lists must be a list of objects"]
    for number, spec in enumerate(lists, 1):
        problems += [f"lists[{number}]: {problem}" for problem in _list_spec_problems(spec)]
    return problems


def _list_spec_problems(spec: Mapping[str, Any]) -> list[str]:
    problems = [
        f"{name} must be a list of objects"
        for name in ("merge_fields", "interest_categories", "permissions", "members")
        if not _list_of(spec.get(name, []), Mapping)
    ]
    for number, category in enumerate(spec.get("interest_categories", []), 1):
        if not isinstance(category, Mapping):
            continue
        if not isinstance(category.get("title"), str) or not category["title"]:
            problems.append(f"interest_categories[{number}] needs a title")
        if not _list_of(category.get("interests", []), str):
            problems.append(f"interest_categories[{number}].interests must be a list of names")
    return problems


def _list_of(value: object, kind: type | tuple[type, ...]) -> bool:
    return isinstance(value, list) and all(isinstance(item, kind) for item in value)


def seed(sandbox: Sandbox, body: Mapping[str, Any]) -> dict[str, Any]:
    """Seed keys, tokens and audiences (with merge fields, interests and members) in bulk."""
    with sandbox.lock:
        keys = [sandbox.new_api_key(k or None) for k in body.get("api_keys", [])]
        tokens = [sandbox.new_oauth_token(t or None) for t in body.get("oauth_tokens", [])]
        lists = [_seed_list(sandbox, spec) for spec in body.get("lists", [])]
        sandbox.write_seq += 1  # cached member listings are stale (also when called in-process)
        return {
            "api_keys": keys,
            "oauth_tokens": tokens,
            "lists": [
                {"id": lst.id, "name": lst.name, "member_count": len(lst.members)} for lst in lists
            ],
        }


# --- simulated subscriber behaviour ---------------------------------------------------------------


def simulate_unsubscribe(
    sandbox: Sandbox,
    list_id: str,
    email_or_hash: str,
    *,
    source: Source = "user",
    reason: str = "",
    campaign_id: str = "",
) -> dict[str, Any]:
    """The subscriber unsubscribes themselves (``source="user"``: a compliance state)."""
    with sandbox.lock:
        lst = sandbox.get_list(list_id)
        member = find_member(lst, email_or_hash)
        set_status(
            sandbox,
            lst,
            member,
            "unsubscribed",
            source=source,
            reason=reason,
            campaign_id=campaign_id,
        )
        return render_member(lst, member, _base(sandbox))


def simulate_bounce(
    sandbox: Sandbox,
    list_id: str,
    email_or_hash: str,
    *,
    source: Source = "user",
    reason: str = "hard",
    campaign_id: str = "",
) -> dict[str, Any]:
    """A hard bounce: the member becomes ``cleaned`` (cannot be resubscribed via the API)."""
    with sandbox.lock:
        lst = sandbox.get_list(list_id)
        member = find_member(lst, email_or_hash)
        set_status(
            sandbox, lst, member, "cleaned", source=source, reason=reason, campaign_id=campaign_id
        )
        return render_member(lst, member, _base(sandbox))


def simulate_email_change(
    sandbox: Sandbox, list_id: str, email_or_hash: str, new_email: str, *, source: Source = "user"
) -> dict[str, Any]:
    """The subscriber changes their address in the preference centre (upemail + profile)."""
    with sandbox.lock:
        lst = sandbox.get_list(list_id)
        member = find_member(lst, email_or_hash)
        update_member(sandbox, lst, member, {"email_address": new_email}, source=source)
        return render_member(lst, member, _base(sandbox))


def simulate_profile_change(
    sandbox: Sandbox,
    list_id: str,
    email_or_hash: str,
    body: Mapping[str, Any],
    *,
    source: Source = "user",
) -> dict[str, Any]:
    with sandbox.lock:
        lst = sandbox.get_list(list_id)
        member = find_member(lst, email_or_hash)
        update_member(sandbox, lst, member, body, source=source, skip_merge_validation=True)
        return render_member(lst, member, _base(sandbox))


def simulate_signup(
    sandbox: Sandbox, list_id: str, body: Mapping[str, Any], *, source: Source = "user"
) -> dict[str, Any]:
    """A signup through a hosted form (user) or the web app (admin). A returning subscriber
    re-consents, so a previous self-unsubscribe no longer blocks them, and a permanently
    deleted address may come back this way (and only this way: "The contact must re-subscribe
    to get back on the list")."""
    with sandbox.lock:
        lst = sandbox.get_list(list_id)
        default = "pending" if lst.double_optin else "subscribed"
        status = str(body.get("status") or default)
        email = str(body.get("email_address") or "")
        existing = lst.members.get(subscriber_hash(email))
        if existing is None and source == "user":
            lst.forgotten.discard(subscriber_hash(email.strip()))
        if existing is None:
            member = create_member(sandbox, lst, email, status, body, source=source)
        else:
            member = existing
            member.compliance = False
            update_member(sandbox, lst, member, body, status=status, source=source)
        return render_member(lst, member, _base(sandbox))


def simulate_confirm(sandbox: Sandbox, list_id: str, email_or_hash: str) -> dict[str, Any]:
    """A pending member clicks the confirmation link: subscribed by themselves (this clears a
    previous compliance state, as a fresh opt-in does)."""
    with sandbox.lock:
        lst = sandbox.get_list(list_id)
        member = find_member(lst, email_or_hash)
        if member.status != "pending":
            raise Problem(400, "Invalid Resource", "Only a pending member can confirm.")
        member.compliance = False
        set_status(sandbox, lst, member, "subscribed", source="user")
        return render_member(lst, member, _base(sandbox))


# --- provider-side consent events, kept apart from the API emulation above ---------------------
# What an admin does in the web app (or a member through a link) that the bridge must respect:
# each goes through the same write functions as the API, so webhooks and ``last_changed``
# follow exactly as for any other change.


def simulate_archive(
    sandbox: Sandbox, list_id: str, email_or_hash: str, *, source: Source = "admin"
) -> dict[str, Any]:
    """An admin archives a member in the web app (405 for cleaned, pending or archived ones,
    as the API's DELETE); webhook ``unsubscribe`` with ``action=delete``."""
    with sandbox.lock:
        lst = sandbox.get_list(list_id)
        member = find_member(lst, email_or_hash)
        archive_member(sandbox, lst, member, source=source)
        return render_member(lst, member, _base(sandbox))


def simulate_delete_permanent(
    sandbox: Sandbox, list_id: str, email_or_hash: str, *, source: Source = "admin"
) -> dict[str, Any]:
    """An admin permanently deletes a member (GDPR erase): the member is gone, and every later
    add or upsert of the address through the API gets 400 ``Forgotten Email Not Subscribed``;
    only the person signing up again through a form brings it back. Answers what the member
    was, with ``status: "forgotten"`` (not a Mailchimp status: the control API's way to say
    so); webhook ``unsubscribe`` with ``action=delete``."""
    with sandbox.lock:
        lst = sandbox.get_list(list_id)
        member = find_member(lst, email_or_hash)
        before = render_member(lst, member, _base(sandbox))
        forget_member(sandbox, lst, member, source=source)
        return {**before, "status": "forgotten"}


def _base(sandbox: Sandbox) -> str:
    return f"https://{sandbox.config.dc}.api.mailchimp.com/3.0"


# --- handlers ------------------------------------------------------------------------------------


def _source(body: Mapping[str, Any], default: Source) -> Source:
    value = body.get("source", default)
    if value not in ("user", "admin", "api"):
        raise invalid_resource(errors=[{"field": "source", "message": "user, admin or api"}])
    return value  # type: ignore[no-any-return]


def _health(req: ApiRequest) -> Reply:
    sb = req.sandbox
    return Reply(
        {
            "ok": True,
            "dc": sb.config.dc,
            "api_key": sb.default_api_key,
            "list_id": sb.default_list_id,
            "now": sb.clock.stamp(),
        }
    )


def _reset(req: ApiRequest) -> Reply:
    body = body_of(req)
    persistence.reset_state(req.sandbox)
    req.sandbox.limits.clear_faults()
    req.sandbox.default_api_key = req.sandbox.default_list_id = ""
    if body.get("seed_default", True):
        seed_default(req.sandbox)
    return _health(req)


def _seed(req: ApiRequest) -> Reply:
    problems = seed_problems(req.body)
    if problems:
        raise invalid_resource("the seed body is not valid: " + "; ".join(problems))
    return Reply(seed(req.sandbox, req.body))


def _state(req: ApiRequest) -> Reply:
    data = persistence.dump_state(req.sandbox)
    data["limits"] = req.sandbox.limits.to_json()
    return Reply(data)


def _list_state(req: ApiRequest) -> Reply:
    lst = req.sandbox.get_list(req.params["list_id"])
    base = _base(req.sandbox)
    return Reply(
        {
            "list": render_list(lst, base, campaigns=campaign_stats(req.sandbox, lst.id)),
            "members": [render_member(lst, m, base) for m in lst.members.values()],
            "forgotten": sorted(lst.forgotten),
        }
    )


def _unsubscribe(req: ApiRequest) -> Reply:
    body = body_of(req)
    return Reply(
        simulate_unsubscribe(
            req.sandbox,
            req.params["list_id"],
            req.params["member"],
            source=_source(body, "user"),
            reason=str(body.get("reason", "")),
            campaign_id=str(body.get("campaign_id", "")),
        )
    )


def _bounce(req: ApiRequest) -> Reply:
    body = body_of(req)
    return Reply(
        simulate_bounce(
            req.sandbox,
            req.params["list_id"],
            req.params["member"],
            source=_source(body, "user"),
            reason=str(body.get("reason", "hard")),
            campaign_id=str(body.get("campaign_id", "")),
        )
    )


def _change_email(req: ApiRequest) -> Reply:
    body = body_of(req)
    if not body.get("new_email"):
        raise invalid_resource(errors=[{"field": "new_email", "message": "required"}])
    return Reply(
        simulate_email_change(
            req.sandbox,
            req.params["list_id"],
            req.params["member"],
            str(body["new_email"]),
            source=_source(body, "user"),
        )
    )


def _profile(req: ApiRequest) -> Reply:
    body = body_of(req)
    return Reply(
        simulate_profile_change(
            req.sandbox,
            req.params["list_id"],
            req.params["member"],
            body,
            source=_source(body, "user"),
        )
    )


def _confirm(req: ApiRequest) -> Reply:
    return Reply(simulate_confirm(req.sandbox, req.params["list_id"], req.params["member"]))


def _signup(req: ApiRequest) -> Reply:
    body = body_of(req)
    return Reply(
        simulate_signup(req.sandbox, req.params["list_id"], body, source=_source(body, "user"))
    )


def _archive(req: ApiRequest) -> Reply:
    body = body_of(req)
    return Reply(
        simulate_archive(
            req.sandbox, req.params["list_id"], req.params["member"], source=_source(body, "admin")
        )
    )


def _delete_permanent(req: ApiRequest) -> Reply:
    body = body_of(req)
    return Reply(
        simulate_delete_permanent(
            req.sandbox, req.params["list_id"], req.params["member"], source=_source(body, "admin")
        )
    )


def _faults(req: ApiRequest) -> Reply:
    return Reply({"faults": req.sandbox.limits.to_json()["faults"]})


def _add_faults(req: ApiRequest) -> Reply:
    body = body_of(req)
    raw = body.get("faults")
    specs: list[Any] = raw if isinstance(raw, list) else [body]
    for spec in specs:
        if not isinstance(spec, Mapping):
            raise invalid_resource(f"each fault rule is a JSON object, not {spec!r}")
        try:
            req.sandbox.limits.add_fault_spec(spec)
        except ValueError as exc:
            raise invalid_resource(str(exc)) from None
    return _faults(req)


def _clear_faults(req: ApiRequest) -> Reply:
    req.sandbox.limits.clear_faults()
    return Reply(status=204)


def _limits(req: ApiRequest) -> Reply:
    body = body_of(req)
    limits = req.sandbox.limits
    for key in ("latency", "latency_per_item"):
        if key in body:
            setattr(limits, key, float(body[key]))
    if "max_concurrent" in body:
        limits.max_concurrent = int(body["max_concurrent"])
    if "fake_domains" in body:
        req.sandbox.config.fake_domains = frozenset(str(d).lower() for d in body["fake_domains"])
    if "throttled_emails" in body:
        req.sandbox.throttled = {str(e).lower() for e in body["throttled_emails"]}
    out = limits.to_json()
    out["fake_domains"] = sorted(req.sandbox.config.fake_domains)
    out["throttled_emails"] = sorted(req.sandbox.throttled)
    return Reply(out)


def _clock(req: ApiRequest) -> Reply:
    body = body_of(req)
    if "advance" in body:
        req.sandbox.clock.advance(float(body["advance"]))
    return Reply({"now": req.sandbox.clock.stamp(), "offset": req.sandbox.clock.offset_seconds})


def _keys(req: ApiRequest) -> Reply:
    body = body_of(req)
    key = req.sandbox.new_api_key(body.get("api_key") or None)
    return Reply({"api_key": key})


def _tokens(req: ApiRequest) -> Reply:
    body = body_of(req)
    return Reply({"access_token": req.sandbox.new_oauth_token(body.get("access_token") or None)})


def _save(req: ApiRequest) -> Reply:
    path = body_of(req).get("path") or req.sandbox.config.state_file
    if not path:
        raise Problem(400, "Invalid Resource", 'No state file configured; pass {"path": ...}.')
    persistence.save(req.sandbox, str(path))
    return Reply({"saved": str(path)})


_M = "/lists/{list_id}/members/{member}"

control_routes = [
    Route("GET", "/health", _health),
    Route("POST", "/reset", _reset),
    Route("POST", "/seed", _seed),
    Route("GET", "/state", _state),
    Route("GET", "/lists/{list_id}", _list_state),
    Route("POST", _M + "/unsubscribe", _unsubscribe),
    Route("POST", _M + "/bounce", _bounce),
    Route("POST", _M + "/change-email", _change_email),
    Route("POST", _M + "/profile", _profile),
    Route("POST", _M + "/confirm", _confirm),
    Route("POST", "/lists/{list_id}/signup", _signup),
    Route("POST", _M + "/archive", _archive),
    Route("POST", _M + "/delete-permanent", _delete_permanent),
    Route("GET", "/faults", _faults),
    Route("POST", "/faults", _add_faults),
    Route("DELETE", "/faults", _clear_faults),
    Route("POST", "/limits", _limits),
    Route("GET", "/limits", _limits),
    Route("POST", "/clock", _clock),
    Route("GET", "/clock", _clock),
    Route("POST", "/keys", _keys),
    Route("POST", "/oauth-tokens", _tokens),
    Route("POST", "/save", _save),
]
