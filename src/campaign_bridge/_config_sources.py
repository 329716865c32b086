"""Layered configuration loading with provenance: defaults < TOML file < environment < CLI.

Each layer is turned into a nested dict plus a map from every value it sets (a dotted path such
as ``syncs.customers.destination.api_key``) to where the value came from:

- ``default`` (nothing set it), ``file:<path>`` (the TOML file, or the included file that defines
  the sync: see :mod:`campaign_bridge._config_include`),
  ``file:<path> (<key>_file)`` (a secret read from the file named by ``<key>_file`` in the TOML),
- ``env:<VAR>``, ``env-file:<VAR>_FILE`` (a secret read from the file named by that variable),
- ``cli`` (a command-line flag).

The layers are merged key by key, validated once by the model, and every problem (syntax, unknown
keys, unreadable secret files, failed validation) is collected into one
:class:`~campaign_bridge.errors.ConfigurationError`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError
from pydantic.fields import FieldInfo

from campaign_bridge._config_include import CONFIG_DIR_ENV_VAR, read_includes
from campaign_bridge.errors import ConfigProblem, ConfigurationError

if TYPE_CHECKING:
    from campaign_bridge.config import Settings

__all__ = [
    "CONFIG_ENV_VAR",
    "LoadedSettings",
    "SourcedProblem",
    "env_var_name",
    "load_settings",
    "load_settings_with_provenance",
    "model_variants",
]

ENV_PREFIX = "CAMPAIGN_BRIDGE_"
ENV_DELIMITER = "__"
CONFIG_ENV_VAR = "CAMPAIGN_BRIDGE_CONFIG"
DEFAULT_CONFIG_FILE = "campaign-bridge.toml"
DEFAULT = "default"
CLI = "cli"

Path_ = tuple[str, ...]


@dataclass(frozen=True)
class SourcedProblem(ConfigProblem):
    """A :class:`ConfigProblem` that also says which source the offending value came from."""

    origin: str = ""

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} [from {self.origin}]" if self.origin else text


@dataclass
class LoadedSettings:
    """Validated settings plus where each explicitly set value came from."""

    settings: Settings
    provenance: dict[str, str]
    config_file: Path | None
    warnings: list[str] = field(default_factory=list)
    included_files: list[Path] = field(default_factory=list)

    def origin_of(self, dotted: str) -> str:
        """Where the value at ``dotted`` came from; ``default`` when no source set it."""
        return _origin_lookup(self.provenance, dotted) or DEFAULT


# ---------------------------------------------------------------------------------------------
# The model's shape, as far as loading needs it
# ---------------------------------------------------------------------------------------------

Kind = Literal["model", "mapping", "list", "scalar"]


@dataclass(frozen=True)
class _Node:
    kind: Kind
    model: type[BaseModel] | None = None
    item: _Node | None = None
    optional: bool = False
    info: FieldInfo | None = None
    # A union of models chosen by a tag (the destination's ``provider``): every alternative,
    # by tag. ``model`` is then the first; ``fields`` merges the alternatives' fields.
    variants: tuple[tuple[str, type[BaseModel]], ...] = ()

    @property
    def secret(self) -> bool:
        extra = self.info.json_schema_extra if self.info is not None else None
        return bool(extra.get("secret")) if isinstance(extra, dict) else False

    @property
    def fields(self) -> dict[str, FieldInfo]:
        if self.variants:
            merged: dict[str, FieldInfo] = {}
            for _tag, model in self.variants:
                for name, info in model.model_fields.items():
                    merged.setdefault(name, info)
            return merged
        return dict(self.model.model_fields) if self.model is not None else {}

    def child(self, key: str) -> _Node | None:
        if self.kind == "model":
            info = self.fields.get(key)
            return None if info is None else _node(info.annotation, info)
        if self.kind in ("mapping", "list"):
            return self.item
        return None


def _tagged_models(args: tuple[Any, ...]) -> tuple[tuple[str, type[BaseModel]], ...]:
    """``(tag, model)`` for a union written as ``Annotated[Model, Tag("name")] | ...``."""
    found: list[tuple[str, type[BaseModel]]] = []
    for arg in args:
        if get_origin(arg) is not Annotated:
            return ()
        model, *extras = get_args(arg)
        tag = next((extra.tag for extra in extras if isinstance(extra, Tag)), None)
        if tag is None or not (isinstance(model, type) and issubclass(model, BaseModel)):
            return ()
        found.append((tag, model))
    return tuple(found)


def model_variants(annotation: Any) -> tuple[tuple[str, type[BaseModel]], ...]:
    """``(tag, model)`` of each alternative when ``annotation`` is a tagged union of models
    (a sync's destination); empty otherwise."""
    return _node(annotation).variants


def _node(annotation: Any, info: FieldInfo | None = None) -> _Node:
    optional = False
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        optional = len(args) != len(get_args(annotation))
        variants = _tagged_models(tuple(args))
        if variants:
            return _Node(
                "model", model=variants[0][1], optional=optional, info=info, variants=variants
            )
        annotation = args[0] if len(args) == 1 else str
        origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _Node("model", model=annotation, optional=optional, info=info)
    if origin is dict:
        return _Node("mapping", item=_node(get_args(annotation)[1]), optional=optional, info=info)
    if origin is list:
        return _Node("list", item=_node(get_args(annotation)[0]), optional=optional, info=info)
    return _Node("scalar", optional=optional, info=info)


def _root() -> _Node:
    from campaign_bridge.config import Settings

    return _Node("model", model=Settings)


def env_var_name(dotted: str) -> str:
    """The variable for a dotted setting path: ``server.port`` -> ``..._SERVER__PORT``."""
    return ENV_PREFIX + ENV_DELIMITER.join(part.upper() for part in dotted.split("."))


def dotted(path: Path_ | tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_settings(
    config_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load, merge and validate the configuration; see :func:`load_settings_with_provenance`."""
    return load_settings_with_provenance(config_path, overrides, environ).settings


def load_settings_with_provenance(
    config_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Load settings from defaults, the TOML file, the environment and ``overrides`` (the CLI).

    ``config_path`` (or ``CAMPAIGN_BRIDGE_CONFIG``) names the file explicitly, and then it must
    exist; otherwise ``./campaign-bridge.toml`` is read if present. Files it includes (and
    ``CAMPAIGN_BRIDGE_CONFIG_DIR``) add syncs. ``overrides`` maps dotted
    paths (``"log_level"``, ``"server.port"``) or nested dicts to values. Raises
    :class:`ConfigurationError` carrying every problem found.
    """
    from campaign_bridge.config import Settings

    env = dict(os.environ if environ is None else environ)
    problems: list[ConfigProblem] = []
    warnings: list[str] = []

    path, explicit = _config_file(config_path, env)
    file_data: dict[str, Any] = {}
    file_prov: dict[Path_, str] = {}
    file_ok = True
    if path is not None:
        file_ok = _read_file_layer(path, explicit, file_data, file_prov, problems)
    used_path = path if path is not None and (explicit or path.exists()) else None
    included: list[Path] = []
    if file_ok:
        included, file_ok = read_includes(
            used_path, env, file_data, file_prov, problems, warnings, _read_file_layer
        )

    env_data: dict[str, Any] = {}
    env_prov: dict[Path_, str] = {}
    _read_env_layer(env, file_data, env_data, env_prov, problems, warnings)

    cli_data: dict[str, Any] = {}
    cli_prov: dict[Path_, str] = {}
    for key, value in (overrides or {}).items():
        _set_leaves(cli_data, cli_prov, tuple(key.split(".")), value, CLI)

    data, prov = _merge(file_data, file_prov, env_data, env_prov)
    data, prov = _merge(data, prov, cli_data, cli_prov)
    source = str(used_path) if used_path is not None else ""

    if not file_ok:  # the file could not be read or parsed: validating the rest only adds noise
        raise ConfigurationError(problems, source=source)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        known = {problem.location for problem in problems}
        # A secret whose file could not be read is also "missing": say it once.
        problems.extend(p for p in _translate(exc, prov) if p.location not in known)
        raise ConfigurationError(problems, source=source) from None
    if problems:
        raise ConfigurationError(problems, source=source)
    provenance = {dotted(path_): origin for path_, origin in sorted(prov.items())}
    return LoadedSettings(settings, provenance, used_path, warnings, included)


def _config_file(config_path: Path | None, env: Mapping[str, str]) -> tuple[Path | None, bool]:
    if config_path is not None:
        return Path(config_path), True
    named = env.get(CONFIG_ENV_VAR, "").strip()
    if named:
        return Path(named), True
    default = Path(DEFAULT_CONFIG_FILE)
    return (default, False) if default.is_file() else (None, False)


# --- the TOML file ---------------------------------------------------------------------------

_TOML_POSITION = re.compile(r"\(at line (?P<line>\d+), column (?P<col>\d+)\)")


def _read_file_layer(
    path: Path,
    explicit: bool,
    data: dict[str, Any],
    prov: dict[Path_, str],
    problems: list[ConfigProblem],
) -> bool:
    origin = f"file:{path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not explicit:
            return True
        problems.append(
            ConfigProblem(
                str(path),
                "the configuration file does not exist",
                "an existing TOML file (named by --config or CAMPAIGN_BRIDGE_CONFIG); "
                "`campaign-bridge init` writes a starter one",
            )
        )
        return False
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(
            ConfigProblem(
                str(path),
                f"cannot read the configuration file: {_reason(exc)}",
                "a readable UTF-8 TOML file",
            )
        )
        return False
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        where = str(path)
        if position:
            where = f"{path}:{position['line']}:{position['col']}"
            message = _TOML_POSITION.sub("", message).strip()
        problems.append(
            ConfigProblem(where, f"TOML syntax error: {message}", "valid TOML (https://toml.io)")
        )
        return False
    for leaf, _value in _leaves(parsed, ()):
        prov[leaf] = origin
    _resolve_file_secrets(parsed, _root(), (), path, prov, problems)
    data.update(parsed)
    return True


def _resolve_file_secrets(
    data: dict[str, Any],
    node: _Node,
    path: Path_,
    config_file: Path,
    prov: dict[Path_, str],
    problems: list[ConfigProblem],
) -> None:
    """Replace ``<key>_file = "/path"`` entries by the secret read from that path."""
    if node.kind == "mapping" and node.item is not None and node.item.kind == "model":
        for key, value in data.items():
            if isinstance(value, dict):
                _resolve_file_secrets(value, node.item, (*path, key), config_file, prov, problems)
        return
    if node.kind != "model" or node.model is None:
        return
    fields = node.fields
    for key in list(data):
        value = data[key]
        child = node.child(key)
        if child is not None:
            if isinstance(value, dict):
                _resolve_file_secrets(value, child, (*path, key), config_file, prov, problems)
            continue
        base = key.removesuffix("_file")
        if key == base or base not in fields:
            continue  # an unknown key: validation reports it with suggestions
        target = _node(fields[base].annotation, fields[base])
        location = dotted((*path, base))
        origin = f"file:{config_file}"
        _drop(prov, (*path, key))
        del data[key]
        if not target.secret:
            problems.append(
                SourcedProblem(
                    dotted((*path, key)),
                    f"{base} is not a secret, so it cannot be read from a file",
                    f"{base} set directly",
                    origin,
                )
            )
            continue
        if base in data:
            problems.append(
                SourcedProblem(
                    location,
                    f"both {base} and {key} are set",
                    f"only one of {base} or {key}",
                    origin,
                )
            )
            continue
        secret = _read_secret_file(
            value, target, location, f"{key} in {config_file}", f"{origin} ({key})", problems
        )
        if secret is not _INVALID:
            data[base] = secret
            prov[(*path, base)] = f"{origin} ({key})"


# --- the environment -------------------------------------------------------------------------


def _read_env_layer(
    env: Mapping[str, str],
    file_data: Mapping[str, Any],
    data: dict[str, Any],
    prov: dict[Path_, str],
    problems: list[ConfigProblem],
    warnings: list[str],
) -> None:
    loader_vars = (CONFIG_ENV_VAR, CONFIG_DIR_ENV_VAR)
    names = [n for n in env if n.startswith(ENV_PREFIX) and n not in loader_vars]
    # Whole sections (JSON) first, then the more specific variables inside them.
    for name in sorted(names, key=lambda n: (n.count(ENV_DELIMITER), n)):
        raw = env[name]
        parts = name[len(ENV_PREFIX) :].split(ENV_DELIMITER)
        resolved = _resolve_env_name(parts, file_data)
        if isinstance(resolved, str):
            if resolved == "unknown-top":
                warnings.append(f"{name} is not a campaign-bridge setting; it was ignored")
            else:
                problems.append(
                    SourcedProblem(
                        name, resolved, "a variable listed in docs/configuration.md", f"env:{name}"
                    )
                )
            continue
        path, node, from_file = resolved
        location = dotted(path)
        if from_file:
            if prov.get(path) == f"env:{name.removesuffix('_FILE')}":
                problems.append(_both_env(location, name.removesuffix("_FILE")))
                continue
            value = _read_secret_file(raw, node, location, name, f"env-file:{name}", problems)
            origin = f"env-file:{name}"
        else:
            value = _env_value(raw, node, location, name, problems)
            origin = f"env:{name}"
        if value is _INVALID:
            continue
        _set_leaves(data, prov, path, value, origin)


def _both_env(location: str, name: str) -> SourcedProblem:
    return SourcedProblem(
        location,
        f"both {name} and {name}_FILE are set",
        f"only one of {name} or {name}_FILE",
        f"env:{name}",
    )


def _resolve_env_name(
    parts: list[str], file_data: Mapping[str, Any]
) -> tuple[Path_, _Node, bool] | str:
    """Map the parts of a variable name to a setting path, its node, and whether it is *_FILE."""
    node = _root()
    path: Path_ = ()
    existing: Any = file_data
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if not part:
            return f"empty name segment in {ENV_DELIMITER.join(parts)!r}"
        if node.kind == "model":
            key = part.lower()
            child = node.child(key)
            if child is None and last and key.endswith("_file"):
                base = key.removesuffix("_file")
                target = node.child(base)
                if target is not None and target.secret:
                    return (*path, base), target, True
                if target is not None:
                    return f"{dotted((*path, base))} is not a secret; it cannot be read from a file"
            if child is None:
                if index == 0:
                    return "unknown-top"
                hint = _suggest(key, list(node.fields))
                return f"unknown setting {dotted((*path, key))!r}{hint}"
        elif node.kind == "mapping" and node.item is not None:
            key = _match_key(part, existing, lower=node.item.kind == "model")
            child = node.item
        else:
            return f"{dotted(path)} has no setting {part.lower()!r}"
        path = (*path, key)
        node = child
        existing = existing.get(key) if isinstance(existing, Mapping) else None
    return path, node, False


def _match_key(part: str, existing: Any, *, lower: bool) -> str:
    """A mapping key from an env name: the file's key if it matches ignoring case and -/_."""
    wanted = part.lower().replace("-", "_")
    if isinstance(existing, Mapping):
        for key in existing:
            if str(key).lower().replace("-", "_") == wanted:
                return str(key)
    return part.lower() if lower else part


_INVALID: Any = object()


def _env_value(
    raw: str, node: _Node, location: str, name: str, problems: list[ConfigProblem]
) -> Any:
    if node.kind in ("model", "mapping") or (node.kind == "list" and raw.lstrip().startswith("[")):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            value = _INVALID
            detail = f"is not valid JSON ({exc.msg} at position {exc.pos})"
        else:
            wanted = list if node.kind == "list" else dict
            detail = "" if isinstance(value, wanted) else f"is JSON but not a {wanted.__name__}"
        if value is _INVALID or detail:
            shape = "a JSON array" if node.kind == "list" else "a JSON object"
            problems.append(SourcedProblem(location, detail, shape, f"env:{name}"))
            return _INVALID
        return value
    if node.kind == "list":
        return [item.strip() for item in raw.split(",") if item.strip()]
    if node.optional and raw == "":
        return None
    return raw


def _read_secret_file(
    raw: Any, node: _Node, location: str, named_by: str, origin: str, problems: list[ConfigProblem]
) -> Any:
    if not isinstance(raw, str) or not raw.strip():
        problems.append(
            SourcedProblem(
                location, f"{named_by} is empty", "the path of a file holding the secret", origin
            )
        )
        return _INVALID
    try:
        text = Path(raw.strip()).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(
            SourcedProblem(
                location,
                f"cannot read the secret file named by {named_by}: {_reason(exc)}",
                "a readable file containing the secret",
                origin,
            )
        )
        return _INVALID
    if node.kind == "list":
        return [line.strip() for line in text.splitlines() if line.strip()]
    return text.rstrip("\r\n")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return str(exc)


# --- merging ---------------------------------------------------------------------------------


def _leaves(value: Any, path: Path_) -> Iterator[tuple[Path_, Any]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, (*path, str(key)))
    else:
        yield path, value


def _drop(prov: dict[Path_, str], path: Path_) -> None:
    for existing in [p for p in prov if p[: len(path)] == path or path[: len(p)] == p]:
        del prov[existing]


def _set_leaves(
    data: dict[str, Any], prov: dict[Path_, str], path: Path_, value: Any, origin: str
) -> None:
    """Set ``value`` at ``path`` in ``data`` (merging into dicts) and record its leaves' origin."""
    for leaf, item in _leaves(value, path):
        target = data
        for key in leaf[:-1]:
            nested = target.get(key)
            if not isinstance(nested, dict):
                nested = {}
                target[key] = nested
            target = nested
        target[leaf[-1]] = item
        _drop(prov, leaf)
        prov[leaf] = origin


def _merge(
    base: dict[str, Any],
    base_prov: dict[Path_, str],
    top: dict[str, Any],
    top_prov: dict[Path_, str],
) -> tuple[dict[str, Any], dict[Path_, str]]:
    data = _deep_copy(base)
    prov = dict(base_prov)
    for leaf, value in _leaves(top, ()):
        if not leaf:
            continue
        _set_leaves(
            data, prov, leaf, value, top_prov.get(leaf, _origin_lookup_path(top_prov, leaf))
        )
    return data, prov


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value


def _origin_lookup_path(prov: Mapping[Path_, str], path: Path_) -> str:
    for size in range(len(path), 0, -1):
        if path[:size] in prov:
            return prov[path[:size]]
    return DEFAULT


def _origin_lookup(prov: Mapping[str, str], location: str) -> str:
    """The origin of ``location`` or of its closest ancestor that a source set."""
    probe = location
    while probe:
        if probe in prov:
            return prov[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return ""


# --- validation errors -> problems -----------------------------------------------------------


def _translate(exc: ValidationError, prov: Mapping[Path_, str]) -> list[ConfigProblem]:
    text_prov = {dotted(path): origin for path, origin in prov.items()}
    problems: list[ConfigProblem] = []
    for error in exc.errors(include_url=False):
        loc, node = _walk(tuple(error["loc"]))
        if error["type"] == "config" and error["msg"].startswith("unknown provider"):
            loc, node = (*loc, "provider"), None
        location = dotted(loc)
        problem, expected = _describe(error, node, location)
        origin = "" if error["type"] == "missing" else _origin_lookup(text_prov, location)
        problems.append(SourcedProblem(location, problem, expected, origin or _file_of(loc, prov)))
    return problems


def _walk(loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], _Node | None]:
    """A pydantic error location as the user writes it, and the node it names.

    Pydantic puts a union's tag after the field (``destination.brevo.api_key``); the file and
    the environment do not, so the tag is dropped and picks the alternative's model instead.
    """
    node: _Node | None = _root()
    kept: list[str | int] = []
    for part in loc:
        variants = dict(node.variants) if node is not None else {}
        if node is not None and str(part) in variants:
            node = _Node("model", model=variants[str(part)], info=node.info)
            continue
        kept.append(part)
        node = node.child(str(part)) if node is not None else None
    return tuple(kept), node


def _file_of(loc: tuple[Any, ...], prov: Mapping[Path_, str]) -> str:
    """The file that defines the sync at ``loc`` (with many files, say which one to fix)."""
    if len(loc) < 2 or loc[0] != "syncs":
        return ""
    for path, origin in prov.items():
        if path[:2] == ("syncs", str(loc[1])) and origin.startswith("file:"):
            return origin.split(" (", 1)[0]
    return ""


def _describe(error: Any, node: _Node | None, location: str) -> tuple[str, str]:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    secret = node is not None and node.secret
    if kind == "config":
        return str(ctx.get("problem", error["msg"])), str(ctx.get("expected", ""))
    if kind == "missing":
        help_text = node.info.description if node is not None and node.info is not None else ""
        expected = f"{help_text.rstrip('.')}; " if help_text else ""
        return "is required but not set", (
            f"{expected}set `{location.rsplit('.', 1)[-1]}` in the file or {env_var_name(location)}"
        )
    if kind == "extra_forbidden":
        _, parent = _walk(tuple(error["loc"])[:-1])
        key = str(error["loc"][-1])
        known = list(parent.fields) if parent and parent.kind == "model" else []
        return f"unknown setting {key!r}{_suggest(key, known)}", (
            "one of: " + ", ".join(known) if known else "no such setting"
        )
    message = str(error["msg"])
    shown = "" if secret else _show(error.get("input"))
    if message.startswith("Input should be "):
        expected = message.removeprefix("Input should be ")
        return (f"got {shown}" if shown else "has an invalid value"), expected
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return (f"{message} (got {shown})" if shown else message), ""


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
