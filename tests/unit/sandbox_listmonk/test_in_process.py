"""The in-process app (the ``listmonk_sandbox_app`` fixture) through ``httpx.ASGITransport``:
the same answers as on a socket, a state snapshot that round-trips, and the ``drop`` fault
raising the transport error a client would see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from campaign_bridge.sandbox.listmonk import ListmonkConfig, create_app
from campaign_bridge.sandbox.listmonk.persistence import dump_state, save


def _auth(app: Any) -> dict[str, str]:
    sandbox = app.state.sandbox
    return {"Authorization": f"token {sandbox.default_user}:{sandbox.default_token}"}


@pytest.mark.anyio
async def test_in_process_app_and_state_round_trip(
    listmonk_sandbox_app: Any, tmp_path: Path
) -> None:
    app = listmonk_sandbox_app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox", headers=_auth(app)
    ) as client:
        made = await client.post(
            "/api/subscribers",
            json={"email": "ada@example.org", "lists": [1, 2], "attribs": {"k": [1, 2]}},
        )
        assert made.status_code == 200
        campaign = await client.post(
            "/api/campaigns", json={"name": "n", "subject": "s", "lists": [1]}
        )
        await client.put(f"/api/campaigns/{campaign.json()['data']['id']}/status",
                         json={"status": "running"})  # fmt: skip
        await client.get("/api/campaigns")
        await client.post("/_sandbox/faults", json={"kind": "drop", "path": "^/lists$"})
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/api/lists")
    path = tmp_path / "state.json"
    save(app.state.sandbox, path)
    again = create_app(ListmonkConfig(state_file=str(path)))
    assert dump_state(again.state.sandbox) == dump_state(app.state.sandbox)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=again), base_url="http://sandbox", headers=_auth(app)
    ) as client:
        held = (await client.get("/api/subscribers/1")).json()["data"]
        assert held["attribs"] == {"k": [1, 2]}
        assert [x["subscription_status"] for x in held["lists"]] == ["unconfirmed", "unconfirmed"]
        assert (await client.get("/api/campaigns/1")).json()["data"]["status"] == "finished"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
