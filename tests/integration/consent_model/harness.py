"""The real parts the consent model test drives: one PostgreSQL database (source table and state
store), the Mailchimp sandbox over HTTP, and ``serve`` receiving the sandbox's webhooks.

Everything here is plumbing: it runs pushes and pulls the way users do (``run_push`` /
``run_pull``, or the ``campaign-bridge push`` CLI as a subprocess), records the sandbox's member
events for the reference model, and reads back what the provider and the state store hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaign_bridge import migrations
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.pull import run_pull
from campaign_bridge.push import PushSummary, run_push
from campaign_bridge.sandbox.mailchimp import control
from campaign_bridge.sandbox.mailchimp.app import create_app as create_sandbox_app
from campaign_bridge.sandbox.mailchimp.model import MemberEvent
from campaign_bridge.sandbox.mailchimp.server import run_in_thread
from campaign_bridge.sandbox.mailchimp.wire import Problem
from campaign_bridge.server import create_app, register_webhooks
from campaign_bridge.state import consent_ledger, contact_state, metadata, webhook_events
from campaign_bridge.store import StateStore
from tests.integration.consent_model.reference import Event, Ledger, member_id
from tests.integration.serve.conftest import TOKEN, serving

CLI = Path(sys.executable).with_name("campaign-bridge")
SYNC = "crm"
BASE_TIME = dt.datetime(2025, 1, 1, 12, 0, 0)


@dataclass(frozen=True)
class StateRow:
    source_key: str
    email_hash: str
    provider_status: str | None
    managed: bool


class Interposer:
    """ASGI middleware around the sandbox that runs a callback at an exact point of a run.

    ``arm(n, when, action)``: ``when`` is ``before`` / ``after`` (the n-th API call of any
    kind: before the sandbox handles it, or after it did, before the answer leaves),
    ``before-read`` (just before the n-th GET) or ``after-write`` (just after the n-th
    POST/PUT/PATCH/DELETE was applied)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.counts = {"any": 0, "read": 0, "write": 0}
        self.at: tuple[int, str, Callable[[], None]] | None = None

    @property
    def calls(self) -> int:
        return self.counts["any"]

    def arm(self, call: int, when: str, action: Callable[[], None]) -> None:
        self.counts = dict.fromkeys(self.counts, 0)
        self.at = (call, when, action)

    def disarm(self) -> None:
        self.at = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/3.0"):
            await self.app(scope, receive, send)
            return
        kind = "read" if scope["method"] == "GET" else "write"
        self.counts["any"] += 1
        self.counts[kind] += 1
        at = self.at
        fire = at is not None and (
            (at[1] in ("before", "after") and at[0] == self.counts["any"])
            or (at[1] == f"before-{kind}" and at[0] == self.counts[kind])
            or (at[1] == f"after-{kind}" and at[0] == self.counts[kind])
        )
        if not fire or at is None:
            await self.app(scope, receive, send)
            return
        self.at = None
        action = at[2]
        if at[1].startswith("before"):
            action()
            await self.app(scope, receive, send)
            return

        async def send_after(message: Message) -> None:
            if message["type"] == "http.response.start":
                action()
            await send(message)

        await self.app(scope, receive, send_after)


