"""``GET /contacts?modifiedSince=…`` answered from the sandbox's index of changes
(``sandbox/brevo/recent.py``) gives what a scan of every contact gives, whatever changed the
contacts before: creates, updates, imports, list adds and removals, unsubscribes, bounces,
blocklistings, confirmations, deletions, a clock moved on or set back, a reload of the state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from campaign_bridge.sandbox.brevo import BrevoConfig, create_app
from campaign_bridge.sandbox.brevo.persistence import dump_state, load_state
from campaign_bridge.sandbox.brevo.wire import parse_when, stamp

EMAILS = [f"p{i}@example.org" for i in range(6)]
EMAIL = st.sampled_from(EMAILS)
LIST = st.sampled_from([1, 2])


class ChangesMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        start = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # frozen; moved on by each change
        self.app = create_app(BrevoConfig(start_time=start))
        self.sandbox = self.app.state.sandbox
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://sandbox"
        )
        made = self._call("POST", "/contacts/lists", json={"name": "second", "folderId": 1})
        assert made.status_code == 201, made.text
        self.moments: list[float] = [self.sandbox.now() - 1]

    def teardown(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if method != "GET":  # each change a millisecond after the one before, unless moved
            self.sandbox.clock.advance(0.001)
        headers = {"api-key": self.sandbox.default_api_key}
        request = self.client.request(method, "/v3" + path, headers=headers, **kwargs)
        return self.loop.run_until_complete(request)

    def _control(self, path: str, body: Any = None) -> httpx.Response:
        return self.loop.run_until_complete(self.client.post("/_sandbox" + path, json=body))

    @rule(email=EMAIL, list_id=LIST, name=st.sampled_from(["A", "B"]))
    def create_or_update(self, email: str, list_id: int, name: str) -> None:
        body = {"email": email, "listIds": [list_id], "updateEnabled": True}
        self._call("POST", "/contacts", json={**body, "attributes": {"FIRSTNAME": name}})

    @rule(email=EMAIL, name=st.sampled_from(["A", "B", ""]))
    def put(self, email: str, name: str) -> None:
        self._call("PUT", f"/contacts/{email}", json={"attributes": {"FIRSTNAME": name}})

    @rule(
        emails=st.lists(EMAIL, min_size=1, max_size=4, unique=True),
        update=st.booleans(),
        list_id=LIST,
    )
    def import_rows(self, emails: list[str], update: bool, list_id: int) -> None:
        rows = [{"email": e, "attributes": {"LASTNAME": "imported"}} for e in emails]
        body = {"jsonBody": rows, "listIds": [list_id], "updateExistingContacts": update}
        self._call("POST", "/contacts/import", json=body)
        self._control("/processes/run")

    @rule(email=EMAIL, list_id=LIST, add=st.booleans())
    def list_membership(self, email: str, list_id: int, add: bool) -> None:
        verb = "add" if add else "remove"
        self._call("POST", f"/contacts/lists/{list_id}/contacts/{verb}", json={"emails": [email]})

    @rule(email=EMAIL, action=st.sampled_from(["unsubscribe", "bounce", "blocklist", "spam"]))
    def simulate(self, email: str, action: str) -> None:
        self._control(f"/contacts/{email}/{action}", {})

    @rule(email=EMAIL, list_id=LIST)
    def leave_list(self, email: str, list_id: int) -> None:
        self._control(f"/contacts/{email}/unsubscribe", {"listId": list_id})

    @rule(email=EMAIL)
    def confirm(self, email: str) -> None:
        body = {
            "email": email,
            "includeListIds": [1],
            "templateId": 1,
            "redirectionUrl": "https://example.org/ok",
        }
        self._call("POST", "/contacts/doubleOptinConfirmation", json=body)
        self._control(f"/contacts/{email}/confirm", {})

    @rule(email=EMAIL)
    def delete(self, email: str) -> None:
        self._call("DELETE", f"/contacts/{email}")

    @rule(seconds=st.sampled_from([0.0004, 0.002, 1.5, -0.7, -30.0]))
    def move_clock(self, seconds: float) -> None:
        self._control("/clock", {"advance": seconds})
        self.moments.append(self.sandbox.now())

    @rule()
    def reload(self) -> None:
        load_state(self.sandbox, dump_state(self.sandbox))

    @invariant()
    def answers_match_a_scan(self) -> None:
        sandbox = self.sandbox
        moments = {*self.moments, *(c.modified_at for c in sandbox.contacts.values())}
        for moment in sorted(moments):
            for since in {moment, moment - 0.0005, moment + 0.0005}:
                for list_id in (None, 1, 2):
                    assert self._listed(since, list_id) == self._scanned(since, list_id)
                assert self._members(since) == self._scanned(since, 2)

    def _listed(self, since: float, list_id: int | None) -> list[int]:
        params: dict[str, Any] = {"modifiedSince": stamp(since), "limit": 1000, "sort": "asc"}
        if list_id is not None:
            params["listIds"] = list_id
        answer = self._call("GET", "/contacts", params=params)
        assert answer.status_code == 200, answer.text
        return [c["id"] for c in answer.json()["contacts"]]

    def _members(self, since: float) -> list[int]:
        params = {"modifiedSince": stamp(since), "limit": 500, "sort": "asc"}
        answer = self._call("GET", "/contacts/lists/2/contacts", params=params)
        assert answer.status_code == 200, answer.text
        return [c["id"] for c in answer.json()["contacts"]]

    def _scanned(self, since: float, list_id: int | None) -> list[int]:
        """What a scan of every contact finds (as the sandbox answered before its index)."""
        cutoff = parse_when(stamp(since), "modifiedSince")
        rows = [
            c
            for c in self.sandbox.contacts.values()
            if c.modified_at > cutoff and (list_id is None or list_id in c.list_ids)
        ]
        rows.sort(key=lambda c: (c.created_at, c.id))
        return [c.id for c in rows]


ChangesMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_changes_index_answers_as_a_scan = ChangesMachine.TestCase
