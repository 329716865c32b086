"""`campaign-bridge demo --provider listmonk`: the demo's story with the bundled listmonk sandbox.

The same steps as the Mailchimp demo (``demo.py``): demo contacts in SQLite -> push to a list ->
a campaign sent in the sandbox -> pull of its counters and bounces -> unsubscribes, blocklists
and bounces written back -> a second push that re-subscribes nobody. listmonk has no webhooks,
so the pull is how what subscribers did reaches the contacts table.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from campaign_bridge.demo_story import (
    DemoReport,
    DemoSandbox,
    api,
    campaign_html,
    config_text,
    dry_run_line,
    run_story,
    summary_after_pull,
    summary_head,
)
from campaign_bridge.sandbox.listmonk import ListmonkConfig, ListmonkHandle, run_in_thread

__all__ = ["run_listmonk_demo", "summary_lines"]

LIST_ID = "1"  # listmonk's install-time "Default list" (single opt-in)
# what subscribers do after the campaign (by position among the recipients)
UNSUBSCRIBE_EVERY = 40


def demo_config(directory: Path, source_url: str, handle: ListmonkHandle) -> str:
    """The demo's configuration file: the same shape a production file has."""
    return config_text(
        directory,
        source_url,
        """\
        # Written by `campaign-bridge demo --provider listmonk`. To use your own database and
        # listmonk, change source.url / source.table, destination.base_url (your instance's root
        # URL), destination.api_user / api_token (Admin -> Users, an API user) and list_id.
        """,
        f"""\
        provider = "listmonk"
        base_url = "{handle.base_url}"
        api_user = "{handle.api_user}"
        api_token = "{handle.api_token}"
        list_id = "{LIST_ID}"
        """,
        """\
        name = "first_name"
        last_name = "last_name"
        plan = "plan"
        lifetime_value = "lifetime_value"
        """,
    )


class _Listmonk(DemoSandbox[ListmonkHandle]):
    label = "listmonk"
    steps = (
        "3/6 pushing contacts to the sandbox list",
        "4/6 sending a campaign in the sandbox; some recipients unsubscribe",
        "5/6 pulling campaigns, reports, bounces and status changes back",
        "6/6 pushing again: unsubscribed and blocklisted contacts must stay as they are",
    )

    def start(
        self, port: int, state_file: Path
    ) -> contextlib.AbstractContextManager[ListmonkHandle]:
        config = ListmonkConfig(state_file=str(state_file), activity_spread_seconds=0)
        return run_in_thread(port=port, config=config)

    def config(self, directory: Path, source_url: str, handle: ListmonkHandle) -> str:
        return demo_config(directory, source_url, handle)

    def client(self, handle: ListmonkHandle) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=handle.base_url + "/api/", headers=handle.auth_header)

    async def send_campaign(
        self, client: httpx.AsyncClient, handle: ListmonkHandle
    ) -> tuple[str, dict[str, Any]]:
        campaign = await _send_campaign(client)
        await _unsubscribe_some(handle, campaign["id"])
        return str(campaign["id"]), campaign

    def statuses(self, handle: ListmonkHandle) -> Counter[str]:
        return _list_statuses(handle)


async def run_listmonk_demo(
    directory: Path,
    *,
    contacts: int = 3000,
    say: Callable[[str], None] = print,
    port: int | None = None,
) -> DemoReport:
    """Run the listmonk demo in ``directory`` (recreated); ``port`` as for ``run_demo``."""
    return await run_story(_Listmonk(), directory, contacts=contacts, say=say, port=port)


async def _api(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    return (await api(client, method, path, **kwargs))["data"]


async def _send_campaign(client: httpx.AsyncClient) -> dict[str, Any]:
    body = {
        "name": "campaign-bridge demo",
        "subject": "What's new this month",
        "lists": [int(LIST_ID)],
        "content_type": "html",
        "body": campaign_html(),
    }
    campaign = await _api(client, "POST", "campaigns", json=body)
    await _api(client, "PUT", f"campaigns/{campaign['id']}/status", json={"status": "running"})
    finished: dict[str, Any] = await _api(client, "GET", f"campaigns/{campaign['id']}")
    return finished


async def _unsubscribe_some(handle: ListmonkHandle, campaign_id: int) -> None:
    """Every ``UNSUBSCRIBE_EVERY``-th subscriber on the list clicks the campaign's unsubscribe
    link (the control API plays the person; listmonk tells nobody, so only a pull sees it)."""
    sandbox = handle.sandbox
    with sandbox.lock:
        members = list(sandbox.lists[int(LIST_ID)].members)
    chosen = [sandbox.subscribers[i].email for i in members[::UNSUBSCRIBE_EVERY]]
    async with httpx.AsyncClient(base_url=handle.control_url) as control:
        for email in chosen:
            response = await control.post(
                f"/subscribers/{email}/unsubscribe", json={"campaign_id": campaign_id}
            )
            response.raise_for_status()


def _list_statuses(handle: ListmonkHandle) -> Counter[str]:
    sandbox = handle.sandbox
    with sandbox.lock:
        return Counter(
            "blocklisted"
            if sandbox.subscribers[i].status == "blocklisted"
            else sandbox.subscribers[i].lists[int(LIST_ID)].status
            for i in sandbox.lists[int(LIST_ID)].members
        )


def summary_lines(report: DemoReport) -> list[str]:
    """The human summary printed at the end of the listmonk demo."""
    campaign = report.report
    return [
        *summary_head(report, " (listmonk)"),
        f"  campaign {report.campaign_id}       sent to {campaign.get('sent', 0)}, views "
        f"{campaign.get('views', 0)}, clicks {campaign.get('clicks', 0)}, bounces "
        f"{campaign.get('bounces', 0)}",
        *summary_after_pull(report, "bounce", "sandbox list", "data"),
        f"    .venv/bin/campaign-bridge sandbox serve --provider listmonk --port "
        f"{report.sandbox_port} --state-file {report.directory / 'sandbox.json'} &",
        dry_run_line(report),
        "  Point it at your listmonk: set destination.base_url (its root URL), api_user and",
        "  api_token (Admin -> Users, an API user; or api_token_file) and list_id. listmonk has",
        "  no webhooks: schedule `campaign-bridge pull` so unsubscribes reach your table.",
    ]
