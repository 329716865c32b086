"""Mailchimp adapter figures against the sandbox running in its own process.

Prints, for N members: batch-subscribe creation throughput, PUT updates through /batches and
directly, and the adapter's own CPU per 1,000 members (what the adapter costs the push engine,
whatever the sandbox's speed). Not a test: run it by hand.

    .venv/bin/python bench/provider.py [N] [--latency SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import subprocess
import sys
import time

import httpx

from campaign_bridge.config import MailchimpDestination
from campaign_bridge.providers.base import MemberStatus, MemberUpsert
from campaign_bridge.providers.mailchimp import MailchimpProvider


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


PORT = free_port()


def start_sandbox() -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    code = f"from campaign_bridge.sandbox.mailchimp.server import serve; serve(port={PORT})"
    server = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(200):
        try:
            return server, httpx.get(f"http://127.0.0.1:{PORT}/_sandbox/health").json()
        except httpx.HTTPError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the sandbox did not start")


async def measure(label: str, n: int, run: object) -> None:
    started, cpu = time.perf_counter(), time.process_time()
    outcomes = await run  # type: ignore[misc]
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    kinds = sorted({o.kind.value for group in outcomes for o in group})
    print(
        f"{label:<28} {n:>8} members {wall:7.2f}s {n / wall:9.0f}/s   "
        f"adapter CPU {1e6 * used / n:7.1f} µs per member   outcomes {kinds}"
    )


def configure(latency: float) -> None:
    control = f"http://127.0.0.1:{PORT}/_sandbox"
    httpx.post(f"{control}/limits", json={"latency": latency})
    httpx.put(f"{control}/batches/settings", json={"auto": True, "step_seconds": 0.0})


async def main(n: int, latency: float) -> None:
    server, health = start_sandbox()
    configure(latency)
    destination = MailchimpDestination(
        api_key=health["api_key"],
        list_id=health["list_id"],
        base_url=f"http://127.0.0.1:{PORT}/3.0",
    )
    provider = MailchimpProvider(destination, batch_poll_initial=0.05, batch_poll_max=0.5)
    list_id = destination.list_id
    try:
        new = [
            MemberUpsert(
                key=str(i),
                email=f"bench{i}@corp.org",
                status_if_new=MemberStatus.SUBSCRIBED,
                merge_fields={"FNAME": f"B{i}", "LNAME": "Bench"},
                tags=("bench",),
            )
            for i in range(n)
        ]
        slices = [new[i : i + 5000] for i in range(0, n, 5000)]
        await measure(
            "create (batch subscribe)",
            n,
            asyncio.gather(*(provider.upsert_members(list_id, s) for s in slices)),
        )
        for label, threshold in (("update via /batches", 100), ("update direct PUTs", 10**9)):
            provider.batch_threshold = threshold
            count = min(n, 2000) if threshold > 100 else n
            changed = [
                MemberUpsert(
                    key=m.key,
                    email=m.email,
                    status_if_new=MemberStatus.SUBSCRIBED,
                    exists=True,
                    merge_fields={"LNAME": label},
                )
                for m in new[:count]
            ]
            parts = [changed[i : i + 1000] for i in range(0, count, 1000)]
            await measure(
                label,
                count,
                asyncio.gather(*(provider.upsert_members(list_id, p) for p in parts)),
            )
        print(f"requests {dict(provider.stats.requests)}  retries {dict(provider.stats.retries)}")
        print(f"budget (in flight, peak, limit) {provider.in_flight}")
    finally:
        await provider.aclose()
        server.terminate()
        server.wait()
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.latency))
