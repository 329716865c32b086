"""Doctor's privacy checks: mapped GDPR permissions exist; retention periods and backlog."""

from __future__ import annotations

import sqlalchemy as sa

from campaign_bridge.config import Settings, SyncConfig
from campaign_bridge.db import create_engine, sqlite_file_path
from campaign_bridge.doctor._result import CheckResult, CheckStatus, ok, skip, warn
from campaign_bridge.providers.base import Audience

__all__ = ["check_marketing_permissions", "check_retention"]


def check_marketing_permissions(
    sync_name: str, sync: SyncConfig, audience: Audience
) -> CheckResult:
    """Every mapped GDPR permission exists on the audience (rules: campaign_bridge.permissions)."""
    from campaign_bridge.permissions import check_mapped_permissions

    status, message, fix = check_mapped_permissions(sync, audience)
    return CheckResult(f"marketing permissions [{sync_name}]", CheckStatus(status), message, fix)


def check_retention(settings: Settings) -> CheckResult:
    """The retention periods, and how many rows are past them (campaign_bridge.retention)."""
    from campaign_bridge.retention import past_retention

    kept = settings.retention
    periods = (
        f"activity {kept.activity_days} d, webhooks {kept.webhook_days} d, rejected "
        f"{kept.rejected_days} d, runs {kept.runs_days} d (0 = forever)"
    )
    url = settings.effective_state_url()
    path = sqlite_file_path(url)
    if path is not None and not path.exists():
        return skip("retention", f"{periods}; the state store does not exist yet")
    try:
        engine = create_engine(url, poolclass=sa.pool.NullPool)
        try:
            past = past_retention(engine, kept)
        finally:
            engine.dispose()
    except sa.exc.SQLAlchemyError:
        return skip("retention", f"{periods}; the state store cannot be read")
    waiting = {table: count for table, count in past.items() if count}
    if not waiting:
        return ok("retention", f"{periods}; nothing is past them")
    listed = ", ".join(f"{table} {count:,}" for table, count in sorted(waiting.items()))
    fix = "run `campaign-bridge purge`, or `serve --schedule` with retention.schedule set"
    return warn("retention", f"{periods}; past retention: {listed}", fix)
