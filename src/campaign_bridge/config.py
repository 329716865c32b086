"""The configuration model: every setting, its type, default, help text and environment variable.

Precedence, highest first: command-line flags > environment (``CAMPAIGN_BRIDGE_*``, nested keys
joined by ``__``) > the TOML file (``campaign-bridge.toml``, or ``--config`` /
``CAMPAIGN_BRIDGE_CONFIG``) > defaults. Any secret may instead be given as a path in the same
variable name with ``_FILE`` appended, as container platforms expect.

This module holds the model. Loading (sources, provenance, ``*_FILE``) lives beside it.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = [
    "DestinationConfig",
    "LogFormat",
    "PullConfig",
    "ScheduleConfig",
    "ServerConfig",
    "Settings",
    "SourceConfig",
    "SyncConfig",
    "SyncMode",
    "UnconsentedNew",
    "WritebackConfig",
]

ENV_PREFIX = "CAMPAIGN_BRIDGE_"
ENV_NESTED_DELIMITER = "__"
DEFAULT_CONFIG_FILE = "campaign-bridge.toml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class LogFormat(StrEnum):
    AUTO = "auto"
    TEXT = "text"
    JSON = "json"


class SyncMode(StrEnum):
    UPSERT = "upsert"
    UPDATE_ONLY = "update-only"
    MIRROR = "mirror"


class UnconsentedNew(StrEnum):
    """What to do with a contact that is new to the provider and has not consented."""

    SKIP = "skip"
    UNSUBSCRIBED = "unsubscribed"
    TRANSACTIONAL = "transactional"


class SourceConfig(_Model):
    url: str = Field(
        description="SQLAlchemy URL of the database holding the contacts "
        "(postgresql://, mysql://, mariadb://, sqlite:///path). A password in it is a secret.",
        json_schema_extra={"secret": "url-password"},
    )
    query: str | None = Field(None, description="SQL query returning one row per contact.")
    table: str | None = Field(None, description="Table or view to read instead of a query.")
    key_column: str = Field("id", description="Column that identifies a contact in the source.")
    email_column: str = Field("email", description="Column holding the email address.")
    updated_at_column: str | None = Field(
        None, description="Column with the row's last change time; makes the scan incremental."
    )
    consent_column: str | None = Field(
        None,
        description="Column saying whether the contact consents to marketing "
        "(true/false, yes/no, 1/0, or a status such as subscribed/unsubscribed/pending).",
    )
    chunk_size: int = Field(5000, ge=100, le=100_000, description="Rows read per round trip.")


class DestinationConfig(_Model):
    provider: Literal["mailchimp"] = Field("mailchimp", description="Email provider.")
    api_key: SecretStr = Field(
        description="Provider API key (Mailchimp: <32 hex>-<dc>).",
        json_schema_extra={"secret": True},
    )
    list_id: str = Field(description="Audience (list) id at the provider.")
    base_url: str | None = Field(
        None,
        description="API base URL. Empty: derived from the key's data centre "
        "(https://<dc>.api.mailchimp.com/3.0). Set it to the sandbox's URL for local work.",
    )
    concurrency: int = Field(
        10, ge=1, le=10, description="Requests in flight per API key, shared by every job."
    )
    timeout_seconds: float = Field(120.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(8, ge=0, le=30, description="Retries of a transient failure.")


class WritebackConfig(_Model):
    url: str | None = Field(
        None,
        description="Database URL for write-back; empty means the source database.",
        json_schema_extra={"secret": "url-password"},
    )
    table: str = Field(description="The user's contact table to write status changes into.")
    key_column: str = Field("id", description="Column matching the source key.")
    status_column: str | None = Field(None, description="Column to receive the provider status.")
    unsubscribed_at_column: str | None = Field(None, description="Set when the contact opts out.")
    bounced_at_column: str | None = Field(None, description="Set when the address is cleaned.")
    consent_column: str | None = Field(
        None, description="Boolean consent column set to false when the contact opts out."
    )


class PullConfig(_Model):
    enabled: bool = Field(True, description="Pull campaigns, reports and activity for this sync.")
    history_days: int = Field(
        90, ge=1, description="How far back a first pull reaches (bounded so it finishes)."
    )


class ScheduleConfig(_Model):
    push: str | None = Field(
        None, description="When to push: an interval ('every 15m') or a cron expression."
    )
    pull: str | None = Field(None, description="When to pull: an interval or a cron expression.")


class SyncConfig(_Model):
    source: SourceConfig
    destination: DestinationConfig
    mode: SyncMode = Field(SyncMode.UPSERT, description="upsert, update-only or mirror.")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Provider merge field tag <- source column."
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Provider tag name <- boolean source column."
    )
    tags_column: str | None = Field(
        None, description="Source column holding a comma-separated list of tag names."
    )
    interests: dict[str, str] = Field(
        default_factory=dict, description="Provider interest id <- boolean source column."
    )
    marketing_permissions: dict[str, str] = Field(
        default_factory=dict,
        description="GDPR marketing permission id <- boolean source column.",
    )
    language_column: str | None = Field(None, description="Source column with a language code.")
    double_opt_in: bool = Field(
        False, description="New consenting contacts are added as pending (confirmation email)."
    )
    unconsented_new: UnconsentedNew = Field(
        UnconsentedNew.SKIP,
        description="New contacts without consent: skip, or add as unsubscribed / transactional.",
    )
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    pull: PullConfig = Field(default_factory=PullConfig)
    writeback: WritebackConfig | None = None


class ServerConfig(_Model):
    host: str = Field("127.0.0.1", description="Address `serve` listens on.")
    port: int = Field(8080, ge=1, le=65535, description="Port `serve` listens on.")
    public_url: str | None = Field(
        None, description="URL at which the provider reaches this service (for webhooks)."
    )
    webhook_tokens: list[SecretStr] = Field(
        default_factory=list,
        description="Secret tokens accepted in webhook URLs; two allow rotation.",
        json_schema_extra={"secret": True},
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Token protecting the status page; empty leaves it open.",
        json_schema_extra={"secret": True},
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest webhook body accepted.")


class Settings(_Model):
    data_dir: Path = Field(
        Path(".campaign-bridge"), description="Directory for the embedded state store and files."
    )
    state_url: str | None = Field(
        None,
        description="State store URL; empty means SQLite in data_dir (state.db).",
        json_schema_extra={"secret": "url-password"},
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: LogFormat = Field(
        LogFormat.AUTO, description="auto (text on a terminal, JSON otherwise), text or json."
    )
    log_emails: bool = Field(
        False, description="Show email addresses in logs; by default they appear hashed."
    )
    server: ServerConfig = Field(default_factory=ServerConfig)
    syncs: dict[str, SyncConfig] = Field(
        default_factory=dict, description="Named syncs, one table per sync: [syncs.<name>]."
    )

    def effective_state_url(self) -> str:
        """The state store URL, defaulting to SQLite inside ``data_dir``."""
        if self.state_url:
            return self.state_url
        return f"sqlite:///{(self.data_dir / 'state.db').as_posix()}"
