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
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from campaign_bridge import _config_checks as _validators
from campaign_bridge._config_privacy import ErasureConfig, RetentionConfig
from campaign_bridge._destinations import (
    PROVIDERS,
    BrevoDestination,
    DestinationConfig,
    ListmonkDestination,
    MailchimpDestination,
)
from campaign_bridge.logs import LogFormat  # defined there: the CLI needs it before pydantic

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_NESTED_DELIMITER",
    "ENV_PREFIX",
    "PROVIDERS",
    "AlertsConfig",
    "BrevoDestination",
    "DestinationConfig",
    "ErasureConfig",
    "ListmonkDestination",
    "LoadedSettings",
    "LogFormat",
    "MailchimpDestination",
    "PullConfig",
    "RetentionConfig",
    "ScheduleConfig",
    "ServerConfig",
    "Settings",
    "SourceConfig",
    "SyncConfig",
    "SyncMode",
    "UnconsentedNew",
    "WritebackConfig",
    "load_settings",
    "load_settings_with_provenance",
    "secret_values",
]

ENV_PREFIX = "CAMPAIGN_BRIDGE_"
ENV_NESTED_DELIMITER = "__"
DEFAULT_CONFIG_FILE = "campaign-bridge.toml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


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

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        checked = _validators.database_url(value, what="source database")
        if checked is None:
            raise _validators.fail("is empty", "the source database URL")
        return checked

    @field_validator("table")
    @classmethod
    def _check_query_or_table(cls, table: str | None, info: ValidationInfo) -> str | None:
        table = table.strip() if table and table.strip() else None
        if "query" not in info.data:  # query itself was invalid and is reported already
            return table
        query = info.data["query"]
        if query and table:
            raise _validators.fail(
                "both source.query and source.table are set", "exactly one of query or table"
            )
        if not query and not table:
            raise _validators.fail(
                "neither source.query nor source.table is set",
                "exactly one of query (SQL returning one row per contact) or table (a table or "
                "view name)",
            )
        return table

    @field_validator("query")
    @classmethod
    def _strip_query(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None


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

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return _validators.database_url(value, what="write-back database")


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

    @field_validator("push", "pull")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        return _validators.schedule(value)


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
    erasure: ErasureConfig | None = None

    @model_validator(mode="after")
    def _check_double_opt_in(self) -> SyncConfig:
        destination = self.destination
        if (
            self.double_opt_in
            and isinstance(destination, BrevoDestination)
            and destination.double_opt_in_template_id is None
        ):
            raise _validators.fail(
                "double_opt_in is on but destination.double_opt_in_template_id is not set",
                "the id of the Brevo template that carries the confirmation link",
            )
        return self


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
        description="Token protecting the status page; empty leaves it open, which serve "
        "allows on a loopback address only (or with `serve --public-status`).",
        json_schema_extra={"secret": True},
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest webhook body accepted.")

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        return _validators.http_url(value)

    @field_validator("webhook_tokens")
    @classmethod
    def _check_tokens(cls, tokens: list[SecretStr]) -> list[SecretStr]:
        for token in tokens:
            if len(token.get_secret_value()) < 16:
                raise _validators.fail(
                    "a webhook token is shorter than 16 characters",
                    "long random tokens, e.g. from `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`",
                )
        return tokens


class AlertsConfig(_Model):
    urls: list[SecretStr] = Field(
        default_factory=list,
        description="Apprise URLs that `serve` notifies (e.g. slack://..., mailto://..., "
        "msteams://..., pagerduty://..., json://host/path); empty sends no alerts. "
        "Syntax: https://github.com/caronc/apprise/wiki",
        json_schema_extra={"secret": True},
    )
    check_seconds: float = Field(
        60.0, ge=1, description="How often `serve` checks the conditions below."
    )
    stale_after_minutes: float | None = Field(
        None,
        gt=0,
        description="Alert when a scheduled sync has had no successful run for this long; "
        "empty: twice its schedule's interval (at least its interval + 5 minutes).",
    )
    rejections_threshold: int = Field(
        100, ge=1, description="Alert when a sync's open rejections reach this many."
    )
    webhook_queue_minutes: float = Field(
        15.0, gt=0, description="Alert when a webhook event has waited this long to be applied."
    )
    recovery: bool = Field(True, description="Send a message when an alert's condition clears.")


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
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    syncs: dict[str, SyncConfig] = Field(
        default_factory=dict, description="Named syncs, one table per sync: [syncs.<name>]."
    )

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        return _validators.log_level(value)

    @field_validator("state_url")
    @classmethod
    def _check_state_url(cls, value: str | None) -> str | None:
        return _validators.database_url(value, what="state store")

    @field_validator("syncs")
    @classmethod
    def _check_sync_names(cls, syncs: dict[str, SyncConfig]) -> dict[str, SyncConfig]:
        for name in syncs:
            _validators.sync_name(name)
        return syncs

    def effective_state_url(self) -> str:
        """The state store URL, defaulting to SQLite inside ``data_dir``."""
        if self.state_url:
            return self.state_url
        return f"sqlite:///{(self.data_dir / 'state.db').as_posix()}"


def secret_values(settings: Settings) -> list[str]:
    """Every secret value in ``settings`` (keys, tokens, URL passwords), for log redaction."""
    found: list[str] = []
    _collect_secrets(settings, found)
    return [value for value in found if value]


def _collect_secrets(model: BaseModel, found: list[str]) -> None:
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        kind = (
            (info.json_schema_extra or {}).get("secret")
            if isinstance(info.json_schema_extra, dict)
            else None
        )
        if kind == "url-password" and isinstance(value, str):
            password = _url_password(value)
            if password:
                found.append(password)
        elif kind:
            items = value if isinstance(value, list) else [value]
            found.extend(
                item.get_secret_value() if isinstance(item, SecretStr) else str(item)
                for item in items
                if item is not None
            )
        for child in _submodels(value):
            _collect_secrets(child, found)


def _submodels(value: Any) -> list[BaseModel]:
    if isinstance(value, BaseModel):
        return [value]
    if isinstance(value, dict):
        return [item for item in value.values() if isinstance(item, BaseModel)]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, BaseModel)]
    return []


def _url_password(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except (ArgumentError, ValueError):
        return None


# The loader lives in a private module; it is part of this module's public API.
from campaign_bridge._config_sources import (  # noqa: E402
    LoadedSettings,
    load_settings,
    load_settings_with_provenance,
)
