"""Every operation the sandbox serves answers in the shape of Mailchimp's OpenAPI schema, and
every operation of the schema is either served or listed in ``not_served.toml`` with a reason.

``test_every_served_operation_matches_the_schema`` drives one scenario over HTTP that calls each
served operation at least once and validates every successful JSON answer against the
operation's response schema (required fields, types, enums); it fails if a served operation
was not exercised. ``test_schema_coverage_is_documented`` prints the coverage listing.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaign_bridge.sandbox.mailchimp.model import subscriber_hash
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle
from tests.integration.sandbox.receiver import Receiver, running_receiver
from tests.integration.sandbox.schema import assert_matches, spec

NOT_SERVED = Path(__file__).with_name("not_served.toml")
METHODS = ("get", "post", "put", "patch", "delete")


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def schema_operations() -> dict[tuple[str, str], str]:
    """``(METHOD, shape) -> the schema's path`` for every operation of the OpenAPI file."""
    return {
        (method.upper(), _shape(path)): path
        for path, item in spec()["paths"].items()
        for method in item
        if method in METHODS
    }


def served_operations(handle: SandboxHandle) -> set[tuple[str, str]]:
    dispatcher = handle.sandbox.dispatcher
    assert dispatcher is not None
    return {(route.method, _shape(route.path)) for route in dispatcher.routes}


def listed_operations() -> dict[tuple[str, str], tuple[str, str]]:
    """``(METHOD, shape) -> (group, "METHOD /path")`` from not_served.toml."""
    data = tomllib.loads(NOT_SERVED.read_text(encoding="utf-8"))
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for group, entry in data.items():
        assert entry.get("reason", "").strip(), f"[{group}] in {NOT_SERVED.name} has no reason"
        for operation in entry["operations"]:
            method, _, path = operation.partition(" ")
            key = (method, _shape(path))
            assert key not in out, f"{operation} is listed twice in {NOT_SERVED.name}"
            out[key] = (group, operation)
    return out


def test_schema_coverage_is_documented(mailchimp_sandbox: SandboxHandle) -> None:
    schema = schema_operations()
    served = served_operations(mailchimp_sandbox)
    listed = listed_operations()
    extra = sorted(f"{m} {p}" for m, p in served if (m, p) not in schema)
    assert not extra, f"the sandbox serves operations that are not in the schema: {extra}"
    stale = sorted(op for key, (_, op) in listed.items() if key in served)
    assert not stale, f"served now, take them out of {NOT_SERVED.name}: {stale}"
    unknown = sorted(op for key, (_, op) in listed.items() if key not in schema)
    assert not unknown, f"listed in {NOT_SERVED.name} but not in the schema: {unknown}"
    undocumented = sorted(
        f"{m} {schema[(m, p)]}" for m, p in schema if (m, p) not in served and (m, p) not in listed
    )
    assert not undocumented, (
        f"neither served nor listed with a reason in {NOT_SERVED.name}: {undocumented}"
    )
    by_group: dict[str, int] = {}
    for group, _ in listed.values():
        by_group[group] = by_group.get(group, 0) + 1
    print(f"\nOpenAPI operations: {len(schema)}; served: {len(served)}; not served: {len(listed)}")
    for key in sorted(served, key=lambda k: (schema[k], k[0])):
        print(f"  served      {key[0]:6} {schema[key]}")
    for group, count in sorted(by_group.items()):
        print(f"  not served  {count:3} operations: [{group}]")
    assert len(served) + len(listed) == len(schema)


# --- every served operation, validated ----------------------------------------------------


