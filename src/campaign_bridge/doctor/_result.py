"""One check's outcome (ok / warn / next / fail / skip, with the exact fix) and exit codes.

Exit codes, for a runbook, a systemd ``ExecStartPre`` and a CI job:

- ``0``: every check is ok, a warning or a next step (e.g. migrations pending before the first
  ``migrate upgrade``); nothing stops the release.
- ``1``: at least one check failed; its line says what to fix.
- ``2``: the configuration is invalid (every problem is listed); nothing else could be checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "CheckResult",
    "CheckStatus",
    "exit_code",
    "fail",
    "next_step",
    "ok",
    "skip",
    "warn",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

CONFIGURATION = "configuration"


class CheckStatus(StrEnum):
    OK = "ok"
    WARN = "warn"
    NEXT = "next"  # not wrong: the step the runbook does next (e.g. `migrate upgrade`)
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: CheckStatus
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {key: str(value) for key, value in asdict(self).items()}

    def renamed(self, name: str) -> CheckResult:
        return CheckResult(name, self.status, self.message, self.fix)


def ok(name: str, message: str) -> CheckResult:
    return CheckResult(name, CheckStatus.OK, message)


def warn(name: str, message: str, fix: str = "") -> CheckResult:
    return CheckResult(name, CheckStatus.WARN, message, fix)


def next_step(name: str, message: str, fix: str) -> CheckResult:
    return CheckResult(name, CheckStatus.NEXT, message, fix)


def fail(name: str, message: str, fix: str) -> CheckResult:
    return CheckResult(name, CheckStatus.FAIL, message, fix)


def skip(name: str, message: str) -> CheckResult:
    return CheckResult(name, CheckStatus.SKIP, message)


def exit_code(results: Sequence[CheckResult]) -> int:
    """2 when the configuration is invalid, 1 when any check failed, else 0."""
    if any(r.name == CONFIGURATION and r.status is CheckStatus.FAIL for r in results):
        return EXIT_CONFIG
    return EXIT_FAILED if any(r.status is CheckStatus.FAIL for r in results) else EXIT_OK
