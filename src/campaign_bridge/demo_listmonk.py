"""`campaign-bridge demo --provider listmonk`: the demo's story with the bundled listmonk sandbox.

The same steps as the Mailchimp demo (``demo.py``): demo contacts in SQLite -> push to a list ->
a campaign sent in the sandbox -> pull of its counters and bounces -> unsubscribes, blocklists
and bounces written back -> a second push that re-subscribes nobody. listmonk has no webhooks,
so the pull is how what subscribers did reaches the contacts table.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx

from campaign_bridge import migrations
from campaign_bridge.config import Settings, load_settings
from campaign_bridge.demo import (
    CAMPAIGN_LINKS,
    SYNC,
    DemoReport,
    _count_activity,
    _count_source,
    _fresh_directory,
    _port_taken,
    _sandbox_port,
)
from campaign_bridge.demo_data import CONTACTS_TABLE
from campaign_bridge.errors import FatalError
from campaign_bridge.pull import run_pull
from campaign_bridge.push import run_push
from campaign_bridge.sandbox.listmonk import ListmonkConfig, ListmonkHandle, run_in_thread

__all__ = ["run_listmonk_demo", "summary_lines"]

LIST_ID = "1"  # listmonk's install-time "Default list" (single opt-in)
# what subscribers do after the campaign (by position among the recipients)
UNSUBSCRIBE_EVERY = 40


def demo_config(directory: Path, source_url: str, handle: ListmonkHandle) -> str:
    """The demo's configuration file: the same shape a production file has."""
    return textwrap.dedent(f"""\
        # Written by `campaign-bridge demo --provider listmonk`. To use your own database and
        # listmonk, change source.url / source.table, destination.base_url (your instance's root
        # URL), destination.api_user / api_token (Admin -> Users, an API user) and list_id.
        data_dir = "{directory.as_posix()}/state"
        log_level = "WARNING"

        [syncs.{SYNC}]
        mode = "upsert"

        [syncs.{SYNC}.source]
        url = "{source_url}"
        table = "{CONTACTS_TABLE}"
        key_column = "id"
        email_column = "email"
        updated_at_column = "updated_at"
        consent_column = "marketing_opt_in"

        [syncs.{SYNC}.destination]
        provider = "listmonk"
        base_url = "{handle.base_url}"
        api_user = "{handle.api_user}"
        api_token = "{handle.api_token}"
        list_id = "{LIST_ID}"

        [syncs.{SYNC}.fields]
        name = "first_name"
        last_name = "last_name"
        plan = "plan"
        lifetime_value = "lifetime_value"

        [syncs.{SYNC}.writeback]
        table = "{CONTACTS_TABLE}"
        key_column = "id"
        status_column = "mc_status"
        unsubscribed_at_column = "unsubscribed_at"
        bounced_at_column = "bounced_at"
        consent_column = "marketing_opt_in"
        """)


