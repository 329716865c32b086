"""Pull benchmark: email-activity events from the sandbox (its own process) into PostgreSQL.

Prints figures; it is not a test. Usage::

    .venv/bin/python bench/pull.py                 # 1,000,000 events, baseline on 20,000
    .venv/bin/python bench/pull.py --events 200000 --baseline-events 10000
    .venv/bin/python bench/pull.py --provider brevo --events 200000
    .venv/bin/python bench/pull.py --provider listmonk --members 100000 --campaigns 3

With ``--provider listmonk`` (listmonk lists bounces per subscriber, and counts views and clicks
per campaign only) the figure is members reconciled: ``--members`` subscribers on the list (1 %
unsubscribed, 1 % blocklisted) and ``--campaigns`` campaigns sent to them, then a first pull
(every member, the campaigns, reports and bounces) and a second one (nothing changed).

With ``--provider brevo`` the Brevo sandbox is seeded with contacts on its list and campaigns
sent to them (``sendNow``: each recipient is sent, then maybe opens, clicks, bounces or
unsubscribes); Brevo reports each recipient once per kind of event (docs/providers.md), so an
event here is a row of a recipient export: sent, opener, clicker, bounce or unsubscribe.

What it does: starts ``campaign-bridge sandbox serve`` in its own process, seeds sent campaigns
with synthetic recipients through the control API (``POST /_sandbox/campaigns/seed``) until the
reports add up to ``--events`` events (sent + opens + clicks + bounces + unsubscribes), creates a
fresh PostgreSQL database, then runs, each in a fresh child process so peak RSS is its own:

- ``pull``: ``campaign_bridge.pull.run_pull`` (the real engine: COPY + INSERT ... ON CONFLICT);
- ``naive``: the same adapter stream written one ``INSERT`` per event (autocommit), on a sample
  of ``--baseline-events`` events, as the row-by-row baseline.

Targets (issue 5): pull >= 50,000 events/s with peak RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("campaign-bridge")
ADMIN_URL = os.environ.get("CB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# Rich activity per recipient: about 8 events each (sent, ~4 opens, ~3 clicks, a few bounces).
RATES = {
    "open": 1.0,
    "click": 0.9,
    "extra_opens_mean": 3.0,
    "extra_clicks_mean": 2.0,
    "hard_bounce": 0.01,
    "soft_bounce": 0.01,
    "unsubscribe": 0.01,
}
PER_CAMPAIGN = 40_000  # most recipients per seeded campaign (about 300,000 events)
CPU_SPLIT = ("run_cpu_s", "sandbox_cpu_s", "postgres_cpu_s")  # the pull, sandbox and database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--provider", choices=("mailchimp", "brevo", "listmonk"), default="mailchimp"
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--baseline-events", type=int, default=20_000)
    parser.add_argument("--port", type=int, default=18_099)
    parser.add_argument("--child", choices=["pull", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument(
        "--members", type=int, default=100_000, help="listmonk: subscribers on the list"
    )
    parser.add_argument("--campaigns", type=int, default=3, help="listmonk: campaigns sent")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.provider == "listmonk":
        parent_listmonk(args)
        return
    parent(args)


# --- parent: set up, run children, print -------------------------------------------------------


def parent(args: argparse.Namespace) -> None:
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - read while the sandbox runs
        "w+", prefix="bench-pull-sandbox-", suffix=".log"
    )
    sandbox = subprocess.Popen(
        [str(CLI), "sandbox", "serve", "--provider", args.provider, "--port", str(args.port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    database = f"cb_bench_pull_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        key, list_id = _sandbox_identity(sandbox, Path(log.name))
        base = f"http://127.0.0.1:{args.port}"
        started = time.monotonic()
        seed = _seed_brevo if args.provider == "brevo" else _seed
        campaigns, events = seed(base, key, list_id, args.events)
        print(
            f"seeded {events:,} events in {len(campaigns)} campaigns "
            f"({time.monotonic() - started:.1f}s; --events {args.events:,}: campaigns are "
            "seeded whole, so the figure is that or a little more)"
        )
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"CREATE DATABASE {database}"))
        url = sa.make_url(ADMIN_URL).set(database=database).render_as_string(False)
        state = {
            "url": url,
            "base": base,
            "key": key,
            "list_id": list_id,
            "provider": args.provider,
        }
        sandbox_cpu = _cpu_seconds(sandbox.pid)
        brevo = args.provider == "brevo"
        outside = _brevo_served_outside_contacts(base) if brevo else 0
        with _BackendCpu(admin, database) as postgres:
            pull = _run_child("pull", state)
        pull["sandbox_cpu_s"] = round(_cpu_seconds(sandbox.pid) - sandbox_cpu, 1)
        if brevo:
            outside = pull["requests_outside_contacts"] = (
                _brevo_served_outside_contacts(base) - outside
            )
            print(
                f"requests outside /contacts (Brevo's general tier: 100 an hour): {outside} for "
                f"{len(campaigns)} campaigns (exports, process polls, campaigns and reports)"
            )
        pull["postgres_cpu_s"] = round(postgres.seconds, 1)
        print(
            f"pull : {pull['events']:,} events in {pull['seconds']:.1f}s = "
            f"{pull['events'] / pull['seconds']:,.0f} events/s, peak RSS {pull['rss_mb']:.0f} MB, "
            f"CPU {pull['cpu_s']:.1f}s (sandbox process: {pull['sandbox_cpu_s']:.1f}s, PostgreSQL "
            f"backends: {pull['postgres_cpu_s']:.1f}s; rows in cb_email_activity: "
            f"{pull['rows']:,}; load average {os.getloadavg()[0]:.1f})"
        )
        print(
            "CPU per event: pull process {:.1f} us, sandbox {:.1f} us, PostgreSQL {:.1f} us".format(
                *(pull[k] / pull["events"] * 1e6 for k in CPU_SPLIT)
            )
        )
        state["limit"] = args.baseline_events
        naive = _run_child("naive", state)
        print(
            f"naive: {naive['events']:,} events in {naive['seconds']:.1f}s = "
            f"{naive['events'] / naive['seconds']:,.0f} events/s, peak RSS {naive['rss_mb']:.0f}"
            " MB (one INSERT per event, sample)"
        )
        print(
            json.dumps(
                {"pull": pull, "naive": naive, "events_seeded": events, "cpus": os.cpu_count()}
            )
        )
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
        log.close()
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()


def parent_listmonk(args: argparse.Namespace) -> None:
    """listmonk: ``--members`` subscribers on the list (1 % unsubscribed, 1 % blocklisted),
    ``--campaigns`` campaigns sent to them (bounces are listmonk's per-contact events), then a
    first pull (every member, campaigns, reports, bounces) and a second one (nothing changed)."""
    with socket.socket() as probe:  # a free port: --port's default may serve another bench
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    sandbox = subprocess.Popen(
        [str(CLI), "sandbox", "serve", "--provider", "listmonk", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    database = f"cb_bench_pull_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"))
    base = f"http://127.0.0.1:{port}"
    try:
        identity = _listmonk_identity(base, sandbox)
        started = time.monotonic()
        _seed_listmonk(base, identity, args.members, args.campaigns)
        print(
            f"seeded {args.members:,} subscribers and {args.campaigns} campaigns "
            f"({time.monotonic() - started:.1f}s)"
        )
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"CREATE DATABASE {database}"))
        url = sa.make_url(ADMIN_URL).set(database=database).render_as_string(False)
        state = {"url": url, "base": base, "list_id": "1", "provider": "listmonk", **identity}
        for label in ("first pull", "second pull (nothing changed)"):
            sandbox_cpu = _cpu_seconds(sandbox.pid)
            with _BackendCpu(admin, database) as postgres:
                pull = _run_child("pull", state)
            print(
                f"{label}: {pull['members']:,} members read, {pull['status_changes']:,} status "
                f"changes, {pull['rows']:,} bounce rows in {pull['seconds']:.1f}s = "
                f"{pull['members'] / pull['seconds']:,.0f} members/s; peak RSS "
                f"{pull['rss_mb']:.0f} MB; CPU pull {pull['cpu_s']:.1f}s, sandbox "
                f"{_cpu_seconds(sandbox.pid) - sandbox_cpu:.1f}s, PostgreSQL "
                f"{postgres.seconds:.1f}s; load average {os.getloadavg()[0]:.1f}"
            )
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=60)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()


def _listmonk_identity(base: str, sandbox: subprocess.Popen[bytes]) -> dict[str, str]:
    deadline = time.monotonic() + 60
    while True:
        try:
            health = httpx.get(f"{base}/_sandbox/health", timeout=1).json()
            return {"user": health["api_user"], "key": health["api_token"]}
        except httpx.HTTPError:
            if sandbox.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the listmonk sandbox did not start") from None
            time.sleep(0.2)


def _seed_listmonk(base: str, identity: dict[str, str], members: int, campaigns: int) -> None:
    auth = {"Authorization": f"token {identity['user']}:{identity['key']}"}
    with httpx.Client(base_url=base, timeout=600) as client:
        for start in range(0, members, 50_000):
            people = [
                {
                    "email": f"sub{i}@bench.example.org",
                    "name": f"Sub {i}",
                    "lists": [1],
                    "subscription_status": "unsubscribed" if i % 100 == 1 else "confirmed",
                    "status": "blocklisted" if i % 100 == 2 else "enabled",
                }
                for i in range(start, min(start + 50_000, members))
            ]
            client.post("/_sandbox/seed", json={"subscribers": people}).raise_for_status()
        for n in range(campaigns):
            body = {"name": f"Bench {n}", "subject": "Bench", "lists": [1]}
            made = client.post("/api/campaigns", json=body, headers=auth).json()["data"]
            status = {"status": "running"}
            client.put(f"/api/campaigns/{made['id']}/status", json=status, headers=auth)
            client.get(f"/api/campaigns/{made['id']}", headers=auth).raise_for_status()


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _BackendCpu:
    """CPU time of the PostgreSQL backends serving ``database`` while the block runs, sampled
    from ``pg_stat_activity`` and /proc (local server, Linux). Background processes (WAL
    writer, checkpointer) serve every database on the server and are not counted."""

    def __init__(self, admin: sa.Engine, database: str) -> None:
        self.admin, self.database = admin, database
        self.last: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def seconds(self) -> float:
        return sum(self.last.values())

    def __enter__(self) -> _BackendCpu:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _sample(self) -> None:
        query = sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :db")
        with self.admin.connect() as conn:
            while not self.stop.wait(0.2):
                for pid in conn.execute(query, {"db": self.database}).scalars():
                    used = _cpu_seconds(pid)
                    if used:
                        self.last[pid] = used
                conn.rollback()


def _sandbox_identity(sandbox: subprocess.Popen[str], log: Path) -> tuple[str, str]:
    deadline = time.monotonic() + 60
    while True:
        text = log.read_text(encoding="utf-8", errors="replace")
        key = re.search(r"API key: (\S+)", text)
        list_id = re.search(r"(?:audience|  list): (\S+)", text)
        if key and list_id and ("Uvicorn running" in text or "startup complete" in text):
            return key.group(1), list_id.group(1)
        if sandbox.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the sandbox did not start:\n{text[-2000:]}")
        time.sleep(0.2)


def _seed(base: str, key: str, list_id: str, target: int) -> tuple[list[str], int]:
    campaigns: list[str] = []
    events = recipients = 0
    with httpx.Client(timeout=600) as client:
        while events < target:
            per_recipient = events / recipients if recipients else MAILCHIMP_PER_RECIPIENT
            size = _recipients_for(target - events, per_recipient, PER_CAMPAIGN)
            body = {"list_id": list_id, "recipients": size, "seed": len(campaigns) + 1}
            body["rates"] = RATES
            made = client.post(f"{base}/_sandbox/campaigns/seed", json=body).json()
            campaigns.append(made["id"])
            report = client.get(f"{base}/3.0/reports/{made['id']}", auth=("bench", key)).json()
            events += _events_of(report)
            recipients += size
    return campaigns, events


#: events a recipient makes at ``RATES`` (Mailchimp) and ``BREVO_RATES`` (a row per kind of
#: export: sent, opener, clicker, bounce), to size the first campaign; later ones use the
#: figure measured so far
MAILCHIMP_PER_RECIPIENT = 7.5
BREVO_PER_RECIPIENT = 2.85
MIN_RECIPIENTS = 100


def _recipients_for(remaining: int, per_recipient: float, cap: int) -> int:
    """Recipients of the next campaign: enough for the events still wanted, at most ``cap``
    (so ``--events`` is met to within one campaign's rounding, never a whole campaign over)."""
    return max(MIN_RECIPIENTS, min(cap, math.ceil(remaining / max(per_recipient, 0.1))))


# Brevo: every recipient opens, most click; a few bounce or unsubscribe (the sandbox's rates).
BREVO_RATES = {"open": 1.0, "click": 0.9, "hard_bounce": 0.01, "soft_bounce": 0.01}
BREVO_PER_CAMPAIGN = 20_000  # contacts per list and campaign


def _brevo_served_outside_contacts(base: str) -> int:
    """Requests outside /contacts the Brevo sandbox has served (Brevo's general tier allows
    100 an hour: the sandbox's limits are off here, so they do not bind)."""
    served = httpx.get(f"{base}/_sandbox/limits").raise_for_status().json()["served"]
    return int(served.get("other", 0))


def _seed_brevo(base: str, key: str, _list_id: str, target: int) -> tuple[list[str], int]:
    """Campaigns to fresh lists of fresh contacts until their exports add up to ``target``."""
    campaigns: list[str] = []
    events = contacts = 0
    api = {"api-key": key}
    with httpx.Client(timeout=600) as client:
        client.put(f"{base}/_sandbox/activity", json={"rates": BREVO_RATES}).raise_for_status()
        while events < target:
            n = len(campaigns)
            per_contact = events / contacts if contacts else BREVO_PER_RECIPIENT
            size = _recipients_for(target - events, per_contact, BREVO_PER_CAMPAIGN)
            made = client.post(
                f"{base}/v3/contacts/lists", json={"name": f"bench {n}", "folderId": 1}, headers=api
            ).json()
            people = [
                {"email": f"p{n}x{i}@bench.invalid", "listIds": [made["id"]]} for i in range(size)
            ]
            client.post(f"{base}/_sandbox/seed", json={"contacts": people}).raise_for_status()
            body = {
                "name": f"bench {n}",
                "subject": "Bench",
                "sender": {"name": "Bench", "email": "bench@bench.invalid"},
                "htmlContent": "<p>bench</p>",
                "recipients": {"listIds": [made["id"]]},
            }
            campaign = client.post(f"{base}/v3/emailCampaigns", json=body, headers=api).json()
            sent = f"{base}/v3/emailCampaigns/{campaign['id']}"
            client.post(f"{sent}/sendNow", headers=api).raise_for_status()
            stats = client.get(sent, headers=api).json()["statistics"]["globalStats"]
            campaigns.append(str(campaign["id"]))
            contacts += size
            events += sum(
                stats[k]
                for k in (
                    "sent",
                    "uniqueViews",
                    "uniqueClicks",
                    "hardBounces",
                    "softBounces",
                    "unsubscriptions",
                )
            )
    return campaigns, events


def _events_of(report: dict[str, Any]) -> int:
    bounces = report["bounces"]
    return int(
        report["emails_sent"]
        + report["opens"]["opens_total"]
        + report["clicks"]["clicks_total"]
        + bounces["hard_bounces"]
        + bounces["soft_bounces"]
        + report["unsubscribed"]
    )


def _run_child(mode: str, state: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--state", json.dumps(state)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --- children ----------------------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    state = json.loads(args.state)
    if args.child == "pull":
        result = asyncio.run(_child_pull(state))
    else:
        result = asyncio.run(_child_naive(state))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["rss_mb"] = usage.ru_maxrss / 1024
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)  # this process, both threads
    print(json.dumps(result))


def _settings(state: dict[str, Any]) -> Any:
    from campaign_bridge.config import Settings

    if state.get("provider") == "listmonk":
        destination = {
            "provider": "listmonk",
            "base_url": state["base"],
            "api_user": state["user"],
            "api_token": state["key"],
            "list_id": state["list_id"],
        }
        return Settings.model_validate(
            {
                "state_url": state["url"],
                "syncs": {
                    "bench": {
                        "source": {"url": state["url"], "table": "unused"},
                        "destination": destination,
                    }
                },
            }
        )
    return Settings.model_validate(
        {
            "state_url": state["url"],
            "syncs": {
                "bench": {
                    "source": {"url": state["url"], "table": "unused"},
                    "destination": {
                        "provider": state["provider"],
                        "api_key": state["key"],
                        "list_id": state["list_id"],
                        "base_url": state["base"]
                        + ("/v3" if state["provider"] == "brevo" else "/3.0"),
                    },
                }
            },
        }
    )


async def _child_pull(state: dict[str, Any]) -> dict[str, Any]:
    from campaign_bridge import migrations
    from campaign_bridge.pull import run_pull

    migrations.upgrade(state["url"])
    started, cpu = time.monotonic(), time.process_time()
    summary = await run_pull(_settings(state), "bench")
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    engine = sa.create_engine(sa.make_url(state["url"]).set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT COUNT(*) FROM cb_email_activity")).scalar_one()
    engine.dispose()
    return {
        "events": summary.activity_read,
        "members": summary.members_read,
        "status_changes": summary.status_changes,
        "seconds": seconds,
        "rows": int(rows),
        "run_cpu_s": round(cpu, 1),
    }


async def _child_naive(state: dict[str, Any]) -> dict[str, Any]:
    """Row by row: each event is one INSERT ... ON CONFLICT DO NOTHING, committed on its own."""
    from campaign_bridge.landing import ACTIVITY_COLUMNS
    from campaign_bridge.providers import create_provider
    from campaign_bridge.pull import _SeqState, activity_rows

    settings = _settings(state)
    provider = create_provider(settings.syncs["bench"].destination)
    engine = sa.create_engine(
        sa.make_url(state["url"]).set(drivername="postgresql+psycopg", database="postgres")
    )
    naive_db = f"cb_bench_naive_{uuid.uuid4().hex[:8]}"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"CREATE DATABASE {naive_db}"))
    url = sa.make_url(state["url"]).set(drivername="postgresql+psycopg", database=naive_db)
    from campaign_bridge import migrations

    migrations.upgrade(url.render_as_string(False))
    target = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    columns = ", ".join(ACTIVITY_COLUMNS)
    marks = ", ".join(f":{c}" for c in ACTIVITY_COLUMNS)
    insert = sa.text(
        f"INSERT INTO cb_email_activity ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING"
    )
    limit = int(state["limit"])
    seen = 0
    started = time.monotonic()
    try:
        async for campaign in provider.campaigns(None):
            seq = _SeqState()
            async for event in provider.email_activity(campaign.id, None, include_sent=True):
                row = activity_rows(
                    [event], provider="mailchimp", pulled_at=datetime.now(UTC), state=seq
                )[0]
                with target.connect() as conn:
                    conn.execute(insert, dict(zip(ACTIVITY_COLUMNS, row, strict=True)))
                seen += 1
                if seen >= limit:
                    break
            if seen >= limit:
                break
        seconds = time.monotonic() - started
    finally:
        await provider.aclose()
        target.dispose()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {naive_db} WITH (FORCE)"))
        engine.dispose()
    return {"events": seen, "seconds": seconds}


if __name__ == "__main__":
    main()
