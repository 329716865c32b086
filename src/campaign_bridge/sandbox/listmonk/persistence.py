"""Optional persistence: a JSON snapshot of the whole listmonk sandbox, so ``sandbox serve
--provider listmonk`` survives a restart (loaded at start when ``config.state_file`` exists;
saved on shutdown and every ``config.autosave_seconds`` if > 0)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from campaign_bridge.sandbox._persistence import Snapshots
from campaign_bridge.sandbox.listmonk.model import (
    ApiUser,
    Bounce,
    Campaign,
    ListmonkSandbox,
    MailingList,
    Subscriber,
    Subscription,
)

__all__ = ["autosave", "dump_state", "load_if_present", "load_state", "reset_state", "save"]

FORMAT_VERSION = 1


def _subscriber_json(sub: Subscriber) -> dict[str, Any]:
    out = asdict(sub)
    out["lists"] = [[list_id, asdict(s)] for list_id, s in sub.lists.items()]
    return out


def dump_state(sandbox: ListmonkSandbox) -> dict[str, Any]:
    """The whole state as JSON-able data (also served by ``GET /_sandbox/state``)."""
    with sandbox.lock:
        return {
            "version": FORMAT_VERSION,
            "provider": "listmonk",
            "clock_offset": sandbox.clock.offset_seconds,
            "ids": sandbox.ids.snapshot(),
            "users": [
                {
                    "username": u.username,
                    "token": u.token,
                    "perms": sorted(u.perms) if u.perms is not None else None,
                }
                for u in sandbox.users.values()
            ],
            "default_user": sandbox.default_user,
            "lists": [
                {k: v for k, v in asdict(lst).items() if k != "members"}
                for lst in sandbox.lists.values()
            ],
            "subscribers": [_subscriber_json(s) for s in sandbox.subscribers.values()],
            "campaigns": [asdict(c) for c in sandbox.campaigns.values()],
            "bounces": [asdict(b) for b in sandbox.bounces.values()],
            "optin_mails": list(sandbox.optin_mails),
            "rates": dict(sandbox.rates),
        }


def reset_state(sandbox: ListmonkSandbox) -> None:
    """Forget everything (users, subscribers, lists, campaigns, bounces, imports); the clock
    offset stays."""
    with sandbox.lock:
        sandbox.users.clear()
        sandbox.default_user = ""
        sandbox.subscribers.clear()
        sandbox.by_email.clear()
        sandbox.by_uuid.clear()
        sandbox.lists.clear()
        sandbox.campaigns.clear()
        sandbox.bounces.clear()
        sandbox.optin_mails.clear()
        sandbox.extensions.pop("importer", None)
        sandbox.ids.restore({"counters": {}})


def load_state(sandbox: ListmonkSandbox, data: dict[str, Any]) -> None:
    with sandbox.lock:
        reset_state(sandbox)
        sandbox.clock.set_offset(float(data.get("clock_offset", 0)))
        sandbox.ids.restore(data.get("ids", {}))
        for item in data.get("users", []):
            perms = item.get("perms")
            sandbox.users[item["username"]] = ApiUser(
                item["username"], item["token"], frozenset(perms) if perms is not None else None
            )
        sandbox.default_user = str(data.get("default_user", ""))
        for item in data.get("lists", []):
            sandbox.lists[item["id"]] = MailingList(**item)
        for item in data.get("subscribers", []):
            spec = {k: v for k, v in item.items() if k != "lists"}
            sub = Subscriber(**spec)
            for list_id, subscription in item.get("lists", []):
                sub.lists[int(list_id)] = Subscription(**subscription)
                sandbox.lists[int(list_id)].members[sub.id] = None
            sandbox.subscribers[sub.id] = sub
            sandbox.by_email[sub.email] = sub.id
            sandbox.by_uuid[sub.uuid] = sub.id
        for item in data.get("campaigns", []):
            campaign = Campaign(**item)
            campaign.views = [(float(w), int(s)) for w, s in campaign.views]
            campaign.clicks = [(float(w), int(s), str(u)) for w, s, u in campaign.clicks]
            sandbox.campaigns[campaign.id] = campaign
        for item in data.get("bounces", []):
            sandbox.bounces[item["id"]] = Bounce(**item)
        sandbox.optin_mails.extend(data.get("optin_mails", []))
        sandbox.rates.update(data.get("rates", {}))


_snapshots = Snapshots[ListmonkSandbox](dump_state, load_state, label="listmonk sandbox")
save = _snapshots.save
load_if_present = _snapshots.load_if_present
autosave = _snapshots.autosave
