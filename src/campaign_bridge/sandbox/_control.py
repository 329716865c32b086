"""The control-API verbs (``/_sandbox/…``) every emulator answers alike: faults, clock, limits,
seed, reset and save. A provider builds a ``ControlVerbs`` with its own words (how it says
"400", how it writes a time, how it saves and seeds) and lists ``verbs.routes(Route)`` beside
its provider-specific control routes (simulating subscribers, keys, activity rates, …).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from campaign_bridge.sandbox._asgi import Reply

__all__ = ["ControlVerbs", "body_of"]

R = TypeVar("R")


class ControlRequest(Protocol):
    """What the shared verbs read of a provider's ``ApiRequest``."""

    @property
    def sandbox(self) -> Any: ...

    @property
    def body(self) -> Any: ...


Handler = Callable[[ControlRequest], Reply]


def body_of(request: ControlRequest) -> dict[str, Any]:
    """The JSON body when it is an object, else ``{}`` (control calls take no other)."""
    return request.body if isinstance(request.body, dict) else {}


@dataclass(frozen=True)
class ControlVerbs:
    """The shared verbs, in one provider's words. The sandbox they act on has ``faults``
    (``_common.FaultBox``), ``clock`` (``_common.Clock``), ``latency`` (``_common.Latency``)
    and ``config`` (with ``state_file`` and each of ``knobs``)."""

    #: a 400 answer with this message, as the provider words it
    bad: Callable[[str], Exception]
    #: the sandbox's current time, as the provider writes times
    now_text: Callable[[Any], str]
    save_state: Callable[[Any, str], None]
    dump_state: Callable[[Any], dict[str, Any]]
    reset_state: Callable[[Any], None]
    seed: Callable[[Any, Mapping[str, Any]], dict[str, Any]]
    seed_default: Callable[[Any], object]
    #: ``GET /health`` (and what ``POST /reset`` answers)
    health: Callable[[Any], dict[str, Any]]
    #: config settings ``/limits`` reads and sets, with the type each is converted to
    knobs: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    #: more of the ``/limits`` answer (after the knobs and before the latency)
    more_limits: Callable[[Any], dict[str, Any]] = lambda _sandbox: {}
    #: sets what ``more_limits`` shows from a ``POST /limits`` body (raises ``ValueError``)
    set_more_limits: Callable[[Any, Mapping[str, Any]], None] = lambda _sandbox, _body: None

    def routes(self, route: Callable[[str, str, Handler], R]) -> list[R]:
        """The verbs' routes, made with the provider's ``Route(method, path, handler)``."""
        return [
            route("GET", "/health", self.get_health),
            route("POST", "/reset", self.reset),
            route("POST", "/seed", self.seed_from),
            route("GET", "/state", self.state),
            route("GET", "/faults", self.faults),
            route("POST", "/faults", self.add_faults),
            route("DELETE", "/faults", self.clear_faults),
            route("GET", "/limits", self.limits),
            route("POST", "/limits", self.limits),
            route("GET", "/clock", self.clock),
            route("POST", "/clock", self.clock),
            route("POST", "/save", self.save),
        ]

    def get_health(self, request: ControlRequest) -> Reply:
        return Reply(self.health(request.sandbox))

    def reset(self, request: ControlRequest) -> Reply:
        """Forget everything (the clock offset stays), then seed the default account unless
        ``{"seed_default": false}``."""
        sandbox = request.sandbox
        self.reset_state(sandbox)
        sandbox.faults.clear()
        if body_of(request).get("seed_default", True):
            self.seed_default(sandbox)
        return self.get_health(request)

    def seed_from(self, request: ControlRequest) -> Reply:
        try:
            return Reply(self.seed(request.sandbox, body_of(request)))
        except (TypeError, ValueError, KeyError) as exc:
            raise self.bad(f"Bad seed body: {exc}") from None

    def state(self, request: ControlRequest) -> Reply:
        data = self.dump_state(request.sandbox)
        data["limits"] = self.limits_view(request.sandbox)
        return Reply(data)

    def faults(self, request: ControlRequest) -> Reply:
        return Reply({"faults": request.sandbox.faults.to_json()})

    def add_faults(self, request: ControlRequest) -> Reply:
        """One rule (the body) or several (``{"faults": [...]}``)."""
        body = body_of(request)
        specs = body["faults"] if isinstance(body.get("faults"), list) else [body]
        for spec in specs:
            try:
                request.sandbox.faults.add(dict(spec))
            except (TypeError, ValueError) as exc:
                raise self.bad(str(exc)) from None
        return self.faults(request)

    def clear_faults(self, request: ControlRequest) -> Reply:
        request.sandbox.faults.clear()
        return Reply(status=204)

    def limits_view(self, sandbox: Any) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(sandbox.config, name) for name in self.knobs}
        out.update(self.more_limits(sandbox))
        out["latency"] = sandbox.latency.fixed
        out["latency_per_item"] = sandbox.latency.per_item
        return out

    def limits(self, request: ControlRequest) -> Reply:
        sandbox = request.sandbox
        body = body_of(request)
        try:
            for name, kind in self.knobs.items():
                if name in body:
                    setattr(sandbox.config, name, kind(body[name]))
            self.set_more_limits(sandbox, body)
            if "latency" in body:
                sandbox.latency.fixed = float(body["latency"])
            if "latency_per_item" in body:
                sandbox.latency.per_item = float(body["latency_per_item"])
        except (TypeError, ValueError, AttributeError) as exc:
            raise self.bad(f"Bad limits: {exc}") from None
        return Reply(self.limits_view(sandbox))

    def clock(self, request: ControlRequest) -> Reply:
        """``{"advance": seconds}`` moves the clock on; either way, the time and offset."""
        sandbox = request.sandbox
        body = body_of(request)
        if "advance" in body:
            sandbox.clock.advance(float(body["advance"]))
        return Reply({"now": self.now_text(sandbox), "offset": sandbox.clock.offset_seconds})

    def save(self, request: ControlRequest) -> Reply:
        """Save the snapshot to ``{"path": ...}`` or the configured state file."""
        path = body_of(request).get("path") or request.sandbox.config.state_file
        if not path:
            raise self.bad('No state file configured; pass {"path": ...}')
        self.save_state(request.sandbox, str(path))
        return Reply({"saved": str(path)})
