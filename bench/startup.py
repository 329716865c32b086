"""Start-up time of the CLI: ``--version``, ``--help`` and optionally a no-change push, as wall
time and CPU time of the whole process (hyperfine-like: warm-up runs, then N timed runs). On a
busy machine the CPU time is the steadier figure; on a quiet one the two agree.

Prints figures; it is not a test. ``python -X importtime`` shows where import time goes:

  .venv/bin/python -X importtime .venv/bin/campaign-bridge --help 2>&1 >/dev/null \
      | sort -t'|' -k2 -n | tail

Usage:
  .venv/bin/python bench/startup.py                       # --version, --help, python baseline
  .venv/bin/python bench/startup.py --runs 30
  .venv/bin/python bench/startup.py --push-config cb.toml # also: campaign-bridge push (no change)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], runs: int, warmup: int = 2) -> tuple[list[float], list[float]]:
    """Wall times and CPU times (user + system) of ``runs`` runs of ``argv``."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    for _ in range(warmup):
        subprocess.run(argv, capture_output=True, check=True, env=env)
    walls, cpus = [], []
    for _ in range(runs):
        cpu = _cpu()
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, env=env)
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu() - cpu)
    return walls, cpus


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
    args = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    cli = str(BIN / "campaign-bridge")
    report("python -c pass (interpreter floor)", timed([sys.executable, "-c", "pass"], args.runs))
    report(
        "python -c 'import typer' (CLI library)",
        timed([sys.executable, "-c", "import typer"], args.runs),
    )
    report("campaign-bridge --version", timed([cli, "--version"], args.runs))
    report("campaign-bridge --help", timed([cli, "--help"], args.runs))
    if args.push_config is not None:
        argv = [cli, "-c", str(args.push_config), "push", "--json"]
        report("campaign-bridge push (nothing changed)", timed(argv, max(args.runs // 4, 3), 1))


if __name__ == "__main__":
    main()
