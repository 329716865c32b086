"""The demo's story, the same for every provider; each provider's demo module gives a
``DemoSandbox`` (its sandbox, configuration, seeding, campaign and list statuses).

Demo contacts in SQLite -> the provider's sandbox on a real local socket -> push -> a campaign
sent in the sandbox -> pull -> unsubscribes and bounces written back -> a second push that
re-subscribes nobody. Every figure is read back from where it landed.
"""

from __future__ import annotations

import contextlib
import socket
import textwrap
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

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

__all__ = ["CAMPAIGN_LINKS", "SYNC", "DemoReport", "DemoSandbox", "run_story"]

SYNC = "customers"
DEMO_SANDBOX_PORT = 8089
CAMPAIGN_LINKS = ("https://shop.demo.invalid/sale", "https://blog.demo.invalid/changelog")


class _Served(Protocol):
    @property
    def port(self) -> int: ...
    @property
    def base_url(self) -> str: ...


H = TypeVar("H", bound=_Served)


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


class DemoSandbox(ABC, Generic[H]):
    """What differs between providers in the demo's story."""

    label: str  # "Mailchimp": said when the sandbox listens
    # what steps 3/6 to 6/6 say
    steps: tuple[str, str, str, str]

    @abstractmethod
    def start(self, port: int, state_file: Path) -> contextlib.AbstractContextManager[H]:
        """Start the sandbox in a thread on ``port``, keeping its state in ``state_file``."""

    @abstractmethod
    def config(self, directory: Path, source_url: str, handle: H) -> str:
        """The demo's configuration file."""

    @abstractmethod
    def client(self, handle: H) -> httpx.AsyncClient:
        """A client of the sandbox's API, authenticated."""

    async def prepare(self, client: httpx.AsyncClient, handle: H) -> None:
        """Seed what a user would create before the first push (fields, attributes)."""

    @abstractmethod
    async def send_campaign(
        self, client: httpx.AsyncClient, handle: H
    ) -> tuple[str, dict[str, Any]]:
        """Send a campaign in the sandbox (its recipients act); return its id and report."""

    @abstractmethod
    def statuses(self, handle: H) -> Counter[str]:
        """How many contacts of the sandbox's list are in each status."""


def config_text(
    directory: Path, source_url: str, comment: str, destination: str, fields: str
) -> str:
    """A demo configuration file: ``comment`` lines, the common source and write-back, and the
    provider's ``destination`` and ``fields`` section bodies (``fields`` may add sections)."""
    head = textwrap.dedent(f"""\
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
        """)
    writeback = textwrap.dedent(f"""\
        [syncs.{SYNC}.writeback]
        table = "{CONTACTS_TABLE}"
        key_column = "id"
        status_column = "mc_status"
        unsubscribed_at_column = "unsubscribed_at"
        bounced_at_column = "bounced_at"
        consent_column = "marketing_opt_in"
        """)
    return (
        textwrap.dedent(comment)
        + head
        + textwrap.dedent(destination)
        + f"\n[syncs.{SYNC}.fields]\n"
        + textwrap.dedent(fields)
        + "\n"
        + writeback
    )


async def run_story(
    provider: DemoSandbox[H],
    directory: Path,
    *,
    contacts: int,
    say: Callable[[str], None],
    port: int | None,
) -> DemoReport:
    """Run the demo with ``provider``'s sandbox in ``directory`` (recreated)."""
    chosen = _sandbox_port(port, say)
    say(f"1/6 creating {contacts} demo contacts in {directory / 'contacts.db'}")
    directory, dataset = await anyio.to_thread.run_sync(_fresh_directory, directory, contacts)
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(provider.start(chosen, directory / "sandbox.json"))
        except OSError as exc:  # taken between the check and the bind
            raise FatalError(_port_taken(chosen, exc)) from exc
        say(f"2/6 {provider.label} sandbox listening on {handle.base_url}")
        config_path = directory / "campaign-bridge.toml"
        config_path.write_text(provider.config(directory, dataset.url, handle), encoding="utf-8")
        config_path.chmod(0o600)  # it holds an API key (doctor warns about readable secret files)
        settings: Settings = load_settings(config_path, environ={})
        await anyio.to_thread.run_sync(migrations.upgrade, settings.effective_state_url())
        push_step, campaign_step, pull_step, second_step = provider.steps
        async with provider.client(handle) as client:
            await provider.prepare(client, handle)
            say(push_step)
            first_push = await run_push(settings, SYNC)
            say(campaign_step)
            campaign_id, report = await provider.send_campaign(client, handle)
            say(pull_step)
            pull = await run_pull(settings, SYNC)
            say(second_step)
            second_push = await run_push(settings, SYNC)
        unsubscribed, cleaned = _count_source(dataset.url)
        return DemoReport(
            dataset=dataset,
            directory=directory,
            sandbox_port=handle.port,
            first_push=first_push,
            pull=pull,
            second_push=second_push,
            sandbox_statuses=provider.statuses(handle),
            campaign_id=campaign_id,
            report=report,
            activity_rows=_count_activity(settings.effective_state_url(), campaign_id),
            source_unsubscribed=unsubscribed,
            source_cleaned=cleaned,
        )


async def api(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    """A call to the sandbox's API; its JSON body (None when empty)."""
    response = await client.request(method, path, **kwargs)
    if response.status_code >= 400:
        raise FatalError(f"sandbox call {method} {path} failed: HTTP {response.status_code}")
    return response.json() if response.content else None


def campaign_html() -> str:
    return "".join(f'<p><a href="{url}">{url}</a></p>' for url in CAMPAIGN_LINKS)


def summary_head(report: DemoReport, title: str) -> list[str]:
    """The summary's first lines: title, source rows and the first push."""
    first = report.first_push
    rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(first.rejected.items())) or "none"
    return [
        "",
        f"campaign-bridge demo{title}: summary",
        f"  source rows                 {report.dataset.contacts} "
        f"({report.dataset.consenting} consenting to marketing)",
        f"  first push                  created {first.created}, updated {first.updated}, "
        f"rejected {first.rejected_total} ({rejected}), skipped {sum(first.skipped.values())}"
        f" [{first.status}]",
    ]


def summary_after_pull(report: DemoReport, rows: str, sandbox_list: str, pulled: str) -> list[str]:
    """The summary's lines from the pull to "Keep exploring" (``rows``: what the pull lands)."""
    pull, second = report.pull, report.second_push
    statuses = ", ".join(f"{status} {n}" for status, n in sorted(report.sandbox_statuses.items()))
    return [
        f"  pull                        {pull.activity_added} {rows} rows landed "
        f"(cb_email_activity holds {report.activity_rows} for this campaign), "
        f"{pull.transitions} status change(s) applied, {pull.written_back} written back",
        f"  contacts table              {report.source_unsubscribed} marked unsubscribed, "
        f"{report.source_cleaned} marked bounced",
        f"  second push                 {second.consent_sentence()} [{second.status}]",
        f"  {sandbox_list:<28}{statuses}",
        "",
        f"Everything is in {report.directory}: contacts.db (the source, with write-back), "
        f"state/state.db (runs, rejected records, consent ledger, pulled {pulled}), "
        "campaign-bridge.toml (the configuration used).",
        "",
        "Next steps:",
        "  Keep exploring the demo: serve its sandbox again and run any command against it:",
    ]


def dry_run_line(report: DemoReport) -> str:
    return (
        f"    .venv/bin/campaign-bridge -c {report.directory / 'campaign-bridge.toml'} "
        "push --dry-run"
    )


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
