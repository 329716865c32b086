"""Optional persistence: a JSON snapshot of the whole Brevo sandbox, so ``sandbox serve
--provider brevo`` survives a restart. Loaded at start when ``config.state_file`` exists; saved
on shutdown and every ``config.autosave_seconds`` (if > 0). Modules registered with
``BrevoSandbox.register_state`` (processes, campaigns, webhooks) are under ``"extensions"``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from campaign_bridge.sandbox._persistence import Snapshots
from campaign_bridge.sandbox.brevo import recent
from campaign_bridge.sandbox.brevo.model import (
    Attribute,
    BrevoSandbox,
    Contact,
    ContactList,
    Folder,
)

__all__ = ["autosave", "dump_state", "load_if_present", "load_state", "reset_state", "save"]

FORMAT_VERSION = 1


def _contact_json(contact: Contact) -> dict[str, Any]:
    data = asdict(contact)
    data["list_ids"] = list(contact.list_ids)
    data["list_unsubscribed"] = list(contact.list_unsubscribed or ())
    data["smtp_blacklist_sender"] = list(contact.smtp_blacklist_sender)
    return data


def dump_state(sandbox: BrevoSandbox) -> dict[str, Any]:
    """The whole state as JSON-able data (also served by ``GET /_sandbox/state``)."""
    with sandbox.lock:
        return {
            "version": FORMAT_VERSION,
            "provider": "brevo",
            "clock_offset": sandbox.clock.offset_seconds,
            "ids": sandbox.ids.snapshot(),
            "api_keys": dict(sandbox.api_keys),
            "default_api_key": sandbox.default_api_key,
            "attributes": [asdict(a) for a in sandbox.attributes.values()],
            "folders": [asdict(f) for f in sandbox.folders.values()],
            "lists": [
                {
                    "id": lst.id,
                    "name": lst.name,
                    "folder_id": lst.folder_id,
                    "created_at": lst.created_at,
                }
                for lst in sandbox.lists.values()
            ],
            "contacts": [_contact_json(c) for c in sandbox.contacts.values()],
            "extensions": sandbox.dump_extensions(),
        }


def reset_state(sandbox: BrevoSandbox) -> None:
    """Forget everything (keys, contacts, lists, extension state); the clock offset stays."""
    with sandbox.lock:
        sandbox.api_keys.clear()
        sandbox.default_api_key = ""
        sandbox.contacts.clear()
        sandbox.by_email.clear()
        sandbox.by_ext_id.clear()
        sandbox.by_sms.clear()
        sandbox.changed.clear()
        sandbox.attributes.clear()
        sandbox.lists.clear()
        sandbox.folders.clear()
        sandbox.ids.restore({"counters": {}})
        sandbox.write_seq += 1
        sandbox.reset_extensions()


def load_state(sandbox: BrevoSandbox, data: dict[str, Any]) -> None:
    with sandbox.lock:
        reset_state(sandbox)
        sandbox.clock.set_offset(float(data.get("clock_offset", 0)))
        sandbox.ids.restore(data.get("ids", {}))
        sandbox.api_keys.update(data.get("api_keys", {}))
        sandbox.default_api_key = str(data.get("default_api_key", ""))
        for item in data.get("attributes", []):
            sandbox.attributes[item["name"]] = Attribute(**item)
        for item in data.get("folders", []):
            sandbox.folders[item["id"]] = Folder(**item)
        for item in data.get("lists", []):
            sandbox.lists[item["id"]] = ContactList(**item)
        for item in data.get("contacts", []):
            contact = Contact(**item)
            contact.list_ids = dict.fromkeys(item.get("list_ids", []))
            unsubscribed = item.get("list_unsubscribed") or []
            contact.list_unsubscribed = dict.fromkeys(unsubscribed) if unsubscribed else None
            contact.smtp_blacklist_sender = tuple(item.get("smtp_blacklist_sender") or ())
            sandbox.contacts[contact.id] = contact
            if contact.email:
                sandbox.by_email[contact.email] = contact.id
            if contact.ext_id:
                sandbox.by_ext_id[contact.ext_id] = contact.id
            if contact.attributes.get("SMS"):
                sandbox.by_sms[contact.attributes["SMS"]] = contact.id
            for list_id in contact.list_ids:
                if list_id in sandbox.lists:
                    sandbox.lists[list_id].members[contact.id] = None
        recent.rebuild(sandbox)
        sandbox.load_extensions(data.get("extensions", {}))


_snapshots = Snapshots[BrevoSandbox](dump_state, load_state, label="brevo sandbox")
save = _snapshots.save
load_if_present = _snapshots.load_if_present
autosave = _snapshots.autosave
