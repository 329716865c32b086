"""`doctor --live`: after start, the running service, the webhook URL, the scheduler lock, runs.

Pre-start doctor cannot reach the webhook URL (nothing serves it yet); these checks can, and a
runbook runs them once the service is up.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from campaign_bridge.config import Settings, SyncConfig
from campaign_bridge.db import create_engine
from campaign_bridge.doctor._result import CheckResult, CheckStatus, fail, ok, skip, warn
from campaign_bridge.errors import BridgeError
from campaign_bridge.providers import capabilities_of

__all__ = ["check_last_runs", "check_locks", "check_service", "check_webhook", "service_url"]

RUN_STUCK_AFTER = timedelta(hours=6)
WILDCARD_HOSTS = frozenset({"0.0.0.0", "", "::", "[::]"})  # noqa: S104 (recognised, not bound)


def service_url(settings: Settings) -> str:
    """Where this machine reaches the service: the serve address, a wildcard bind as loopback."""
    host = settings.server.host
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.server.port}"


async def check_service(base_url: str) -> list[CheckResult]:
    """``/-/health`` (the process answers) and ``/-/ready`` (it can do its work)."""
    base = base_url.rstrip("/")
    results: list[CheckResult] = []
    async with httpx.AsyncClient(timeout=10.0) as client:
        try:
            health = await client.get(f"{base}/-/health")
        except httpx.HTTPError as exc:
            return [
                fail(
                    "service",
                    f"nothing answers at {base} ({type(exc).__name__})",
                    "start it (`systemctl start campaign-bridge`, `campaign-bridge serve`), or "
                    "give doctor its address with --url",
                )
            ]
        if health.status_code != 200:
            problem = f"{base}/-/health answered HTTP {health.status_code}"
            return [fail("service", problem, "read the service's log (journalctl -u ...)")]
        results.append(ok("service", f"{base}/-/health answers"))
        ready = await client.get(f"{base}/-/ready")
    if ready.status_code == 200:
        results.append(ok("service ready", f"{base}/-/ready answers 200"))
    else:
        detail = ready.text.strip().replace("\n", " ")[:300]
        results.append(
            fail(
                "service ready",
                f"{base}/-/ready answered HTTP {ready.status_code}: {detail}",
                "fix what /-/ready names (run `campaign-bridge doctor` for the details)",
            )
        )
    return results


def check_locks(state_url: str, now: datetime | None = None) -> CheckResult:
    """Who holds each sync's scheduler lock; an expired lock still present is a crashed run."""
    from campaign_bridge.state import locks

    name = "scheduler locks"
    moment = now or datetime.now(UTC)
    engine = create_engine(state_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(locks.c.name, locks.c.owner, locks.c.expires_at)).all()
    except sa.exc.SQLAlchemyError as exc:
        return skip(name, f"cannot read cb_locks ({type(exc).__name__})")
    finally:
        engine.dispose()
    if not rows:
        return ok(name, "no run holds a lock now")
    stale = [row for row in rows if _aware(row.expires_at) < moment]
    held = ", ".join(f"{row.name} by {row.owner}" for row in rows)
    if stale:
        return warn(
            name,
            "expired lock(s) still present (a run that died?): "
            + ", ".join(f"{row.name} by {row.owner}" for row in stale),
            "they are taken over at the next scheduled run; if the owner is gone for good, "
            "nothing else is needed",
        )
    return ok(name, f"held now: {held}")


def check_last_runs(
    state_url: str, syncs: Sequence[str], now: datetime | None = None
) -> list[CheckResult]:
    """The last push and pull of each sync: failed, stuck or never run."""
    from campaign_bridge.state import sync_runs

    moment = now or datetime.now(UTC)
    engine = create_engine(state_url, poolclass=sa.pool.NullPool)
    results: list[CheckResult] = []
    try:
        with engine.connect() as conn:
            for sync_name in syncs:
                for direction in ("push", "pull"):
                    query = (
                        sa.select(sync_runs.c.status, sync_runs.c.started_at)
                        .where(sync_runs.c.sync_name == sync_name)
                        .where(sync_runs.c.direction == direction)
                        .order_by(sync_runs.c.started_at.desc())
                        .limit(1)
                    )
                    row = conn.execute(query).first()
                    results.append(_run_result(sync_name, direction, row, moment))
    except sa.exc.SQLAlchemyError as exc:
        return [skip("last runs", f"cannot read cb_sync_runs ({type(exc).__name__})")]
    finally:
        engine.dispose()
    return results


