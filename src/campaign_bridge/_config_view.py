"""Presenting configuration: masked values and their sources, the reference, the starter file.

Pure functions over the model; the CLI prints what they return.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from campaign_bridge._config_sources import LoadedSettings, env_var_name, model_variants
from campaign_bridge.config import Settings, SyncConfig
from campaign_bridge.db import redact_url
from campaign_bridge.errors import ConfigurationError

__all__ = [
    "MASK",
    "STARTER_CONFIG",
    "Row",
    "SettingDoc",
    "masked_tree",
    "problems_as_dicts",
    "reference_markdown",
    "rows",
    "setting_docs",
    "starter_config",
]

MASK = "********"
SYNC_PLACEHOLDER = "<name>"


def _secret_kind(info: FieldInfo | None) -> str | bool:
    extra = info.json_schema_extra if info is not None else None
    if isinstance(extra, dict):
        kind = extra.get("secret")
        return kind if isinstance(kind, str | bool) else bool(kind)
    return False


def _mask(value: Any, kind: str | bool) -> Any:
    """The value as it may be shown: secrets masked, URL passwords hidden."""
    if value is None:
        return None
    if kind == "url-password":
        return redact_url(str(value))
    if kind:
        if isinstance(value, list):
            return [MASK for _ in value]
        return MASK
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return value.as_posix()
    return value


# --- effective values --------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str
    value: Any
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "source": self.source, "env": self.env}

    @property
    def env(self) -> str:
        """The environment variable that sets this value."""
        return env_var_name(self.key)


def _leaves(model: BaseModel, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, masked value) for every leaf of ``model``; mappings of scalars yield one per entry."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        here = (*path, name)
        if isinstance(value, BaseModel):
            yield from _leaves(value, here)
        elif isinstance(value, dict) and value:
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    yield from _leaves(item, (*here, str(key)))
                else:
                    yield (*here, str(key)), _mask(item, _secret_kind(info))
        else:
            yield here, _mask(value, _secret_kind(info))


def rows(loaded: LoadedSettings) -> list[Row]:
    """One row per effective setting: dotted key, masked value, and its source."""
    return [
        Row(".".join(path), value, loaded.origin_of(".".join(path)))
        for path, value in _leaves(loaded.settings, ())
    ]


def masked_tree(settings: Settings) -> dict[str, Any]:
    """The effective settings as nested JSON-ready data, with every secret masked."""
    tree: dict[str, Any] = {}
    for path, value in _leaves(settings, ()):
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def problems_as_dicts(exc: ConfigurationError) -> list[dict[str, str]]:
    return [
        {
            "location": problem.location,
            "problem": problem.problem,
            "expected": problem.expected,
            "source": str(getattr(problem, "origin", "")),
        }
        for problem in exc.problems
    ]


# --- the settings reference --------------------------------------------------------------------


@dataclass(frozen=True)
class SettingDoc:
    section: str
    key: str  # dotted TOML path, syncs written as syncs.<name>
    env: str
    type: str
    default: str
    secret: str | bool  # True, or "url-password" for a URL whose password is secret
    help: str
    variant: str = ""  # the provider, for a setting of one destination model


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        return (args[0] if len(args) == 1 else annotation), True
    return annotation, False


def _type_name(annotation: Any, info: FieldInfo) -> str:
    inner, optional = _unwrap(annotation)
    origin = get_origin(inner)
    if origin is Literal:
        text = " or ".join(f"`{arg}`" for arg in get_args(inner))
    elif isinstance(inner, type) and issubclass(inner, enum.Enum):
        text = "one of " + ", ".join(f"`{member.value}`" for member in inner)
    elif origin is dict:
        text = "table: string → string"
    elif origin is list:
        text = "list of strings"
    else:
        text = {
            str: "string",
            SecretStr: "string",
            int: "integer",
            float: "number",
            bool: "boolean",
            Path: "path",
        }.get(inner, getattr(inner, "__name__", str(inner)))
    bounds = [
        f"{symbol} {getattr(item, attr)}"
        for item in info.metadata
        for attr, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))
        if getattr(item, attr, None) is not None
    ]
    if bounds:
        text += f" ({', '.join(bounds)})"
    return f"{text}, optional" if optional else text


def _default_text(info: FieldInfo) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "required"
    value = info.default if info.default_factory is None else info.default_factory()  # type: ignore[call-arg]
    if value is None:
        return "empty"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        return f"`{value.as_posix()}`"
    if isinstance(value, dict | list) and not value:
        return "empty"
    return f"`{value}`"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    inner, _ = _unwrap(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def setting_docs(
    model: type[BaseModel] = Settings, prefix: str = "", variant: str = ""
) -> list[SettingDoc]:
    """Every leaf setting of ``model``, recursively (``syncs`` as ``syncs.<name>.*``; a union
    of models, such as the destination, once per alternative)."""
    docs: list[SettingDoc] = []
    sections: list[tuple[type[BaseModel], str, str]] = []  # after this section's own settings
    for name, info in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        sub = _model_of(info.annotation)
        if name == "syncs" and model is Settings:
            sections.append((SyncConfig, f"syncs.{SYNC_PLACEHOLDER}", ""))
            continue
        if sub is not None:
            sections.append((sub, key, ""))
            continue
        if variants := model_variants(info.annotation):
            sections.extend((alternative, key, tag) for tag, alternative in variants)
            continue
        docs.append(
            SettingDoc(
                section=prefix,
                key=key,
                env=env_var_name(key).replace(SYNC_PLACEHOLDER.upper(), "<NAME>"),
                type=_type_name(info.annotation, info),
                default=_default_text(info),
                secret=_secret_kind(info),
                help=(info.description or "").strip(),
                variant=variant,
            )
        )
    for sub_model, key, tag in sections:
        docs.extend(setting_docs(sub_model, key, tag or variant))
    return docs


_REFERENCE_INTRO = """\
# Configuration reference

