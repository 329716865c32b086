"""What the shared HTTP client itself costs per request: budget, retries, counters, encoding.

Sends N requests through :class:`campaign_bridge.providers._http.ApiClient` to an in-process
``httpx.MockTransport`` that answers at once, with C requests at a time, and prints the CPU per
request. Every answer is a 200 except, with ``--fail-every K``, every K-th, a 503 that is retried
(no wait). Not a test: it compares versions of the client (run it with each on PYTHONPATH); a push
makes one request per 500 contacts, so divide by 500 for the cost per contact.

    .venv/bin/python bench/http_client.py [--requests 20000] [--concurrency 10] [--fail-every 50]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time

import httpx

from campaign_bridge.providers._http import ApiClient, RetryPolicy


async def run(requests: int, concurrency: int, fail_every: int) -> float:
    count = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        if fail_every and count % fail_every == 0:
            return httpx.Response(503)
        return httpx.Response(200, content=b'{"ok":true}')

    async def no_wait(seconds: float) -> None:
        return None

    api = ApiClient(
        base_url="http://provider.invalid/3.0",
        api_key="k" * 32 + "-us1",
        headers={"Authorization": "Basic x"},
        provider="bench",
        concurrency=concurrency,
        timeout_seconds=10.0,
        retry=RetryPolicy(max_retries=3),
        transport=httpx.MockTransport(answer),
        sleep=no_wait,
    )
    body = {"members": [{"email_address": f"a{i}@b.example"} for i in range(5)]}
    queue = iter(range(requests))

    async def worker() -> None:
        for _ in queue:
            await api.request("POST", "/lists/x", json=body)

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency * 2)))
    spent = time.process_time() - started
    await api.aclose()
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--fail-every", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the retry lines: counted, not printed
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    spent = [
        asyncio.run(run(args.requests, args.concurrency, args.fail_every))
        for _ in range(args.rounds)
    ]
    best = min(spent)
    print(
        f"{args.requests:,} requests, {args.concurrency} at a time, a 503 every "
        f"{args.fail_every or 'never'}: best CPU {best * 1e6 / args.requests:.1f} us/request "
        f"(rounds: {', '.join(f'{s:.2f}s' for s in spent)}; load average {load})"
    )


if __name__ == "__main__":
    main()
