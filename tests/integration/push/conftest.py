"""Fixtures for push tests: a source table on the parametrized database, a sandbox with a
request log, and settings that point one sync at both."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.types import ASGIApp, Receive, Scope, Send

from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.sandbox.mailchimp.app import create_app
from campaign_bridge.sandbox.mailchimp.control import seed
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle, run_in_thread

BASE_TIME = dt.datetime(2025, 1, 1, 12, 0, 0)
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


_ENGINES: list[sa.Engine] = []


@pytest.fixture(autouse=True)
def _dispose_source_engines() -> Iterator[None]:
    yield
    while _ENGINES:
        _ENGINES.pop().dispose()


class RequestLog:
    """Every API request the sandbox served: (method, path without /3.0)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/3.0"):
            self.requests.append((scope["method"], scope["path"][4:]))
        await self.app(scope, receive, send)

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] in WRITE_METHODS]

    def clear(self) -> None:
        self.requests.clear()


@dataclass
class Sandbox:
    handle: SandboxHandle
    log: RequestLog

    @property
    def members(self) -> dict[str, Any]:
        """email (lower) -> sandbox member, archived ones included."""
        lst = self.handle.sandbox.lists[self.handle.list_id]
        return {m.email_address.lower(): m for m in lst.members.values()}

    def tags_of(self, email: str) -> set[str]:
        lst = self.handle.sandbox.lists[self.handle.list_id]
        return {lst.segments[segment_id].name for segment_id in self.members[email.lower()].tags}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    app = create_app()
    log_holder: list[RequestLog] = []

    def middleware(inner: ASGIApp) -> RequestLog:
        log_holder.append(RequestLog(inner))
        return log_holder[0]

    app.add_middleware(middleware)  # type: ignore[arg-type]
    sandbox_state = app.state.sandbox
    seed(
        sandbox_state,
        {
            "lists": [
                {
                    "id": sandbox_state.default_list_id,
                    "merge_fields": [
                        {"tag": "NICK", "name": "Nickname", "type": "text"},
                        {"tag": "AGE", "name": "Age", "type": "number"},
                    ],
                }
            ]
        },
    )
    with run_in_thread(app=app) as handle:
        import httpx

        httpx.get(f"{handle.control_url}/health")  # builds the middleware stack
        yield Sandbox(handle, log_holder[0])


@dataclass
class SourceDb:
    url: str
    engine: sa.Engine
    table: sa.Table
    clock: list[dt.datetime] = field(default_factory=lambda: [BASE_TIME])

    def tick(self) -> dt.datetime:
        self.clock[0] += dt.timedelta(hours=1)
        return self.clock[0]

    def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        filled = [{**_defaults(r["id"]), "updated_at": self.tick(), **r} for r in rows]
        with self.engine.begin() as conn:
            conn.execute(self.table.insert(), filled)

    def update(self, key: int, **values: Any) -> None:
        values.setdefault("updated_at", self.tick())
        with self.engine.begin() as conn:
            conn.execute(self.table.update().where(self.table.c.id == key).values(**values))

    def delete(self, key: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.table.delete().where(self.table.c.id == key))


def _defaults(key: int) -> dict[str, Any]:
    return {
        "email": f"person{key}@mail.test",
        "first_name": f"Person {key}",
        "nick": None,
        "age": None,
        "consent": True,
        "vip": False,
        "tag_list": None,
    }


def make_source(url: str, rows: int = 0) -> SourceDb:
    engine = create_engine(url)
    meta = sa.MetaData()
    table = sa.Table(
        "contacts",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(400)),
        sa.Column("first_name", sa.String(400)),
        sa.Column("nick", sa.LargeBinary),
        sa.Column("age", sa.String(40)),
        sa.Column("consent", sa.Boolean),
        sa.Column("vip", sa.Boolean),
        sa.Column("tag_list", sa.String(400)),
        sa.Column("updated_at", sa.DateTime),
    )
    meta.create_all(engine)
    _ENGINES.append(engine)
    source = SourceDb(url, engine, table)
    if rows:
        source.insert([{"id": i} for i in range(1, rows + 1)])
    return source


def push_settings(
    tmp_path: Path, source_url: str, sandbox: Sandbox, *, state_url: str | None = None, **sync: Any
) -> Settings:
    handle = sandbox.handle
    config: dict[str, Any] = {
        "source": {
            "url": source_url,
            "table": "contacts",
            "consent_column": "consent",
            "updated_at_column": "updated_at",
            "chunk_size": 100,
        },
        "destination": {
            "api_key": handle.api_key,
            "list_id": handle.list_id,
            "base_url": handle.base_url,
            "max_retries": 8,
        },
        "fields": {"FNAME": "first_name", "NICK": "nick", "AGE": "age"},
        "tags": {"VIP": "vip"},
        "tags_column": "tag_list",
    }
    for key, value in sync.items():
        if key == "source":
            config["source"].update(value)
        else:
            config[key] = value
    return Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "state_url": state_url or f"sqlite:///{(tmp_path / 'state.db').as_posix()}",
            "syncs": {"crm": config},
        }
    )
