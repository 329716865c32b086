"""Every metric campaign-bridge exports, named in one place so ``/-/metrics`` and the logs agree.

Each server app owns a :class:`Metrics` bound to its own ``CollectorRegistry`` (tests can run
several apps in one process). Code that has no app at hand (the provider adapter, the engines)
reports through the module functions :func:`record_provider_request` and
:func:`record_provider_retry`, which fan out to every live :class:`Metrics`.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # prometheus_client is imported by the first Metrics: a push needs none
    from prometheus_client import CollectorRegistry, Counter

    from campaign_bridge.observe import Health

__all__ = [
    "NAMES",
    "Metrics",
    "record_provider_request",
    "record_provider_retry",
    "record_value_made_storable",
]

PREFIX = "campaign_bridge"

# name -> help text; the names are a contract (docs/operations.md lists them).
NAMES: dict[str, str] = {
    "runs_total": "Push and pull runs finished, by sync, direction and status.",
    "run_duration_seconds": "How long push and pull runs took, by sync and direction.",
    "contacts_pushed_total": "Contacts sent to the provider, by sync and outcome.",
    "contacts_rejected_total": "Contacts the provider or the mapping rejected, by sync and reason.",
    "pull_events_total": "Items a pull brought home, by sync and kind.",
    "webhook_requests_total": "Webhook HTTP requests answered, by status code.",
    "webhook_request_seconds": "Time from a webhook request's arrival to its answer.",
    "webhook_events_received_total": "Webhook events stored durably (new), by type.",
    "webhook_events_duplicate_total": "Webhook deliveries already stored (acknowledged again).",
    "webhook_events_applied_total": "Stored webhook events applied, by type and result.",
    "webhook_events_pending": "Stored webhook events not applied yet.",
    "provider_requests_total": "HTTP requests to the provider, by provider, method and status.",
    "provider_request_seconds": "Latency of HTTP requests to the provider.",
    "provider_retries_total": "Provider requests retried, by provider and reason.",
    "scheduler_lock_skips_total": "Scheduled runs skipped because another process held the lock.",
    "values_made_storable_total": (
        "Values from outside changed so the state store can hold them, by table, column and fix."
    ),
    "webhook_events_parked": "Stored webhook events parked after failing to apply too often.",
    # Read from the state store at every scrape (campaign_bridge.observe), so they hold for runs
    # made by any process (cron, another replica) and survive restarts.
    "last_success_timestamp_seconds": (
        "When the latest successful (not dry) run of a sync finished, by sync and direction "
        "(Unix time; absent before the first)."
    ),
    "webhook_queue_age_seconds": "Age of the oldest webhook event waiting to be applied (0: none).",
    "rejected_records": "Records rejected and not resolved, by sync and reason.",
}

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_RUN_SECONDS = (0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200)

_live: weakref.WeakSet[Metrics] = weakref.WeakSet()


def _name(key: str) -> str:
    return f"{PREFIX}_{key}"


class Metrics:
    """The metric objects of one app, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry

        def counter(key: str, labels: list[str]) -> Counter:
            # prometheus_client appends _total itself
            return Counter(_name(key.removesuffix("_total")), NAMES[key], labels, registry=r)

        self.runs = counter("runs_total", ["sync", "direction", "status"])
        self.run_duration = Histogram(
            _name("run_duration_seconds"),
            NAMES["run_duration_seconds"],
            ["sync", "direction"],
            buckets=_RUN_SECONDS,
            registry=r,
        )
        self.contacts_pushed = counter("contacts_pushed_total", ["sync", "outcome"])
        self.contacts_rejected = counter("contacts_rejected_total", ["sync", "reason"])
        self.pull_events = counter("pull_events_total", ["sync", "kind"])
        self.webhook_requests = counter("webhook_requests_total", ["status"])
        self.webhook_latency = Histogram(
            _name("webhook_request_seconds"),
            NAMES["webhook_request_seconds"],
            buckets=_LATENCY,
            registry=r,
        )
        self.webhook_received = counter("webhook_events_received_total", ["provider", "type"])
        self.webhook_duplicate = counter("webhook_events_duplicate_total", ["provider"])
        self.webhook_applied = counter(
            "webhook_events_applied_total", ["provider", "type", "result"]
        )
        self.webhook_pending = Gauge(
            _name("webhook_events_pending"), NAMES["webhook_events_pending"], registry=r
        )
        self.provider_requests = counter(
            "provider_requests_total", ["provider", "method", "status"]
        )
        self.provider_latency = Histogram(
            _name("provider_request_seconds"),
            NAMES["provider_request_seconds"],
            ["provider", "method"],
            buckets=_LATENCY,
            registry=r,
        )
        self.provider_retries = counter("provider_retries_total", ["provider", "reason"])
        self.lock_skips = counter("scheduler_lock_skips_total", ["sync"])
        self.values_made_storable = counter(
            "values_made_storable_total", ["table", "column", "fix"]
        )
        self.webhook_parked = Gauge(
            _name("webhook_events_parked"), NAMES["webhook_events_parked"], registry=r
        )
        self.last_success = Gauge(
            _name("last_success_timestamp_seconds"),
            NAMES["last_success_timestamp_seconds"],
            ["sync", "direction"],
            registry=r,
        )
        self.webhook_queue_age = Gauge(
            _name("webhook_queue_age_seconds"), NAMES["webhook_queue_age_seconds"], registry=r
        )
        self.rejected_records = Gauge(
            _name("rejected_records"), NAMES["rejected_records"], ["sync", "reason"], registry=r
        )
        _live.add(self)

    @property
    def content_type(self) -> str:
        """The media type of :meth:`exposition`."""
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return CONTENT_TYPE_LATEST

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry)

    def record_run(
        self,
        sync: str,
        direction: str,
        status: str,
        *,
        seconds: float | None = None,
        counts: Mapping[str, Any] | None = None,
    ) -> None:
        """Count one finished run and the contacts/events it reports in ``counts``."""
        self.runs.labels(sync, direction, status).inc()
        if seconds is not None:
            self.run_duration.labels(sync, direction).observe(seconds)
        for key, value in (counts or {}).items():
            if isinstance(value, Mapping) and (key == "rejected" or "reason" in key):
                for reason, n in value.items():
                    if isinstance(n, int | float) and n > 0:
                        self.contacts_rejected.labels(sync, str(reason)).inc(n)
                continue
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                continue
            if direction == "push" and key in _PUSH_OUTCOMES:
                self.contacts_pushed.labels(sync, key).inc(value)
            elif direction == "pull":
                self.pull_events.labels(sync, key).inc(value)

    def observe_health(self, health: Health) -> None:
        """Set the gauges read from the state store (labels no longer present are dropped)."""
        self.webhook_pending.set(health.webhook_pending)
        self.webhook_parked.set(health.webhook_parked)
        self.webhook_queue_age.set(health.webhook_age_seconds)
        self.last_success.clear()
        for sync in health.syncs:
            if sync.last_success is not None:
                self.last_success.labels(sync.sync, sync.direction).set(
                    sync.last_success.timestamp()
                )
        self.rejected_records.clear()
        for (sync_name, reason), count in health.rejected.items():
            self.rejected_records.labels(sync_name, reason).set(count)

    def provider_request(
        self, provider: str, method: str, status: int | str, seconds: float
    ) -> None:
        self.provider_requests.labels(provider, method, str(status)).inc()
        self.provider_latency.labels(provider, method).observe(seconds)


_PUSH_OUTCOMES = frozenset({"created", "updated", "unchanged", "archived", "rejected", "retry"})


def record_provider_request(provider: str, method: str, status: int | str, seconds: float) -> None:
    """Count one provider HTTP request (status ``error`` when no response came back)."""
    for metrics in list(_live):
        metrics.provider_request(provider, method, status, seconds)


def record_provider_retry(provider: str, reason: str) -> None:
    """Count one retry of a provider request (reason: ``429``, ``503``, ``timeout``...)."""
    for metrics in list(_live):
        metrics.provider_retries.labels(provider, reason).inc()


def record_value_made_storable(table: str, column: str, fix: str) -> None:
    """Count one value changed to fit the store (see :mod:`campaign_bridge.storable`)."""
    for metrics in list(_live):
        metrics.values_made_storable.labels(table, column, fix).inc()
