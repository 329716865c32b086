"""docs/configuration.md and examples/campaign-bridge.toml cover every setting of the model."""

from __future__ import annotations

import tomllib
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from campaign_bridge._config_view import reference_markdown
from campaign_bridge.config import PROVIDERS, Settings, SyncConfig, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "configuration.md"
EXAMPLE = ROOT / "examples" / "campaign-bridge.toml"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        annotation = inner[0] if len(inner) == 1 else annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _leaves(
    model: type[BaseModel] = Settings, prefix: str = "", provider: str = ""
) -> Iterator[tuple[str, str]]:
    """(dotted path, provider) of every leaf setting, walking sub-models, syncs.<name>.* and
    each destination model recursively."""
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        if model is Settings and name == "syncs":
            yield from _leaves(SyncConfig, "syncs.<name>")
        elif (sub := _model_in(info.annotation)) is not None:
            yield from _leaves(sub, path, provider)
        elif name == "destination":
            for tag, destination in PROVIDERS.items():
                yield from _leaves(destination, path, tag)
        else:
            yield path, provider


def leaf_settings() -> list[str]:
    return sorted({path for path, _ in _leaves()})


def heading_of(path: str, provider: str) -> str:
    section = path.rpartition(".")[0]
    if provider:
        return f'## `[{section}]` with `provider = "{provider}"`'
    return f"## `[{section}]`" if section else "## Top level"


def env_name(path: str) -> str:
    return "CAMPAIGN_BRIDGE_" + "__".join(part.upper() for part in path.split("."))


def test_the_walk_sees_nested_settings() -> None:
    leaves = set(leaf_settings())
    assert {"log_level", "server.port", "syncs.<name>.destination.api_key"} <= leaves
    assert {"syncs.<name>.destination.api_token", "syncs.<name>.destination.webhook_sources"} <= (
        leaves
    )
    assert "syncs.<name>.writeback.status_column" in leaves
    assert len(leaves) > 40


@pytest.mark.parametrize(("path", "provider"), sorted(_leaves()))
def test_every_setting_is_documented_with_its_environment_variable(
    path: str, provider: str
) -> None:
    docs = DOCS.read_text(encoding="utf-8")
    name = path.rpartition(".")[2]
    heading = heading_of(path, provider)
    assert heading in docs, f"docs/configuration.md has no section {heading}"
    body = docs.split(heading, 1)[1].split("\n## ", 1)[0]
    row = f"| `{name}` | `{env_name(path)}` |"
    assert row in body, f"{path} is not documented in docs/configuration.md ({row})"


def test_reference_is_current() -> None:
    assert DOCS.read_text(encoding="utf-8") == reference_markdown(), (
        "docs/configuration.md is stale: run `campaign-bridge config docs -o docs/configuration.md`"
    )


@pytest.mark.parametrize("path", sorted(leaf_settings()))
def test_example_file_mentions_every_setting(path: str) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    name = path.rsplit(".", 1)[-1]
    mentioned = any(
        line.lstrip("# ").startswith((f"{name} =", f"{name}_file =", f"[syncs.customers.{name}]"))
        for line in text.splitlines()
    )
    assert mentioned, f"examples/campaign-bridge.toml does not show {path}"


def test_example_file_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(EXAMPLE, environ={})
    assert list(settings.syncs) == ["customers"]
    parsed = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert "customers" in parsed["syncs"]
