"""`campaign-bridge demo` (`make demo`): the whole job on embedded defaults, no server to install.

A SQLite database of realistic contacts (a few deliberately broken) -> the bundled Mailchimp
sandbox on a real local socket -> push -> a campaign sent in the sandbox -> pull of its activity
-> unsubscribes written back into the contacts table -> a second push that re-subscribes nobody.
Every figure printed is read back from where it landed (the sandbox, the state store, the source
table), not from the engine's own counters alone.
"""

from __future__ import annotations

import contextlib
import socket
import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import sqlalchemy as sa

from campaign_bridge import migrations
from campaign_bridge.config import Settings, load_settings
from campaign_bridge.db import create_engine
from campaign_bridge.demo_data import CONTACTS_TABLE, DemoDataset, create_demo_source
from campaign_bridge.errors import FatalError
from campaign_bridge.pull import PullSummary, run_pull
from campaign_bridge.push import PushSummary, run_push
from campaign_bridge.sandbox.mailchimp.model import SandboxConfig
from campaign_bridge.sandbox.mailchimp.server import SandboxHandle, run_in_thread

__all__ = ["DemoReport", "run_demo"]

SYNC = "customers"
DEMO_SANDBOX_PORT = 8089
DEMO_MERGE_FIELDS = (
    {"tag": "PLAN", "name": "Plan", "type": "dropdown",
     "options": {"choices": ["free", "starter", "pro", "enterprise"]}},
    {"tag": "LTV", "name": "Lifetime value", "type": "number"},
)  # fmt: skip
CAMPAIGN_LINKS = ("https://shop.demo.invalid/sale", "https://blog.demo.invalid/changelog")


@dataclass
class DemoReport:
    dataset: DemoDataset
    directory: Path
    first_push: PushSummary
    pull: PullSummary
    second_push: PushSummary
    sandbox_statuses: Counter[str] = field(default_factory=Counter)
    sandbox_port: int = 0
    campaign_id: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    activity_rows: int = 0
    source_unsubscribed: int = 0
    source_cleaned: int = 0


def demo_config(directory: Path, source_url: str, base_url: str, api_key: str, list_id: str) -> str:
    """The demo's configuration file: the same shape a production file has."""
    return textwrap.dedent(f"""\
        # Written by `campaign-bridge demo`. To use your own database and Mailchimp account,
        # change source.url / source.table, destination.api_key and destination.list_id, and
        # delete destination.base_url (it points at the local sandbox).
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
        provider = "mailchimp"
        api_key = "{api_key}"
        list_id = "{list_id}"
        base_url = "{base_url}"

        [syncs.{SYNC}.fields]
        FNAME = "first_name"
        LNAME = "last_name"
        PLAN = "plan"
        LTV = "lifetime_value"

        [syncs.{SYNC}.tags]
        vip = "is_vip"

        [syncs.{SYNC}.writeback]
        table = "{CONTACTS_TABLE}"
        key_column = "id"
        status_column = "mc_status"
        unsubscribed_at_column = "unsubscribed_at"
        bounced_at_column = "bounced_at"
        consent_column = "marketing_opt_in"
        """)


