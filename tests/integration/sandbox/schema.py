"""Validate sandbox responses against the response schemas of Mailchimp's OpenAPI file.

The Swagger 2.0 file (5 MB, schemas expanded inline) is part of the project's shared reference
material, kept beside the repository: ``spec_path`` looks for
``shared/reference/mailchimp-marketing-openapi.json`` in the repository's parent directories
(``../shared`` from the main checkout, ``../../shared`` from a worktree under ``wt/``), or takes
the path in ``MAILCHIMP_OPENAPI``. When it is not found the schema checks **fail** with a
message saying where it was looked for: they never skip. We do not vendor the file: ours is a
union of third-party split files (see its ``info.x-provenance``) whose licence is not stated.
Formats are not checked (Mailchimp itself sends ``""`` for unset date-times).
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

__all__ = ["assert_matches", "candidates", "response_schema", "spec", "spec_path"]

_ROOT = Path(__file__).resolve().parents[3]
_RELATIVE = Path("shared") / "reference" / "mailchimp-marketing-openapi.json"
ENV = "MAILCHIMP_OPENAPI"


def candidates() -> list[Path]:
    """Where the OpenAPI file is looked for, in order."""
    override = os.environ.get(ENV)
    if override:
        return [Path(override)]
    return [parent / _RELATIVE for parent in _ROOT.parents]


def spec_path() -> Path:
    """The OpenAPI file; fails the test (never skips) when it is nowhere to be found."""
    for path in candidates():
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates()[:3])
    pytest.fail(
        f"Mailchimp's OpenAPI file was not found (looked for {looked}, ...). The sandbox's "
        f"schema tests need it: put the project's shared/reference directory beside the "
        f"repository, or set {ENV} to the file's path.",
        pytrace=False,
    )


@functools.cache
def spec() -> dict[str, Any]:
    with spec_path().open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


_spec = spec


def _clean(node: Any) -> Any:
    """Swagger 2.0 schema → plain JSON Schema (drop vendor keys and annotations)."""
    if isinstance(node, dict):
        return {
            k: _clean(v)
            for k, v in node.items()
            if not k.startswith("x-")
            and k not in ("example", "readOnly", "format", "discriminator")
        }
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def _template(path: str) -> str:
    """``/reports/abc/sent-to`` → the spec's ``/reports/{campaign_id}/sent-to``."""
    spec = _spec()
    if path in spec["paths"]:
        return path
    parts = path.strip("/").split("/")
    matches = []
    for candidate in spec["paths"]:
        cparts = candidate.strip("/").split("/")
        if len(cparts) == len(parts) and all(
            c == p or re.fullmatch(r"\{\w+\}", c) for c, p in zip(cparts, parts, strict=True)
        ):
            matches.append((sum(c == p for c, p in zip(cparts, parts, strict=True)), candidate))
    if matches:
        return max(matches)[1]  # the most literal segments wins
    raise AssertionError(f"no path in the OpenAPI file matches {path}")


@functools.cache
def response_schema(template: str, method: str, status: str = "200") -> dict[str, Any]:
    operation = _spec()["paths"][template][method.lower()]
    schema: dict[str, Any] = _clean(operation["responses"][status]["schema"])
    return schema


def assert_matches(body: Any, path: str, method: str = "GET", status: int = 200) -> None:
    """Fail with the first schema violation of ``body`` for ``method path``."""
    template = _template(path.split("?")[0].removeprefix("/3.0"))
    schema = response_schema(template, method, str(status))
    validator = jsonschema.Draft4Validator(schema)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path)
        raise AssertionError(f"{method} {template}: {where}: {first.message}")