def _run_result(sync_name: str, direction: str, row: object, now: datetime) -> CheckResult:
    name = f"last {direction} [{sync_name}]"
    if row is None:
        return skip(name, "no run yet")
    status, started = row[0], _aware(row[1])  # type: ignore[index]
    when = started.strftime("%Y-%m-%d %H:%M UTC")
    if status == "failed":
        return warn(
            name,
            f"the last {direction} ({when}) failed",
            f"`campaign-bridge runs` / the status page shows why; `campaign-bridge {direction} "
            f"{sync_name}` runs it again",
        )
    if status == "running" and now - started > RUN_STUCK_AFTER:
        return warn(name, f"running since {when}", "check the service's log for this run")
    return ok(name, f"{status} ({when})")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def check_webhook(settings: Settings) -> list[CheckResult]:
    name = "webhook URL"
    public_url = settings.server.public_url
    if not public_url:
        return [skip(name, "server.public_url is not set; webhooks are not configured")]
    if not settings.server.webhook_tokens:
        return [
            fail(
                name,
                "server.public_url is set but no webhook token is configured",
                "set CAMPAIGN_BRIDGE_SERVER__WEBHOOK_TOKENS (a long random secret)",
            )
        ]
    token = settings.server.webhook_tokens[0].get_secret_value()
    base = public_url.rstrip("/")
    results: list[CheckResult] = []
    by_provider: dict[str, list[tuple[str, SyncConfig]]] = {}
    for sync_name, sync in settings.syncs.items():
        by_provider.setdefault(sync.destination.provider, []).append((sync_name, sync))
    for provider, syncs in by_provider.items():
        if not capabilities_of(provider).webhooks:
            names = ", ".join(name for name, _ in syncs)
            results.append(
                skip(
                    name,
                    f"{provider} calls no webhooks; its changes reach the bridge by pull ({names})",
                )
            )
            continue
        url, shown = f"{base}/webhooks/{provider}/{token}", f"{base}/webhooks/{provider}/<token>"
        reached = await _check_reachable(name, url, shown)
        results.append(reached)
        if reached.status is CheckStatus.FAIL:
            continue
        for sync_name, sync in syncs:
            results.append(await _check_webhook_registered(sync_name, sync, url, shown))
    return results


async def _check_reachable(name: str, url: str, shown: str) -> CheckResult:
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return fail(
            name,
            f"{shown} is not reachable ({type(exc).__name__})",
            "start `campaign-bridge serve` and make public_url reachable from the internet "
            "(reverse proxy / load balancer); the provider calls it from outside",
        )
    if response.status_code >= 300:
        return fail(
            name,
            f"{shown} answered HTTP {response.status_code} to a GET",
            "check that public_url routes to `campaign-bridge serve` and the token matches",
        )
    return ok(name, f"{shown} answers a GET")


async def _check_webhook_registered(
    sync_name: str, sync: SyncConfig, url: str, shown: str
) -> CheckResult:
    from campaign_bridge.providers import create_provider

    name = f"webhook registered [{sync_name}]"
    provider = create_provider(sync.destination)
    try:
        registered = await provider.webhook_urls(sync.destination.list_id)
    except BridgeError as exc:
        return skip(name, f"cannot list the audience's webhooks: {exc}")
    finally:
        await provider.aclose()
    if url in registered:
        return ok(name, f"{shown} is registered on audience {sync.destination.list_id}")
    return fail(
        name,
        f"{shown} is not registered on audience {sync.destination.list_id}",
        f"run `campaign-bridge webhooks register {sync_name}`",
    )
