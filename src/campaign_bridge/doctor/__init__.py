"""`campaign-bridge doctor`: check a target environment, in stages.

- ``doctor`` (before start): the configuration, the machine, the state store (migrations pending
  are shown as the next step, not a failure), each source and write-back table, the provider
  (reachability, clock, key, audience, merge fields), a sample of source rows read through the
  real mapping, and security settings.
- ``doctor --live`` (after start): the running service's ``/-/health`` and ``/-/ready``, the
  webhook URL reachable and registered, the scheduler locks, each sync's last runs.
- ``doctor --rehearse``: a push → webhook → pull → push round trip on this environment's own
  state database against an in-process sandbox of each provider the syncs use (see
  :mod:`campaign_bridge.doctor._rehearse`).
- ``doctor --bundle FILE``: a redacted support bundle (see :mod:`campaign_bridge.doctor._bundle`).

Each check returns one :class:`CheckResult` with the exact fix; exit codes are in
:mod:`campaign_bridge.doctor._result`. Checks never change anything the user owns: permission
probes run inside transactions that are rolled back, and the only file written is a probe in the
data directory, removed at once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from campaign_bridge.config import Settings
from campaign_bridge.doctor._database import (
    autovacuum_result,
    check_source,
    check_state_store,
    check_writeback,
)
from campaign_bridge.doctor._host import (
    check_data_dir,
    check_dependencies,
    check_port_free,
    check_python,
)
from campaign_bridge.doctor._live import (
    check_last_runs,
    check_locks,
    check_service,
    check_webhook,
    service_url,
)
from campaign_bridge.doctor._privacy import check_marketing_permissions, check_retention
from campaign_bridge.doctor._provider import check_clock, check_merge_fields
from campaign_bridge.doctor._rehearse import leftovers
from campaign_bridge.doctor._result import (
    CONFIGURATION,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    CheckResult,
    CheckStatus,
    exit_code,
    fail,
    ok,
    warn,
)
from campaign_bridge.doctor._security import check_security
from campaign_bridge.doctor._syncs import DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT, check_syncs
from campaign_bridge.errors import ConfigurationError

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "CheckResult",
    "CheckStatus",
    "autovacuum_result",
    "check_clock",
    "check_data_dir",
    "check_marketing_permissions",
    "check_merge_fields",
    "check_port_free",
    "check_retention",
    "check_source",
    "check_state_store",
    "check_writeback",
    "exit_code",
    "run_checks",
    "run_live_checks",
]


def _configuration(load: Callable[[], Settings], results: list[CheckResult]) -> Settings | None:
    try:
        settings = load()
    except ConfigurationError as exc:
        problems = "; ".join(str(problem) for problem in exc.problems)
        fix = "fix each setting named above, then run doctor again"
        results.append(fail(CONFIGURATION, problems, fix))
        return None
    results.append(ok(CONFIGURATION, f"valid: {len(settings.syncs)} sync(s) configured"))
    return settings


async def run_checks(
    load: Callable[[], Settings],
    *,
    environ: Mapping[str, str] | None = None,
    config_paths: Sequence[Path] = (),
    concurrency: int = DEFAULT_CONCURRENCY,
    sync_timeout: float = DEFAULT_TIMEOUT,
) -> list[CheckResult]:
    """The pre-start checks; ``load`` returns the validated settings or raises
    ConfigurationError. The syncs are checked ``concurrency`` at a time, each within
    ``sync_timeout`` seconds (see :mod:`campaign_bridge.doctor._syncs`)."""
    env = os.environ if environ is None else environ
    results = [check_python(), *check_dependencies()]
    settings = _configuration(load, results)
    if settings is None:
        return results
    results.append(check_data_dir(settings.data_dir))
    state_url = settings.effective_state_url()
    results.extend(await asyncio.to_thread(check_state_store, state_url))
    left = await asyncio.to_thread(leftovers, state_url)
    if left:
        results.append(
            warn(
                "rehearsal leftovers",
                "a rehearsal that was interrupted left: " + ", ".join(left),
                "drop them (DROP SCHEMA ... CASCADE / DROP DATABASE ... / delete the files); "
                "they hold only synthetic data",
            )
        )
    results.extend(
        await check_syncs(settings, env, concurrency=concurrency, sync_timeout=sync_timeout)
    )
    results.extend(check_security(settings, env, config_paths))
    results.append(await asyncio.to_thread(check_retention, settings))
    results.append(check_port_free(settings.server.host, settings.server.port))
    return results


async def run_live_checks(
    load: Callable[[], Settings], *, url: str | None = None
) -> list[CheckResult]:
    """The checks after start: the running service, the webhook URL, locks and last runs."""
    results: list[CheckResult] = []
    settings = _configuration(load, results)
    if settings is None:
        return results
    results.extend(await check_service(url or service_url(settings)))
    results.extend(await check_webhook(settings))
    state_url = settings.effective_state_url()
    results.append(await asyncio.to_thread(check_locks, state_url))
    results.extend(await asyncio.to_thread(check_last_runs, state_url, list(settings.syncs)))
    return results