async def run_listmonk_demo(
    directory: Path,
    *,
    contacts: int = 3000,
    say: Callable[[str], None] = print,
    port: int | None = None,
) -> DemoReport:
    """Run the listmonk demo in ``directory`` (recreated); ``port`` as for ``run_demo``."""
    chosen = _sandbox_port(port, say)
    say(f"1/6 creating {contacts} demo contacts in {directory / 'contacts.db'}")
    directory, dataset = await anyio.to_thread.run_sync(_fresh_directory, directory, contacts)
    config = ListmonkConfig(state_file=str(directory / "sandbox.json"), activity_spread_seconds=0)
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(run_in_thread(port=chosen, config=config))
        except OSError as exc:
            raise FatalError(_port_taken(chosen, exc)) from exc
        say(f"2/6 listmonk sandbox listening on {handle.base_url}")
        config_path = directory / "campaign-bridge.toml"
        config_path.write_text(demo_config(directory, dataset.url, handle), encoding="utf-8")
        config_path.chmod(0o600)  # it holds an API token
        settings: Settings = load_settings(config_path, environ={})
        await anyio.to_thread.run_sync(migrations.upgrade, settings.effective_state_url())
        async with httpx.AsyncClient(
            base_url=handle.base_url + "/api/", headers=handle.auth_header
        ) as client:
            say("3/6 pushing contacts to the sandbox list")
            first_push = await run_push(settings, SYNC)
            say("4/6 sending a campaign in the sandbox; some recipients unsubscribe")
            campaign = await _send_campaign(client)
            await _unsubscribe_some(handle, campaign["id"])
            say("5/6 pulling campaigns, reports, bounces and status changes back")
            pull = await run_pull(settings, SYNC)
            say("6/6 pushing again: unsubscribed and blocklisted contacts must stay as they are")
            second_push = await run_push(settings, SYNC)
        unsubscribed, cleaned = _count_source(dataset.url)
        return DemoReport(
            dataset=dataset,
            directory=directory,
            sandbox_port=handle.port,
            first_push=first_push,
            pull=pull,
            second_push=second_push,
            sandbox_statuses=_list_statuses(handle),
            campaign_id=str(campaign["id"]),
            report=campaign,
            activity_rows=_count_activity(settings.effective_state_url(), str(campaign["id"])),
            source_unsubscribed=unsubscribed,
            source_cleaned=cleaned,
        )


async def _api(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    response = await client.request(method, path, **kwargs)
    if response.status_code >= 400:
        raise FatalError(f"sandbox call {method} {path} failed: HTTP {response.status_code}")
    return response.json()["data"]


async def _send_campaign(client: httpx.AsyncClient) -> dict[str, Any]:
    links = "".join(f'<p><a href="{url}">{url}</a></p>' for url in CAMPAIGN_LINKS)
    body = {
        "name": "campaign-bridge demo",
        "subject": "What's new this month",
        "lists": [int(LIST_ID)],
        "content_type": "html",
        "body": links,
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
    first, pull, second = report.first_push, report.pull, report.second_push
    rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(first.rejected.items())) or "none"
    statuses = ", ".join(f"{status} {n}" for status, n in sorted(report.sandbox_statuses.items()))
    campaign = report.report
    return [
        "",
        "campaign-bridge demo (listmonk): summary",
        f"  source rows                 {report.dataset.contacts} "
        f"({report.dataset.consenting} consenting to marketing)",
        f"  first push                  created {first.created}, updated {first.updated}, "
        f"rejected {first.rejected_total} ({rejected}), skipped {sum(first.skipped.values())}"
        f" [{first.status}]",
        f"  campaign {report.campaign_id}       sent to {campaign.get('sent', 0)}, views "
        f"{campaign.get('views', 0)}, clicks {campaign.get('clicks', 0)}, bounces "
        f"{campaign.get('bounces', 0)}",
        f"  pull                        {pull.activity_added} bounce rows landed "
        f"(cb_email_activity holds {report.activity_rows} for this campaign), "
        f"{pull.transitions} status change(s) applied, {pull.written_back} written back",
        f"  contacts table              {report.source_unsubscribed} marked unsubscribed, "
        f"{report.source_cleaned} marked bounced",
        f"  second push                 {second.consent_sentence()} [{second.status}]",
        f"  sandbox list                {statuses}",
        "",
        f"Everything is in {report.directory}: contacts.db (the source, with write-back), "
        "state/state.db (runs, rejected records, consent ledger, pulled data), "
        "campaign-bridge.toml (the configuration used).",
        "",
        "Next steps:",
        "  Keep exploring the demo: serve its sandbox again and run any command against it:",
        f"    .venv/bin/campaign-bridge sandbox serve --provider listmonk --port "
        f"{report.sandbox_port} --state-file {report.directory / 'sandbox.json'} &",
        f"    .venv/bin/campaign-bridge -c {report.directory / 'campaign-bridge.toml'} "
        "push --dry-run",
        "  Point it at your listmonk: set destination.base_url (its root URL), api_user and",
        "  api_token (Admin -> Users, an API user; or api_token_file) and list_id. listmonk has",
        "  no webhooks: schedule `campaign-bridge pull` so unsubscribes reach your table.",
    ]
