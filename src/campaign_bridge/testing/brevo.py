"""pytest fixtures for testing code against the Brevo sandbox (no Brevo account needed).

- ``brevo_app`` (``InProcessBrevo``): the ASGI app in the test process; talk to it with
  ``sandbox.client()`` (an ``httpx.AsyncClient`` over ``httpx.ASGITransport``, ``api-key`` set);
- ``brevo_server`` (``ServedBrevo``): uvicorn on a free port in a thread of the test process;
  any HTTP client in the process can use ``base_url`` (``…/v3``) with the ``api-key`` header.

Both have ``api_key``, ``list_id`` (the list a fresh Brevo account has), ``sandbox`` (the state,
for white-box asserts) and ``control``, a ``SandboxControl`` for the control API (``seed``,
``add_fault``, ``clear_faults``, ``set_limits``, ``advance_clock``, ``state``, ``reset``, or any
``call``). Override ``brevo_config`` (a ``BrevoConfig``) for the emulator's knobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from campaign_bridge.sandbox.brevo import BrevoConfig, BrevoSandbox, create_app, run_in_thread
from campaign_bridge.testing._control import SandboxControl, asgi_transport, http_transport

__all__ = ["InProcessBrevo", "ServedBrevo", "brevo_app", "brevo_config", "brevo_server"]


class _BrevoAccount:
    """What both fixtures read off the sandbox (new values after ``control.reset()``)."""

    sandbox: BrevoSandbox

    @property
    def api_key(self) -> str:
        """The default API key."""
        return self.sandbox.default_api_key

    @property
    def list_id(self) -> int | None:
        return next(iter(self.sandbox.lists), None)


@dataclass
class InProcessBrevo(_BrevoAccount):
    """The Brevo sandbox app in this process (``httpx.ASGITransport``)."""

    app: Any
    sandbox: BrevoSandbox
    control: SandboxControl
    base_url: str = "http://brevo.sandbox.test/v3"

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` on ``/v3`` with the ``api-key`` header."""
        kwargs.setdefault("headers", {"api-key": self.api_key})
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=self.base_url, **kwargs
        )


@dataclass
class ServedBrevo(_BrevoAccount):
    """The Brevo sandbox on a real socket, in a thread of this process."""

    root_url: str
    control: SandboxControl
    sandbox: BrevoSandbox

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v3`` (no trailing slash)."""
        return f"{self.root_url}/v3"

    @property
    def control_url(self) -> str:
        return f"{self.root_url}/_sandbox"


@pytest.fixture
def brevo_config() -> BrevoConfig:
    """The Brevo emulator's settings; override this fixture to change them."""
    return BrevoConfig()


@pytest.fixture
def brevo_app(brevo_config: BrevoConfig) -> InProcessBrevo:
    """A fresh in-process Brevo sandbox (no socket): ``client()`` gives an
    ``httpx.AsyncClient``."""
    app = create_app(brevo_config)
    control = SandboxControl(asgi_transport(app, brevo_config.control_token))
    return InProcessBrevo(app=app, sandbox=app.state.sandbox, control=control)


@pytest.fixture
def brevo_server(brevo_config: BrevoConfig) -> Iterator[ServedBrevo]:
    """A fresh Brevo sandbox on a free port, served by a thread of the test process."""
    with run_in_thread(config=brevo_config) as handle:
        yield ServedBrevo(
            root_url=handle.root_url,
            control=SandboxControl(http_transport(handle.control_url, brevo_config.control_token)),
            sandbox=handle.sandbox,
        )
