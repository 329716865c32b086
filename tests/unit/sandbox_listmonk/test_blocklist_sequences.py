"""Sequences of API calls against the in-process listmonk sandbox keep listmonk's rules:

- an ``unsubscribed`` subscription stays unsubscribed through every call that does not
  explicitly set a status (PUT with any subscriber status, bulk ``add`` without ``status``,
  blocklisting, imports without overwrite, bounces) — only ``PUT /api/subscribers/lists``
  ``add`` with a ``status`` (listmonk's ``add-subscribers-to-lists``) re-subscribes;
- a blocklisted subscriber stays blocklisted until a PUT says another status (a blank status,
  imports, list changes and bounces leave it); its subscriptions at that moment are all
  ``unsubscribed`` (bulk ``add`` may still create new rows for it, as listmonk's query does);
- the e-mail/uuid indexes and list memberships stay consistent with the subscribers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from campaign_bridge.sandbox.listmonk import create_app

EMAILS = [f"p{i}@example.org" for i in range(4)]
LISTS = st.lists(st.sampled_from([1, 2, 3]), max_size=3, unique=True)


class SubscriptionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.app = create_app()
        self.sandbox = self.app.state.sandbox
        self.loop = asyncio.new_event_loop()
        auth = {"Authorization": f"token {self.sandbox.default_user}:{self.sandbox.default_token}"}
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://sandbox", headers=auth
        )
        self._call(
            "POST", "/api/lists", json={"name": "Third", "type": "public", "optin": "single"}
        )
        #: (email, list id) pairs that must stay unsubscribed
        self.unsubscribed: set[tuple[str, int]] = set()
        #: emails that must be blocklisted
        self.blocked: set[str] = set()

    def teardown(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.request(method, path, **kwargs))

    def _sub(self, email: str) -> dict[str, Any] | None:
        sub_id = self.sandbox.by_email.get(email)
        if sub_id is None:
            return None
        return dict(self._call("GET", f"/api/subscribers/{sub_id}").json()["data"])

    def _forget(self, email: str, lists: list[int] | None = None) -> None:
        self.unsubscribed = {
            (e, i)
            for e, i in self.unsubscribed
            if e != email or (lists is not None and i not in lists)
        }

    @rule(email=st.sampled_from(EMAILS), lists=LISTS, pre=st.booleans())
    def create(self, email: str, lists: list[int], pre: bool) -> None:
        body = {"email": email, "lists": lists, "preconfirm_subscriptions": pre}
        answer = self._call("POST", "/api/subscribers", json=body)
        assert answer.status_code in (200, 409)

    @rule(
        email=st.sampled_from(EMAILS),
        extra=LISTS,
        status=st.sampled_from(["", "enabled", "disabled", "blocklisted"]),
        pre=st.booleans(),
    )
    def put(self, email: str, extra: list[int], status: str, pre: bool) -> None:
        sub = self._sub(email)
        if sub is None:
            return
        lists = sorted({x["id"] for x in sub["lists"]} | set(extra))  # never drops a row
        body = {"email": email, "lists": lists, "status": status, "preconfirm_subscriptions": pre}
        assert self._call("PUT", f"/api/subscribers/{sub['id']}", json=body).status_code == 200
        if status == "blocklisted":
            self.blocked.add(email)
            self.unsubscribed |= {(email, i) for i in lists}
        elif status:
            self.blocked.discard(email)

    @rule(email=st.sampled_from(EMAILS), lists=LISTS)
    def unsubscribe(self, email: str, lists: list[int]) -> None:
        sub = self._sub(email)
        if sub is None or not lists:
            return
        body = {"ids": [sub["id"]], "action": "unsubscribe", "target_list_ids": lists}
        self._call("PUT", "/api/subscribers/lists", json=body)
        held = {x["id"] for x in sub["lists"]}
        self.unsubscribed |= {(email, i) for i in lists if i in held}

    @rule(email=st.sampled_from(EMAILS), lists=LISTS, status=st.sampled_from(["", "confirmed"]))
    def bulk_add(self, email: str, lists: list[int], status: str) -> None:
        sub = self._sub(email)
        if sub is None or not lists:
            return
        body = {"ids": [sub["id"]], "action": "add", "target_list_ids": lists, "status": status}
        self._call("PUT", "/api/subscribers/lists", json=body)
        if status:  # the explicit re-subscribe path
            self._forget(email, lists)

    @rule(email=st.sampled_from(EMAILS))
    def blocklist(self, email: str) -> None:
        sub = self._sub(email)
        if sub is None:
            return
        self._call("PUT", f"/api/subscribers/{sub['id']}/blocklist")
        self.unsubscribed |= {(email, x["id"]) for x in sub["lists"]}
        self.blocked.add(email)

    @rule(emails=st.lists(st.sampled_from(EMAILS), min_size=1, max_size=3), lists=LISTS)
    def import_without_overwrite(self, emails: list[str], lists: list[int]) -> None:
        params = {"mode": "subscribe", "delim": ",", "lists": lists or [1], "overwrite": False,
                  "subscription_status": "confirmed"}  # fmt: skip
        csv = "email\n" + "\n".join(emails) + "\n"
        self._call("DELETE", "/api/import/subscribers")
        self._call(
            "POST",
            "/api/import/subscribers",
            data={"params": json.dumps(params)},
            files={"file": ("x.csv", csv.encode())},
        )
        self._call("GET", "/api/import/subscribers")  # applied before this answer

    @rule(email=st.sampled_from(EMAILS), kind=st.sampled_from(["hard", "soft"]))
    def bounce(self, email: str, kind: str) -> None:
        sub = self._sub(email)
        if sub is None:
            return
        self._call("POST", f"/_sandbox/subscribers/{email}/bounce", json={"type": kind})
        if kind == "hard" and sub["status"] != "blocklisted":  # default action: blocklist
            self.blocked.add(email)
            self.unsubscribed |= {(email, x["id"]) for x in sub["lists"]}

    @rule(email=st.sampled_from(EMAILS))
    def delete(self, email: str) -> None:
        sub = self._sub(email)
        if sub is not None:
            self._call("DELETE", f"/api/subscribers/{sub['id']}")
            self._forget(email)
            self.blocked.discard(email)

    @invariant()
    def unsubscribes_hold(self) -> None:
        for email, list_id in self.unsubscribed:
            sub = self.sandbox.subscriber_by(email)
            assert sub is not None, email
            assert sub.lists[list_id].status == "unsubscribed", (email, list_id)

    @invariant()
    def blocklisting_holds(self) -> None:
        held = {s.email for s in self.sandbox.subscribers.values() if s.status == "blocklisted"}
        assert held == self.blocked

    @invariant()
    def indexes_are_consistent(self) -> None:
        sb = self.sandbox
        assert sb.by_email == {s.email: s.id for s in sb.subscribers.values()}
        assert sb.by_uuid == {s.uuid: s.id for s in sb.subscribers.values()}
        for list_id, lst in sb.lists.items():
            assert set(lst.members) == {s.id for s in sb.subscribers.values() if list_id in s.lists}


SubscriptionMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSubscriptionSequences = SubscriptionMachine.TestCase
