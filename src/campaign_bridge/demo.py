"""`campaign-bridge demo` (`make demo`): the whole job on embedded defaults, no server to install.

A SQLite database of realistic contacts (a few deliberately broken) -> the bundled Mailchimp
sandbox on a real local socket -> push -> a campaign sent in the sandbox -> pull of its activity
-> unsubscribes written back into the contacts table -> a second push that re-subscribes nobody.
Every figure printed is read back from where it landed (the sandbox, the state store, the source
table), not from the engine's own counters alone. The story is ``demo_story``'s; this module
holds what is Mailchimp's.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from campaign_bridge.demo_story import (
    CAMPAIGN_LINKS,
    SYNC,
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
from campaign_bridge.sandbox.mailchimp.model import SandboxConfig
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle, run_in_thread

__all__ = ["CAMPAIGN_LINKS", "SYNC", "DemoReport", "run_demo", "summary_lines"]

DEMO_MERGE_FIELDS = (
    {"tag": "PLAN", "name": "Plan", "type": "dropdown",
     "options": {"choices": ["free", "starter", "pro", "enterprise"]}},
    {"tag": "LTV", "name": "Lifetime value", "type": "number"},
)  # fmt: skip


def demo_config(directory: Path, source_url: str, base_url: str, api_key: str, list_id: str) -> str:
    """The demo's configuration file: the same shape a production file has."""
    return config_text(
        directory,
        source_url,
        """\
        # Written by `campaign-bridge demo`. To use your own database and Mailchimp account,
        # change source.url / source.table, destination.api_key and destination.list_id, and
        # delete destination.base_url (it points at the local sandbox).
        """,
        f"""\
        provider = "mailchimp"
        api_key = "{api_key}"
        list_id = "{list_id}"
        base_url = "{base_url}"
        """,
        f"""\
        FNAME = "first_name"
        LNAME = "last_name"
        PLAN = "plan"
        LTV = "lifetime_value"

        [syncs.{SYNC}.tags]
        vip = "is_vip"
        """,
    )


class _Mailchimp(DemoSandbox[SandboxHandle]):
    label = "Mailchimp"
    steps = (
        "3/6 pushing contacts to the sandbox audience",
        "4/6 sending a campaign in the sandbox",
        "5/6 pulling campaigns, reports, activity and status changes back",
        "6/6 pushing again: unsubscribed and bounced contacts must stay as they are",
    )

    def start(
        self, port: int, state_file: Path
    ) -> contextlib.AbstractContextManager[SandboxHandle]:
        return run_in_thread(port=port, config=SandboxConfig(state_file=str(state_file)))

    def config(self, directory: Path, source_url: str, handle: SandboxHandle) -> str:
        return demo_config(directory, source_url, handle.base_url, handle.api_key, handle.list_id)

    def client(self, handle: SandboxHandle) -> httpx.AsyncClient:
        auth = httpx.BasicAuth("demo", handle.api_key)
        return httpx.AsyncClient(base_url=handle.base_url + "/", auth=auth)

    async def prepare(self, client: httpx.AsyncClient, handle: SandboxHandle) -> None:
        path = f"lists/{handle.list_id}/merge-fields"
        existing = await api(client, "GET", path, params={"count": 100})
        tags = {item["tag"] for item in existing["merge_fields"]}
        for spec in DEMO_MERGE_FIELDS:
            if spec["tag"] not in tags:
                await api(client, "POST", path, json=spec)

    async def send_campaign(
        self, client: httpx.AsyncClient, handle: SandboxHandle
    ) -> tuple[str, dict[str, Any]]:
        settings = {
            "subject_line": "What's new this month",
            "title": "campaign-bridge demo",
            "from_name": "Demo Shop",
            "reply_to": "news@demo.invalid",
        }
        body = {"type": "regular", "recipients": {"list_id": handle.list_id}, "settings": settings}
        campaign = await api(client, "POST", "campaigns", json=body)
        content = {"html": campaign_html()}
        await api(client, "PUT", f"campaigns/{campaign['id']}/content", json=content)
        await api(client, "POST", f"campaigns/{campaign['id']}/actions/send")
        campaign_id = str(campaign["id"])
        return campaign_id, await api(client, "GET", f"reports/{campaign_id}")

    def statuses(self, handle: SandboxHandle) -> Counter[str]:
        members = handle.sandbox.lists[handle.list_id].members.values()
        return Counter(str(member.status) for member in members)


async def run_demo(
    directory: Path,
    *,
    contacts: int = 3000,
    say: Callable[[str], None] = print,
    port: int | None = None,
) -> DemoReport:
    """Run the demo in ``directory`` (recreated) and return what landed where.

    ``port`` is the sandbox's port: None for 8089 when it is free (else any free port, said
    aloud), 0 for any free port, or a number the user chose, which must be free.
    """
    return await run_story(_Mailchimp(), directory, contacts=contacts, say=say, port=port)


def summary_lines(report: DemoReport) -> list[str]:
    """The human summary printed at the end of the demo."""
    opens = report.report.get("opens", {}).get("unique_opens", 0)
    clicks = report.report.get("clicks", {}).get("unique_subscriber_clicks", 0)
    return [
        *summary_head(report, ""),
        f"  campaign {report.campaign_id}       sent to {report.report.get('emails_sent', 0)}, "
        f"unique opens {opens}, unique clicks {clicks}, unsubscribed "
        f"{report.report.get('unsubscribed', 0)}, bounces "
        f"{report.report.get('bounces', {}).get('hard_bounces', 0)} hard",
        *summary_after_pull(report, "activity", "sandbox audience", "activity"),
        f"    .venv/bin/campaign-bridge sandbox serve --port {report.sandbox_port} "
        f"--state-file {report.directory / 'sandbox.json'} &",
        dry_run_line(report),
        "  Point it at your own database: set source.url (postgresql://, mysql://, sqlite:///) and",
        "  source.table or source.query, and map your columns under [syncs.customers.fields].",
        "  Point it at Mailchimp: set destination.api_key (or CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__"
        "DESTINATION__API_KEY_FILE)",
        "  and destination.list_id, and delete destination.base_url. Then run",
        "  `campaign-bridge doctor` and `campaign-bridge push --dry-run`. See docs/deploy.md.",
    ]
