"""The dispatcher's route table finds what trying every route in order finds."""

from __future__ import annotations

import re

import pytest

from campaign_bridge.sandbox.mailchimp.app import create_app
from campaign_bridge.sandbox.mailchimp.wire import Problem, Route

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _scan(routes: list[Route], method: str, path: str) -> tuple[str, object]:
    """Every route in order: the reference answer (route or 405 Allow or 404)."""
    allowed: list[str] = []
    for route in routes:
        found = route.regex.match(path)
        if found is None:
            continue
        if route.method == method:
            return "route", (route, found.groupdict())
        allowed.append(route.method)
    if allowed:
        return "405", ", ".join(dict.fromkeys(allowed))
    return "404", None


def _paths(routes: list[Route]) -> list[str]:
    """Each template with sample values, plus near misses (extra/missing segments, slashes)."""
    paths = {"/", "/nowhere", "/lists/a/unknown/b", "/lists//members"}
    for route in routes:
        path = re.sub(r"\{\w+\}", "abc123", route.path)
        paths |= {path, path + "/", path + "/extra", path.rsplit("/", 1)[0]}
    return sorted(paths)


@pytest.mark.parametrize("method", METHODS)
def test_route_table_agrees_with_a_scan(method: str) -> None:
    dispatcher = create_app().state.sandbox.dispatcher
    routes = dispatcher.routes
    for raw in _paths(routes):
        path = "/" + raw.strip("/") if raw.strip("/") else "/"
        expected = _scan(routes, method, path)
        try:
            answer: tuple[str, object] = ("route", dispatcher.match(method, path))
        except Problem as problem:
            answer = (str(problem.status), problem.headers.get("Allow"))
        assert answer == expected, (method, path)


def test_a_route_must_start_with_a_literal_segment() -> None:
    from campaign_bridge.sandbox.mailchimp.app import Dispatcher

    sandbox = create_app().state.sandbox
    with pytest.raises(ValueError, match="first segment must be literal"):
        Dispatcher(sandbox, [Route("GET", "/{anything}", lambda req: None)])  # type: ignore[arg-type,return-value]
