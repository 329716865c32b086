"""The control API client shared by the sandbox fixtures of every provider.

The Mailchimp, Brevo and listmonk sandboxes have the same control API under ``/_sandbox``
(``seed``, ``faults``, ``limits``, ``clock``, ``state``, ``reset``): ``SandboxControl`` speaks it
through a transport, over HTTP (a served sandbox) or in the test process (an app).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import httpx

__all__ = [
    "SandboxControl",
    "SandboxControlError",
    "Transport",
    "asgi_transport",
    "http_transport",
    "run_in_control_thread",
]

T = TypeVar("T")

#: one worker thread (with an event loop per call) runs in-process control calls
_CONTROL_THREAD = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sandbox-control")


class SandboxControlError(AssertionError):
    """A control API call was refused (the message has the sandbox's answer)."""


class Transport(Protocol):
    def __call__(self, method: str, path: str, body: Any) -> tuple[int, Any]: ...


class SandboxControl:
    """The sandbox's control API (``/_sandbox``): seeding, faults, latency, clock, state."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Any control call (``path`` relative to ``/_sandbox``); its JSON answer."""
        status, answer = self._transport(method.upper(), path, body)
        if status >= 300:
            raise SandboxControlError(f"{method} /_sandbox{path} answered {status}: {answer}")
        return answer

    def seed(self, lists: Sequence[Mapping[str, Any]] = (), **more: Any) -> Any:
        """Bulk seeding: ``lists`` and the provider's other keys (Mailchimp: ``api_keys``,
        ``oauth_tokens``; Brevo: ``contacts``, ``attributes``, ``folders``; listmonk:
        ``subscribers``, ``users``) — see docs/sandbox.md."""
        return self.call("POST", "/seed", {"lists": list(lists), **more})

    def add_fault(
        self,
        kind: str,
        *,
        method: str | None = None,
        path: str | None = None,
        count: int | None = 1,
        rate: float = 1.0,
        delay: float = 30.0,
    ) -> Any:
        """Make matching API requests fail: ``kind`` is an HTTP status the provider answers
        (``429``, ``500``, ``503``, ...), ``timeout`` (hold ``delay`` s) or ``drop``; ``path`` a
        regular expression searched in the path below the API prefix."""
        rule = {"kind": kind, "method": method, "path": path, "count": count, "rate": rate}
        rule["delay"] = delay
        return self.call("POST", "/faults", rule)

    def clear_faults(self) -> Any:
        return self.call("DELETE", "/faults")

    def set_limits(self, **knobs: Any) -> Any:
        """``latency``, ``latency_per_item`` and the provider's own knobs."""
        return self.call("POST", "/limits", knobs)

    def advance_clock(self, seconds: float) -> Any:
        return self.call("POST", "/clock", {"advance": seconds})

    def state(self) -> Any:
        return self.call("GET", "/state")

    def reset(self, *, seed_default: bool = True) -> Any:
        return self.call("POST", "/reset", {"seed_default": seed_default})


def _token_headers(token: str | None) -> dict[str, str]:
    return {"X-Sandbox-Token": token} if token else {}


def _answer(response: httpx.Response) -> tuple[int, Any]:
    return response.status_code, (response.json() if response.content else None)


def http_transport(control_url: str, token: str | None) -> Transport:
    """Control calls over HTTP to ``control_url`` (``…/_sandbox``)."""
    headers = _token_headers(token)

    def send(method: str, path: str, body: Any) -> tuple[int, Any]:
        response = httpx.request(method, control_url + path, json=body, headers=headers, timeout=60)
        return _answer(response)

    return send


def run_in_control_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` in a worker thread's own event loop, so that control calls work from
    sync tests and from inside a running loop alike."""
    return _CONTROL_THREAD.submit(asyncio.run, coroutine).result()


def asgi_transport(app: Any, token: str | None) -> Transport:
    """Control calls to an in-process app's ``/_sandbox`` through ``httpx.ASGITransport``."""
    headers = _token_headers(token)

    async def request(method: str, path: str, body: Any) -> tuple[int, Any]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test/_sandbox"
        ) as client:
            return _answer(await client.request(method, path, json=body, headers=headers))

    def send(method: str, path: str, body: Any) -> tuple[int, Any]:
        return run_in_control_thread(request(method, path, body))

    return send