async def _api(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    response = await client.request(method, path, **kwargs)
    if response.status_code >= 400:
        raise FatalError(f"sandbox call {method} {path} failed: HTTP {response.status_code}")
    return response.json() if response.content else None


async def _prepare_audience(client: httpx.AsyncClient, list_id: str) -> None:
    existing = await _api(client, "GET", f"lists/{list_id}/merge-fields", params={"count": 100})
    tags = {item["tag"] for item in existing["merge_fields"]}
    for spec in DEMO_MERGE_FIELDS:
        if spec["tag"] not in tags:
            await _api(client, "POST", f"lists/{list_id}/merge-fields", json=spec)


async def _send_campaign(client: httpx.AsyncClient, list_id: str) -> str:
    campaign = await _api(
        client,
        "POST",
        "campaigns",
        json={
            "type": "regular",
            "recipients": {"list_id": list_id},
            "settings": {
                "subject_line": "What's new this month",
                "title": "campaign-bridge demo",
                "from_name": "Demo Shop",
                "reply_to": "news@demo.invalid",
            },
        },
    )
    links = "".join(f'<p><a href="{url}">{url}</a></p>' for url in CAMPAIGN_LINKS)
    await _api(client, "PUT", f"campaigns/{campaign['id']}/content", json={"html": links})
    await _api(client, "POST", f"campaigns/{campaign['id']}/actions/send")
    return str(campaign["id"])


def _count_source(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            unsubscribed = conn.execute(
                sa.text(f"SELECT COUNT(*) FROM {CONTACTS_TABLE} WHERE unsubscribed_at IS NOT NULL")
            ).scalar_one()
            cleaned = conn.execute(
                sa.text(f"SELECT COUNT(*) FROM {CONTACTS_TABLE} WHERE bounced_at IS NOT NULL")
            ).scalar_one()
        return int(unsubscribed), int(cleaned)
    finally:
        engine.dispose()


def _count_activity(state_url: str, campaign_id: str) -> int:
    engine = create_engine(state_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT COUNT(*) FROM cb_email_activity WHERE campaign_id = :c"),
                    {"c": campaign_id},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _fresh_directory(directory: Path, contacts: int) -> tuple[Path, DemoDataset]:
    """Recreate the demo's files: a new source table, an empty state store and sandbox."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    for stale in ("state/state.db", "state/state.db-wal", "state/state.db-shm", "sandbox.json"):
        (directory / stale).unlink(missing_ok=True)
    return directory, create_demo_source(directory / "contacts.db", contacts=contacts)


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
    chosen = _sandbox_port(port, say)
    say(f"1/6 creating {contacts} demo contacts in {directory / 'contacts.db'}")
    directory, dataset = await anyio.to_thread.run_sync(_fresh_directory, directory, contacts)
    sandbox_config = SandboxConfig(state_file=str(directory / "sandbox.json"))
    with contextlib.ExitStack() as stack:
        try:
            sandbox = stack.enter_context(run_in_thread(port=chosen, config=sandbox_config))
        except OSError as exc:  # taken between the check and the bind
            raise FatalError(_port_taken(chosen, exc)) from exc
        return await _run_with_sandbox(directory, dataset, sandbox, say)


def _port_taken(port: int, exc: OSError) -> str:
    return (
        f"the demo's sandbox cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}); "
        "choose another port with `--port N` or DEMO_PORT=N (`make demo DEMO_PORT=N`), "
        "or 0 for any free port"
    )


def _sandbox_port(requested: int | None, say: Callable[[str], None]) -> int:
    """The port the sandbox will use: the one asked for (it must be free), else 8089 when free
    (so `sandbox serve --port 8089 --state-file demo/sandbox.json` later serves the demo's
    audience at the URL in demo/campaign-bridge.toml), else any free port, said aloud."""
    if requested is not None:
        if requested:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", requested))
                except OSError as exc:
                    raise FatalError(_port_taken(requested, exc)) from exc
        return requested
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", DEMO_SANDBOX_PORT))
        except OSError:
            say(
                f"port {DEMO_SANDBOX_PORT} is taken, so the sandbox takes any free port "
                "(choose one with --port N or DEMO_PORT=N)"
            )
            return 0
    return DEMO_SANDBOX_PORT


async def _run_with_sandbox(
    directory: Path, dataset: DemoDataset, sandbox: SandboxHandle, say: Callable[[str], None]
) -> DemoReport:
    say(f"2/6 Mailchimp sandbox listening on {sandbox.base_url}")
    config_path = directory / "campaign-bridge.toml"
    config_path.write_text(
        demo_config(directory, dataset.url, sandbox.base_url, sandbox.api_key, sandbox.list_id),
        encoding="utf-8",
    )
    config_path.chmod(0o600)  # it holds an API key (doctor warns about readable secret files)
    settings: Settings = load_settings(config_path, environ={})
    await anyio.to_thread.run_sync(migrations.upgrade, settings.effective_state_url())
    auth = httpx.BasicAuth("demo", sandbox.api_key)
    async with httpx.AsyncClient(base_url=sandbox.base_url + "/", auth=auth) as client:
        await _prepare_audience(client, sandbox.list_id)
        say("3/6 pushing contacts to the sandbox audience")
        first_push = await run_push(settings, SYNC)
        say("4/6 sending a campaign in the sandbox")
        campaign_id = await _send_campaign(client, sandbox.list_id)
        report = await _api(client, "GET", f"reports/{campaign_id}")
        say("5/6 pulling campaigns, reports, activity and status changes back")
        pull = await run_pull(settings, SYNC)
        say("6/6 pushing again: unsubscribed and bounced contacts must stay as they are")
        second_push = await run_push(settings, SYNC)
    members = sandbox.sandbox.lists[sandbox.list_id].members.values()
    unsubscribed, cleaned = _count_source(dataset.url)
    return DemoReport(
        dataset=dataset,
        directory=directory,
        sandbox_port=sandbox.port,
        first_push=first_push,
        pull=pull,
        second_push=second_push,
        sandbox_statuses=Counter(str(member.status) for member in members),
        campaign_id=campaign_id,
        report=report,
        activity_rows=_count_activity(settings.effective_state_url(), campaign_id),
        source_unsubscribed=unsubscribed,
        source_cleaned=cleaned,
    )


def summary_lines(report: DemoReport) -> list[str]:
    """The human summary printed at the end of the demo."""
    first, pull, second = report.first_push, report.pull, report.second_push
    rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(first.rejected.items())) or "none"
    statuses = ", ".join(f"{status} {n}" for status, n in sorted(report.sandbox_statuses.items()))
    opens = report.report.get("opens", {}).get("unique_opens", 0)
    clicks = report.report.get("clicks", {}).get("unique_subscriber_clicks", 0)
    return [
        "",
        "campaign-bridge demo: summary",
        f"  source rows                 {report.dataset.contacts} "
        f"({report.dataset.consenting} consenting to marketing)",
        f"  first push                  created {first.created}, updated {first.updated}, "
        f"rejected {first.rejected_total} ({rejected}), skipped {sum(first.skipped.values())}"
        f" [{first.status}]",
        f"  campaign {report.campaign_id}       sent to {report.report.get('emails_sent', 0)}, "
        f"unique opens {opens}, unique clicks {clicks}, unsubscribed "
        f"{report.report.get('unsubscribed', 0)}, bounces "
        f"{report.report.get('bounces', {}).get('hard_bounces', 0)} hard",
        f"  pull                        {pull.activity_added} activity rows landed "
        f"(cb_email_activity holds {report.activity_rows} for this campaign), "
        f"{pull.transitions} status change(s) applied, {pull.written_back} written back",
        f"  contacts table              {report.source_unsubscribed} marked unsubscribed, "
        f"{report.source_cleaned} marked bounced",
        f"  second push                 {second.consent_sentence()} [{second.status}]",
        f"  sandbox audience            {statuses}",
        "",
        f"Everything is in {report.directory}: contacts.db (the source, with write-back), "
        "state/state.db (runs, rejected records, consent ledger, pulled activity), "
        "campaign-bridge.toml (the configuration used).",
        "",
        "Next steps:",
        "  Keep exploring the demo: serve its sandbox again and run any command against it:",
        f"    .venv/bin/campaign-bridge sandbox serve --port {report.sandbox_port} "
        f"--state-file {report.directory / 'sandbox.json'} &",
        f"    .venv/bin/campaign-bridge -c {report.directory / 'campaign-bridge.toml'} "
        "push --dry-run",
        "  Point it at your own database: set source.url (postgresql://, mysql://, sqlite:///) and",
        "  source.table or source.query, and map your columns under [syncs.customers.fields].",
        "  Point it at Mailchimp: set destination.api_key (or CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__"
        "DESTINATION__API_KEY_FILE)",
        "  and destination.list_id, and delete destination.base_url. Then run",
        "  `campaign-bridge doctor` and `campaign-bridge push --dry-run`. See docs/deploy.md.",
    ]
