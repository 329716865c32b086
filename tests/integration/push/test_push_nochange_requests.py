"""A push right after another, nothing changed in the source nor at the provider (the push
benchmark's scenario (d)): the provider is asked only what a push always asks -- the audience's
definitions, its member count and one page of members changed since the last run. No listing
of the whole audience, no read-back, no write. Requests are counted by the sandbox, served over
real HTTP; the state store is the parametrized database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from campaign_bridge import migrations
from campaign_bridge.sandbox.listmonk import ListmonkHandle
from campaign_bridge.sandbox.listmonk import run_in_thread as run_listmonk
from campaign_bridge.sandbox.listmonk.app import create_app as create_listmonk
from tests.integration.push.conftest import Sandbox, make_source, push_settings
from tests.integration.push.test_push_confirmation_retry import OPT_IN_LIST, listmonk_settings
from tests.integration.push.test_push_consent import push

pytestmark = pytest.mark.anyio

ROWS = 1_200  # more than one page of a listing (listmonk's adapter reads 1,000 a page)


class ApiLog:
    """(method, path) of every listmonk API request the sandbox served."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            self.requests.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


@pytest.fixture
def counted_listmonk() -> Iterator[tuple[ListmonkHandle, ApiLog]]:
    app = create_listmonk(None)
    logs: list[ApiLog] = []

    def middleware(inner: ASGIApp) -> ApiLog:
        logs.append(ApiLog(inner))
        return logs[0]

    app.add_middleware(middleware)  # type: ignore[arg-type]
    with run_listmonk(app=app) as handle:
        httpx.get(f"{handle.control_url}/health")  # builds the middleware stack
        yield handle, logs[0]


async def test_a_listmonk_push_with_nothing_changed_asks_three_things(
    database_url: str, tmp_path: Path, counted_listmonk: tuple[ListmonkHandle, ApiLog]
) -> None:
    handle, log = counted_listmonk
    source = make_source(database_url, rows=ROWS)
    settings = listmonk_settings(tmp_path, database_url, handle)
    assert (await push(settings)).created == ROWS
    for key in range(1, ROWS + 1, 100):  # scenario (c): 1 % changed, pushed
        source.update(key, first_name=f"Renamed {key}")
    assert (await push(settings)).updated == ROWS // 100

    log.requests.clear()
    summary = await push(settings)
    assert (summary.created, summary.updated, summary.writes) == (0, 0, 0)
    assert Counter(log.requests) == {
        ("GET", f"/api/lists/{OPT_IN_LIST}"): 2,  # the audience, its member count
        ("GET", "/api/subscribers"): 1,  # the members changed since the last run
    }


async def test_a_mailchimp_push_with_nothing_changed_asks_only_what_a_push_always_asks(
    database_url: str, tmp_path: Path, sandbox: Sandbox
) -> None:
    migrations.upgrade(database_url)
    source = make_source(database_url, rows=ROWS)
    settings = push_settings(tmp_path, database_url, sandbox, state_url=database_url)
    assert (await push(settings)).created == ROWS
    # Mailchimp's since_last_changed has whole seconds: runs in the same second would see each
    # other's members as changed since (more pages), as they would against the real API.
    await anyio.sleep(1.1)
    for key in range(1, ROWS + 1, 100):
        source.update(key, first_name=f"Renamed {key}")
    assert (await push(settings)).updated == ROWS // 100
    await anyio.sleep(1.1)

    sandbox.log.clear()
    summary = await push(settings)
    assert (summary.created, summary.updated, summary.writes) == (0, 0, 0)
    assert sandbox.log.writes() == []
    audience = f"/lists/{sandbox.handle.list_id}"
    assert Counter(sandbox.log.requests) == {
        ("GET", audience): 2,  # the audience, its member count
        ("GET", f"{audience}/merge-fields"): 1,
        ("GET", f"{audience}/interest-categories"): 1,
        # the members changed since the last run: one page for each of the six statuses
        ("GET", f"{audience}/members"): 6,
    }
