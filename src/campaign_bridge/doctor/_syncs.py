"""Every sync's checks, concurrently and in bounded time, with a summary naming each failing sync.

Hundreds of syncs (a conf.d directory) must not make doctor take hundreds of times one sync's
checks. The syncs are checked concurrently:

- at most ``concurrency`` syncs at once (a bounded thread pool reads the sources, so as many
  database reads run as syncs are checked);
- on each API key, at most as many provider checks at once as the destination's ``concurrency``
  (the provider's limit per key: doctor must not earn itself a 429);
- each sync's checks within ``timeout`` seconds, or that sync fails with "did not finish" (a
  database read that hangs is abandoned in its thread; doctor does not wait for it);
- then one ``syncs`` line: how many were checked, and the name of every failing one.

The results keep the configuration's order, whatever order the checks finish in.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from campaign_bridge.config import Settings, SyncConfig
from campaign_bridge.doctor._database import check_writeback, read_source
from campaign_bridge.doctor._provider import check_provider
from campaign_bridge.doctor._result import CheckResult, CheckStatus, fail, ok, skip
from campaign_bridge.doctor._sample import check_sample

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_TIMEOUT", "SYNCS", "check_syncs"]

DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT = 60.0
SYNCS = "syncs"


class _Limits:
    """The shared bounds of one doctor run: syncs at once, threads, provider calls per key."""

    def __init__(self, concurrency: int) -> None:
        self.syncs = asyncio.Semaphore(concurrency)
        self.threads = ThreadPoolExecutor(concurrency, thread_name_prefix="doctor")
        self._keys: dict[str, asyncio.Semaphore] = {}

    def key(self, sync: SyncConfig) -> asyncio.Semaphore:
        secret = sync.destination.credential()
        digest = hashlib.sha256(secret.encode()).hexdigest()
        return self._keys.setdefault(digest, asyncio.Semaphore(sync.destination.concurrency))

    async def thread(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.threads, func, *args)


async def check_syncs(
    settings: Settings,
    env: Mapping[str, str],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    sync_timeout: float = DEFAULT_TIMEOUT,
) -> list[CheckResult]:
    """Each sync's source, write-back, provider and sample checks, then the ``syncs`` summary."""
    if not settings.syncs:
        return [skip(SYNCS, "no sync is configured")]
    limits = _Limits(concurrency)
    try:
        per_sync = await asyncio.gather(
            *(
                _bounded(name, sync, env, limits, sync_timeout)
                for name, sync in settings.syncs.items()
            )
        )
    finally:
        limits.threads.shutdown(wait=False, cancel_futures=True)
    results = [result for checks in per_sync for result in checks]
    return [*results, summary(list(settings.syncs), per_sync)]


async def _bounded(
    name: str, sync: SyncConfig, env: Mapping[str, str], limits: _Limits, seconds: float
) -> list[CheckResult]:
    async with limits.syncs:
        try:
            async with asyncio.timeout(seconds):
                return await _one_sync(name, sync, env, limits)
        except TimeoutError:
            return [
                fail(
                    f"sync [{name}]",
                    f"its checks did not finish within {seconds:g} s",
                    "check that its source database and the provider answer (run `doctor` "
                    "with only this sync), or raise `doctor --sync-timeout`",
                )
            ]


async def _one_sync(
    name: str, sync: SyncConfig, env: Mapping[str, str], limits: _Limits
) -> list[CheckResult]:
    source_results, rows = await limits.thread(read_source, name, sync)
    results: list[CheckResult] = list(source_results)
    if sync.writeback is not None:
        results.append(await limits.thread(check_writeback, name, sync))
    async with limits.key(sync):
        provider_results, audience = await check_provider(name, sync, env)
    results.extend(provider_results)
    if audience is not None and rows:
        results.append(check_sample(name, sync, audience, rows))
    return results


def summary(names: list[str], per_sync: list[list[CheckResult]]) -> CheckResult:
    """One line for all syncs: how many were checked and which failed (every one, by name)."""
    failing = [
        name
        for name, checks in zip(names, per_sync, strict=True)
        if any(check.status is CheckStatus.FAIL for check in checks)
    ]
    if not failing:
        return ok(SYNCS, f"all {len(names)} sync(s) checked; none failed")
    return fail(
        SYNCS,
        f"{len(names)} sync(s) checked; {len(failing)} failed: {', '.join(failing)}",
        "see each failing sync's lines above for its fix",
    )