<!-- Generated by `campaign-bridge config docs -o docs/configuration.md`; do not edit by hand.
     tests/unit/test_docs_configuration.py fails when this file and the model disagree. -->

campaign-bridge reads its settings from, highest precedence first:

1. **command-line flags** (`--log-level`, `--log-format`; shown as source `cli`),
2. **environment variables** `CAMPAIGN_BRIDGE_*` (source `env:<VAR>`),
3. **the TOML file**: `campaign-bridge.toml` in the working directory, or the file named by
   `--config PATH` / `CAMPAIGN_BRIDGE_CONFIG` (which must then exist; source `file:<path>`),
4. **defaults** (source `default`).

`campaign-bridge config show` prints the effective value of every setting, secrets masked, with
its source; `campaign-bridge config validate` reports every problem at once and exits 2 if there is
any. A fully commented example is [examples/campaign-bridge.toml](../examples/campaign-bridge.toml).

## Many syncs: conf.d

Hundreds of syncs fit in a directory of files, one or more syncs per file:

- `include = ["conf.d/*.toml"]` at the top of the main file reads every matching file (glob
  patterns, relative to the main file's directory, each pattern's files in name order; a path
  without `*` must exist). `CAMPAIGN_BRIDGE_CONFIG_DIR=/etc/campaign-bridge/conf.d` reads every
  `*.toml` in that directory too, with or without a main file.
- An included file holds only `[syncs.<name>]` tables, written exactly as in the main file.
  Settings for the whole service (`state_url`, `[server]`, `[alerts]`, ...) stay in the main file
  or the environment.
- A sync is defined once: the same name in two files is an error naming both files. Names that
  differ only in case or in `-`/`_` count as the same (they share one environment variable).
- Each sync's secrets come from its file (`api_key = ...` or `api_key_file = "/run/secrets/..."`)
  or from the environment, by the sync's name:
  `CAMPAIGN_BRIDGE_SYNCS__ACME_EU__DESTINATION__API_KEY` or `..._API_KEY_FILE`.
- `config show` names the file every value came from (`file:conf.d/acme-eu.toml`), and a problem
  in a sync names the file that defines it.

## Environment variables

- The variable is `CAMPAIGN_BRIDGE_` followed by the setting's path in upper case, nested keys
  joined by `__`: `server.port` → `CAMPAIGN_BRIDGE_SERVER__PORT`,
  `syncs.customers.destination.api_key` → `CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__DESTINATION__API_KEY`.
- Sync names are matched ignoring case and treating `-` like `_` against the names in the file;
  a sync that exists only in the environment gets the lower-cased name.
