"""The plumbing the three emulators share (sandbox/_asgi, _persistence, _deliveries, _control),
checked on its own; each emulator's own tests check it in place."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaign_bridge.sandbox._asgi import (
    NoRoute,
    PathRoute,
    Reply,
    match_route,
    path_regex,
    send_reply,
)
from campaign_bridge.sandbox._deliveries import changed_settings, settings_view
from campaign_bridge.sandbox._persistence import write_atomically
from campaign_bridge.sandbox.brevo import BrevoConfig
from campaign_bridge.sandbox.brevo import create_app as brevo_app
from campaign_bridge.sandbox.brevo.webhooks import Settings as BrevoSettings
from campaign_bridge.sandbox.listmonk import ListmonkConfig
from campaign_bridge.sandbox.listmonk import create_app as listmonk_app
from campaign_bridge.sandbox.mailchimp import SandboxConfig
from campaign_bridge.sandbox.mailchimp import create_app as mailchimp_app
from campaign_bridge.sandbox.mailchimp.webhooks import Settings as MailchimpSettings


def _noop() -> None:
    return None


ROUTES = [
    PathRoute("GET", "/lists/{list_id}", _noop),
    PathRoute("PATCH", "/lists/{list_id}", _noop),
    PathRoute("GET", "/lists/{list_id}/members", _noop),
]


def test_the_first_matching_route_wins_with_its_parameters() -> None:
    route, params = match_route(ROUTES, "PATCH", "/lists/abc")
    assert route is ROUTES[1]
    assert params == {"list_id": "abc"}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("DELETE", "/lists/abc", ["GET", "PATCH"]), ("GET", "/nothing", []), ("GET", "/lists", [])],
)
def test_no_route_says_which_methods_would_do(method: str, path: str, allowed: list[str]) -> None:
    with pytest.raises(NoRoute) as caught:
        match_route(ROUTES, method, path)
    assert caught.value.allowed == allowed


def test_parameters_are_whole_segments_and_a_trailing_slash_is_optional_on_request() -> None:
    strict = path_regex("/lists/{list_id}")
    assert strict.match("/lists/a/b") is None
    assert strict.match("/lists/a/") is None
    lenient = path_regex("/lists/{list_id}/", optional_slash=True)
    assert lenient.match("/lists/a/") is not None
    assert lenient.match("/lists/a") is not None


def _sent(reply: Reply, **options: Any) -> tuple[int, dict[bytes, bytes], bytes]:
    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append(message)

    asyncio.run(send_reply(send, reply, dumps=lambda v: repr(v).encode(), **options))
    start, body = messages
    return start["status"], dict(start["headers"]), body["body"]


def test_a_reply_is_encoded_with_the_providers_types() -> None:
    status, headers, body = _sent(Reply({"a": 1}), json_type="application/json")
    assert (status, headers[b"content-type"], body) == (200, b"application/json", b"{'a': 1}")
    assert headers[b"content-length"] == str(len(body)).encode()
    status, headers, body = _sent(
        Reply({"detail": "x"}, status=404, headers={"X-Request-Id": "r1"}),
        json_type="application/json",
        error_type="application/problem+json",
        fixed=((b"vary", b"Accept-Encoding"),),
    )
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"vary"] == b"Accept-Encoding"
    assert headers[b"x-request-id"] == b"r1"
    _, headers, body = _sent(Reply(raw=b"csv", media_type="text/csv"), json_type="x")
    assert (headers[b"content-type"], body) == (b"text/csv", b"csv")
    status, _, body = _sent(Reply(status=204), json_type="application/json")
    assert (status, body) == (204, b"")


def test_a_snapshot_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "state.json"
    write_atomically(target, b'{"v":1}')
    assert target.read_bytes() == b'{"v":1}'

    with pytest.raises(TypeError):  # the write fails half-way: the old snapshot stays
        write_atomically(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b'{"v":1}'
    (target.parent / "taken").mkdir()
    with pytest.raises(OSError):  # the rename fails: nothing is left behind either
        write_atomically(target.parent / "taken", b"x")
    assert sorted(os.listdir(target.parent)) == ["state.json", "taken"]  # no temporary file


@pytest.mark.parametrize("settings", [BrevoSettings(), MailchimpSettings()])
def test_delivery_settings_change_only_what_is_given(settings: Any) -> None:
    changed = changed_settings(settings, {"retry_compression": 1000, "retry_delays": [1, "2"]})
    assert changed.retry_compression == 1000.0
    assert changed.retry_delays == (1.0, 2.0)
    assert changed.timeout == settings.timeout
    assert settings_view(changed)["retry_delays"] == [1.0, 2.0]
    with pytest.raises(ValueError):
        changed_settings(settings, {"timeout": "soon"})


def test_a_flag_is_changed_only_where_the_provider_has_it() -> None:
    changed = changed_settings(MailchimpSettings(), {"validate": False}, flags=("validate",))
    assert changed.validate is False
    assert changed_settings(MailchimpSettings(), {}, flags=("validate",)).validate is True


def _control_call(create: Any, config: Any, headers: dict[str, str]) -> tuple[int, Any]:
    async def call() -> tuple[int, Any]:
        transport = httpx.ASGITransport(app=create(config))
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as c:
            answer = await c.post("/_sandbox/seed", content=b'{"lists": [', headers=headers)
            return answer.status_code, answer.json()

    return asyncio.run(call())


@pytest.mark.parametrize(
    ("create", "config", "refused", "not_json"),
    [
        (
            mailchimp_app,
            SandboxConfig(control_token="t0k3n"),
            "Send the control token in X-Sandbox-Token.",
            "The request body is not valid JSON.",
        ),
        (
            brevo_app,
            BrevoConfig(control_token="t0k3n"),
            "Send the control token in X-Sandbox-Token",
            "The request body is not valid JSON",
        ),
        (
            listmonk_app,
            ListmonkConfig(control_token="t0k3n"),
            "Send the control token in X-Sandbox-Token",
            "The body is not valid JSON",
        ),
    ],
    ids=["mailchimp", "brevo", "listmonk"],
)
def test_a_control_call_is_checked_before_it_runs_in_each_providers_words(
    create: Any, config: Any, refused: str, not_json: str
) -> None:
    def message(body: dict[str, Any]) -> str:
        return str(body.get("detail") or body.get("message"))

    status, body = _control_call(create, config, {})
    assert (status, message(body)) == (401, refused)
    status, body = _control_call(create, config, {"X-Sandbox-Token": "t0k3n"})
    assert (status, message(body)) == (400, not_json)
