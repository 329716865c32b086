"""docs/cli.md documents every visible command and each of its options."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign_bridge.cli import app
from campaign_bridge.cli._reference import PROG, command_paths

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
REGENERATE = "run `campaign-bridge config docs --cli -o docs/cli.md`"


def _sections() -> dict[str, str]:
    text = DOCS.read_text(encoding="utf-8")
    sections = {}
    for chunk in text.split("\n## `")[1:]:
        title, _, body = chunk.partition("`")
        sections[title] = body
    return sections


@pytest.mark.parametrize(
    ("title", "command"),
    [(" ".join((PROG, *path)), command) for path, command in command_paths(app)],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_command_and_options_are_documented(title: str, command: object) -> None:
    sections = _sections()
    assert title in sections, f"docs/cli.md has no section for `{title}`: {REGENERATE}"
    body = sections[title]
    for param in command.params:  # type: ignore[attr-defined]
        if param.param_type_name == "option":
            assert f"`{param.opts[0]}`" in body, f"{title} {param.opts[0]}: {REGENERATE}"


def test_reference_lists_the_foundation_commands() -> None:
    sections = _sections()
    for title in ("init", "migrate", "config show", "config validate"):
        assert f"{PROG} {title}" in sections
    assert "campaign-bridge config docs" not in sections  # hidden
