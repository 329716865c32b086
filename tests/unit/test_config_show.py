"""`config show` data: every effective value with its source, secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campaign_bridge._config_view import masked_tree, problems_as_dicts, rows
from campaign_bridge.config import load_settings_with_provenance
from campaign_bridge.errors import ConfigurationError

KEY = "0123456789abcdef0123456789abcdef-us6"

CONFIG = f"""
state_url = "postgresql://bridge:state-pw-1@db/bridge"

[server]
admin_token = "admin-token-123"
webhook_tokens = ["token-aaaaaaaaaaaaaaaa", "token-bbbbbbbbbbbbbbbb"]

[syncs.customers.source]
url = "mysql://app:source-pw-2@db/app"
table = "contacts"

[syncs.customers.destination]
api_key = "{KEY}"
list_id = "list1"

[syncs.customers.fields]
FNAME = "first_name"
"""

SECRETS = ("state-pw-1", "admin-token-123", "token-aaaa", "source-pw-2", KEY)


def test_rows_mask_secrets_and_name_sources(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG, encoding="utf-8")
    loaded = load_settings_with_provenance(
        path, overrides={"log_level": "DEBUG"}, environ={"CAMPAIGN_BRIDGE_SERVER__PORT": "9001"}
    )
    table = {row.key: (row.value, row.source) for row in rows(loaded)}
    assert table["syncs.customers.destination.api_key"] == ("********", f"file:{path}")
    assert table["server.admin_token"] == ("********", f"file:{path}")
    assert table["server.webhook_tokens"] == (["********", "********"], f"file:{path}")
    assert table["state_url"] == ("postgresql://bridge:***@db/bridge", f"file:{path}")
    assert table["syncs.customers.source.url"][0] == "mysql://app:***@db/app"
    assert table["syncs.customers.fields.FNAME"] == ("first_name", f"file:{path}")
    assert table["server.port"] == (9001, "env:CAMPAIGN_BRIDGE_SERVER__PORT")
    assert table["log_level"] == ("DEBUG", "cli")
    assert table["server.host"] == ("127.0.0.1", "default")
    assert table["syncs.customers.mode"] == ("upsert", "default")
    by_key = {row.key: row.as_dict() for row in rows(loaded)}
    assert by_key["syncs.customers.fields.FNAME"]["env"] == (
        "CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__FIELDS__FNAME"
    )
    dumped = json.dumps([row.as_dict() for row in rows(loaded)])
    for secret in SECRETS:
        assert secret not in dumped


def test_masked_tree_is_complete_and_safe(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG, encoding="utf-8")
    tree = masked_tree(load_settings_with_provenance(path, environ={}).settings)
    assert tree["syncs"]["customers"]["destination"]["api_key"] == "********"
    assert tree["syncs"]["customers"]["destination"]["list_id"] == "list1"
    assert tree["server"]["port"] == 8080
    assert tree["syncs"]["customers"]["writeback"] is None
    text = json.dumps(tree)
    for secret in SECRETS:
        assert secret not in text


def test_problems_as_dicts_carry_the_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as exc:
        load_settings_with_provenance(environ={"CAMPAIGN_BRIDGE_SERVER__PORT": "0"})
    (problem,) = problems_as_dicts(exc.value)
    assert problem["location"] == "server.port"
    assert problem["source"] == "env:CAMPAIGN_BRIDGE_SERVER__PORT"
    assert problem["expected"] == "greater than or equal to 1"
