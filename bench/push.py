"""Push benchmark: contacts in PostgreSQL -> the Mailchimp or Brevo sandbox in its own process.

Prints figures; it is not a test. Scenarios:

  (a) initial full push, zero sandbox latency          target >= 15,000 contacts/s, RSS <= 300 MB
  (b) Mailchimp-like latency: 1 s per 500-member batch call (0.1 s per request plus 1.8 ms
      per member, so a small GET takes about 0.1 s), 10 connections, as a fraction of the
      5,000/s ceiling (10 calls in flight x 500 members / 1 s)  target >= 90 %
  (c) 1 % of the contacts changed                      target <= 5 s
  (d) nothing changed                                  target <= 2 s
  (e) naive baseline: one PUT per member with the official mailchimp_marketing SDK

With ``--provider brevo`` (scenario (e) is Mailchimp's only):

  (a) initial full push, zero latency                  target >= 15,000 contacts/s, RSS <= 300 MB
  (b) Brevo-like latency (0.2 s a request plus 0.1 ms a row: a 1,000-row import answers in
      0.3 s) with the sandbox enforcing Brevo's general-tier limits (10 requests a second on
      everything under /v3/contacts, the import included; 100 an hour elsewhere, /processes
      included), as a fraction of the ceiling those limits allow for the imports push really
      sent: an import of R rows costs one POST and R / 1,000 read-back pages of /contacts
      (1,000 a page at most), so the limits allow 10 x 1,000 x R / (R + 1,000) contacts/s
      (push's imports are its 1,000-row slices: 5,000/s; 9,090/s with 10,000-row imports,
      which the 10 MB a body may hold would allow; 10,000/s is the read-back's alone). R is
      the run's average, counted by the sandbox (its imports and its /contacts requests are
      printed with the 429s it answered): docs/providers.md, "Rate limits, and the ceiling
      they set"; limits: developers.brevo.com/docs/api-limits; import body: 10 MB
      (developers.brevo.com changelog, 13 April 2020); (b) runs on its own API key, so its
      windows start empty.
                                                       target >= 90 %

Usage:
  .venv/bin/python bench/push.py                       # 1,000,000 contacts; (b) on 100,000
  .venv/bin/python bench/push.py --contacts 200000 --latency-contacts 50000
  .venv/bin/python bench/push.py --provider brevo --contacts 200000 --skip e
  .venv/bin/python bench/push.py --provider brevo --skip a,c,d --brevo-rps 3   # busy host
  .venv/bin/python bench/push.py --provider listmonk --contacts 200000 --skip b,e

Each push runs as its own `campaign-bridge push` process, so its peak RSS (from wait4) is the
bridge's alone. The sandbox runs as `campaign-bridge sandbox serve`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

# The CLI beside the interpreter running this script (the venv it is run from).
CLI = [str(Path(sys.executable).parent / "campaign-bridge")]
# What a CLI process imports, compiled once before anything is timed (see bytecode_cache).
WARM_UP = (
    "import campaign_bridge.cli, campaign_bridge.push, campaign_bridge.keyslots, "
    "campaign_bridge.providers.mailchimp, campaign_bridge.providers.brevo, "
    "campaign_bridge.providers.listmonk, campaign_bridge.sandbox"
)
LIST_BODY = {
    "name": "Latency bench",
    "permission_reminder": "You signed up for the benchmark.",
    "email_type_option": False,
    "contact": {
        "company": "Bench",
        "address1": "1 Bench Way",
        "city": "Atlanta",
        "state": "GA",
        "zip": "30308",
        "country": "US",
    },
    "campaign_defaults": {
        "from_name": "Bench",
        "from_email": "bench@bench.invalid",
        "subject": "",
        "language": "en",
    },
}


# 1 s for a 500-member batch subscribe; about 0.1 s for the small reads around it.
BATCH_CALL_LATENCY = {"latency": 0.1, "latency_per_item": 0.0018}
# Brevo: 0.2 s a request, 0.1 ms a row; the sandbox enforces the general tier's limits.
BREVO_LATENCY = {
    "latency": 0.2,
    "latency_per_item": 0.0001,
    "rate_limits": True,
    "contacts_rps": 10,
    "contacts_rph": 36_000,
    "other_rph": 100,
}
# contacts/s: 10 requests/s on /v3/contacts/*; each import of R rows costs its POST and R / 1,000
# read-back pages (1,000 rows a page): 10 x 1,000 x R / (R + 1,000). Scenario (b) states it for
# the average R push really used (counted by the sandbox); this is R = 1,000's, shown when the
# sandbox cannot say
BREVO_RPS = 10
PAGE_ROWS = 1000
BREVO_CEILING = BREVO_RPS * PAGE_ROWS / 2


class Bench:
    """What differs between providers: the sandbox, the API root, the fields, a second list."""

    def __init__(self, provider: str, rps: int = BREVO_RPS) -> None:
        self.provider = provider
        self.api = {"brevo": "/v3", "listmonk": ""}.get(provider, "/3.0")
        self.fields = {
            "brevo": ("FIRSTNAME", "LASTNAME"),
            "listmonk": ("name", "last_name"),  # the subscriber's name, and an attribute
        }.get(provider, ("FNAME", "LNAME"))
        self.user = ""  # listmonk: the API user (the key is its token)
        self.rps = rps  # Brevo: the /contacts limit the sandbox enforces in (b)
        self.ceiling = BREVO_CEILING * rps / BREVO_RPS if provider == "brevo" else 5000.0
        self.latency = BREVO_LATENCY if provider == "brevo" else BATCH_CALL_LATENCY
        if provider == "brevo":
            self.latency = {**BREVO_LATENCY, "contacts_rps": rps}
        self.latency_off = {"latency": 0.0, "latency_per_item": 0.0}
        if provider == "brevo":
            self.latency_off["rate_limits"] = False

    def calls(
        self, before: dict[str, Any], after: dict[str, Any], contacts: int
    ) -> dict[str, float]:
        """Brevo: what (b) asked of the sandbox (from its rate limiter's counters)."""
        if self.provider != "brevo":
            return {}
        was, now = before.get("served", {}), after.get("served", {})  # older sandboxes: none
        served = {k: now[k] - was.get(k, 0) for k in now}
        imports = served.get("contacts/import", 0)
        return {
            "refused": after["rejected"] - before["rejected"],
            "contacts_calls": served.get("contacts", 0),
            "other_calls": served.get("other", 0),
            "imports": imports,
            "rows_per_import": contacts / imports if imports else 0.0,
            "per_1000": served.get("contacts", 0) * 1000 / contacts,
        }

    def ceiling_for(self, calls: dict[str, float]) -> float:
        """Brevo: the ceiling for the import size (b) really used (see the docstring)."""
        rows = calls.get("rows_per_import") or 0.0
        if self.provider != "brevo" or not rows:
            return self.ceiling
        return self.rps * PAGE_ROWS * rows / (rows + PAGE_ROWS)

    def describe(self, calls: dict[str, float]) -> str:
        if not calls:
            return ""
        return (
            f"; {calls['imports']:.0f} imports of {calls['rows_per_import']:,.0f} rows on average "
            f"(ceiling {self.rps} x {PAGE_ROWS:,} x R / (R + {PAGE_ROWS:,})); /contacts requests "
            f"{calls['contacts_calls']:.0f} = {calls['per_1000']:.2f} per 1,000 contacts, "
            f"{calls['refused']:.0f} refused (429), other requests {calls['other_calls']:.0f}"
        )

    def credentials(self, key: str) -> list[str]:
        if self.provider == "listmonk":
            return [f'api_user = "{self.user}"', f'api_token = "{key}"']
        return [f'api_key = "{key}"']

    def new_list(self, root: str, key: str, name: str) -> str:
        if self.provider == "listmonk":
            body = {"name": name, "type": "private", "optin": "single"}
            headers = {"Authorization": f"token {self.user}:{key}"}
            return str(
                httpx.post(f"{root}/api/lists", json=body, headers=headers).json()["data"]["id"]
            )
        if self.provider == "brevo":
            body = {"name": name, "folderId": 1}
            made = httpx.post(f"{root}/v3/contacts/lists", json=body, headers={"api-key": key})
            return str(made.json()["id"])
        return str(httpx.post(f"{root}/3.0/lists", json=LIST_BODY, auth=("b", key)).json()["id"])


@contextlib.contextmanager
def bytecode_cache() -> Iterator[None]:
    """Let the CLI processes started inside keep their compiled modules, as an installed bridge
    does: pip byte-compiles a wheel when it installs it, so a deployed bridge never compiles
    its own modules at start. A checkout run with PYTHONDONTWRITEBYTECODE set (as on the
    development machine) would compile about 60 of them in every process, about 0.1 s of each
    start. The bytecode goes under a temporary prefix, outside the source tree, and is removed
    at the end."""
    names = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    saved = {name: os.environ.get(name) for name in names}
    with tempfile.TemporaryDirectory(prefix="cb-bench-pycache-") as cache:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = cache
        try:
            subprocess.run([sys.executable, "-c", WARM_UP], check=True)
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def connections_busy(before: dict[str, Any], after: dict[str, Any], seconds: float) -> str:
    """Mailchimp: how many of the key's 10 connections the sandbox held on average over
    ``seconds`` (the send phase), from its busy-seconds counter. A push that keeps its calls
    10 deep shows close to 10 even where a loaded host stretches the wall time."""
    was, now = before.get("busy_seconds", {}), after.get("busy_seconds", {})
    if not now or seconds <= 0:  # another provider's sandbox, or an older one
        return ""
    busy = sum(now.values()) - sum(was.values())
    return f"; connections busy {busy / seconds:.1f} on average in the send phase"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def database(admin_url: str) -> Iterator[str]:
    name = f"cb_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def load_contacts(url: str, table: str, count: int, domain: str) -> None:
    """COPY ``count`` contacts into ``table``; updated_at a day ago (so the cursor is clean)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, email text NOT NULL, "
            "first_name text, last_name text, consent boolean, updated_at timestamptz NOT NULL)"
        )
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as copy:
            step = 50_000
            for start in range(1, count + 1, step):
                buf = io.StringIO()
                for i in range(start, min(start + step, count + 1)):
                    buf.write(
                        f"{i}\tcontact{i}@{domain}\tFirst{i}\tLast{i}\tt\t2020-01-01 00:00:00+00\n"
                    )
                copy.write(buf.getvalue())
        conn.execute(f"CREATE INDEX {table}_updated ON {table} (updated_at, id)")
        conn.execute(f"ANALYZE {table}")
        print(f"  loaded {count:,} rows into {table} in {time.perf_counter() - started:.1f}s")


def write_config(
    path: Path, url: str, key: str, base_url: str, syncs: dict[str, Any], bench: Bench
) -> None:
    lines = [
        f'data_dir = "{path.parent / "data"}"',
        f'state_url = "{url}"',
        'log_level = "WARNING"',
    ]
    for name, sync in syncs.items():
        lines += [
            f"[syncs.{name}]",
            "[syncs." + name + ".source]",
            f'url = "{url}"',
            f'table = "{sync["table"]}"',
            'consent_column = "consent"',
            'updated_at_column = "updated_at"',
            "chunk_size = 5000",
            "[syncs." + name + ".destination]",
            f'provider = "{bench.provider}"',
            *bench.credentials(sync.get("key", key)),
            f'list_id = "{sync["list_id"]}"',
            f'base_url = "{base_url}"',
            "concurrency = 10",
            "[syncs." + name + ".fields]",
            f'{bench.fields[0]} = "first_name"',
            f'{bench.fields[1]} = "last_name"',
        ]
    path.write_text("\n".join(lines) + "\n")


def _ticks(pid: int, children: bool = False) -> int:
    """CPU clock ticks of ``pid`` (utime + stime; with ``children``, of its reaped children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    first = 13 if children else 11  # cutime/cstime or utime/stime, counted after the ")"
    return int(fields[first]) + int(fields[first + 1])


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def postmaster_pid(url: str) -> int:
    """The postmaster of the cluster ``url`` is on (the parent of this connection's backend),
    so only that cluster's CPU is counted: other clusters on the machine are not the bench's."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return _ppid(int(row[0]))


def other_cpu_seconds(sandbox_pid: int, postmaster: int) -> dict[str, float]:
    """CPU seconds used so far by the sandbox and by the bench's PostgreSQL cluster (its live
    processes plus the reaped ones, which the postmaster's children counters keep). Linux only;
    0 where unreadable. Other databases of the same cluster count too: on a shared server, run
    the bench against a cluster of its own (``--postgres``) for a clean figure."""
    postgres = _ticks(postmaster) + _ticks(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _ppid(int(entry.name)) == postmaster:
            postgres += _ticks(int(entry.name))
    hz = os.sysconf("SC_CLK_TCK")
    return {"sandbox": _ticks(sandbox_pid) / hz, "postgres": postgres / hz}


def _cpu_split(before: dict[str, float], after: dict[str, float]) -> str:
    """The sandbox's and PostgreSQL's CPU seconds between two ``other_cpu_seconds`` reads."""
    return ", ".join(f"{name} CPU {after[name] - before[name]:.2f}s" for name in after)


def top_statements(url: str, limit: int = 12) -> list[str]:
    """The statements of the bench's database that took most time (pg_stat_statements, when
    the cluster preloads it; none otherwise)."""
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            rows = conn.execute(
                "SELECT total_exec_time, calls, rows, left(regexp_replace(query, '\\s+', ' ', "
                "'g'), 110) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
                "WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT %s",
                (limit,),
            ).fetchall()
        except psycopg.Error:
            return []
    return [f"{ms / 1000:8.2f}s {calls:7d} calls {n:9d} rows  {q}" for ms, calls, n, q in rows]


def reset_statements(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT pg_stat_statements_reset()")
        except psycopg.Error:
            pass


def run_push_measured(
    config: Path, sync: str, profile: str | None = None
) -> tuple[float, float, dict[str, Any]]:
    """Run one push process; reap it with wait4 to read its own peak RSS and CPU time.

    The summary gains ``cpu_seconds``: the push process's user + system time, a figure that
    does not depend on what else the machine is doing. With ``profile``, the push runs under
    cProfile, which writes its statistics there (and slows it down).
    """
    started = time.perf_counter()
    command = [*CLI, "-c", str(config), "--log-format", "json", "push", sync, "--json"]
    if profile:
        command = [sys.executable, "-m", "cProfile", "-o", profile, *command]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            print(err.read().decode()[-3000:], file=sys.stderr)
            raise SystemExit(f"push {sync} failed with exit code {proc.returncode}")
        summary = json.loads(out.read())
    summary["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)
    return seconds, usage.ru_maxrss / 1024, summary


@contextlib.contextmanager
def sandbox_process(provider: str) -> Iterator[tuple[str, str, str, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "sandbox", "serve", "--provider", provider, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        key = list_id = ""
        for line in proc.stdout if provider != "listmonk" else ():
            if "API key:" in line:
                key = line.split("API key:")[1].strip()
            for marker in ("audience:", "  list:"):
                if marker in line:
                    list_id = line.split(marker)[1].strip()
            if list_id:
                break
        # Keep reading its output: a full pipe would block the sandbox's logging.
        threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
        root = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{root}/_sandbox/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        if provider == "listmonk":  # the API user's token, listmonk's install-time list 1
            health = httpx.get(f"{root}/_sandbox/health", timeout=5).json()
            key, list_id = health["api_token"], "1"
        yield root, key, list_id, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


def naive_baseline(root: str, key: str, count: int) -> float:
    """One PUT per member, sequentially, with the official SDK (contacts/s)."""
    import hashlib

    import mailchimp_marketing

    client = mailchimp_marketing.Client()
    client.set_config({"api_key": key})
    client.api_client.host = f"{root}/3.0"
    list_id = httpx.post(f"{root}/3.0/lists", json=LIST_BODY, auth=("bench", key)).json()["id"]
    started = time.perf_counter()
    for i in range(count):
        email = f"naive{i}@naive.bench"
        digest = hashlib.md5(email.encode()).hexdigest()
        client.lists.set_list_member(
            list_id,
            digest,
            {
                "email_address": email,
                "status_if_new": "subscribed",
                "merge_fields": {"FNAME": f"First{i}", "LNAME": f"Last{i}"},
            },
        )
    return count / (time.perf_counter() - started)


def main() -> None:
    # A plain SIGTERM should still drop the database and stop the sandbox.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--provider", choices=("mailchimp", "brevo", "listmonk"), default="mailchimp"
    )
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--latency-contacts", type=int, default=100_000)
    parser.add_argument(
        "--brevo-rps",
        type=int,
        default=BREVO_RPS,
        help="(b) with Brevo: the /contacts limit a second the sandbox enforces (10: the general "
        "tier); a lower one shows on a busy host whether push reaches the ceiling when its CPU "
        "is not what bounds it (the ceiling scales with it)",
    )
    parser.add_argument("--naive-contacts", type=int, default=5_000)
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin URL"
    )
    parser.add_argument(
        "--changed-every", type=int, default=100, help="(c) changes every Nth contact (100 = 1 %%)"
    )
    parser.add_argument(
        "--profile", help="(a) runs under cProfile, which writes its statistics to this file"
    )
    parser.add_argument("--skip", default="", help="comma-separated scenarios to skip (a..e)")
    args = parser.parse_args()
    skip = set(args.skip.split(",")) - {""}
    bench = Bench(args.provider, args.brevo_rps)
    if bench.provider != "mailchimp":
        skip.add("e")  # the naive baseline uses Mailchimp's SDK
    results: list[tuple[str, str, str, str]] = []
    sandbox = sandbox_process(bench.provider)

    with (
        bytecode_cache(),
        database(args.postgres) as url,
        sandbox as (root, key, list_id, sandbox_pid),
        tempfile.TemporaryDirectory(prefix="cb-bench-") as scratch,  # config and data dir
    ):
        tmp = Path(scratch)
        print(f"{bench.provider} sandbox at {root}, database {url.rsplit('/', 1)[1]}")
        print(f"load average {os.getloadavg()}")
        if bench.provider == "listmonk":
            bench.user = httpx.get(f"{root}/_sandbox/health", timeout=5).json()["api_user"]
        load_contacts(url, "contacts", args.contacts, "bench.mail")
        syncs: dict[str, Any] = {"bench": {"table": "contacts", "list_id": list_id}}
        if "b" not in skip:
            load_contacts(url, "slow_contacts", args.latency_contacts, "slow.mail")
            slow_list = bench.new_list(root, key, "Latency bench")
            syncs["slow"] = {"table": "slow_contacts", "list_id": slow_list}
            if bench.provider == "brevo":
                # Its own API key, so its rate-limit windows start empty (the sandbox counts
                # per key, also while limits are off): (a)'s process polls would otherwise
                # have used up the 100-an-hour bucket (b) polls in.
                made = httpx.post(f"{root}/_sandbox/keys", json={"name": "latency"}, timeout=5)
                syncs["slow"]["key"] = made.json()["api_key"]
        config = tmp / "campaign-bridge.toml"
        write_config(config, url, key, f"{root}{bench.api}", syncs, bench)
        subprocess.run([*CLI, "-c", str(config), "migrate"], check=True, capture_output=True)

        if "a" not in skip:
            reset_statements(url)
            postmaster = postmaster_pid(url)
            before = other_cpu_seconds(sandbox_pid, postmaster)
            seconds, rss, summary = run_push_measured(config, "bench", args.profile)
            after = other_cpu_seconds(sandbox_pid, postmaster)
            rate = args.contacts / seconds
            per_contact = {
                "push": summary["cpu_seconds"],
                **{name: after[name] - before[name] for name in after},
            }
            split = ", ".join(
                f"{name} {cpu * 1e6 / args.contacts:.0f}" for name, cpu in per_contact.items()
            )
            assert summary["created"] == args.contacts, summary
            results.append(
                (
                    f"(a) initial push, {args.contacts:,} contacts, no latency",
                    f"{rate:,.0f} contacts/s ({seconds:.1f}s wall; run {summary['seconds']:.1f}s; "
                    f"CPU us/contact: {split}; phases {summary['phases']})",
                    f"peak RSS {rss:.0f} MB",
                    "target >= 15,000/s, <= 300 MB",
                )
            )
            print(results[-1])
            for line in top_statements(url):
                print("  " + line)
        elif {"c", "d"} - skip:  # (c) and (d) start from an audience already pushed
            run_push_measured(config, "bench")
        if "slow" in syncs:
            httpx.post(f"{root}/_sandbox/limits", json=bench.latency)
            before_b = httpx.get(f"{root}/_sandbox/limits").json()
            seconds, rss, summary = run_push_measured(config, "slow")
            after_b = httpx.get(f"{root}/_sandbox/limits").json()
            httpx.post(f"{root}/_sandbox/limits", json=bench.latency_off)
            rate = args.latency_contacts / seconds
            send = summary["phases"].get("send") or seconds
            steady = args.latency_contacts / send
            calls = bench.calls(before_b, after_b, args.latency_contacts)
            ceiling = bench.ceiling_for(calls)
            results.append(
                (
                    f"(b) {bench.provider}-like latency, {args.latency_contacts:,} contacts",
                    f"{rate:,.0f} contacts/s in {seconds:.1f}s = {rate / ceiling:.0%} of "
                    f"{ceiling:,.0f}/s; send phase {steady:,.0f}/s = {steady / ceiling:.0%} "
                    f"(phases {summary['phases']}; push CPU {summary['cpu_seconds']}s)"
                    f"{bench.describe(calls)}{connections_busy(before_b, after_b, send)}",
                    f"peak RSS {rss:.0f} MB",
                    "target >= 90 %",
                )
            )
            print(results[-1])
        if "c" not in skip:
            every = args.changed_every
            changed = args.contacts // every
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "UPDATE contacts SET first_name = first_name || '+', updated_at = now() "
                    "WHERE id %% %s = 0",
                    (every,),
                )
            limits = f"{root}/_sandbox/limits"
            before_c = httpx.get(limits).json() if bench.provider == "brevo" else {}
            postmaster = postmaster_pid(url)
            cpu_before = other_cpu_seconds(sandbox_pid, postmaster)
            seconds, rss, summary = run_push_measured(config, "bench")
            cpu_after = other_cpu_seconds(sandbox_pid, postmaster)
            after_c = httpx.get(limits).json() if bench.provider == "brevo" else {}
            assert summary["updated"] == changed, summary
            served = {
                k: v - before_c.get("served", {}).get(k, 0)
                for k, v in after_c.get("served", {}).items()
            }
            results.append(
                (
                    f"(c) 1/{every} changed ({changed:,} contacts)",
                    f"{seconds:.2f}s wall incl. process start; run {summary['seconds']:.2f}s; "
                    f"phases {summary['phases']}; push CPU {summary['cpu_seconds']}s; "
                    f"{_cpu_split(cpu_before, cpu_after)}"
                    + (f"; requests served {served}" if served else ""),
                    f"peak RSS {rss:.0f} MB",
                    "target <= 5 s",
                )
            )
            print(results[-1])
        if "d" not in skip:
            postmaster = postmaster_pid(url)
            cpu_before = other_cpu_seconds(sandbox_pid, postmaster)
            seconds, rss, summary = run_push_measured(config, "bench")
            cpu_after = other_cpu_seconds(sandbox_pid, postmaster)
            assert summary["provider_writes"] == 0, summary
            results.append(
                (
                    "(d) nothing changed",
                    f"{seconds:.2f}s wall incl. process start; run {summary['seconds']:.2f}s; "
                    f"provider writes: {summary['provider_writes']}; phases {summary['phases']}; "
                    f"push CPU {summary['cpu_seconds']}s; {_cpu_split(cpu_before, cpu_after)}",
                    f"peak RSS {rss:.0f} MB",
                    "target <= 2 s",
                )
            )
            print(results[-1])
        if "e" not in skip:
            rate = naive_baseline(root, key, args.naive_contacts)
            results.append(
                (
                    f"(e) naive: SDK PUT per member, {args.naive_contacts:,} contacts",
                    f"{rate:,.0f} contacts/s",
                    "",
                    "baseline",
                )
            )
            print(results[-1])

    print("\nscenario | result | memory | target")
    for row in results:
        print(" | ".join(row))


if __name__ == "__main__":
    main()
