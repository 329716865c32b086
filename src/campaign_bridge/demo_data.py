"""Realistic demo contacts for `make demo`: a SQLite table with a few deliberately bad rows.

Deterministic for a given seed, so the demo's figures are the same on every machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from campaign_bridge.db import create_engine

__all__ = ["DemoDataset", "create_demo_source", "seed_demo_table"]

FIRST_NAMES = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Radia",
    "Tim",
    "Frances",
    "Guido",
    "Hedy",
    "Donald",
    "Katherine",
    "Edsger",
    "Annie",
    "Niklaus",
    "Sophie",
    "Yukihiro",
    "Leslie",
    "Vint",
    "Shafi",
    "Whitfield",
    "Anita",
    "Brian",
    "Joan",
    "Rasmus",
    "Evelyn",
]
LAST_NAMES = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Perlman",
    "Berners-Lee",
    "Allen",
    "Rossum",
    "Lamarr",
    "Knuth",
    "Johnson",
    "Dijkstra",
    "Easley",
    "Wirth",
    "Wilson",
    "Matsumoto",
    "Lamport",
    "Cerf",
    "Goldwasser",
    "Diffie",
    "Borg",
    "Kernighan",
    "Clarke",
    "Lerdorf",
    "Boyd",
]
DOMAINS = ("mailbox.org", "posteo.net", "fastmail.com", "proton.me", "gmx.de", "web.de", "hey.com")
PLANS = ("free", "starter", "pro", "enterprise")

CONTACTS_TABLE = "contacts"


@dataclass(frozen=True)
class DemoDataset:
    url: str
    contacts: int
    consenting: int
    bad_rows: dict[str, int]


def _contacts_table(metadata: sa.MetaData, name: str = CONTACTS_TABLE) -> sa.Table:
    schema, _, table = name.rpartition(".")
    return sa.Table(
        table,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("first_name", sa.String(100)),
        sa.Column("last_name", sa.String(100)),
        sa.Column("plan", sa.String(20)),
        sa.Column("lifetime_value", sa.String(20)),
        sa.Column("is_vip", sa.Boolean, nullable=False),
        sa.Column("marketing_opt_in", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("mc_status", sa.String(20), nullable=True),
        sa.Column("unsubscribed_at", sa.DateTime, nullable=True),
        sa.Column("bounced_at", sa.DateTime, nullable=True),
        schema=schema or None,
    )


def _good_row(rng: random.Random, index: int, now: datetime) -> dict[str, object]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    email = f"{first}.{last}.{index}@{rng.choice(DOMAINS)}".lower()
    if rng.random() < 0.05:
        email = f"  {email.upper()} "  # untidy but valid: trimmed and hashed lowercased
    return {
        "id": index,
        "email": email,
        "first_name": first,
        "last_name": last.replace("-", " "),
        "plan": rng.choice(PLANS),
        "lifetime_value": f"{rng.uniform(0, 5000):.2f}",
        "is_vip": rng.random() < 0.08,
        "marketing_opt_in": rng.random() < 0.85,
        "updated_at": now - timedelta(minutes=rng.randint(0, 60 * 24 * 30)),
    }


def _bad_rows(start: int, now: datetime) -> tuple[list[dict[str, object]], dict[str, int]]:
    """Rows a real customer table contains, each of which must be rejected with its reason."""
    base: dict[str, object] = {
        "first_name": "Bad",
        "last_name": "Row",
        "plan": "free",
        "is_vip": False,
        "marketing_opt_in": True,
        "updated_at": now,
    }
    specimens: list[tuple[str, dict[str, object]]] = [
        ("invalid_email", {"email": "not-an-address"}),
        ("invalid_email", {"email": "two@@signs.org"}),
        ("fake_or_invalid_email", {"email": "someone@example.com"}),
        ("fake_or_invalid_email", {"email": "tester@test.com"}),
        ("missing_email", {"email": None}),
        ("invalid_merge_field", {"email": "ltv.wrong@posteo.net", "lifetime_value": "lots"}),
        ("duplicate_email", {"email": "Ada.Lovelace.1@Mailbox.org"}),
    ]
    rows: list[dict[str, object]] = []
    counts: dict[str, int] = {}
    for offset, (reason, values) in enumerate(specimens):
        row: dict[str, object] = {**base, "id": start + offset, "lifetime_value": "10.00"}
        row.update(values)
        rows.append(row)
        counts[reason] = counts.get(reason, 0) + 1
    return rows, counts


def create_demo_source(path: Path, contacts: int = 3000, seed: int = 20261126) -> DemoDataset:
    """(Re)create the demo contacts table in the SQLite file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path.as_posix()}"
    engine = create_engine(url)
    try:
        consenting, total, bad_counts = _fill(engine, CONTACTS_TABLE, contacts, seed, replace=True)
    finally:
        engine.dispose()
    return DemoDataset(url=url, contacts=total, consenting=consenting, bad_rows=bad_counts)


def seed_demo_table(url: str, table: str, contacts: int = 500, seed: int = 20261126) -> int:
    """Create the demo contacts as ``table`` in the database at ``url`` when it does not exist.

    For trying the deploy kit (the compose stack's ``init`` step): an existing table is left
    exactly as it is, so running it again, or against a real table by mistake, changes nothing.
    Returns the number of rows written (0 when the table existed).
    """
    engine = create_engine(url)
    try:
        schema, _, name = table.rpartition(".")
        if sa.inspect(engine).has_table(name, schema=schema or None):
            return 0
        return _fill(engine, table, contacts, seed, replace=False)[1]
    finally:
        engine.dispose()


def _fill(
    engine: sa.Engine, name: str, contacts: int, seed: int, *, replace: bool
) -> tuple[int, int, dict[str, int]]:
    """Write the demo rows; return (consenting, rows written, bad rows by reason)."""
    metadata = sa.MetaData()
    table = _contacts_table(metadata, name)
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    good = [_good_row(rng, index, now) for index in range(1, contacts + 1)]
    good[0]["email"] = "ada.lovelace.1@mailbox.org"  # the duplicate specimen differs only in case
    bad, bad_counts = _bad_rows(contacts + 1, now)
    with engine.begin() as conn:
        if replace:
            metadata.drop_all(conn)
        metadata.create_all(conn)
        conn.execute(table.insert(), good + bad)
    consenting = sum(1 for row in good if row["marketing_opt_in"])
    return consenting, len(good) + len(bad), bad_counts
