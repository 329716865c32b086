"""Same seed, same activity; another seed, other activity; a saved sandbox reloads the same
reports (activity is rebuilt from the seed). In-process through httpx.ASGITransport."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaign_bridge.sandbox.mailchimp.app import create_app
from campaign_bridge.sandbox.mailchimp.model import SandboxConfig

START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def send_and_read(config: SandboxConfig, seed: int | None = None) -> dict[str, Any]:
    app = create_app(config)
    sandbox = app.state.sandbox
    auth = ("x", sandbox.default_api_key)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox", auth=auth
    ) as http:
        members = [
            {"email_address": f"d{i}@mail.example.org", "status": "subscribed"} for i in range(150)
        ]
        await http.post(f"/3.0/lists/{sandbox.default_list_id}", json={"members": members})
        if seed is not None:
            await http.put("/_sandbox/campaigns/settings", json={"seed": seed})
        sent = (await http.post("/_sandbox/campaigns/seed", json={"subject": "D"})).json()
        cid = sent["id"]
        report = (await http.get(f"/3.0/reports/{cid}")).json()
        activity = (
            await http.get(f"/3.0/reports/{cid}/email-activity", params={"count": 1000})
        ).json()
        members_now = (
            await http.get(f"/3.0/lists/{sandbox.default_list_id}/members", params={"count": 1000})
        ).json()
    for body in (report, activity):
        body.pop("_links")
    return {
        "report": report,
        "activity": activity,
        "statuses": {m["email_address"]: m["status"] for m in members_now["members"]},
        "sandbox": sandbox,
        "app": app,
    }


@pytest.mark.anyio
async def test_same_seed_same_activity_other_seed_other_activity() -> None:
    first = await send_and_read(SandboxConfig(start_time=START))
    again = await send_and_read(SandboxConfig(start_time=START))
    assert first["report"] == again["report"]
    assert first["activity"] == again["activity"]
    assert first["statuses"] == again["statuses"]
    other = await send_and_read(SandboxConfig(start_time=START), seed=99)
    assert other["activity"]["emails"] != first["activity"]["emails"]
    assert other["statuses"] != first["statuses"]


@pytest.mark.anyio
async def test_a_saved_sandbox_reloads_campaigns_reports_and_webhooks(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.json"
    first = await send_and_read(SandboxConfig(start_time=START, state_file=str(state)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=first["app"]), base_url="http://sandbox"
    ) as http:
        assert (await http.post("/_sandbox/save", json={})).status_code == 200
    reloaded = create_app(SandboxConfig(start_time=START, state_file=str(state)))
    sandbox = reloaded.state.sandbox
    cid = first["report"]["id"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=reloaded),
        base_url="http://sandbox",
        auth=("x", sandbox.default_api_key),
    ) as http:
        report = (await http.get(f"/3.0/reports/{cid}")).json()
        activity = (
            await http.get(f"/3.0/reports/{cid}/email-activity", params={"count": 1000})
        ).json()
        campaigns = (await http.get("/3.0/campaigns")).json()
    report.pop("_links")
    activity.pop("_links")
    assert report == first["report"]
    assert activity == first["activity"]
    assert [c["status"] for c in campaigns["campaigns"]] == ["sent"]