class Env:
    """One test's real parts; ``reset`` starts a fresh example on them."""

    def __init__(
        self, url: str, handle: Any, interposer: Interposer, root: str, tmp_path: Path
    ) -> None:
        self.url = url
        self.handle = handle
        self.interposer = interposer
        self.root = root
        self.tmp_path = tmp_path
        self.engine = create_engine(url, poolclass=sa.pool.NullPool)
        self.contacts = _contacts_table()
        self._events: list[Event] = []
        self._events_lock = threading.Lock()
        self.example = 0
        self.clock = BASE_TIME
        self.settings = self._settings("upsert")
        handle.sandbox.listen(self._on_event)

    # --- examples ------------------------------------------------------------------------

    def reset(self, mode: str, *, webhooks: bool = True) -> None:
        """Empty the source, the state store and the sandbox; register the webhook again
        (unless ``webhooks`` is false: then only push and pull tell the bridge)."""
        self.example += 1
        self.clock = BASE_TIME
        with self.engine.begin() as conn:
            conn.execute(self.contacts.delete())
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
        self.control("POST", "/reset", {"seed_default": False})
        self.control(
            "POST",
            "/seed",
            {"api_keys": [self.handle.api_key], "lists": [{"id": self.handle.list_id}]},
        )
        self.set_latency(0.0)
        self.settings = self._settings(mode)
        if webhooks:
            asyncio.run(register_webhooks(self.settings))
        self.take_events()

    def _settings(self, mode: str) -> Settings:
        return Settings.model_validate(
            {
                "data_dir": str(self.tmp_path / "data"),
                "state_url": self.url,
                "server": {"webhook_tokens": [TOKEN], "public_url": self.root},
                "syncs": {SYNC: self._sync(mode)},
            }
        )

    def _sync(self, mode: str) -> dict[str, Any]:
        return {
            "mode": mode,
            "source": {
                "url": self.url,
                "table": "contacts",
                "consent_column": "consent",
                "updated_at_column": "updated_at",
            },
            "destination": {
                "api_key": self.handle.api_key,
                "list_id": self.handle.list_id,
                "base_url": self.handle.base_url,
                "max_retries": 2,
            },
            "fields": {"FNAME": "first_name"},
        }

    def address(self, n: int) -> str:
        """Addresses differ per example, so no webhook body repeats an earlier example's."""
        return f"p{n}@ex{self.example}.consent-test.org"

    # --- the source ----------------------------------------------------------------------

    def _tick(self) -> dt.datetime:
        self.clock += dt.timedelta(hours=1)
        return self.clock

    def insert(self, key: int, email: str, consent: bool | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                self.contacts.insert().values(
                    id=key,
                    email=email,
                    consent=consent,
                    first_name=f"Person {key}",
                    updated_at=self._tick(),
                )
            )

    def update(self, key: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                self.contacts.update()
                .where(self.contacts.c.id == key)
                .values(updated_at=self._tick(), **values)
            )

    def delete(self, key: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.contacts.delete().where(self.contacts.c.id == key))

    # --- the sandbox ---------------------------------------------------------------------

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return httpx.request(method, self.handle.control_url + path, json=body, timeout=60)

    def member_path(self, email: str, verb: str) -> str:
        return f"/lists/{self.handle.list_id}/members/{member_id(email)}/{verb}"

    def provider_change(self, email: str, verb: str, *, over_http: bool = True) -> None:
        """A provider-side change of ``email``'s member, if it applies to its status now:
        through the control API, or in-process (the same functions) from inside a request."""
        status = self.provider()[0].get(member_id(email))
        applies = {
            "self-unsubscribe": status in ("subscribed", "pending"),
            "admin-unsubscribe": status in ("subscribed", "pending"),
            "bounce": status == "subscribed",
            "archive": status in ("subscribed", "unsubscribed", "transactional"),
            "delete-permanent": status not in (None, "forgotten"),
        }
        if not applies[verb]:
            return
        if over_http:
            path, body = _CONTROL_CALLS[verb]
            answer = self.control("POST", self.member_path(email, path), body)
            assert answer.status_code == 200, answer.text
            return
        sandbox, list_id = self.handle.sandbox, self.handle.list_id
        calls: dict[str, Callable[[], object]] = {
            "self-unsubscribe": lambda: control.simulate_unsubscribe(sandbox, list_id, email),
            "admin-unsubscribe": lambda: control.simulate_unsubscribe(
                sandbox, list_id, email, source="admin"
            ),
            "bounce": lambda: control.simulate_bounce(sandbox, list_id, email),
            "archive": lambda: control.simulate_archive(sandbox, list_id, email),
            "delete-permanent": lambda: control.simulate_delete_permanent(sandbox, list_id, email),
        }
        with contextlib.suppress(Problem):
            calls[verb]()

    def set_latency(self, seconds: float) -> None:
        self.handle.sandbox.limits.latency = seconds

    def _on_event(self, event: MemberEvent) -> None:
        if event.list_id != self.handle.list_id:
            return
        if event.kind == "upemail":
            recorded = Event(
                "upemail",
                str(event.extra["new_id"]),
                event.source,
                str(event.extra["new_email"]),
                str(event.extra["old_id"]),
            )
        else:
            member = event.member
            recorded = Event(
                event.kind,
                member["id"],
                event.source,
                member["email_address"],
                created=bool(event.extra.get("created")),
            )
        with self._events_lock:
            self._events.append(recorded)

    def take_events(self) -> list[Event]:
        with self._events_lock:
            events, self._events = self._events, []
        return events

    def provider(self) -> tuple[dict[str, str], dict[str, str]]:
        """``(member id -> status, member id -> address)``; deleted members as ``forgotten``."""
        sandbox = self.handle.sandbox
        with sandbox.lock:
            lst = sandbox.lists[self.handle.list_id]
            statuses = {m.id: m.status for m in lst.members.values()}
            emails = {m.id: m.email_address for m in lst.members.values()}
            for forgotten in lst.forgotten:
                statuses.setdefault(forgotten, "forgotten")
        return statuses, emails

    def settle_webhooks(self, timeout: float = 20.0) -> list[str]:
        """Wait until the sandbox delivered every webhook and ``serve`` applied each one."""
        flushed = self.control("POST", "/webhooks/flush", {"timeout": timeout})
        problems = [] if flushed.status_code == 200 else [f"webhook flush: {flushed.text}"]
        deadline = time.monotonic() + timeout
        query = sa.select(webhook_events.c.id, webhook_events.c.error).where(
            webhook_events.c.applied_at.is_(None)
        )
        while True:
            with self.engine.connect() as conn:
                pending = list(conn.execute(query))
            if not pending:
                return problems
            if time.monotonic() > deadline:  # a failed one is retried: wait for that first
                return [
                    *problems,
                    *(f"webhook {r.id} not applied after {timeout} s: {r.error}" for r in pending),
                ]
            time.sleep(0.02)

    # --- runs ----------------------------------------------------------------------------

    def push(self) -> PushSummary:
        return asyncio.run(run_push(self.settings, SYNC))

    def two_pushes(self) -> list[PushSummary]:
        async def both() -> list[PushSummary]:
            return list(
                await asyncio.gather(run_push(self.settings, SYNC), run_push(self.settings, SYNC))
            )

        return asyncio.run(both())

    def pull(self) -> str | None:
        try:
            asyncio.run(run_pull(self.settings, SYNC))
        except Exception as exc:  # the model reports it as a violation
            return f"pull failed: {type(exc).__name__}: {exc}"
        return None

    def push_racing(self, call: int, when: str, email: str, verb: str) -> PushSummary:
        """A push during which the provider changes ``email``'s member at one of the push's
        API calls (``when``: see ``Interposer``)."""
        return self.push_with(
            call, when, lambda: self.provider_change(email, verb, over_http=False)
        )

    def push_with(self, call: int, when: str, action: Callable[[], None]) -> PushSummary:
        """A push during which ``action`` runs at one of its API calls (see ``Interposer``)."""
        self.interposer.arm(call, when, action)
        try:
            return self.push()
        finally:
            self.interposer.disarm()

    def killed_push(self, call: int, when: str, delay: float) -> int | None:
        """``campaign-bridge push`` as a user runs it, SIGKILLed at its ``call``-th API call
        (before the sandbox handles it, or after, before the answer reaches the push), or
        ``delay`` seconds after that. Returns the exit code if it finished before."""
        config = self.tmp_path / f"cb-{self.example}.toml"
        config.write_text(_toml(self.settings))
        proc = subprocess.Popen(
            [str(CLI), "-c", str(config), "--log-format", "json", "push", SYNC],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")},
        )

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)

        def action() -> None:
            if delay:
                threading.Timer(delay, kill).start()
            else:
                kill()

        self.interposer.arm(call, when, action)
        try:
            code = proc.wait(timeout=120)
        finally:
            self.interposer.disarm()
        return None if code == -signal.SIGKILL else code

    # --- the state store -----------------------------------------------------------------

    def ledger(self) -> list[Ledger]:
        table = consent_ledger
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    table.c.id,
                    table.c.email_hash,
                    table.c.source_key,
                    table.c.old_status,
                    table.c.new_status,
                    table.c.origin,
                    table.c.reason,
                ).order_by(table.c.id)
            )
            return [Ledger(*r) for r in rows]

    def contact_states(self) -> list[StateRow]:
        table = contact_state
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    table.c.source_key, table.c.email_hash, table.c.provider_status, table.c.managed
                ).where(table.c.sync_name == SYNC)
            )
            return [StateRow(*r) for r in rows]


