"""`campaign-bridge demo --provider brevo`: the demo's story with the bundled Brevo sandbox.

The same steps as the Mailchimp demo (``demo.py``): demo contacts in SQLite -> push to a Brevo
list -> a campaign sent in the sandbox (its recipients open, click, bounce, unsubscribe) -> pull
of the campaign, its statistics, per-recipient activity and status changes -> unsubscribes and
bounces written back -> a second push that re-subscribes nobody (Brevo blocklists whoever
unsubscribes, and the bridge never lifts a blocklist).
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
from campaign_bridge.providers._brevo_wire import status_of
from campaign_bridge.pull import run_pull
from campaign_bridge.push import run_push
from campaign_bridge.sandbox.brevo import BrevoConfig, BrevoHandle, run_in_thread

__all__ = ["run_brevo_demo", "summary_lines"]

# The attributes the demo maps besides Brevo's own FIRSTNAME and LASTNAME, created as a Brevo
# user creates them (Contacts > Settings > Contact attributes), typed.
ATTRIBUTES = (("PLAN", "text"), ("LIFETIME_VALUE", "float"))


def demo_config(directory: Path, source_url: str, handle: BrevoHandle) -> str:
    """The demo's configuration file: the same shape a production file has."""
    return textwrap.dedent(f"""\
        # Written by `campaign-bridge demo --provider brevo`. To use your own database and
        # Brevo account, change source.url / source.table, delete destination.base_url (it
        # points at the local sandbox), and set destination.api_key (SMTP & API > API keys,
        # xkeysib-...) and list_id (Contacts > Lists: the list's number).
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
        provider = "brevo"
        base_url = "{handle.base_url}"
        api_key = "{handle.api_key}"
        list_id = "{handle.list_id}"

        [syncs.{SYNC}.fields]
        FIRSTNAME = "first_name"
        LASTNAME = "last_name"
        PLAN = "plan"
        LIFETIME_VALUE = "lifetime_value"

        [syncs.{SYNC}.writeback]
        table = "{CONTACTS_TABLE}"
        key_column = "id"
        status_column = "mc_status"
        unsubscribed_at_column = "unsubscribed_at"
        bounced_at_column = "bounced_at"
        consent_column = "marketing_opt_in"
        """)


async def run_brevo_demo(
    directory: Path,
    *,
    contacts: int = 3000,
    say: Callable[[str], None] = print,
    port: int | None = None,
) -> DemoReport:
    """Run the Brevo demo in ``directory`` (recreated); ``port`` as for ``run_demo``."""
    chosen = _sandbox_port(port, say)
    say(f"1/6 creating {contacts} demo contacts in {directory / 'contacts.db'}")
    directory, dataset = await anyio.to_thread.run_sync(_fresh_directory, directory, contacts)
    config = BrevoConfig(state_file=str(directory / "sandbox.json"))
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(run_in_thread(port=chosen, config=config))
        except OSError as exc:
            raise FatalError(_port_taken(chosen, exc)) from exc
        say(f"2/6 Brevo sandbox listening on {handle.base_url}")
        config_path = directory / "campaign-bridge.toml"
        config_path.write_text(demo_config(directory, dataset.url, handle), encoding="utf-8")
        config_path.chmod(0o600)  # it holds an API key
        settings: Settings = load_settings(config_path, environ={})
        await anyio.to_thread.run_sync(migrations.upgrade, settings.effective_state_url())
        headers = {"api-key": handle.api_key}
        async with httpx.AsyncClient(base_url=handle.base_url + "/", headers=headers) as client:
            for name, kind in ATTRIBUTES:
                await _api(
                    client, "POST", f"contacts/attributes/normal/{name}", json={"type": kind}
                )
            say("3/6 pushing contacts to the sandbox list")
            first_push = await run_push(settings, SYNC)
            say("4/6 sending a campaign in the sandbox (opens, clicks, bounces, unsubscribes)")
            campaign_id, statistics = await _send_campaign(client, int(handle.list_id or 0))
            say("5/6 pulling the campaign, its statistics, activity and status changes back")
            pull = await run_pull(settings, SYNC)
            say("6/6 pushing again: unsubscribed and bounced contacts must stay as they are")
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
            campaign_id=campaign_id,
            report=statistics,
            activity_rows=_count_activity(settings.effective_state_url(), campaign_id),
            source_unsubscribed=unsubscribed,
            source_cleaned=cleaned,
        )


async def _api(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    response = await client.request(method, path, **kwargs)
    if response.status_code >= 400:
        raise FatalError(f"sandbox call {method} {path} failed: HTTP {response.status_code}")
    return response.json() if response.content else None


async def _send_campaign(client: httpx.AsyncClient, list_id: int) -> tuple[str, dict[str, Any]]:
    """Create and send a campaign to the list; return its id and global statistics."""
    links = "".join(f'<p><a href="{url}">{url}</a></p>' for url in CAMPAIGN_LINKS)
    body = {
        "name": "campaign-bridge demo",
        "subject": "What's new this month",
        "sender": {"name": "Demo Shop", "email": "news@shop.demo.invalid"},
        "htmlContent": links,
        "recipients": {"listIds": [list_id]},
    }
    campaign = await _api(client, "POST", "emailCampaigns", json=body)
    await _api(client, "POST", f"emailCampaigns/{campaign['id']}/sendNow")
    sent = await _api(client, "GET", f"emailCampaigns/{campaign['id']}")
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
    first, pull, second = report.first_push, report.pull, report.second_push
    rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(first.rejected.items())) or "none"
    statuses = ", ".join(f"{status} {n}" for status, n in sorted(report.sandbox_statuses.items()))
    stats = report.report
    return [
        "",
        "campaign-bridge demo (Brevo): summary",
        f"  source rows                 {report.dataset.contacts} "
        f"({report.dataset.consenting} consenting to marketing)",
        f"  first push                  created {first.created}, updated {first.updated}, "
        f"rejected {first.rejected_total} ({rejected}), skipped {sum(first.skipped.values())}"
        f" [{first.status}]",
        f"  campaign {report.campaign_id}                  sent {stats.get('sent', 0)}, "
        f"openers {stats.get('uniqueViews', 0)}, clickers {stats.get('uniqueClicks', 0)}, "
        f"bounces {stats.get('hardBounces', 0) + stats.get('softBounces', 0)}, unsubscribed "
        f"{stats.get('unsubscriptions', 0)}",
        f"  pull                        {pull.activity_added} activity rows landed "
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
        f"    .venv/bin/campaign-bridge sandbox serve --provider brevo --port "
        f"{report.sandbox_port} --state-file {report.directory / 'sandbox.json'} &",
        f"    .venv/bin/campaign-bridge -c {report.directory / 'campaign-bridge.toml'} "
        "push --dry-run",
        "  Point it at your Brevo account: delete destination.base_url, set destination.api_key",
        "  (or api_key_file) and list_id; run `campaign-bridge serve` for Brevo's webhooks, or",
        "  schedule `campaign-bridge pull` so unsubscribes reach your table.",
    ]
