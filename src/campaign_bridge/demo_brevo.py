"""`campaign-bridge demo --provider brevo`: the demo's story with the bundled Brevo sandbox.

The same steps as the Mailchimp demo (``demo.py``): demo contacts in SQLite -> push to a Brevo
list -> a campaign sent in the sandbox (its recipients open, click, bounce, unsubscribe) -> pull
of the campaign, its statistics, per-recipient activity and status changes -> unsubscribes and
bounces written back -> a second push that re-subscribes nobody (Brevo blocklists whoever
unsubscribes, and the bridge never lifts a blocklist).
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
from campaign_bridge.providers._brevo_wire import status_of
from campaign_bridge.sandbox.brevo import BrevoConfig, BrevoHandle, run_in_thread

__all__ = ["run_brevo_demo", "summary_lines"]

# The attributes the demo maps besides Brevo's own FIRSTNAME and LASTNAME, created as a Brevo
# user creates them (Contacts > Settings > Contact attributes), typed.
ATTRIBUTES = (("PLAN", "text"), ("LIFETIME_VALUE", "float"))


def demo_config(directory: Path, source_url: str, handle: BrevoHandle) -> str:
    """The demo's configuration file: the same shape a production file has."""
    return config_text(
        directory,
        source_url,
        """\
        # Written by `campaign-bridge demo --provider brevo`. To use your own database and
        # Brevo account, change source.url / source.table, delete destination.base_url (it
        # points at the local sandbox), and set destination.api_key (SMTP & API > API keys,
        # xkeysib-...) and list_id (Contacts > Lists: the list's number).
        """,
        f"""\
        provider = "brevo"
        base_url = "{handle.base_url}"
        api_key = "{handle.api_key}"
        list_id = "{handle.list_id}"
        """,
        """\
        FIRSTNAME = "first_name"
        LASTNAME = "last_name"
        PLAN = "plan"
        LIFETIME_VALUE = "lifetime_value"
        """,
    )


class _Brevo(DemoSandbox[BrevoHandle]):
    label = "Brevo"
    steps = (
        "3/6 pushing contacts to the sandbox list",
        "4/6 sending a campaign in the sandbox (opens, clicks, bounces, unsubscribes)",
        "5/6 pulling the campaign, its statistics, activity and status changes back",
        "6/6 pushing again: unsubscribed and bounced contacts must stay as they are",
    )

    def start(self, port: int, state_file: Path) -> contextlib.AbstractContextManager[BrevoHandle]:
        return run_in_thread(port=port, config=BrevoConfig(state_file=str(state_file)))

    def config(self, directory: Path, source_url: str, handle: BrevoHandle) -> str:
        return demo_config(directory, source_url, handle)

    def client(self, handle: BrevoHandle) -> httpx.AsyncClient:
        headers = {"api-key": handle.api_key}
        return httpx.AsyncClient(base_url=handle.base_url + "/", headers=headers)

    async def prepare(self, client: httpx.AsyncClient, handle: BrevoHandle) -> None:
        for name, kind in ATTRIBUTES:
            await api(client, "POST", f"contacts/attributes/normal/{name}", json={"type": kind})

    async def send_campaign(
        self, client: httpx.AsyncClient, handle: BrevoHandle
    ) -> tuple[str, dict[str, Any]]:
        return await _send_campaign(client, int(handle.list_id or 0))

    def statuses(self, handle: BrevoHandle) -> Counter[str]:
        return _list_statuses(handle)


async def run_brevo_demo(
    directory: Path,
    *,
    contacts: int = 3000,
    say: Callable[[str], None] = print,
    port: int | None = None,
) -> DemoReport:
    """Run the Brevo demo in ``directory`` (recreated); ``port`` as for ``run_demo``."""
    return await run_story(_Brevo(), directory, contacts=contacts, say=say, port=port)


async def _send_campaign(client: httpx.AsyncClient, list_id: int) -> tuple[str, dict[str, Any]]:
    """Create and send a campaign to the list; return its id and global statistics."""
    body = {
        "name": "campaign-bridge demo",
        "subject": "What's new this month",
        "sender": {"name": "Demo Shop", "email": "news@shop.demo.invalid"},
        "htmlContent": campaign_html(),
        "recipients": {"listIds": [list_id]},
    }
    campaign = await api(client, "POST", "emailCampaigns", json=body)
    await api(client, "POST", f"emailCampaigns/{campaign['id']}/sendNow")
    sent = await api(client, "GET", f"emailCampaigns/{campaign['id']}")
    return str(campaign["id"]), dict(sent["statistics"]["globalStats"])


def _list_statuses(handle: BrevoHandle) -> Counter[str]:
    sandbox, list_id = handle.sandbox, int(handle.list_id or 0)
    with sandbox.lock:
        found: Counter[str] = Counter()
        for contact in sandbox.contacts.values():
            view = {
                "emailBlacklisted": contact.email_blacklisted,
                "listIds": list(contact.list_ids),
                "listUnsubscribed": list(contact.list_unsubscribed or ()),
                "statistics": {"hardBounces": contact.blacklist_reason == "hard_bounce"},
            }
            if list_id in contact.list_ids or contact.email_blacklisted:
                found[str(status_of(view, list_id))] += 1
        return found


def summary_lines(report: DemoReport) -> list[str]:
    """The human summary printed at the end of the Brevo demo."""
    stats = report.report
    return [
        *summary_head(report, " (Brevo)"),
        f"  campaign {report.campaign_id}                  sent {stats.get('sent', 0)}, "
        f"openers {stats.get('uniqueViews', 0)}, clickers {stats.get('uniqueClicks', 0)}, "
        f"bounces {stats.get('hardBounces', 0) + stats.get('softBounces', 0)}, unsubscribed "
        f"{stats.get('unsubscriptions', 0)}",
        *summary_after_pull(report, "activity", "sandbox list", "data"),
        f"    .venv/bin/campaign-bridge sandbox serve --provider brevo --port "
        f"{report.sandbox_port} --state-file {report.directory / 'sandbox.json'} &",
        dry_run_line(report),
        "  Point it at your Brevo account: delete destination.base_url, set destination.api_key",
        "  (or api_key_file) and list_id; run `campaign-bridge serve` for Brevo's webhooks, or",
        "  schedule `campaign-bridge pull` so unsubscribes reach your table.",
    ]
