"""How fast does the listmonk sandbox take a bulk import? Prints figures; not a test.

``campaign-bridge sandbox serve --provider listmonk`` runs in its own process (as a push run
would use it). One CSV of ``--rows`` subscribers (email, name, attributes JSON) is uploaded in
one multipart ``POST /api/import/subscribers`` (listmonk runs one import at a time, so an
initial load is one file), then ``GET /api/import/subscribers`` is polled until ``finished``
(the sandbox applies the rows before it answers the next call, so the poll's time is the
import's processing time). For comparison, ``--single`` subscribers are then created one call
each with ``POST /api/subscribers`` (the only per-subscriber write listmonk has).

Printed: the CSV's size, upload time, processing time, rows/s end to end, the single-create
rate, the server process's CPU seconds (from /proc) and its peak RSS with the subscribers held.

Run:  .venv/bin/python bench/sandbox_listmonk.py [--rows 1000000] [--single 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

CLI = Path(sys.executable).with_name("campaign-bridge")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _start(port: int) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    process = subprocess.Popen(
        [str(CLI), "sandbox", "serve", "--provider", "listmonk", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=1).json()
            return process, {"Authorization": f"token {health['api_user']}:{health['api_token']}"}
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the sandbox did not start")


def _csv(rows: int) -> bytes:
    lines = ["email,name,attributes"]
    lines.extend(
        f'user{i}@bench.example.org,User {i},"{{""plan"": ""p{i % 3}"", ""n"": {i}}}"'
        for i in range(rows)
    )
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--single", type=int, default=2000)
    args = parser.parse_args()
    port = _free_port()
    process, auth = _start(port)
    try:
        payload = _csv(args.rows)
        params = {"mode": "subscribe", "delim": ",", "lists": [1], "overwrite": True}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=600) as http:
            began = time.perf_counter()
            started = http.post(
                "/api/import/subscribers",
                data={"params": json.dumps(params)},
                files={"file": ("bench.csv", payload, "text/csv")},
            )
            started.raise_for_status()
            uploaded = time.perf_counter()
            while True:
                stats = http.get("/api/import/subscribers").json()["data"]
                if stats["status"] != "importing":
                    break
                time.sleep(0.05)
            finished = time.perf_counter()
            if stats["status"] != "finished" or stats["imported"] != args.rows:
                raise SystemExit(f"import ended badly: {stats}")
            single_began = time.perf_counter()
            for i in range(args.single):
                http.post(
                    "/api/subscribers", json={"email": f"one{i}@bench.example.org", "lists": [1]}
                ).raise_for_status()
            single_took = time.perf_counter() - single_began
            held = http.get("/api/subscribers", params={"per_page": 1}).json()["data"]["total"]
        total = finished - began
        print(
            f"imported {args.rows:,} rows ({len(payload) / 1e6:.1f} MB CSV) in one import: "
            f"upload {uploaded - began:.2f} s, processing {finished - uploaded:.2f} s, "
            f"{args.rows / total:,.0f} rows/s end to end"
        )
        if args.single:
            print(
                f"single creates: {args.single:,} POST /api/subscribers in {single_took:.2f} s, "
                f"{args.single / single_took:,.0f} subscribers/s"
            )
        print(
            f"subscribers held at the end: {held:,}; sandbox CPU {_cpu_seconds(process.pid):.1f} s,"
            f" peak RSS {_peak_rss_mb(process.pid):.0f} MB"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


if __name__ == "__main__":
    main()
