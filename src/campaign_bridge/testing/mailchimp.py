"""pytest fixtures for testing code against the Mailchimp sandbox (no Mailchimp account needed).

Three ways to run the sandbox, from fastest to most isolated:

- ``mailchimp_app`` (``InProcessSandbox``): the ASGI app in the test process; talk to it with
  ``sandbox.client()`` (an ``httpx.AsyncClient`` over ``httpx.ASGITransport``);
- ``mailchimp_server`` (``ServedSandbox``): uvicorn on a free port in a thread of the test
  process; any HTTP client in the process can use ``base_url``;
- ``mailchimp_process`` (``ServedSandbox``): ``campaign-bridge sandbox serve --port 0`` in its
  own process, for clients that are processes themselves.

Every one has ``api_key`` and ``list_id`` (a seeded audience), the audiences seeded from the
``mailchimp_audiences`` fixture in ``audiences`` (their ids, in order), and ``control`` — a
``MailchimpControl`` (a ``SandboxControl``) for the control API: ``seed``, ``add_fault``,
``clear_faults``, ``set_limits``, ``advance_clock``, ``state``, ``reset``, ``oauth_token``, or
any ``call``.
Override ``mailchimp_config`` (a ``SandboxConfig``) for the emulator's knobs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaign_bridge.sandbox.mailchimp import SandboxConfig, create_app
from campaign_bridge.sandbox.mailchimp.app import Dispatcher
from campaign_bridge.sandbox.mailchimp.model import Sandbox
from campaign_bridge.sandbox.mailchimp.server import run_in_thread
from campaign_bridge.testing._control import (
    SandboxControl,
    SandboxControlError,
    Transport,
    http_transport,
    run_in_control_thread,
)

__all__ = [
    "InProcessSandbox",
    "MailchimpControl",
    "SandboxControl",
    "SandboxControlError",
    "ServedSandbox",
    "mailchimp_app",
    "mailchimp_audiences",
    "mailchimp_config",
    "mailchimp_process",
    "mailchimp_server",
    "start_process",
]

START_TIMEOUT = 30.0


class MailchimpControl(SandboxControl):
    """``SandboxControl`` with the Mailchimp sandbox's own calls."""

    def oauth_token(self) -> str:
        return str(self.call("POST", "/oauth-tokens", {})["access_token"])


def _local_transport(dispatcher: Dispatcher) -> Transport:
    """Control calls straight to the app's control dispatcher (no HTTP, no token)."""

    def send(method: str, path: str, body: Any) -> tuple[int, Any]:
        coroutine = dispatcher.execute(method, path, {}, body, base_url="http://sandbox.test")
        reply = run_in_control_thread(coroutine)
        return reply.status, reply.body

    return send


