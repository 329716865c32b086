"""Concurrency limit, latency and fault injection, on a real socket and in-process."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from mailchimp_marketing.api_client import ApiClientError

from campaign_bridge.sandbox.mailchimp import SandboxConfig, create_app
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle

LIMIT_DETAIL = "You have exceeded the limit of 10 simultaneous connections."


async def _burst(base_url: str, auth: tuple[str, str], n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n + 5)
    async with httpx.AsyncClient(base_url=base_url, auth=auth, limits=limits, timeout=10) as client:
        return list(await asyncio.gather(*(client.get("/ping") for _ in range(n))))


def test_eleventh_concurrent_request_gets_429(mc: SandboxHandle, control: httpx.Client) -> None:
    control.post("/limits", json={"latency": 0.8})
    responses = asyncio.run(_burst(mc.base_url, ("x", mc.api_key), 11))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [429]
    rejected = next(r for r in responses if r.status_code == 429)
    assert rejected.headers["content-type"] == "application/problem+json; charset=utf-8"
    assert rejected.json()["title"] == "Too Many Requests"
    assert rejected.json()["detail"] == LIMIT_DETAIL
    # ten at once is fine, and the limit is per key
    again = asyncio.run(_burst(mc.base_url, ("x", mc.api_key), 10))
    assert all(r.status_code == 200 for r in again)
    assert mc.sandbox.limits.peak_in_flight[mc.api_key] == 10


def test_latency_per_request_and_per_item(
    mc: SandboxHandle, control: httpx.Client, api: httpx.Client
) -> None:
    control.post("/limits", json={"latency": 0.2, "latency_per_item": 0.004})
    started = time.perf_counter()
    assert api.get("/ping").status_code == 200
    assert time.perf_counter() - started >= 0.2
    members = [{"email_address": f"l{i}@real.org", "status": "subscribed"} for i in range(50)]
    started = time.perf_counter()
    assert api.post(f"/lists/{mc.list_id}", json={"members": members}).status_code == 200
    assert time.perf_counter() - started >= 0.2 + 50 * 0.004


async def _ping_with_processing(
    monkeypatch: pytest.MonkeyPatch, latency: float, processing: float
) -> list[float]:
    """Ping an in-process sandbox whose timer says the request took ``processing`` seconds
    between arrival and answer; the holds the app asked for."""
    app = create_app(SandboxConfig(latency=latency))
    sandbox = app.state.sandbox
    sandbox.limits.timer = iter([1000.0, 1000.0 + processing]).__next__
    holds: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded_sleep(seconds: float) -> None:
        holds.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", recorded_sleep)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://sandbox/3.0", auth=("x", sandbox.default_api_key)
    ) as client:
        assert (await client.get("/ping")).status_code == 200
    return holds


@pytest.mark.anyio
async def test_processing_time_counts_towards_the_latency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert await _ping_with_processing(monkeypatch, 1.0, 0.25) == [pytest.approx(0.75)]
    assert await _ping_with_processing(monkeypatch, 1.0, 2.5) == []  # late already: no hold
    assert await _ping_with_processing(monkeypatch, 0.0, 0.25) == []


@pytest.mark.parametrize("status", [500, 502, 503])
def test_html_5xx_faults(
    mc: SandboxHandle, control: httpx.Client, api: httpx.Client, status: int
) -> None:
    control.post(
        "/faults", json={"kind": str(status), "method": "GET", "path": "^/lists$", "count": 2}
    )
    for _ in range(2):
        response = api.get("/lists")
        assert response.status_code == status
        assert response.headers["content-type"] == "text/html"
        assert response.text.startswith("<html>")
    assert api.get("/ping").status_code == 200  # other paths never matched
    assert api.get("/lists").status_code == 200  # the script is used up


def test_bare_403_and_scripted_429_through_the_sdk(
    mc: SandboxHandle, control: httpx.Client, official: Any
) -> None:
    control.post(
        "/faults",
        json={"faults": [{"kind": "403", "path": "/members"}, {"kind": "429", "path": "/members"}]},
    )
    with pytest.raises(ApiClientError) as info:
        official.lists.get_list_members_info(mc.list_id)
    assert info.value.status_code == 403
    assert "application/json" not in info.value.text
    assert info.value.text.startswith("<html>")
    with pytest.raises(ApiClientError) as info:
        official.lists.get_list_members_info(mc.list_id)
    assert info.value.status_code == 429
    assert LIMIT_DETAIL in info.value.text
    assert official.lists.get_list_members_info(mc.list_id)["total_items"] == 0


def test_slow_response_past_the_client_timeout(mc: SandboxHandle, control: httpx.Client) -> None:
    control.post("/faults", json={"kind": "timeout", "path": "/ping", "delay": 1.5})
    with httpx.Client(base_url=mc.base_url, auth=("x", mc.api_key), timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/ping")
        assert client.get("/ping").status_code == 200


def test_dropped_connection_on_a_real_socket(
    mc: SandboxHandle, control: httpx.Client, api: httpx.Client
) -> None:
    control.post("/faults", json={"kind": "drop", "path": "/ping"})
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.get("/ping")
    assert api.get("/ping").status_code == 200


@pytest.mark.anyio
async def test_dropped_connection_in_process() -> None:
    app = create_app()
    sandbox = app.state.sandbox
    from campaign_bridge.sandbox.mailchimp.limits import FaultRule

    sandbox.limits.add_fault(FaultRule(kind="drop"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://sandbox/3.0", auth=("x", sandbox.default_api_key)
    ) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/ping")
        assert (await client.get("/ping")).status_code == 200


async def _pattern(seed: int) -> list[int]:
    app = create_app(SandboxConfig(seed=seed))
    key = app.state.sandbox.default_api_key
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        await client.post("/_sandbox/faults", json={"kind": "503", "rate": 0.5, "count": None})
        return [(await client.get("/3.0/ping", auth=("x", key))).status_code for _ in range(24)]


@pytest.mark.anyio
async def test_fault_rate_is_seeded() -> None:
    first, second, other = await _pattern(7), await _pattern(7), await _pattern(8)
    assert first == second
    assert 0 < first.count(503) < 24
    assert set(first) == {200, 503}
    assert other != first
