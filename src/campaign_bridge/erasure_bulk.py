"""Erasure of many people at once (a backlog of requests, a benchmark): same result as
:func:`campaign_bridge.erasure.forget` for each, at a fraction of the cost.

Provider deletions run concurrently (the adapter keeps within the API key's connection budget),
the free-text tables (webhook bodies, run details) are scanned once for everybody instead of
once per person, and the state store is cleaned ``batch`` people per transaction.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Iterable, Sequence
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge import privacy, state
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine
from campaign_bridge.erasure import (
    ErasureReport,
    ProviderFactory,
    Subject,
    default_provider,
    erase_in_store,
    needles,
    parts,
    syncs_in_scope,
)

__all__ = ["TEXT_COLUMNS", "forget_many", "scan_mentions"]


async def forget_many(
    settings: Settings,
    emails: Sequence[str],
    sync_name: str | None = None,
    *,
    origin: str = "cli",
    batch: int = 500,
    provider_factory: ProviderFactory | None = None,
) -> ErasureReport:
    """Erase many people by address: provider deletions run concurrently (within the key's
    connection budget), the free-text tables are scanned once for all of them, and the store
    is cleaned ``batch`` people per transaction. The report adds up the counts."""
    import anyio

    syncs = syncs_in_scope(settings, sync_name)
    people = {privacy.subscriber_hash(e): e.strip().lower() for e in emails}
    subjects = [Subject(h, e) for h, e in sorted(people.items())]
    report = ErasureReport(f"{len(subjects)} people")
    engine = create_engine(settings.effective_state_url())
    try:
        await anyio.to_thread.run_sync(_complete_many, engine, subjects, syncs)
        await _erase_many_at_providers(settings, syncs, subjects, report, provider_factory)
        hits = await anyio.to_thread.run_sync(scan_mentions, engine, subjects)
        providers = {n: settings.syncs[n].destination.provider for n in syncs}
        for start in range(0, len(subjects), batch):
            part = subjects[start : start + batch]
            removed = await anyio.to_thread.run_sync(
                functools.partial(
                    erase_in_store,
                    engine,
                    part,
                    providers,
                    origin=origin,
                    text_hits=hits,
                    list_ids=[settings.syncs[n].destination.list_id for n in syncs],
                )
            )
            for table, count in removed.items():
                report.removed[table] = report.removed.get(table, 0) + count
    finally:
        engine.dispose()
    return report


def _complete_many(engine: Engine, subjects: Sequence[Subject], syncs: Sequence[str]) -> None:
    by_hash = {s.email_hash: s for s in subjects}
    with engine.connect() as conn:
        for table in (state.contact_state, state.rejected_records, state.consent_ledger):
            for part in parts(sorted(by_hash)):
                query = sa.select(table.c.email_hash, table.c.sync_name, table.c.source_key)
                query = query.where(table.c.email_hash.in_(part), table.c.sync_name.in_(syncs))
                for email_hash, name, key in conn.execute(query):
                    if key is not None:
                        by_hash[email_hash].keys.setdefault(name, set()).add(str(key))


async def _erase_many_at_providers(
    settings: Settings,
    syncs: Sequence[str],
    subjects: Sequence[Subject],
    report: ErasureReport,
    factory: ProviderFactory | None,
) -> None:
    done: set[tuple[str, str, str, str]] = set()
    for name in syncs:
        destination = settings.syncs[name].destination
        where = destination.audience_key()
        if where in done:
            continue
        done.add(where)
        provider = (factory or default_provider)(settings.syncs[name])
        try:
            results = await asyncio.gather(
                *(
                    provider.delete_member_permanently(destination.list_id, s.ref(name))
                    for s in subjects
                )
            )
        finally:
            if factory is None:
                await provider.aclose()
        for result in sorted(set(results)):
            report.provider[f"{name} ({destination.list_id}): {result}"] = str(
                results.count(result)
            )


# Free-text columns that may mention a person, scanned by scan_mentions: table -> key, columns.
TEXT_COLUMNS: dict[str, tuple[sa.Table, str, tuple[str, ...]]] = {
    "cb_webhook_events": (state.webhook_events, "id", ("payload", "error")),
    "cb_sync_runs": (state.sync_runs, "id", ("error_summary",)),
}


def scan_mentions(engine: Engine, subjects: Sequence[Subject]) -> dict[str, dict[object, Subject]]:
    """One pass over the free-text tables for many people at once (cheaper than one SQL LIKE
    scan per person): ``{table: {row key: person}}``."""
    wanted: dict[str, Subject] = {}
    for subject in subjects:
        for needle in needles(subject):
            wanted[needle] = subject
    found: dict[str, dict[object, Subject]] = {}
    with engine.connect() as conn:
        for name, (table, key, columns) in TEXT_COLUMNS.items():
            hits: dict[object, Subject] = {}
            query = sa.select(table.c[key], *(table.c[c] for c in columns))
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
            for row in result:
                for text in row[1:]:
                    if not text:
                        continue
                    for token in _tokens(str(text).lower()):
                        found_subject = wanted.get(token)
                        if found_subject is not None:
                            hits[row[0]] = found_subject
            found[name] = hits
    return found


_TOKEN = re.compile(r"[a-z0-9._%+\-]+(?:@|%40)[a-z0-9.\-]+|[0-9a-f]{32}")


def _tokens(text: str) -> Iterable[str]:
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        yield token
        if "%" in token:
            yield unquote(token)