@dataclass
class InProcessSandbox:
    """The sandbox app in this process (``httpx.ASGITransport``)."""

    app: Any
    sandbox: Sandbox
    control: MailchimpControl
    audiences: list[str] = field(default_factory=list)
    base_url: str = "http://mailchimp.sandbox.test/3.0"

    @property
    def api_key(self) -> str:
        return self.sandbox.default_api_key

    @property
    def list_id(self) -> str:
        return self.sandbox.default_list_id

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` on ``/3.0`` with the API key (Basic auth)."""
        kwargs.setdefault("auth", ("anystring", self.api_key))
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=self.base_url, **kwargs
        )


@dataclass
class ServedSandbox:
    """A sandbox on a real socket (a thread of this process, or its own process)."""

    root_url: str
    api_key: str
    list_id: str
    control: MailchimpControl
    audiences: list[str] = field(default_factory=list)
    sandbox: Sandbox | None = None  # the state, when served by this process
    process: subprocess.Popen[str] | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/3.0`` (no trailing slash)."""
        return f"{self.root_url}/3.0"

    @property
    def control_url(self) -> str:
        return f"{self.root_url}/_sandbox"


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("campaign-bridge")
    if script.exists():
        return [str(script)]
    found = shutil.which("campaign-bridge")
    if found is None:
        raise RuntimeError("the campaign-bridge command is not installed in this environment")
    return [found]


@contextlib.contextmanager
def start_process(*args: str, control_token: str | None = None) -> Iterator[ServedSandbox]:
    """Run ``campaign-bridge sandbox serve --port 0 [args]``; stop it (SIGTERM) on exit.

    The server's log goes to a temporary file, quoted in the error when it does not start."""
    command = [*_cli(), "sandbox", "serve", "--port", "0", *args]
    if control_token:
        command += ["--control-token", control_token]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_BRIDGE_")}
    env["PYTHONUNBUFFERED"] = "1"
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(  # noqa: S603 (our own CLI, arguments from the caller)
            command, stdout=subprocess.PIPE, stderr=log, text=True, env=env
        )
        try:
            lines = _banner(process, log)
            root_url = lines["root"]
            served = ServedSandbox(
                root_url=root_url,
                api_key=lines["key"],
                list_id=lines["audience"],
                control=MailchimpControl(http_transport(root_url + "/_sandbox", control_token)),
                process=process,
            )
            yield served
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()


def _banner(process: subprocess.Popen[str], log: Any) -> dict[str, str]:
    """Read the three lines ``serve`` prints, then wait until it answers."""
    assert process.stdout is not None
    found: dict[str, str] = {}
    deadline = time.monotonic() + START_TIMEOUT
    for line in process.stdout:
        text = line.strip()
        if text.startswith("Mailchimp sandbox on "):
            found["root"] = text.split()[3].removesuffix("/3.0")
        elif text.startswith("API key:"):
            found["key"] = text.split(":", 1)[1].strip()
        elif text.startswith("audience:"):
            found["audience"] = text.split(":", 1)[1].strip()
            break
    while "root" in found and time.monotonic() < deadline:
        try:
            httpx.get(found["root"] + "/3.0/ping", timeout=1)
            return found
        except httpx.TransportError:
            time.sleep(0.05)
    log.seek(0)
    raise RuntimeError(f"campaign-bridge sandbox serve did not start:\n{log.read()[-3000:]}")


def _seed(control: SandboxControl, audiences: Sequence[Mapping[str, Any]]) -> list[str]:
    if not audiences:
        return []
    answer = control.seed(lists=audiences)
    return [str(entry["id"]) for entry in answer["lists"]]


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def mailchimp_config() -> SandboxConfig:
    """The emulator's settings; override this fixture to change them."""
    return SandboxConfig()


@pytest.fixture
def mailchimp_audiences() -> list[dict[str, Any]]:
    """Audiences to seed into each sandbox fixture (control API ``/seed`` ``lists``); override
    it, e.g. ``[{"name": "Shop", "members": [{"email_address": ..., "status": ...}]}]``."""
    return []


@pytest.fixture
def mailchimp_app(
    mailchimp_config: SandboxConfig, mailchimp_audiences: list[dict[str, Any]]
) -> InProcessSandbox:
    """A fresh in-process sandbox (no socket): ``client()`` gives an ``httpx.AsyncClient``."""
    app = create_app(mailchimp_config)
    control = MailchimpControl(_local_transport(app.state.control_dispatcher))
    return InProcessSandbox(
        app=app,
        sandbox=app.state.sandbox,
        control=control,
        audiences=_seed(control, mailchimp_audiences),
    )


@pytest.fixture
def mailchimp_server(
    mailchimp_config: SandboxConfig, mailchimp_audiences: list[dict[str, Any]]
) -> Iterator[ServedSandbox]:
    """A fresh sandbox on a free port, served by a thread of the test process."""
    with run_in_thread(config=mailchimp_config) as handle:
        control = MailchimpControl(
            http_transport(handle.control_url, mailchimp_config.control_token)
        )
        yield ServedSandbox(
            root_url=handle.root_url,
            api_key=handle.api_key,
            list_id=handle.list_id,
            control=control,
            audiences=_seed(control, mailchimp_audiences),
            sandbox=handle.sandbox,
        )


@pytest.fixture
def mailchimp_process(
    mailchimp_config: SandboxConfig, mailchimp_audiences: list[dict[str, Any]]
) -> Iterator[ServedSandbox]:
    """A fresh ``campaign-bridge sandbox serve`` process on a free port (``dc``, ``seed`` and
    ``control_token`` come from ``mailchimp_config``)."""
    args = ["--dc", mailchimp_config.dc, "--seed", str(mailchimp_config.seed)]
    with start_process(*args, control_token=mailchimp_config.control_token) as served:
        served.audiences = _seed(served.control, mailchimp_audiences)
        yield served
