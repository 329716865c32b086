"""The privacy settings: a sync's erasure signal and the state store's retention periods.

Part of the configuration model (:mod:`campaign_bridge.config` re-exports both); described in
docs/privacy.md and, generated, in docs/configuration.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from campaign_bridge import _config_checks as _validators

__all__ = ["ErasureConfig", "RetentionConfig"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ErasureConfig(_Model):
    """Where the sync's source says that a person asked to be erased (either or both)."""

    column: str | None = Field(
        None,
        description="Column of the sync's source (table or query) that marks a person to erase: "
        "true, or a timestamp of the request. Such rows are never pushed; each push erases them.",
    )
    column_type: Literal["boolean", "timestamp"] = Field(
        "boolean",
        description="boolean: erase when the column is true; timestamp: erase when it is set "
        "(and again if it moves past the last erasure).",
    )
    requests_table: str | None = Field(
        None,
        description="Table in the source database listing erasure requests, one row per "
        "request (processed by each push and by `forget --pending`).",
    )
    requests_email_column: str = Field(
        "email", description="Column of requests_table holding the address to erase."
    )
    requests_at_column: str | None = Field(
        "requested_at",
        description="Column of requests_table with the request's time; a request newer than "
        "the person's last erasure is carried out again. Empty: each address once.",
    )

    @model_validator(mode="after")
    def _check_something_set(self) -> ErasureConfig:
        if not self.column and not self.requests_table:
            raise _validators.fail(
                "the erasure table sets neither column nor requests_table",
                "at least one of erasure.column or erasure.requests_table",
            )
        return self


class RetentionConfig(_Model):
    """How long the state store keeps what it collects; 0 keeps it forever."""

    activity_days: int = Field(
        730, ge=0, description="Days of email activity (cb_email_activity, by event time)."
    )
    webhook_days: int = Field(
        30,
        ge=0,
        description="Days an applied webhook delivery (with its body) is kept "
        "(cb_webhook_events, by arrival).",
    )
    rejected_days: int = Field(
        90,
        ge=0,
        description="Days a rejected record is kept after it was last seen (cb_rejected_records).",
    )
    runs_days: int = Field(
        180, ge=0, description="Days of run history and its details (cb_sync_runs)."
    )
    batch_rows: int = Field(
        5000,
        ge=100,
        le=100_000,
        description="Rows deleted per transaction by the purge (short transactions, short locks).",
    )
    schedule: str | None = Field(
        "every 1d",
        description="When `serve --schedule` runs the purge (interval or cron); empty: never "
        "(run `campaign-bridge purge` yourself).",
    )

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        return _validators.schedule(value)
