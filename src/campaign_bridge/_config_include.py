"""Many syncs in many files: the main file's ``include`` and ``CAMPAIGN_BRIDGE_CONFIG_DIR``.

How the files combine (docs/configuration.md, "Many syncs: conf.d"):

- The main file may say ``include = ["conf.d/*.toml"]``: glob patterns, relative to the main
  file's directory. ``CAMPAIGN_BRIDGE_CONFIG_DIR`` names a directory whose ``*.toml`` files are
  read too (for platforms that mount a directory of files, with or without a main file).
- An included file holds only ``[syncs.<name>]`` tables, as the main file writes them; settings
  for the whole service (state store, server, alerts) stay in the main file or the environment.
- A sync is defined once: the same name in two files is an error naming both files. Names that
  differ only in case or in ``-``/``_`` count as the same, since they share one environment
  variable (``CAMPAIGN_BRIDGE_SYNCS__<NAME>__...``).
- Files are read in the order of the patterns, each pattern's matches sorted by name; a file
  matched twice is read once. Provenance names the file each value came from.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from campaign_bridge.errors import ConfigProblem

__all__ = ["CONFIG_DIR_ENV_VAR", "INCLUDE_KEY", "read_includes"]

CONFIG_DIR_ENV_VAR = "CAMPAIGN_BRIDGE_CONFIG_DIR"
INCLUDE_KEY = "include"

Path_ = tuple[str, ...]
# (path, explicit, data, provenance, problems) -> parsed and read without a syntax error
FileReader = Callable[[Path, bool, dict[str, Any], dict[Path_, str], list[ConfigProblem]], bool]


def read_includes(
    main: Path | None,
    env: Mapping[str, str],
    data: dict[str, Any],
    prov: dict[Path_, str],
    problems: list[ConfigProblem],
    warnings: list[str],
    read_file: FileReader,
) -> tuple[list[Path], bool]:
    """Add the syncs of every included file to ``data``/``prov``; return the files and whether
    each could be read and parsed (a syntax error stops validation, as in the main file)."""
    patterns = _patterns(data.pop(INCLUDE_KEY, None), main, problems)
    for path in [p for p in prov if p[:1] == (INCLUDE_KEY,)]:
        del prov[path]
    files = _files(patterns, main, env.get(CONFIG_DIR_ENV_VAR, "").strip(), problems, warnings)
    owners = {_same_name(str(name)): str(main) for name in _syncs_of(data)}
    parsed = True
    for file in files:
        part: dict[str, Any] = {}
        part_prov: dict[Path_, str] = {}
        if not read_file(file, True, part, part_prov, problems):
            parsed = False
            continue
        _only_syncs(file, part, problems)
        for name, table in _syncs_of(part).items():
            key = _same_name(name)
            if key in owners:
                problems.append(_duplicate(name, owners[key], file))
                continue
            owners[key] = str(file)
            data.setdefault("syncs", {})[name] = table
            prov.update({p: o for p, o in part_prov.items() if p[:2] == ("syncs", name)})
    return files, parsed


def _syncs_of(data: Mapping[str, Any]) -> dict[str, Any]:
    syncs = data.get("syncs")
    return dict(syncs) if isinstance(syncs, dict) else {}


def _same_name(name: str) -> str:
    return name.lower().replace("-", "_")


def _patterns(raw: Any, main: Path | None, problems: list[ConfigProblem]) -> list[str]:
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        problems.append(
            ConfigProblem(
                INCLUDE_KEY,
                f"include must be a list of file patterns (in {main})",
                'e.g. include = ["conf.d/*.toml"], relative to the main file',
            )
        )
        return []
    return [item.strip() for item in items]


def _files(
    patterns: list[str],
    main: Path | None,
    config_dir: str,
    problems: list[ConfigProblem],
    warnings: list[str],
) -> list[Path]:
    base = main.parent if main is not None else Path()
    found: list[Path] = []
    for pattern in patterns:
        full = Path(pattern).expanduser()
        full = full if full.is_absolute() else base / full
        matches = [Path(m) for m in sorted(glob.glob(str(full))) if Path(m).is_file()]
        if not matches and not glob.has_magic(pattern):
            problems.append(
                ConfigProblem(
                    INCLUDE_KEY,
                    f"the included file {full} does not exist",
                    "an existing TOML file, or a pattern such as conf.d/*.toml",
                )
            )
        elif not matches:
            warnings.append(f"include pattern {pattern!r} ({full}) matched no file")
        found.extend(matches)
    if config_dir:
        found.extend(_directory(Path(config_dir).expanduser(), problems, warnings))
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _directory(directory: Path, problems: list[ConfigProblem], warnings: list[str]) -> list[Path]:
    if not directory.is_dir():
        problems.append(
            ConfigProblem(
                CONFIG_DIR_ENV_VAR,
                f"{directory} is not a directory",
                "a directory of *.toml files, each holding [syncs.<name>] tables",
            )
        )
        return []
    files = sorted(p for p in directory.glob("*.toml") if p.is_file())
    if not files:
        warnings.append(f"{CONFIG_DIR_ENV_VAR}={directory} holds no *.toml file")
    return files


def _only_syncs(file: Path, data: dict[str, Any], problems: list[ConfigProblem]) -> None:
    for key in [k for k in data if k != "syncs"]:
        del data[key]
        problems.append(
            ConfigProblem(
                f"{file}: {key}",
                "an included file may only define syncs",
                "[syncs.<name>] tables here; settings for the whole service (state_url, "
                "[server], [alerts], include, ...) belong in the main file or the environment",
            )
        )


def _duplicate(name: str, first: str, second: Path) -> ConfigProblem:
    return ConfigProblem(
        f"syncs.{name}",
        f"sync {name!r} is defined twice: in {first} and in {second}",
        "one definition per sync name (names that differ only in case or in - and _ count as "
        "the same: they share one environment variable)",
    )
