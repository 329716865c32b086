"""Optional persistence: a JSON snapshot of the whole sandbox, so ``sandbox serve`` survives a
restart. Loaded at start when ``config.state_file`` exists; saved on shutdown and every
``config.autosave_seconds`` (if > 0). Modules registered with ``Sandbox.register_state`` are
included under ``"extensions"``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import orjson

from campaign_bridge.sandbox._persistence import Snapshots
from campaign_bridge.sandbox.mailchimp.model import (
    Account,
    AudienceList,
    Interest,
    InterestCategory,
    Member,
    MergeField,
    Sandbox,
    Segment,
)

__all__ = ["autosave", "dump_state", "load_if_present", "load_state", "reset_state", "save"]

FORMAT_VERSION = 1


def _list_json(lst: AudienceList) -> dict[str, Any]:
    data = {k: v for k, v in lst.__dict__.items() if k not in _NESTED}
    data["merge_fields"] = [asdict(f) for f in lst.merge_fields.values()]
    data["categories"] = [asdict(c) for c in lst.categories.values()]
    data["interests"] = [asdict(i) for i in lst.interests.values()]
    data["segments"] = [asdict(s) for s in lst.segments.values()]
    data["members"] = [_member_json(m) for m in lst.members.values()]
    data["forgotten"] = sorted(lst.forgotten)
    return data


def _member_json(member: Member) -> dict[str, Any]:
    data = asdict(member)
    del data["seq"]  # the member index's bookkeeping, rebuilt after a load
    return data


_NESTED = {
    "merge_fields",
    "categories",
    "interests",
    "segments",
    "members",
    "forgotten",
    "_merge_index",
    "_tag_index",
    "_merge_required",
    "_merge_defaults",
    "_member_index",
}


def _list_from(data: dict[str, Any]) -> AudienceList:
    plain = {k: v for k, v in data.items() if k not in _NESTED}
    lst = AudienceList(**plain)
    for f in data.get("merge_fields", []):
        lst.merge_fields[f["merge_id"]] = MergeField(**f)
    for c in data.get("categories", []):
        lst.categories[c["id"]] = InterestCategory(**c)
    for i in data.get("interests", []):
        lst.interests[i["id"]] = Interest(**i)
    for s in data.get("segments", []):
        seg = Segment(**s)
        lst.segments[seg.id] = seg
    for m in data.get("members", []):
        member = Member(**m)
        member.tags = {int(k): v for k, v in member.tags.items()}
        lst.members[member.id] = member
    lst.forgotten = set(data.get("forgotten", []))
    return lst


def dump_state(sandbox: Sandbox) -> dict[str, Any]:
    """The whole state as JSON-able data (also served by ``GET /_sandbox/state``)."""
    with sandbox.lock:
        return {
            "version": FORMAT_VERSION,
            "dc": sandbox.config.dc,
            "clock_offset": sandbox.clock.offset_seconds,
            "ids": sandbox.ids.snapshot(),
            "account": asdict(sandbox.account),
            "api_keys": dict(sandbox.api_keys),
            "oauth_tokens": dict(sandbox.oauth_tokens),
            "throttled": sorted(sandbox.throttled),
            "default_api_key": sandbox.default_api_key,
            "default_list_id": sandbox.default_list_id,
            "lists": [_list_json(lst) for lst in sandbox.lists.values()],
            "extensions": sandbox.dump_extensions(),
        }


def reset_state(sandbox: Sandbox) -> None:
    """Forget everything (keys, lists, members, extension state); the clock offset stays."""
    with sandbox.lock:
        sandbox.api_keys.clear()
        sandbox.oauth_tokens.clear()
        sandbox.lists.clear()
        sandbox.throttled.clear()
        sandbox.signups.clear()
        sandbox.write_seq += 1
        sandbox.reset_extensions()


def load_state(sandbox: Sandbox, data: dict[str, Any]) -> None:
    with sandbox.lock:
        reset_state(sandbox)
        sandbox.clock.advance(float(data.get("clock_offset", 0)) - sandbox.clock.offset_seconds)
        sandbox.ids.restore(data.get("ids", {}))
        sandbox.account = Account(**data["account"])
        sandbox.api_keys.update(data.get("api_keys", {}))
        sandbox.oauth_tokens.update(data.get("oauth_tokens", {}))
        sandbox.throttled.update(data.get("throttled", []))
        sandbox.default_api_key = str(data.get("default_api_key", ""))
        sandbox.default_list_id = str(data.get("default_list_id", ""))
        for item in data.get("lists", []):
            lst = _list_from(item)
            sandbox.lists[lst.id] = lst
        sandbox.load_extensions(data.get("extensions", {}))


def _encode(data: dict[str, Any]) -> bytes:
    try:  # orjson: a million members in a fraction of the time and memory
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # what orjson cannot encode (an integer over 64 bits)
        return json.dumps(data, separators=(",", ":")).encode()


_snapshots = Snapshots[Sandbox](
    dump_state, load_state, label="sandbox", encode=_encode, decode=json.loads
)
save = _snapshots.save
load_if_present = _snapshots.load_if_present
autosave = _snapshots.autosave
