"""pytest fixtures for testing code against the listmonk sandbox (no listmonk instance needed).

- ``listmonk_app`` (``InProcessListmonk``): the ASGI app in the test process; talk to it with
  ``sandbox.client()`` (an ``httpx.AsyncClient`` over ``httpx.ASGITransport``, logged in);
- ``listmonk_server`` (``ServedListmonk``): uvicorn on a free port in a thread of the test
  process; any HTTP client in the process can use ``base_url`` (the instance root; the API is
  under ``/api``) with ``auth_header`` or BasicAuth ``(api_user, api_token)``.

Both have ``api_user``, ``api_token``, ``auth_header``, ``list_id`` (listmonk's install-time
"Default list"), ``sandbox`` (the state, for white-box asserts) and ``control``, a
``SandboxControl`` for the control API (``seed``, ``add_fault``, ``clear_faults``,
``set_limits``, ``advance_clock``, ``state``, ``reset``, or any ``call``). Override
``listmonk_config`` (a ``ListmonkConfig``) for the emulator's knobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from campaign_bridge.sandbox.listmonk import (
    ListmonkConfig,
    ListmonkSandbox,
    create_app,
    run_in_thread,
)
from campaign_bridge.testing._control import SandboxControl, asgi_transport, http_transport

__all__ = [
    "InProcessListmonk",
    "ServedListmonk",
    "listmonk_app",
    "listmonk_config",
    "listmonk_server",
]


class _ListmonkAccount:
    """What both fixtures read off the sandbox (new values after ``control.reset()``)."""

    sandbox: ListmonkSandbox

    @property
    def api_user(self) -> str:
        return self.sandbox.default_user

    @property
    def api_token(self) -> str:
        """The API user's token."""
        return self.sandbox.default_token

    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"token {self.api_user}:{self.api_token}"}

    @property
    def list_id(self) -> int | None:
        return next(iter(self.sandbox.lists), None)


@dataclass
class InProcessListmonk(_ListmonkAccount):
    """The listmonk sandbox app in this process (``httpx.ASGITransport``)."""

    app: Any
    sandbox: ListmonkSandbox
    control: SandboxControl
    base_url: str = "http://listmonk.sandbox.test"

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` on the instance root, with the API user's token."""
        kwargs.setdefault("headers", self.auth_header)
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=self.base_url, **kwargs
        )


@dataclass
class ServedListmonk(_ListmonkAccount):
    """The listmonk sandbox on a real socket, in a thread of this process."""

    base_url: str
    control: SandboxControl
    sandbox: ListmonkSandbox

    @property
    def control_url(self) -> str:
        return f"{self.base_url}/_sandbox"


@pytest.fixture
def listmonk_config() -> ListmonkConfig:
    """The listmonk emulator's settings; override this fixture to change them."""
    return ListmonkConfig()


@pytest.fixture
def listmonk_app(listmonk_config: ListmonkConfig) -> InProcessListmonk:
    """A fresh in-process listmonk sandbox (no socket): ``client()`` gives an
    ``httpx.AsyncClient``."""
    app = create_app(listmonk_config)
    control = SandboxControl(asgi_transport(app, listmonk_config.control_token))
    return InProcessListmonk(app=app, sandbox=app.state.sandbox, control=control)


@pytest.fixture
def listmonk_server(listmonk_config: ListmonkConfig) -> Iterator[ServedListmonk]:
    """A fresh listmonk sandbox on a free port, served by a thread of the test process."""
    token = listmonk_config.control_token
    with run_in_thread(config=listmonk_config) as handle:
        yield ServedListmonk(
            base_url=handle.base_url,
            control=SandboxControl(http_transport(handle.control_url, token)),
            sandbox=handle.sandbox,
        )
