"""Where a sync sends its contacts: one settings model per provider, chosen by ``provider``.

``DestinationConfig`` is a discriminated union on ``provider`` (``mailchimp`` when it is left out,
as configurations written before Brevo and listmonk do). Each model validates its own rules; the
settings every provider shares (timeouts, retries, a private CA) are declared once below.
Adding a provider: one model here, one entry in ``DestinationConfig``, one in
``campaign_bridge.providers.REGISTRY``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from campaign_bridge import _config_checks as _checks

__all__ = [
    "DEFAULT_PROVIDER",
    "DEFAULT_WEBHOOK_SOURCES",
    "PROVIDERS",
    "BrevoDestination",
    "DestinationConfig",
    "ListmonkDestination",
    "MailchimpDestination",
    "WebhookSource",
]

DEFAULT_PROVIDER = "mailchimp"
BREVO_API = "https://api.brevo.com/v3"
WebhookSource = Literal["user", "admin", "api"]
DEFAULT_WEBHOOK_SOURCES: tuple[WebhookSource, ...] = ("user", "admin")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# --- settings every provider has --------------------------------------------------------------

TimeoutSeconds = Annotated[float, Field(gt=0, description="Per-request timeout.")]
MaxRetries = Annotated[int, Field(ge=0, le=30, description="Retries of a transient failure.")]
CaBundle = Annotated[
    Path | None,
    Field(
        description="PEM file of the CA certificates to trust for the provider's HTTPS (a "
        "private CA, or a proxy that inspects TLS). Empty: the system's CAs, or SSL_CERT_FILE.",
    ),
]
_CONCURRENCY = "Requests in flight per API key, shared by every job."


class _Destination(_Model):
    """Behaviour shared by every destination model (no fields: each model lists its own, so
    the reference shows them in a readable order)."""

    if TYPE_CHECKING:  # declared by every model
        provider: str
        base_url: str | None
        list_id: str
        concurrency: int
        timeout_seconds: float
        max_retries: int
        ca_bundle: Path | None

    def credential(self) -> str:
        """The secret that identifies the account (compared in memory only, never shown)."""
        raise NotImplementedError

    def api_root(self) -> str:
        """The URL the adapter sends its requests under (doctor probes it)."""
        raise NotImplementedError

    def credential_fix(self) -> str:
        """What to check when the provider refuses the credentials (for doctor)."""
        raise NotImplementedError

    def audience_key(self) -> tuple[str, str, str, str]:
        """Two destinations with the same key are the same audience of the same account."""
        return (self.provider, self.base_url or "", self.credential(), self.list_id)

    @field_validator("ca_bundle", check_fields=False)
    @classmethod
    def _check_ca_bundle(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value} (a PEM bundle of CA certificates)")
        return value


def _numeric_list_id(value: Any, example: str) -> str:
    """Brevo and listmonk number their lists; the contract passes list ids as text."""
    text = str(value).strip() if isinstance(value, int | str) and value is not True else ""
    if not text.isdigit() or int(text) < 1:
        raise _checks.fail(f"{value!r} is not a list id", f"a positive integer, e.g. {example}")
    return str(int(text))


# --- Mailchimp ----------------------------------------------------------------------------------


class MailchimpDestination(_Destination):
    provider: Literal["mailchimp"] = Field("mailchimp", description="Email provider.")
    base_url: str | None = Field(
        None,
        description="API base URL. Empty: derived from the key's data centre "
        "(https://<dc>.api.mailchimp.com/3.0). Set it to the sandbox's URL for local work.",
    )
    api_key: SecretStr = Field(
        description="Mailchimp API key, <32 hex>-<dc> (any non-empty value when base_url points "
        "at a host other than *.api.mailchimp.com, such as the sandbox).",
        json_schema_extra={"secret": True},
    )
    list_id: str = Field(description="Audience (list) id at the provider.")
    concurrency: int = Field(10, ge=1, le=10, description=_CONCURRENCY)
    timeout_seconds: TimeoutSeconds = 120.0
    max_retries: MaxRetries = 8
    ca_bundle: CaBundle = None
    webhook_sources: list[WebhookSource] = Field(
        default_factory=lambda: list(DEFAULT_WEBHOOK_SOURCES),
        description="Which changes the provider reports by webhook: made by the subscriber "
        "(user), in the provider's web app (admin), or through the API (api; includes this "
        "bridge's own writes, so it is off by default).",
    )

    def credential(self) -> str:
        return self.api_key.get_secret_value()

    def api_root(self) -> str:
        if self.base_url:
            return self.base_url
        return f"https://{_checks.mailchimp_data_centre(self.credential())}.api.mailchimp.com/3.0"

    def credential_fix(self) -> str:
        dc = _checks.mailchimp_data_centre(self.credential()) or "?"
        return (
            f"check destination.api_key; its data centre suffix is '{dc}' and must match the "
            "account's (the part after the '-' in the key Mailchimp shows you)"
        )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        return _checks.http_url(value)

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if "base_url" in info.data:  # absent when base_url itself was invalid
            _checks.mailchimp_key(value.get_secret_value(), info.data["base_url"])
        return value

    @field_validator("list_id")
    @classmethod
    def _check_list_id(cls, value: str) -> str:
        return _checks.non_empty(value, "the audience id, e.g. a1b2c3d4e5")


# --- Brevo --------------------------------------------------------------------------------------


class BrevoDestination(_Destination):
    provider: Literal["brevo"] = Field(description="Email provider.")
    base_url: str | None = Field(
        None,
        description="API base URL. Empty: https://api.brevo.com/v3. Set it to the sandbox's URL "
        "for local work.",
    )
    api_key: SecretStr = Field(
        description="Brevo API key, xkeysib-… (SMTP & API → API keys); any non-empty value "
        "when base_url points at a host other than *.brevo.com, such as the sandbox.",
        json_schema_extra={"secret": True},
    )
    list_id: str = Field(description="Id (an integer) of the Brevo list the sync fills.")
    concurrency: int = Field(5, ge=1, le=10, description=_CONCURRENCY)
    timeout_seconds: TimeoutSeconds = 120.0
    max_retries: MaxRetries = 8
    ca_bundle: CaBundle = None
    double_opt_in_template_id: int | None = Field(
        None,
        ge=1,
        description="Brevo template (with the {{ doubleoptin }} link) sent to contacts that must "
        "confirm; required when the sync sets double_opt_in.",
    )
    double_opt_in_redirect_url: str | None = Field(
        None, description="Page Brevo shows after a contact confirms (double opt-in)."
    )

    def credential(self) -> str:
        return self.api_key.get_secret_value()

    def api_root(self) -> str:
        return self.base_url or BREVO_API

    def credential_fix(self) -> str:
        return (
            "check destination.api_key: a Brevo API key (xkeysib-…, under SMTP & API → API "
            "keys), not an SMTP key, and that the account's authorised IPs include this host"
        )

    @field_validator("base_url", "double_opt_in_redirect_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return _checks.http_url(value)

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if "base_url" in info.data:
            _checks.brevo_key(value.get_secret_value(), info.data["base_url"])
        return value

    @field_validator("list_id", mode="before")
    @classmethod
    def _check_list_id(cls, value: Any) -> str:
        return _numeric_list_id(value, "2")


# --- listmonk -----------------------------------------------------------------------------------


class ListmonkDestination(_Destination):
    provider: Literal["listmonk"] = Field(description="Email provider.")
    base_url: str = Field(
        description="Root URL of your listmonk instance (self-hosted), e.g. "
        "https://lists.example.com; the API is under /api."
    )
    api_user: str | None = Field(
        None, description="listmonk API user (Admin → Users, type API; listmonk ≥ 4)."
    )
    api_token: SecretStr | None = Field(
        None,
        description="Token of api_user, sent as `Authorization: token <api_user>:<token>`.",
        json_schema_extra={"secret": True},
    )
    username: str | None = Field(
        None,
        description="Instead of api_user/api_token: a user name for HTTP Basic authentication "
        "(listmonk before 4.0's admin user, or a proxy in front of it).",
    )
    password: SecretStr | None = Field(
        None, description="Password of username (HTTP Basic).", json_schema_extra={"secret": True}
    )
    list_id: str = Field(description="Id (an integer) of the listmonk list the sync fills.")
    concurrency: int = Field(4, ge=1, le=32, description=_CONCURRENCY)
    timeout_seconds: TimeoutSeconds = 120.0
    max_retries: MaxRetries = 8
    ca_bundle: CaBundle = None

    def credential(self) -> str:
        if self.api_token is not None:
            return f"{self.api_user}:{self.api_token.get_secret_value()}"
        password = self.password.get_secret_value() if self.password else ""
        return f"{self.username}:{password}"

    def api_root(self) -> str:
        return self.base_url

    def credential_fix(self) -> str:
        return (
            "check destination.api_user and api_token (Admin → Users in listmonk; the user "
            "needs the subscribers, lists and campaigns permissions), or username and password"
        )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        checked = _checks.http_url(value)
        if checked is None:
            raise _checks.fail("is empty", "the root URL of your listmonk, e.g. http://lists:9000")
        return checked

    @field_validator("list_id", mode="before")
    @classmethod
    def _check_list_id(cls, value: Any) -> str:
        return _numeric_list_id(value, "1")

    @model_validator(mode="after")
    def _check_credentials(self) -> ListmonkDestination:
        token_pair = (self.api_user, self.api_token)
        basic_pair = (self.username, self.password)
        token_set = [item is not None for item in token_pair]
        basic_set = [item is not None for item in basic_pair]
        if any(token_set) and any(basic_set):
            raise _checks.fail(
                "both api_user/api_token and username/password are set",
                "one way to authenticate: api_user with api_token, or username with password",
            )
        if not (all(token_set) or all(basic_set)):
            raise _checks.fail(
                "the listmonk credentials are incomplete",
                "api_user with api_token (an API user's token), or username with password",
            )
        return self


# --- the union ----------------------------------------------------------------------------------


def _provider_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("provider", DEFAULT_PROVIDER))
    return str(getattr(value, "provider", DEFAULT_PROVIDER))


DestinationConfig = Annotated[
    Annotated[MailchimpDestination, Tag("mailchimp")]
    | Annotated[BrevoDestination, Tag("brevo")]
    | Annotated[ListmonkDestination, Tag("listmonk")],
    Discriminator(
        _provider_of,
        custom_error_type="config",
        custom_error_message="unknown provider (expected mailchimp, brevo or listmonk)",
        custom_error_context={
            "problem": "unknown provider",
            "expected": "one of mailchimp, brevo, listmonk",
        },
    ),
]
"""A sync's destination: the model of the provider it names (``mailchimp`` when unnamed)."""

PROVIDERS: dict[str, type[_Destination]] = {
    "mailchimp": MailchimpDestination,
    "brevo": BrevoDestination,
    "listmonk": ListmonkDestination,
}