- Keys of tables such as `fields` keep their case (`…__FIELDS__FNAME=first_name` maps `FNAME`).
  A whole table or list can also be given as JSON: `…__FIELDS='{"FNAME": "first_name"}'`,
  `CAMPAIGN_BRIDGE_SERVER__WEBHOOK_TOKENS='["t1", "t2"]'` (lists also accept `t1,t2`).
- An empty value unsets an optional setting. Variables with the prefix that name no setting are
  ignored with a warning (shown by `config validate`); a typo inside a known section is an error.

## Secrets

Settings marked *secret* are never printed or logged: `config show` shows `********` (a password in
a database URL shows as `***`), and the log filter masks their values. Each can be read from a
file, as container platforms (Docker/Kubernetes secrets, systemd credentials) provide them:

- environment: append `_FILE` to the variable, e.g.
  `CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__DESTINATION__API_KEY_FILE=/run/secrets/mailchimp_key`
  (source `env-file:<VAR>_FILE`);
- TOML: append `_file` to the key, e.g. `api_key_file = "/run/secrets/mailchimp_key"`.

The file's trailing newline is removed; for `server.webhook_tokens` each non-empty line is one
token. Relative paths are relative to the working directory. Setting both the value and its
`_FILE` form, or pointing at an unreadable file, is a configuration error.

## Logs

