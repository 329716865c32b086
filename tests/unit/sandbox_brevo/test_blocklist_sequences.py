"""Sequences of API calls against the in-process Brevo sandbox keep Brevo's blocklist guarantee:
``emailBlacklisted`` only goes back to false when a call says so explicitly (or the address
changes); upserts, imports, batches and list adds without the flag leave it alone. The
sandbox's indexes and list memberships stay consistent throughout."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from campaign_bridge.sandbox.brevo import create_app

EMAILS = [f"p{i}@example.org" for i in range(5)]
FLAG = st.sampled_from([None, True, False])


class BlocklistMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.app = create_app()
        self.sandbox = self.app.state.sandbox
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://sandbox"
        )
        #: email -> expected emailBlacklisted
        self.model: dict[str, bool] = {}

    def teardown(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"api-key": self.sandbox.default_api_key}
        request = self.client.request(method, "/v3" + path, headers=headers, **kwargs)
        return self.loop.run_until_complete(request)

    def _control(self, path: str) -> httpx.Response:
        return self.loop.run_until_complete(self.client.post("/_sandbox" + path))

    @rule(email=st.sampled_from(EMAILS), flag=FLAG, upsert=st.booleans())
    def create(self, email: str, flag: bool | None, upsert: bool) -> None:
        body: dict[str, Any] = {"email": email, "listIds": [1], "updateEnabled": upsert}
        if flag is not None:
            body["emailBlacklisted"] = flag
        answer = self._call("POST", "/contacts", json=body)
        if email not in self.model:
            assert answer.status_code == 201
            self.model[email] = flag is True
        elif upsert:
            assert answer.status_code == 204
            if flag is not None:
                self.model[email] = flag
        else:
            assert answer.status_code == 400
            assert answer.json()["code"] == "duplicate_parameter"

    @rule(email=st.sampled_from(EMAILS), flag=FLAG)
    def update(self, email: str, flag: bool | None) -> None:
        body: dict[str, Any] = {"attributes": {"FIRSTNAME": "X"}}
        if flag is not None:
            body["emailBlacklisted"] = flag
        answer = self._call("PUT", f"/contacts/{email}", json=body)
        if email not in self.model:
            assert answer.status_code == 404
            return
        assert answer.status_code == 204
        if flag is not None:
            self.model[email] = flag

    @rule(email=st.sampled_from(EMAILS), flag=FLAG)
    def batch(self, email: str, flag: bool | None) -> None:
        item: dict[str, Any] = {"email": email, "listIds": [1]}
        if flag is not None:
            item["emailBlacklisted"] = flag
        answer = self._call("POST", "/contacts/batch", json={"contacts": [item]})
        if email not in self.model:
            assert answer.status_code == 400
            return
        assert answer.status_code == 204
        if flag is not None:
            self.model[email] = flag

    @rule(
        emails=st.lists(st.sampled_from(EMAILS), min_size=1, max_size=3, unique=True),
        blacklist=st.booleans(),
    )
    def import_(self, emails: list[str], blacklist: bool) -> None:
        body = {
            "jsonBody": [{"email": e} for e in emails],
            "listIds": [1],
            "emailBlacklist": blacklist,
        }
        started = self._call("POST", "/contacts/import", json=body)
        assert started.status_code == 202
        process = self._call("GET", f"/processes/{started.json()['processId']}").json()
        assert process["status"] == "completed"
        for email in emails:
            if email not in self.model:
                self.model[email] = blacklist
            elif blacklist:
                self.model[email] = True

    @rule(email=st.sampled_from(EMAILS))
    def unsubscribe(self, email: str) -> None:
        answer = self._control(f"/contacts/{email}/unsubscribe")
        if email in self.model:
            assert answer.status_code == 200
            self.model[email] = True

    @rule(old=st.sampled_from(EMAILS), new=st.sampled_from(EMAILS))
    def change_email(self, old: str, new: str) -> None:
        answer = self._call("PUT", f"/contacts/{old}", json={"attributes": {"EMAIL": new}})
        if old not in self.model:
            assert answer.status_code == 404
        elif old == new:
            assert answer.status_code == 204
        elif new in self.model:
            assert answer.status_code == 400
        else:
            assert answer.status_code == 204
            del self.model[old]
            self.model[new] = False  # a new address lifts the blocklisting

    @rule(email=st.sampled_from(EMAILS))
    def delete(self, email: str) -> None:
        answer = self._call("DELETE", f"/contacts/{email}")
        assert answer.status_code == (204 if email in self.model else 404)
        self.model.pop(email, None)

    @invariant()
    def api_agrees_with_the_model(self) -> None:
        listed = self._call("GET", "/contacts", params={"limit": 50}).json()
        seen = {c["email"]: c["emailBlacklisted"] for c in listed["contacts"]}
        assert seen == self.model

    @invariant()
    def indexes_are_consistent(self) -> None:
        sandbox = self.sandbox
        assert {c.email: c.id for c in sandbox.contacts.values()} == sandbox.by_email
        members = set(sandbox.lists[1].members)
        assert members == {c.id for c in sandbox.contacts.values() if 1 in c.list_ids}


TestBlocklistSequences = BlocklistMachine.TestCase
TestBlocklistSequences.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
