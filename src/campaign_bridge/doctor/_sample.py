"""Data checks before data moves: a sample of source rows read through the real mapping.

The same :func:`campaign_bridge.mapping.map_row` a push uses decides; doctor only counts what it
would reject, by reason and field. Messages name fields, columns and reasons, never values (the
rows are contact data).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from campaign_bridge.config import SyncConfig
from campaign_bridge.doctor._result import CheckResult, fail, ok, skip, warn
from campaign_bridge.errors import ConfigurationError, RecordError
from campaign_bridge.mapping import DUPLICATE_EMAIL, compile_plan, map_row
from campaign_bridge.providers.base import Audience

__all__ = ["SYSTEMATIC_SHARE", "check_sample"]

# A problem shared by at least this share of the sampled rows is a mapping mistake, not bad data.
SYSTEMATIC_SHARE = 0.5


def check_sample(
    sync_name: str, sync: SyncConfig, audience: Audience, rows: Sequence[Mapping[str, object]]
) -> CheckResult:
    """What a push would reject among ``rows``, counted by reason and field, with the fix."""
    name = f"data sample [{sync_name}]"
    if not rows:
        return skip(name, "the source returned no rows to sample")
    try:
        plan = compile_plan(sync, audience, sync_name=sync_name)
    except ConfigurationError as exc:
        return skip(name, f"the mapping does not fit the audience ({exc.problems[0]})")
    columns = {tag: column for tag, column, _spec in plan.fields}
    types = {spec.tag: spec.type for _tag, _column, spec in plan.fields}
    problems: Counter[tuple[str, str, str]] = Counter()  # (reason, field, message)
    seen: set[str] = set()
    for row in rows:
        try:
            contact = map_row(plan, row)
        except RecordError as exc:
            problems[(exc.reason_code, exc.field or "", _first(exc.message))] += 1
            continue
        lowered = contact.email.lower()
        if lowered in seen:
            problems[(DUPLICATE_EMAIL, "email", "the address appears on more than one row")] += 1
        seen.add(lowered)
    if not problems:
        return ok(name, f"all {len(rows)} sampled row(s) map cleanly")
    parts = []
    systematic = []
    for (reason, field, message), count in problems.most_common():
        where = field
        if field in columns:
            where = f"{field} ({types[field].upper()} field) from column '{columns[field]}'"
        parts.append(f"{count} of {len(rows)} rows: {reason} in {where}: {message}")
        if count >= SYSTEMATIC_SHARE * len(rows):
            systematic.append((field, where))
    summary = "would reject " + "; ".join(parts)
    if systematic:
        fields = ", ".join(where for _field, where in systematic)
        return fail(
            name,
            summary,
            f"most rows fail the same way, so the mapping is wrong, not the data: map {fields} "
            "to a column whose values fit the field's type, or change the merge field's type "
            "in the provider",
        )
    return warn(
        name,
        summary,
        "these rows will be kept in the rejected list with the reason "
        "(`campaign-bridge push --dry-run` lists them); correct them in the source",
    )


def _first(message: str) -> str:
    """The message for one field (``map_row`` joins several as ``TAG: message; ...``)."""
    first = message.split("; ", 1)[0]
    return first.split(": ", 1)[1] if ": " in first else first
