"""Every error campaign-bridge raises, branched by what the caller should do about it.

- :class:`FatalError`: stop the run and tell the operator what to fix.
- :class:`RetriableError`: a passing condition (HTTP 429, 5xx, timeouts); back off and try again.
- :class:`RecordError`: one record is rejected; keep it with its reason and go on.
- :class:`ConfigurationError`: the configuration is wrong; carries every problem found at once.

Foreign exceptions (httpx, database drivers) are translated at the boundary that meets them and
chained with ``raise ... from exc``. Messages never carry secrets or contact email addresses.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BridgeError",
    "ConfigProblem",
    "ConfigurationError",
    "DatabaseError",
    "FatalError",
    "NetworkConfigurationError",
    "NetworkRetriableError",
    "ProviderAuthError",
    "ProviderError",
    "RecordError",
    "RetriableError",
    "SourceError",
    "StateStoreError",
]


class BridgeError(Exception):
    """Root of every error campaign-bridge raises on purpose."""

    exit_code: int = 1


class FatalError(BridgeError):
    """The run cannot continue; the message says what the operator should do."""


class RetriableError(BridgeError):
    """A transient condition. ``retry_after`` is the provider's hint in seconds, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RecordError(BridgeError):
    """One record cannot be sent; it is kept with ``reason_code`` and the run goes on."""

    def __init__(self, reason_code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration: where, what, and what is expected instead."""

    location: str
    problem: str
    expected: str = ""

    def __str__(self) -> str:
        text = f"{self.location}: {self.problem}"
        return f"{text} (expected {self.expected})" if self.expected else text


class ConfigurationError(BridgeError):
    """The configuration is invalid. Carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[ConfigProblem], *, source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"invalid configuration{where}: {count} {noun}"]
        lines += [f"  - {problem}" for problem in self.problems]
        super().__init__("\n".join(lines))


class DatabaseError(FatalError):
    """A database could not be reached or refused an operation."""


class StateStoreError(DatabaseError):
    """The bridge's own state store is unreachable, or its schema is not current."""


class SourceError(DatabaseError):
    """The user's source database or query cannot be read."""


class ProviderError(FatalError):
    """The provider answered in a way the run cannot go on from."""

    def __init__(
        self, message: str, *, status: int | None = None, title: str = "", detail: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.detail = detail


class ProviderAuthError(ProviderError):
    """The provider rejected the credentials (bad key, wrong data centre, disabled key)."""


class NetworkConfigurationError(FatalError):
    """The network path to a service is misconfigured (TLS, proxy, DNS, nothing listening):
    retrying cannot help. ``kind`` names the fault (see ``providers/_network.py``)."""

    def __init__(self, message: str, *, kind: str, url: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.url = url


class NetworkRetriableError(RetriableError):
    """A passing network fault (reset, timeout, a restart in progress) that outlasted the
    retries. ``kind`` names the fault."""

    def __init__(
        self, message: str, *, kind: str, url: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.kind = kind
        self.url = url


class WebhookPayloadError(BridgeError):
    """A webhook delivery is not a well-formed provider payload; it is refused with 400."""