def _contacts_table() -> sa.Table:
    return sa.Table(
        "contacts",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(200)),
        sa.Column("consent", sa.Boolean, nullable=True),
        sa.Column("first_name", sa.String(200)),
        sa.Column("updated_at", sa.DateTime),
    )


def _toml(settings: Settings) -> str:
    sync = settings.syncs[SYNC]
    source, destination = sync.source, sync.destination
    api_key = destination.api_key.get_secret_value() if destination.api_key else ""
    return f"""
state_url = "{settings.state_url}"
[syncs.{SYNC}]
mode = "{sync.mode}"
fields = {{ FNAME = "first_name" }}
[syncs.{SYNC}.source]
url = "{source.url}"
table = "contacts"
consent_column = "consent"
updated_at_column = "updated_at"
[syncs.{SYNC}.destination]
api_key = "{api_key}"
list_id = "{destination.list_id}"
base_url = "{destination.base_url}"
max_retries = 2
"""


_CONTROL_CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "self-unsubscribe": ("unsubscribe", {"source": "user"}),
    "admin-unsubscribe": ("unsubscribe", {"source": "admin"}),
    "bounce": ("bounce", {}),
    "archive": ("archive", {}),
    "delete-permanent": ("delete-permanent", {}),
}


@contextlib.contextmanager
def environment(url: str, tmp_path: Path) -> Iterator[Env]:
    """Run the sandbox (behind an ``Interposer``) and ``serve`` on real sockets, on a migrated
    state store with the source table beside it."""
    sandbox_app = create_sandbox_app()
    holder: list[Interposer] = []

    def interpose(inner: ASGIApp) -> Interposer:
        holder.append(Interposer(inner))
        return holder[0]

    sandbox_app.add_middleware(interpose)  # type: ignore[arg-type]
    with run_in_thread(app=sandbox_app) as handle:
        httpx.get(f"{handle.control_url}/health")  # builds the middleware stack
        with _bridge(url, handle, holder[0], tmp_path) as env:
            yield env


@contextlib.contextmanager
def _bridge(url: str, handle: Any, interposer: Interposer, tmp_path: Path) -> Iterator[Env]:
    migrations.upgrade(url)
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    _contacts_table().metadata.create_all(engine)
    engine.dispose()
    store = StateStore(url)
    placeholder = Settings.model_validate(
        {
            "state_url": url,
            "server": {"webhook_tokens": [TOKEN], "public_url": "http://placeholder"},
            "syncs": {
                SYNC: {
                    "source": {"url": url, "table": "contacts"},
                    "destination": {
                        "api_key": handle.api_key,
                        "list_id": handle.list_id,
                        "base_url": handle.base_url,
                    },
                }
            },
        }
    )
    app = create_app(placeholder, store=store, checks={})
    try:
        with serving(app) as root:
            env = Env(url, handle, interposer, root, tmp_path)
            try:
                yield env
            finally:
                env.engine.dispose()
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
        store.engine.dispose()
