"""Start-up time of the CLI: ``--version``, ``--help`` and optionally a no-change push, as wall
time and CPU time of the whole process (hyperfine-like: warm-up runs, then N timed runs). On a
busy machine the CPU time is the steadier figure; on a quiet one the two agree.

Prints figures; it is not a test. ``python -X importtime`` shows where import time goes:

  .venv/bin/python -X importtime .venv/bin/campaign-bridge --help 2>&1 >/dev/null \
      | sort -t'|' -k2 -n | tail

The no-change push (``--push-contacts N``) is bench/push.py's scenario (d) on its own: N contacts
in a new PostgreSQL database, the Mailchimp sandbox in its own process, one initial push, then
timed pushes where nothing changed. Each is split into the run (the summary's ``seconds``) and
the start before it (interpreter, imports, settings: the wall time less the run), and one
``-X importtime`` run shows where the imports go, by top-level package.

The CLI processes keep their compiled modules (bench/push.py's ``bytecode_cache``), as an
installed bridge does.

Usage:
  .venv/bin/python bench/startup.py                       # --version, --help, python baseline
  .venv/bin/python bench/startup.py --runs 30
  .venv/bin/python bench/startup.py --push-contacts 1000000   # also: push, nothing changed
  .venv/bin/python bench/startup.py --push-config cb.toml # push (no change) of an existing setup
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import push  # bench/push.py, beside this script: its sandbox, database and push helpers

BIN = Path(sys.executable).parent


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], runs: int, warmup: int = 2) -> tuple[list[float], list[float]]:
    """Wall times and CPU times (user + system) of ``runs`` runs of ``argv``."""
    for _ in range(warmup):
        subprocess.run(argv, capture_output=True, check=True)
    walls, cpus = [], []
    for _ in range(runs):
        cpu = _cpu()
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu() - cpu)
    return walls, cpus


def timed_push(config: Path, runs: int, sync: str = "bench") -> None:
    """The no-change push: wall (with process start), CPU, the run, and the start before it."""
    push.run_push_measured(config, sync)  # warm-up
    walls, cpus, run_seconds = [], [], []
    for _ in range(runs):
        wall, _rss, summary = push.run_push_measured(config, sync)
        if summary["provider_writes"] or summary["read"]:
            raise SystemExit(f"the push changed something: {summary}")
        walls.append(wall)
        cpus.append(summary["cpu_seconds"])
        run_seconds.append(summary["seconds"])
    report("campaign-bridge push (nothing changed)", (walls, cpus))
    starts = [wall - run for wall, run in zip(walls, run_seconds, strict=True)]
    print(
        f"{'  of which the run':<40} min {min(run_seconds) * 1000:6.1f} / median "
        f"{statistics.median(run_seconds) * 1000:6.1f} ms; the start before it (wall less run) "
        f"min {min(starts) * 1000:6.1f} / median {statistics.median(starts) * 1000:6.1f} ms"
    )
    print(f"{'  target (issue 14)':<40} wall < 1,000 ms with process start, on a quiet machine")
    import_breakdown([*push.CLI, "-c", str(config), "--log-format", "json", "push", sync])


def import_breakdown(argv: list[str]) -> None:
    """One run under ``-X importtime``: the import time of each top-level package (self times
    summed, so nothing is counted twice), largest first. Wall time: read it on a quiet machine."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, check=True
    )
    by_package: dict[str, int] = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _cumulative, name = line.removeprefix("import time:").split("|")
        package = name.strip().split(".")[0]
        by_package[package] = by_package.get(package, 0) + int(own)
    total = sum(by_package.values())
    ranked = sorted(by_package.items(), key=lambda item: -item[1])
    print(f"{'  imports (-X importtime, one run)':<40} {total / 1000:6.1f} ms:")
    print("    " + ", ".join(f"{name} {us / 1000:.0f}" for name, us in ranked[:12]) + " ms")


def no_change_push(contacts: int, runs: int, admin_url: str) -> None:
    """Set up bench/push.py's scenario (d) with ``contacts`` contacts and time it."""
    bench = push.Bench("mailchimp")
    with (
        push.database(admin_url) as url,
        push.sandbox_process(bench.provider) as (root, key, list_id, _pid),
        tempfile.TemporaryDirectory(prefix="cb-bench-startup-") as tmp,
    ):
        push.load_contacts(url, "contacts", contacts, "bench.mail")
        config = Path(tmp) / "campaign-bridge.toml"
        syncs = {"bench": {"table": "contacts", "list_id": list_id}}
        push.write_config(config, url, key, f"{root}{bench.api}", syncs, bench)
        subprocess.run([*push.CLI, "-c", str(config), "migrate"], check=True, capture_output=True)
        seconds, _rss, summary = push.run_push_measured(config, "bench")
        print(f"  initial push of {summary['created']:,} contacts: {seconds:.1f}s")
        timed_push(config, runs)


def report(label: str, measured: tuple[list[float], list[float]]) -> None:
    """Wall time (what a person waits) and CPU time (steadier on a busy machine)."""
    wall = [t * 1000 for t in measured[0]]
    cpu = [t * 1000 for t in measured[1]]
    print(
        f"{label:<40} wall min {min(wall):6.1f} / median {statistics.median(wall):6.1f} ms"
        f"   cpu min {min(cpu):6.1f} / median {statistics.median(cpu):6.1f} ms"
        f"   ({len(wall)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--push-config", type=Path, help="a configuration whose push is a no-op")
    parser.add_argument("--push-sync", default="bench", help="the sync of --push-config")
    parser.add_argument(
        "--push-contacts", type=int, help="time a no-change push of this many contacts"
    )
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin URL"
    )
    args = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    cli = str(BIN / "campaign-bridge")
    with push.bytecode_cache():
        report(
            "python -c pass (interpreter floor)", timed([sys.executable, "-c", "pass"], args.runs)
        )
        report(
            "python -c 'import typer' (CLI library)",
            timed([sys.executable, "-c", "import typer"], args.runs),
        )
        report("campaign-bridge --version", timed([cli, "--version"], args.runs))
        report("campaign-bridge --help", timed([cli, "--help"], args.runs))
        push_runs = max(args.runs // 4, 3)
        if args.push_config is not None:
            timed_push(args.push_config, push_runs, args.push_sync)
        if args.push_contacts is not None:
            no_change_push(args.push_contacts, push_runs, args.postgres)


if __name__ == "__main__":
    main()