class Recorder:
    """Calls the API, validates each successful JSON answer, remembers what was exercised."""

    def __init__(self, handle: SandboxHandle, client: httpx.Client) -> None:
        self.handle = handle
        self.client = client
        self.hit: set[tuple[str, str]] = set()
        self.templates = {_shape(p): p for p in spec()["paths"]}

    def __call__(
        self, method: str, path: str, body: Any = None, status: int = 200, **query: Any
    ) -> Any:
        response = self.client.request(method, path, json=body, params=query or None)
        assert response.status_code == status, f"{method} {path}: {response.text}"
        template = self._template(path)
        self.hit.add((method, _shape(template)))
        if status == 204:
            assert response.content == b""
            return None
        answer = response.json()
        assert_matches(answer, path, method, status)
        return answer

    def _template(self, path: str) -> str:
        parts = path.strip("/").split("/")
        best: tuple[int, str] | None = None
        for shape, template in self.templates.items():
            cparts = shape.strip("/").split("/")
            if len(cparts) == len(parts) and all(
                c in ("{}", p) for c, p in zip(cparts, parts, strict=True)
            ):
                score = sum(c == p for c, p in zip(cparts, parts, strict=True))
                if best is None or score > best[0]:
                    best = (score, template)
        assert best is not None, f"no schema path for {path}"
        return best[1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


def _control(handle: SandboxHandle, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, handle.control_url + path, json=body, timeout=30)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def test_every_served_operation_matches_the_schema(
    mailchimp_sandbox: SandboxHandle, receiver: Receiver
) -> None:
    mc = mailchimp_sandbox
    with httpx.Client(base_url=mc.base_url, auth=("x", mc.api_key), timeout=30) as client:
        call = Recorder(mc, client)
        call("GET", "/")
        call("GET", "/ping")
        for path in (
            "/automations",
            "/templates",
            "/account-exports",
            "/activity-feed/chimp-chatter",
            "/authorized-apps",
            "/campaign-folders",
            "/connected-sites",
            "/conversations",
            "/ecommerce/orders",
            "/ecommerce/stores",
            "/facebook-ads",
            "/file-manager/files",
            "/file-manager/folders",
            "/landing-pages",
            "/reporting/facebook-ads",
            "/reporting/landing-pages",
            "/reporting/surveys",
            "/template-folders",
            "/verified-domains",
        ):
            call("GET", path)

        # audiences and their parts
        lst = call(
            "POST",
            "/lists",
            {
                "name": "Coverage",
                "permission_reminder": "You signed up.",
                "email_type_option": False,
                "contact": {
                    "company": "Shop",
                    "address1": "1 Main St",
                    "city": "Springfield",
                    "state": "IL",
                    "zip": "62701",
                    "country": "US",
                },
                "campaign_defaults": {
                    "from_name": "Shop",
                    "from_email": "news@mail.example.org",
                    "subject": "News",
                    "language": "en",
                },
            },
        )
        lid = lst["id"]
        call("GET", "/lists")
        call("GET", f"/lists/{lid}")
        call("PATCH", f"/lists/{lid}", {"name": "Coverage 2"})
        field = call("POST", f"/lists/{lid}/merge-fields", {"name": "Plan", "type": "text"})
        call("GET", f"/lists/{lid}/merge-fields")
        call("GET", f"/lists/{lid}/merge-fields/{field['merge_id']}")
        call("PATCH", f"/lists/{lid}/merge-fields/{field['merge_id']}", {"name": "Plan 2"})
        category = call(
            "POST", f"/lists/{lid}/interest-categories", {"title": "Topics", "type": "checkboxes"}
        )
        cat = f"/lists/{lid}/interest-categories/{category['id']}"
        call("GET", f"/lists/{lid}/interest-categories")
        call("GET", cat)
        call("PATCH", cat, {"title": "Topics 2", "type": "checkboxes"})
        interest = call("POST", f"{cat}/interests", {"name": "Shoes"})
        call("GET", f"{cat}/interests")
        call("GET", f"{cat}/interests/{interest['id']}")
        call("PATCH", f"{cat}/interests/{interest['id']}", {"name": "Boots"})

        # members
        emails = [f"cover{i}@mail.example.org" for i in range(12)]
        member = call(
            "POST",
            f"/lists/{lid}/members",
            {"email_address": emails[0], "status": "subscribed", "tags": ["vip"]},
        )
        call(
            "POST",
            f"/lists/{lid}",
            {"members": [{"email_address": e, "status": "subscribed"} for e in emails[1:]]},
        )
        one = f"/lists/{lid}/members/{member['id']}"
        call("GET", f"/lists/{lid}/members")
        call("GET", one)
        call("PUT", one, {"email_address": emails[0], "status_if_new": "subscribed"})
        call("PATCH", one, {"merge_fields": {"FNAME": "Ada"}})
        call("POST", f"{one}/tags", {"tags": [{"name": "gold", "status": "active"}]}, status=204)
        call("GET", f"{one}/tags")
        call("GET", f"/lists/{lid}/tag-search", name="go")

        # segments
        segment = call(
            "POST", f"/lists/{lid}/segments", {"name": "Static", "static_segment": emails[:2]}
        )
        seg = f"/lists/{lid}/segments/{segment['id']}"
        call("GET", f"/lists/{lid}/segments")
        call("GET", seg)
        call("PATCH", seg, {"name": "Static 2"})
        call("POST", seg, {"members_to_add": [emails[2]], "members_to_remove": [emails[1]]})
        call("POST", f"{seg}/members", {"email_address": emails[3]})
        call("GET", f"{seg}/members")
        call("DELETE", f"{seg}/members/{subscriber_hash(emails[3])}", status=204)

        # campaigns, sending and every report view
        campaign = call(
            "POST",
            "/campaigns",
            {
                "type": "regular",
                "recipients": {"list_id": lid},
                "settings": {
                    "subject_line": "Hello",
                    "title": "Coverage",
                    "from_name": "Shop",
                    "reply_to": "news@mail.example.org",
                },
            },
        )
        cid = campaign["id"]
        call("GET", "/campaigns")
        call("GET", f"/campaigns/{cid}")
        call("PATCH", f"/campaigns/{cid}", {"settings": {"subject_line": "Hello again"}})
        html = '<p>Hi</p><a href="https://shop.mail.example.org/sale">sale</a>'
        call("PUT", f"/campaigns/{cid}/content", {"html": html})
        call("GET", f"/campaigns/{cid}/content")
        _control(
            mc,
            "PUT",
            f"/_sandbox/campaigns/{cid}/activity".removeprefix("/_sandbox"),
            {"rates": {"open": 1.0, "click": 1.0, "unsubscribe": 0.3, "hard_bounce": 0.0}},
        )
        call("POST", f"/campaigns/{cid}/actions/send", status=204)
        _control(mc, "POST", "/clock", {"advance": 3 * 86400})
        sent = call("GET", f"/campaigns/{cid}", include_resend_shortcuts="true")
        assert sent["resend_shortcut_eligibility"]["to_non_openers"]["is_eligible"] is False
        assert sent["tracking"]["salesforce"] == {"campaign": False, "notes": False}
        call("GET", "/reports")
        call("GET", f"/reports/{cid}")
        activity = call("GET", f"/reports/{cid}/email-activity")
        call("GET", f"/reports/{cid}/email-activity/{activity['emails'][0]['email_id']}")
        sent_to = call("GET", f"/reports/{cid}/sent-to")
        call("GET", f"/reports/{cid}/sent-to/{sent_to['sent_to'][0]['email_id']}")
        unsubscribed = call("GET", f"/reports/{cid}/unsubscribed")
        assert unsubscribed["unsubscribes"], "the scenario needs an unsubscribe"
        call("GET", f"/reports/{cid}/unsubscribed/{unsubscribed['unsubscribes'][0]['email_id']}")
        clicks = call("GET", f"/reports/{cid}/click-details")
        link_id = clicks["urls_clicked"][0]["id"]
        call("GET", f"/reports/{cid}/click-details/{link_id}")
        call("GET", f"/reports/{cid}/click-details/{link_id}/members")
        clicked = activity["emails"][0]["email_id"]
        call("GET", f"/lists/{lid}/members/{clicked}/activity-feed")
        call("GET", f"/lists/{lid}/members/{clicked}/activity")
        draft = call("POST", "/campaigns", {"type": "regular", "recipients": {"list_id": lid}})
        call("DELETE", f"/campaigns/{draft['id']}", status=204)

        # list webhooks
        hook = call(
            "POST",
            f"/lists/{lid}/webhooks",
            {
                "url": receiver.url("/list"),
                "events": {"subscribe": True, "unsubscribe": True},
                "sources": {"user": True, "admin": True, "api": True},
            },
        )
        call("GET", f"/lists/{lid}/webhooks")
        call("GET", f"/lists/{lid}/webhooks/{hook['id']}")
        call("PATCH", f"/lists/{lid}/webhooks/{hook['id']}", {"events": {"profile": True}})
        call("DELETE", f"/lists/{lid}/webhooks/{hook['id']}", status=204)

        # batches and batch webhooks
        bhook = call("POST", "/batch-webhooks", {"url": receiver.url("/batch")})
        call("GET", "/batch-webhooks")
        call("GET", f"/batch-webhooks/{bhook['id']}")
        call("PATCH", f"/batch-webhooks/{bhook['id']}", {"enabled": True})
        batch = call(
            "POST", "/batches", {"operations": [{"method": "GET", "path": f"/lists/{lid}"}]}
        )
        deadline = time.monotonic() + 20
        while call("GET", f"/batches/{batch['id']}")["status"] != "finished":
            assert time.monotonic() < deadline, "batch did not finish"
            time.sleep(0.01)
        call("GET", "/batches")
        call("DELETE", f"/batches/{batch['id']}", status=204)
        call("DELETE", f"/batch-webhooks/{bhook['id']}", status=204)

        # removals last
        call("DELETE", one, status=204)
        call(
            "POST",
            f"/lists/{lid}/members/{subscriber_hash(emails[5])}/actions/delete-permanent",
            status=204,
        )
        call("DELETE", seg, status=204)
        call("DELETE", f"{cat}/interests/{interest['id']}", status=204)
        call("DELETE", cat, status=204)
        call("DELETE", f"/lists/{lid}/merge-fields/{field['merge_id']}", status=204)
        call("DELETE", f"/lists/{lid}", status=204)

    missing = sorted(f"{m} {p}" for m, p in served_operations(mc) - call.hit)
    assert not missing, f"served operations this scenario does not exercise: {missing}"
    print(json.dumps({"operations validated": len(call.hit)}))
