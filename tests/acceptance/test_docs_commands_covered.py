"""Run what you document: every command line in README.md's and docs/*.md's shell blocks is
either executed by a test or listed in NOT_RUN with the reason it cannot run here.

A command line is a line of a fenced block marked sh, bash, shell, console (the `$ ` lines) or
unmarked, starting with a program a reader would type (campaign-bridge, .venv/bin/..., make,
docker, systemctl, curl, python3, ...); `[OPTIONS]` synopses (docs/cli.md) are not commands.

RUN_BY says which test runs it. To keep that honest each entry names a witness: text the test
file must contain — the doc's name when the test reads the doc's blocks itself and runs them, or
the distinctive arguments it runs when the test spells the command out. An entry that no
longer matches any documented command fails too, so the registry cannot rot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.acceptance.test_docs_runbooks import fenced_blocks

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
PROGRAM = re.compile(
    r"^(campaign-bridge|\.venv/bin/\S+|make|docker|podman|systemctl|journalctl|python3?|curl"
    r"|pip3?|sudo|psql|mysql|mariadb|sqlite3|uv|kubectl|helm|pytest|ruff|mypy|git|openssl|ssh"
    r"|export|cd|cp|mkdir|chmod|chown|install|useradd|tar|jq)\b"
)
SHELL_KINDS = {"", "sh", "bash", "shell", "console", "text"}


@dataclass(frozen=True)
class Doc:
    doc: str  # path from the repository root
    command: str  # regular expression for the whole line, "[docker] " first in a `sh docker` block


@dataclass(frozen=True)
class RunBy(Doc):
    test: str  # path from the repository root
    witness: str  # text the test file contains (see the module docstring)


@dataclass(frozen=True)
class NotRun(Doc):
    reason: str


README, RUNBOOKS = (
    "tests/acceptance/test_readme_commands.py",
    "tests/acceptance/test_docs_runbooks.py",
)
RUN_BY = [
    RunBy("README.md", r"make demo", "tests/acceptance/test_readme_demo.py", "README.md"),
    RunBy("README.md", r"(\.venv/bin/)?campaign-bridge (?!doctor --concurrency|config show).*",
          README, '"## Using it"'),  # also runs "config validate" of the conf.d section
    RunBy("README.md", r"(export CAMPAIGN_BRIDGE_.*|campaign-bridge (config validate|config show"
          r"|doctor --concurrency.*))",
          "tests/acceptance/test_readme_confd.py", "### Many syncs: a directory of files"),
    RunBy("docs/deploy.md", r"(?!\[).*",  # every line of its plain `sh` blocks, in one shell
          "tests/acceptance/test_deploy_runbook.py", '"docs" / "deploy.md"'),
    RunBy("docs/deploy.md",
          r"\[systemd\] systemctl daemon-reload && systemctl enable --now campaign-bridge",
          "tests/acceptance/test_deploy_runbook.py", "the unit's ExecStartPre and ExecStart"),
    RunBy("docs/sandbox.md", r"(campaign-bridge sandbox serve --port 8089 .*|curl .*|pytest .*)",
          "tests/integration/sandbox/test_docs_sandbox.py", '"docs" / "sandbox.md"'),
    RunBy("docs/sandbox.md", r".*(--provider brevo|sandbox_brevo\.py).*",
          "tests/integration/sandbox_brevo/test_docs.py", '"bench/sandbox_brevo.py"'),
    RunBy("docs/sandbox.md", r".*(--provider listmonk|sandbox_listmonk\.py).*",
          "tests/integration/sandbox_listmonk/test_docs.py", '"bench/sandbox_listmonk.py"'),
    RunBy("docs/scaling.md", r"campaign-bridge .*", RUNBOOKS, '"scaling.md"'),
    RunBy("docs/scaling.md", r"\.venv/bin/python bench/scale\.py .*", RUNBOOKS, '"bench/scale.py"'),
    RunBy("docs/pull.md", r"campaign-bridge pull.*", RUNBOOKS, '"pull.md"'),
    RunBy("docs/pull.md", r"\.venv/bin/python bench/pull\.py .*", RUNBOOKS, '"bench/pull.py"'),
    RunBy("docs/state-store.md", r"campaign-bridge migrate .*", RUNBOOKS, '"state-store.md"'),
    RunBy("docs/cli.md", r"campaign-bridge .*", RUNBOOKS, '"cli.md"'),
    RunBy("docs/operations.md", r"campaign-bridge serve.*", RUNBOOKS, '"operations.md", "campaign'),
    # Benchmarks: every documented run, at a size that takes seconds.
    RunBy("docs/push.md", r"\.venv/bin/python bench/push\.py.*", RUNBOOKS, '"bench/push.py"'),
    RunBy("docs/operations.md", r"\.venv/bin/python bench/webhooks\.py.*", RUNBOOKS,
          '"bench/webhooks.py"'),
    RunBy("docs/push.md", r"make consent-model",
          "tests/integration/consent_model/test_make_target.py", '"consent-model"]'),
    # Spelled out by the operate tests against their own data (sync and people differ).
    RunBy("docs/operations.md", r"campaign-bridge runs.*",
          "tests/integration/operate/test_operate_cli.py", '"runs", "crm", "--limit"'),
    RunBy("docs/operations.md", r"campaign-bridge rejected.*",
          "tests/integration/operate/test_operate_cli.py", '"rejected", "retry", "crm"'),
    RunBy("docs/operations.md", r"campaign-bridge history .*",
          "tests/integration/operate/test_operate_cli.py", '"history", "person1@mail.test"'),
    RunBy("docs/operations.md", r"campaign-bridge state show .*",
          "tests/integration/operate/test_operate_cli.py", '"state", "show", "crm"'),
    RunBy("docs/operations.md", r"campaign-bridge state reset .*",
          "tests/integration/operate/test_operate_cli.py", '"--stream", "push:source", "--yes"'),
    RunBy("docs/privacy.md", r"campaign-bridge forget (?!--pending).*",
          "tests/integration/privacy/test_forget.py", '"2", "crm", "--yes"'),
    RunBy("docs/privacy.md", r"campaign-bridge forget --pending",
          "tests/integration/privacy/test_erasure_signals.py", '"forget", "--pending"'),
    RunBy("docs/privacy.md", r"campaign-bridge subject-export .*",
          "tests/integration/privacy/test_subject_export.py", '"--sync", "crm", "--out"'),
    RunBy("docs/privacy.md", r"campaign-bridge purge.*",
          "tests/integration/privacy/test_retention.py", '"purge", "--dry-run"'),
]  # fmt: skip

NO_ENGINE = "no container engine on the test machine"
NOT_RUN = [
    NotRun("README.md", r"make test", "runs the whole suite: a test running it would recurse"),
    NotRun("docs/deploy.md", r"\[docker\] .*", NO_ENGINE + "; test_deploy_kit runs the compose "
           "services' commands as processes, test_deploy_runbook these blocks where `docker info` "
           "answers"),
    NotRun("docs/deploy.md", r"\[systemd\] (useradd|chown|cp) .*", "a system user and the unit "
           "installed: needs root and systemd; test_deploy_runbook runs the unit's ExecStartPre "
           "and ExecStart with its EnvironmentFile and Environment instead"),
    NotRun("docs/sandbox.md", r"docker .*", NO_ENGINE + "; test_docs_sandbox runs them where "
           "`docker info` answers"),
]  # fmt: skip


def documented_commands() -> list[tuple[str, str]]:
    """(doc, command line) for every command line of every doc, in order."""
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        doc = path.relative_to(REPO).as_posix()
        for info, lines in fenced_blocks(path):
            kind = info.split(" ")[0]
            if kind not in SHELL_KINDS:
                continue
            for line in lines:
                text = line.strip()
                if kind == "console":
                    if not text.startswith("$ "):
                        continue
                    text = text[2:]
                text = re.sub(r"\s+#.*$", "", text).strip().removesuffix("&").strip()
                text = re.sub(r"\s+", " ", text)
                if PROGRAM.match(text) and "[OPTIONS]" not in text:
                    marker = info.split(" ")[1:]  # `sh docker`, `sh systemd`
                    found.append((doc, "".join(f"[{m}] " for m in marker) + text))
    return found


def _matches(entry: Doc, doc: str, command: str) -> bool:
    return entry.doc == doc and re.fullmatch(entry.command, command) is not None


def test_the_extraction_finds_the_documented_commands() -> None:
    commands = documented_commands()
    assert ("docs/scaling.md", "campaign-bridge worker --concurrency 4") in commands
    assert ("docs/pull.md", "campaign-bridge pull customers --json") in commands
    assert ("README.md", "make demo") in commands
    assert len(commands) > 80, len(commands)


def test_every_documented_command_is_run_or_says_why_not() -> None:
    entries: list[Doc] = [*RUN_BY, *NOT_RUN]
    orphans = [
        f"{doc}: {command}"
        for doc, command in documented_commands()
        if not any(_matches(entry, doc, command) for entry in entries)
    ]
    assert not orphans, (
        "documented commands no test runs; run them in a test (tests/acceptance/"
        "test_docs_runbooks.py shows how) and add a RunBy entry, or add a NotRun entry with the "
        "reason:\n  " + "\n  ".join(orphans)
    )


@pytest.mark.parametrize("entry", RUN_BY, ids=lambda e: f"{e.doc}:{e.command[:30]}")
def test_each_run_by_entry_is_true(entry: RunBy) -> None:
    test = REPO / entry.test
    assert test.is_file(), f"{entry.test} does not exist"
    assert entry.witness in test.read_text(encoding="utf-8"), (
        f"{entry.test} does not contain {entry.witness!r}: does it still run {entry.command}?"
    )
    assert any(_matches(entry, d, c) for d, c in documented_commands()), (
        f"{entry} matches no documented command: remove it"
    )


@pytest.mark.parametrize("entry", NOT_RUN, ids=lambda e: f"{e.doc}:{e.command[:30]}")
def test_each_not_run_entry_still_matches_a_command(entry: NotRun) -> None:
    assert any(_matches(entry, d, c) for d, c in documented_commands()), (
        f"{entry} matches no documented command: remove it"
    )
