"""Pieces every provider emulator needs: an advanceable clock, seeded ids, fault rules and the
response-time (latency) model.

They know nothing of any provider's wire format: a fault rule says *what* to inject (a kind
name), the emulator's app decides what that looks like on its wire. The Brevo and listmonk
sandboxes use them all; the Mailchimp sandbox its fault rules (its ``Clock`` and ``Ids`` in
``mailchimp/model.py`` add cached timestamps and Mailchimp's id shapes).
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

__all__ = [
    "Clock",
    "FaultBox",
    "FaultRule",
    "Ids",
    "Latency",
    "Observable",
    "SandboxSettings",
    "StateHook",
]


@dataclass
class SandboxSettings:
    """The knobs every emulator has; each provider's config adds its own."""

    #: seed of ids, keys and random fault rates
    seed: int = 1
    #: seed the default account (a key, a list) at start
    seed_default: bool = True
    #: response time per request and per item (seconds)
    latency: float = 0.0
    latency_per_item: float = 0.0
    #: freeze the clock at this instant (None: real time)
    start_time: datetime | None = None
    #: require ``X-Sandbox-Token`` on the control API
    control_token: str | None = None
    #: persistence: JSON snapshot path and autosave period (0: save on shutdown only)
    state_file: str | None = None
    autosave_seconds: float = 0.0


class Clock:
    """A UTC clock that tests move forward; frozen at ``start`` when one is given."""

    def __init__(self, start: datetime | None = None) -> None:
        self._frozen = start.astimezone(UTC) if start is not None else None
        self._offset = timedelta(0)

    def now(self) -> datetime:
        base = self._frozen if self._frozen is not None else datetime.now(UTC)
        return base + self._offset

    def timestamp(self) -> float:
        """``now()`` as epoch seconds."""
        if self._frozen is None:
            return time.time() + self._offset.total_seconds()
        return self._frozen.timestamp() + self._offset.total_seconds()

    def advance(self, seconds: float) -> datetime:
        self._offset += timedelta(seconds=seconds)
        return self.now()

    def set_offset(self, seconds: float) -> None:
        self._offset = timedelta(seconds=seconds)

    @property
    def offset_seconds(self) -> float:
        return self._offset.total_seconds()


class Ids:
    """Deterministic identifiers: per-name counters and a seeded random source."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._counters: dict[str, int] = {}

    def next(self, name: str, start: int = 1) -> int:
        """The next value of counter ``name`` (the first is ``start``)."""
        value = self._counters.get(name, start - 1) + 1
        self._counters[name] = value
        return value

    def peek(self, name: str) -> int:
        return self._counters.get(name, 0)

    def hex(self, digits: int) -> str:
        return f"{self._rng.getrandbits(digits * 4):0{digits}x}"

    def random(self) -> float:
        return self._rng.random()

    def snapshot(self) -> dict[str, Any]:
        version, internal, gauss = self._rng.getstate()
        return {"counters": dict(self._counters), "rng": [version, list(internal), gauss]}

    def restore(self, data: Mapping[str, Any]) -> None:
        self._counters = {str(k): int(v) for k, v in data.get("counters", {}).items()}
        if "rng" in data:
            version, internal, gauss = data["rng"]
            self._rng.setstate((version, tuple(internal), gauss))


@dataclass
class FaultRule:
    """Inject ``kind`` into the next ``count`` requests (None: every one) whose method and path
    (a regular expression searched in the path below the API prefix) match, each with
    probability ``rate`` (seeded). ``delay`` is how long a ``timeout`` fault holds a request."""

    kind: str
    method: str | None = None
    path: str | None = None
    count: int | None = 1
    rate: float = 1.0
    delay: float = 30.0
    fired: int = 0
    _regex: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path) if self.path else None

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method:
            return False
        return self._regex is None or self._regex.search(path) is not None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("_regex", None)
        return out


class FaultBox:
    """The fault rules of one emulator; thread-safe. ``kinds`` are the kinds it accepts."""

    def __init__(self, kinds: Sequence[str], seed: int) -> None:
        self.kinds = tuple(kinds)
        self.rules: list[FaultRule] = []
        self._rng = random.Random(seed ^ 0x5EED)
        self._lock = threading.Lock()

    def add(self, spec: Mapping[str, Any]) -> FaultRule:
        """Add a rule from its JSON form; ``ValueError`` names what is wrong."""
        allowed = {"kind", "method", "path", "count", "rate", "delay"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ValueError(f"unknown fault fields {unknown}; use {sorted(allowed)}")
        kind = str(spec.get("kind", ""))
        if kind not in self.kinds:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {list(self.kinds)}")
        try:
            rule = FaultRule(**{k: v for k, v in spec.items() if k in allowed})
        except (TypeError, re.error) as exc:
            raise ValueError(f"bad fault rule: {exc}") from None
        with self._lock:
            self.rules.append(rule)
        return rule

    def append(self, rule: FaultRule) -> None:
        """Add a rule made already (its kind is not checked)."""
        with self._lock:
            self.rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def pick(self, method: str, path: str) -> FaultRule | None:
        """The rule to apply to this request, if any (scripted counts are consumed)."""
        with self._lock:
            for rule in self.rules:
                if not rule.matches(method, path):
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                rule.fired += 1
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count <= 0:
                        self.rules.remove(rule)
                return rule
            return None

    def to_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_json() for rule in self.rules]


@dataclass
class Latency:
    """The response time a client sees: an answer leaves no sooner than ``fixed`` +
    ``per_item`` x items seconds after its request arrived (the emulator's own processing time
    counts towards it)."""

    fixed: float = 0.0
    per_item: float = 0.0
    #: the clock arrivals and answers are timed with (tests may replace it)
    timer: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def wait_before_answer(self, arrived: float, items: int) -> float:
        target = arrived + self.fixed + self.per_item * max(items, 0)
        return max(0.0, target - self.timer())


E = TypeVar("E")


@dataclass
class StateHook:
    """How persistence (``dump``/``load``, JSON-able values) and ``reset`` cover a module's own
    state (``Observable.register_state``)."""

    dump: Callable[[], Any]
    load: Callable[[Any], None]
    reset: Callable[[], None]


class Observable(Generic[E]):
    """What endpoint modules hook into a sandbox: listeners of its events (``E``: a member or
    contact change) and their own state, covered by persistence and reset."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[E], None]] = []
        self._hooks: dict[str, StateHook] = {}

    def listen(self, listener: Callable[[E], None]) -> Callable[[], None]:
        """Register ``listener``; returns a function that unregisters it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @property
    def has_listeners(self) -> bool:
        return bool(self._listeners)

    def emit(self, event: E) -> None:
        for listener in list(self._listeners):
            listener(event)

    def register_state(
        self,
        name: str,
        dump: Callable[[], Any],
        load: Callable[[Any], None],
        reset: Callable[[], None],
    ) -> None:
        """Let persistence (``dump``/``load``, JSON-able values) and ``reset`` cover a module."""
        self._hooks[name] = StateHook(dump, load, reset)

    @property
    def state_hooks(self) -> Mapping[str, StateHook]:
        return self._hooks

    def dump_extensions(self) -> dict[str, Any]:
        """The registered modules' state, by name (a snapshot's ``"extensions"``)."""
        return {name: hook.dump() for name, hook in self._hooks.items()}

    def load_extensions(self, data: Mapping[str, Any]) -> None:
        for name, hook in self._hooks.items():
            if name in data:
                hook.load(data[name])

    def reset_extensions(self) -> None:
        for hook in self._hooks.values():
            hook.reset()