Logs go to standard error. With `log_format = "auto"` they are short text lines on a terminal and
JSON lines otherwise (`json` / `text` force one). A JSON line has `ts` (UTC, ISO 8601), `level`,
`logger`, `message`, plus the context the code attached: `action`, `provider`, `run_id`, `sync`,
`email_hash`, counts and so on. Before a line is written, secret values from the settings, anything
shaped like a Mailchimp or Brevo API key, `Authorization` and `api-key` header values and
passwords in URLs become `********`, and email addresses become
`email:<md5 of the trimmed, lowercased address>` (the bridge's own key for a member) unless
`log_emails = true`.

## Validation rules beyond types

- `syncs.<name>.source`: exactly one of `query` or `table`.
- `syncs.<name>.destination`: `provider` picks the table of settings below (`mailchimp` when it
  is left out); each provider's settings are checked by its own rules, and a setting of another
  provider is an unknown setting.
- Mailchimp `api_key`: with `base_url` empty or on `*.api.mailchimp.com`, the key must look like a
  Mailchimp key (`<32 lowercase hex>-<dc>`, e.g. `…-us6`) and its data centre must match the
  host; with `base_url` on any other host (the sandbox, a proxy) any non-empty key is accepted,
  since only that server can judge it.
- Brevo `api_key`: with `base_url` empty or on `*.brevo.com`, an API key `xkeysib-<64 hex>-<16
  letters or digits>` (not an SMTP key); any non-empty key for other hosts. `list_id` is the
  list's number. With the sync's `double_opt_in`, `double_opt_in_template_id` is required.
- listmonk: `base_url` is required (it is self-hosted); authenticate with `api_user` and
  `api_token`, or with `username` and `password` (HTTP Basic), not both. `list_id` is the list's
  number.
- `schedule.push` / `schedule.pull`: `every <N><s|m|h|d|w>` (also `every 1h30m`), a five-field
  cron expression in UTC (`*/15 * * * *`, `0 6 * * mon-fri`) or `@hourly`/`@daily`/`@weekly`.
- Database URLs must be PostgreSQL, MySQL/MariaDB or SQLite SQLAlchemy URLs.
- Sync names: 1 to 100 letters, digits, `_`, `-` or `.`.
- `server.webhook_tokens`: each at least 16 characters.
"""


_OPTIONAL_SECTIONS = {
    f"syncs.{SYNC_PLACEHOLDER}.writeback": "write-back is off without it",
    f"syncs.{SYNC_PLACEHOLDER}.erasure": "no source signal for erasure without it; docs/privacy.md",
}


def _section_title(section: str, variant: str = "") -> str:
    if not section:
        return "Top level"
    if variant:
        return f'`[{section}]` with `provider = "{variant}"`'
    why = _OPTIONAL_SECTIONS.get(section)
    optional = f" (optional: {why})" if why else ""
    return f"`[{section}]`{optional}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def reference_markdown() -> str:
    """docs/configuration.md: the introduction and one table per section, from the model."""
    lines = [_REFERENCE_INTRO]
    current: tuple[str, str] | None = None
    for doc in setting_docs():
        if (doc.section, doc.variant) != current:
            current = (doc.section, doc.variant)
            lines += [
                "",
                f"## {_section_title(doc.section, doc.variant)}",
                "",
                "| key | environment variable | type | default | secret | description |",
                "|---|---|---|---|---|---|",
            ]
        name = doc.key.rsplit(".", 1)[-1]
        secret = {"url-password": "password in URL", True: "yes"}.get(doc.secret, "")
        lines.append(
            f"| `{name}` | `{doc.env}` | {_cell(doc.type)} | {_cell(doc.default)} | {secret} "
            f"| {_cell(doc.help)} |"
        )
    return "\n".join(lines) + "\n"


# --- the starter file written by `init` ----------------------------------------------------------


def starter_config(api_key: str, list_id: str) -> str:
    """The file `init` writes, using the sandbox's default account key and audience."""
    return STARTER_CONFIG.replace("@API_KEY@", api_key).replace("@LIST_ID@", list_id)


STARTER_CONFIG = """\
# campaign-bridge configuration, written by `campaign-bridge init`.
#
# It points at the demo database and the local Mailchimp sandbox, so it works offline:
#   campaign-bridge demo                          # creates demo/contacts.db (and runs the job once)
#   campaign-bridge sandbox serve --port 8089     # in another terminal
#   campaign-bridge doctor
#   campaign-bridge push --dry-run
# Every setting, with its environment variable: docs/configuration.md. Check this file with
# `campaign-bridge config validate`; see the effective values with `campaign-bridge config show`.

# Where the embedded SQLite state store (state.db) lives. For production, set state_url to a
# PostgreSQL or MariaDB database instead (CAMPAIGN_BRIDGE_STATE_URL).
data_dir = ".campaign-bridge"
# state_url = "postgresql://bridge:password@db.internal/bridge"

log_level = "INFO"          # DEBUG, INFO, WARNING, ERROR
log_format = "auto"         # auto: text on a terminal, JSON lines otherwise
log_emails = false          # false: addresses appear in logs as email:<md5>

[server]                    # `campaign-bridge serve`: webhooks, status page, metrics
host = "127.0.0.1"
port = 8080
# public_url = "https://bridge.example.com"       # where Mailchimp reaches the webhooks
# webhook_tokens_file = "/run/secrets/webhook_tokens"

# One sync: contacts in your database <-> one Mailchimp audience.
[syncs.customers]
mode = "upsert"             # upsert, update-only or mirror
unconsented_new = "skip"    # new contacts without consent: skip, unsubscribed or transactional

[syncs.customers.source]
# The demo database (`campaign-bridge demo` creates it). Your own: postgresql://user@host/db
url = "sqlite:///demo/contacts.db"
table = "contacts"          # or: query = "SELECT ... FROM ..."
key_column = "id"
email_column = "email"
updated_at_column = "updated_at"
consent_column = "marketing_opt_in"

[syncs.customers.destination]
provider = "mailchimp"
# The sandbox. For a real account remove base_url: the API host comes from the key's suffix.
base_url = "http://127.0.0.1:8089/3.0"
# The sandbox's default account key and audience (`campaign-bridge sandbox serve` prints them).
# For a real account, do not write the key here: use api_key_file = "/run/secrets/mailchimp_key"
# or CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__DESTINATION__API_KEY(_FILE) in the environment.
api_key = "@API_KEY@"
list_id = "@LIST_ID@"

[syncs.customers.fields]    # Mailchimp merge field tag = source column
FNAME = "first_name"
LNAME = "last_name"

[syncs.customers.tags]      # Mailchimp tag = boolean source column
vip = "is_vip"

# Unsubscribes and cleaned addresses written back into your table. Remove to turn it off.
[syncs.customers.writeback]
table = "contacts"
key_column = "id"
status_column = "mc_status"
unsubscribed_at_column = "unsubscribed_at"
bounced_at_column = "bounced_at"
consent_column = "marketing_opt_in"

[syncs.customers.schedule]  # used by `campaign-bridge serve --schedule`
push = "every 15m"
pull = "every 1h"
"""
