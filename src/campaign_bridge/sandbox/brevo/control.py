"""The control API under ``/_sandbox`` — for tests and demos, not part of Brevo's surface.

Same verbs as the Mailchimp sandbox's: health, reset, seed, state (dump), simulate subscriber
behaviour (unsubscribe, hard/soft bounce, blocklist, spam complaint, double opt-in confirm),
faults, limits, clock, keys, save. Everything is also callable in-process (``seed``,
``seed_default``, ``seed_demo``, ``simulate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from campaign_bridge.sandbox._control import ControlVerbs, body_of
from campaign_bridge.sandbox.brevo import persistence, recent
from campaign_bridge.sandbox.brevo.campaigns import RATES, Activity, book, record_event
from campaign_bridge.sandbox.brevo.contacts import (
    add_to_list,
    create_contact,
    emit_change,
    find_contact,
    mark_list_unsubscribed,
    remove_from_list,
    render_contact,
    set_blacklisted,
    update_contact,
)
from campaign_bridge.sandbox.brevo.imports import processes, run_due
from campaign_bridge.sandbox.brevo.lists import create_attribute, create_folder, create_list
from campaign_bridge.sandbox.brevo.model import BrevoSandbox, Contact
from campaign_bridge.sandbox.brevo.wire import (
    ApiRequest,
    Reply,
    Route,
    invalid,
    not_found,
    stamp,
)

__all__ = ["control_routes", "seed", "seed_default", "seed_demo", "simulate"]

DEFAULT_ATTRIBUTES: list[dict[str, Any]] = [
    {"name": "FIRSTNAME", "category": "normal", "type": "text"},
    {"name": "LASTNAME", "category": "normal", "type": "text"},
    {
        "name": "DOUBLE_OPT-IN",
        "category": "category",
        "enumeration": [{"value": 1, "label": "Yes"}, {"value": 2, "label": "No"}],
    },
]


def seed_default(sandbox: BrevoSandbox) -> tuple[str, int]:
    """One API key, the default attributes, folder and list; returns ``(api_key, list_id)``."""
    with sandbox.lock:
        key = sandbox.new_api_key(name="default")
        sandbox.default_api_key = key
        for spec in DEFAULT_ATTRIBUTES:
            if spec["name"] not in sandbox.attributes:
                create_attribute(sandbox, spec["category"], spec["name"], spec)
        folder = create_folder(sandbox, "Your first folder")
        lst = create_list(sandbox, "Your first list", folder.id)
        return key, lst.id


def seed(sandbox: BrevoSandbox, body: Mapping[str, Any]) -> dict[str, Any]:
    """Bulk seeding: ``api_keys``, ``attributes``, ``folders``, ``lists``, ``contacts``.
    Seeded contacts skip the unknown-attribute check; ``listUnsubscribed`` and
    ``emailBlacklisted`` are set as given."""
    with sandbox.lock:
        sandbox.write_seq += 1
        keys = [sandbox.new_api_key(k or None) for k in body.get("api_keys", [])]
        for spec in body.get("attributes", []):
            name = str(spec.get("name", "")).upper()
            if name and name not in sandbox.attributes:
                body_spec = {**spec}
                if "options" in spec:
                    body_spec["multiCategoryOptions"] = spec["options"]
                create_attribute(sandbox, spec.get("category", "normal"), name, body_spec)
        folders = [
            create_folder(sandbox, str(f.get("name", "Folder"))).id for f in body.get("folders", [])
        ]
        lists = []
        for spec in body.get("lists", []):
            folder_id = spec.get("folderId") or next(iter(sandbox.folders), None)
            if folder_id is None:
                folder_id = create_folder(sandbox, "Your first folder").id
            lists.append(create_list(sandbox, str(spec.get("name", "List")), folder_id).id)
        contacts = [_seed_contact(sandbox, item).id for item in body.get("contacts", [])]
        return {"api_keys": keys, "folders": folders, "lists": lists, "contacts": contacts}


def _seed_contact(sandbox: BrevoSandbox, item: Mapping[str, Any]) -> Contact:
    strict = sandbox.config.reject_unknown_attributes
    sandbox.config.reject_unknown_attributes = False
    try:
        spec = {k: v for k, v in item.items() if k not in ("listUnsubscribed", "modifiedAt")}
        spec["updateEnabled"] = True
        _status, contact = create_contact(sandbox, spec, source="admin")
    finally:
        sandbox.config.reject_unknown_attributes = strict
    assert contact is not None
    for list_id in item.get("listUnsubscribed", []):
        remove_from_list(sandbox, contact, int(list_id))
        mark_list_unsubscribed(contact, int(list_id))
    if contact.email_blacklisted:
        contact.blacklist_reason = str(item.get("blacklistReason") or "admin")
    return contact


DEMO_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Radia")
DEMO_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton")


def seed_demo(sandbox: BrevoSandbox, count: int = 25) -> dict[str, Any]:
    """Demo content: PLAN (category), SCORE (float), JOINED (date), VIP (boolean) attributes and
    ``count`` contacts on the first list, one in nine blocklisted."""
    if not sandbox.lists:
        seed_default(sandbox)
    list_id = next(iter(sandbox.lists))
    people = []
    for i in range(count):
        first, last = DEMO_FIRST[i % len(DEMO_FIRST)], DEMO_LAST[i % len(DEMO_LAST)]
        people.append(
            {
                "email": f"{first}.{last}{i}@demo.sandbox.invalid".lower(),
                "attributes": {
                    "FIRSTNAME": first,
                    "LASTNAME": last,
                    "PLAN": ("free", "pro")[i % 2],
                    "SCORE": i * 1.5,
                    "JOINED": f"2026-0{1 + i % 9}-1{i % 10}",
                    "VIP": i % 5 == 0,
                },
                "listIds": [list_id],
                "emailBlacklisted": i % 9 == 8,
            }
        )
    spec = {
        "attributes": [
            {
                "name": "PLAN",
                "category": "category",
                "enumeration": [{"value": 1, "label": "free"}, {"value": 2, "label": "pro"}],
            },
            {"name": "SCORE", "category": "normal", "type": "float"},
            {"name": "JOINED", "category": "normal", "type": "date"},
            {"name": "VIP", "category": "normal", "type": "boolean"},
        ],
        "contacts": people,
    }
    return seed(sandbox, spec)


# --- simulated subscriber behaviour --------------------------------------------------------------

ACTIONS = ("unsubscribe", "bounce", "blocklist", "spam", "confirm")


def simulate(
    sandbox: BrevoSandbox, identifier: str, action: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    """What a subscriber (or the account's admin) does, with Brevo's effects:

    - ``unsubscribe``: with ``listId``, from that list only (``listUnsubscribed``); else from
      all marketing email (``emailBlacklisted``), as the default unsubscribe link does; with
      ``campaignId`` it is that campaign's ``unsubscribed`` event (marketing webhook);
    - ``bounce``: ``type`` ``hard`` (blocklists) or ``soft``; ``campaignId`` optional;
    - ``blocklist``: the admin blocklists the contact in the web app;
    - ``spam``: a complaint (blocklists); ``campaignId`` optional;
    - ``confirm``: the contact clicks the double opt-in link (``doubleOptinConfirmation``).
    """
    with sandbox.lock:
        run_due(sandbox)
        sandbox.write_seq += 1
        if action == "confirm":
            return _confirm(sandbox, identifier)
        contact = find_contact(sandbox, identifier)
        if contact is None:
            raise not_found("Contact does not exist")
        campaign_id = int(body.get("campaignId") or 0)
        campaign = book(sandbox).campaigns.get(campaign_id) if campaign_id else None
        if campaign_id and campaign is None:
            raise not_found("Campaign ID does not exist")
        lists = [i for i in (campaign.list_ids if campaign else []) if i in contact.list_ids]
        now = sandbox.now()

        def event(kind: str, **extra: Any) -> None:
            record_event(
                sandbox,
                Activity(kind, campaign_id, contact.id, contact.email or "", now, lists, **extra),
                campaign,
            )

        if action == "unsubscribe":
            list_id = body.get("listId")
            if list_id is not None:
                if int(list_id) not in sandbox.lists:
                    raise not_found("List ID does not exist")
                remove_from_list(sandbox, contact, int(list_id))
                mark_list_unsubscribed(contact, int(list_id))
                recent.touch(sandbox, contact, now)
                emit_change(
                    sandbox,
                    contact,
                    "updated",
                    source="user",
                    changed={"listUnsubscribed": [int(list_id)]},
                )
            else:
                event("unsubscribed", ip=str(body.get("ip", "198.51.100.7")))
                set_blacklisted(sandbox, contact, True, reason="unsubscribe", source="user")
        elif action == "bounce":
            kind = body.get("type", "hard")
            if kind not in ("hard", "soft"):
                raise invalid("type must be hard or soft")
            event(
                f"{kind}_bounce",
                reason=str(
                    body.get("reason")
                    or ("550 5.1.1 mailbox unknown" if kind == "hard" else "452 4.2.2 mailbox full")
                ),
            )
            if kind == "hard":
                set_blacklisted(sandbox, contact, True, reason="hard_bounce", source="user")
        elif action == "blocklist":
            event("admin_unsubscribed", ip=str(body.get("ip", "198.51.100.1")))
            set_blacklisted(sandbox, contact, True, reason="admin", source="admin")
        elif action == "spam":
            event("spam", reason=str(body.get("reason") or "undesired"))
            set_blacklisted(sandbox, contact, True, reason="spam", source="user")
        else:
            raise invalid(f"Unknown action; use one of {', '.join(ACTIONS)}")
        return render_contact(contact)


def _confirm(sandbox: BrevoSandbox, identifier: str) -> dict[str, Any]:
    email = identifier.strip().lower()
    pending = sandbox.extensions.get("doi_pending", {})
    request = pending.pop(email, None)
    if request is None:
        raise not_found("No pending double opt-in for this contact")
    contact = find_contact(sandbox, email)
    if contact is None:
        _status, contact = create_contact(
            sandbox, {"email": email, "attributes": request["attributes"]}, source="user"
        )
        assert contact is not None
    else:
        update_contact(
            sandbox, contact, {"attributes": request["attributes"]}, source="user", strict=False
        )
    for list_id in request["excludeListIds"]:
        remove_from_list(sandbox, contact, list_id)
    added = [i for i in request["includeListIds"] if add_to_list(sandbox, contact, i)]
    if added:
        emit_change(sandbox, contact, "list_addition", source="user", list_ids=added)
    if "DOUBLE_OPT-IN" in sandbox.attributes:
        contact.attributes["DOUBLE_OPT-IN"] = 1
    # a confirmed opt-in is fresh consent: it lifts a blocklisting
    set_blacklisted(sandbox, contact, False, reason="", source="user")
    recent.touch(sandbox, contact)
    return render_contact(contact)


# --- handlers ------------------------------------------------------------------------------------


def _health(sandbox: BrevoSandbox) -> dict[str, Any]:
    return {
        "ok": True,
        "api_key": sandbox.default_api_key,
        "list_id": next(iter(sandbox.lists), None),
        "now": stamp(sandbox.now()),
    }


def _reset_state(sandbox: BrevoSandbox) -> None:
    persistence.reset_state(sandbox)
    limiter = sandbox.extensions.get("rate_limiter")
    if limiter is not None:
        limiter.reset()


def _rejected(sandbox: BrevoSandbox) -> dict[str, Any]:
    limiter = sandbox.extensions.get("rate_limiter")
    if limiter is None:
        return {"rejected": 0, "served": {}}
    return {"rejected": limiter.rejected, "served": dict(limiter.served)}


_LIMIT_KNOBS = {
    "rate_limits": bool,
    "contacts_rps": int,
    "contacts_rph": int,
    "other_rph": int,
    "retry_after": bool,
    "clamp_limits": bool,
    "reject_unknown_attributes": bool,
    "upsert_replaces_lists": bool,
    "import_queue_seconds": float,
    "import_process_seconds": float,
    "import_max_bytes": int,
}


def _contact_state(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    run_due(sandbox)
    contact = find_contact(sandbox, unquote(request.params["identifier"]))
    if contact is None:
        raise not_found("Contact does not exist")
    out = render_contact(contact)
    out["blacklistReason"] = contact.blacklist_reason
    return Reply(out)


def _simulate(request: ApiRequest) -> Reply:
    identifier = unquote(request.params["identifier"])
    return Reply(simulate(request.sandbox, identifier, request.params["action"], body_of(request)))


def _keys(request: ApiRequest) -> Reply:
    body = body_of(request)
    key = request.sandbox.new_api_key(
        body.get("api_key") or None, str(body.get("name") or "sandbox")
    )
    return Reply({"api_key": key})


def _activity(request: ApiRequest) -> Reply:
    rates = book(request.sandbox).rates
    body = body_of(request)
    for name, value in (body.get("rates") or {}).items():
        if name not in RATES or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise invalid(f"rates: {name} must be one of {sorted(RATES)} with a value in [0, 1]")
        rates[name] = float(value)
    return Reply({"rates": dict(rates)})


def _run_processes(request: ApiRequest) -> Reply:
    sandbox = request.sandbox
    run_due(sandbox)
    table = processes(sandbox)
    return Reply({"pending": list(table.pending)})


verbs = ControlVerbs(
    bad=invalid,
    now_text=lambda sandbox: stamp(sandbox.now()),
    save_state=persistence.save,
    dump_state=persistence.dump_state,
    reset_state=_reset_state,
    seed=seed,
    seed_default=seed_default,
    health=_health,
    knobs=_LIMIT_KNOBS,
    more_limits=_rejected,
)

control_routes = [
    *verbs.routes(Route),
    Route("GET", "/contacts/{identifier}", _contact_state),
    Route("POST", "/contacts/{identifier}/{action}", _simulate),
    Route("POST", "/keys", _keys),
    Route("GET", "/activity", _activity),
    Route("PUT", "/activity", _activity),
    Route("POST", "/processes/run", _run_processes),
]
