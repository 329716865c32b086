"""Privacy primitives shared by erasure, access requests, retention and the GDPR permissions.

- The **privacy salt**: a random secret created by the migration that creates these tables, kept
  in ``cb_privacy_keys`` (never in configuration, never logged). It keys the tombstone hashes.
- **Tombstones** (``cb_erasures``): one row per erased person, holding only
  ``HMAC-SHA256(salt, md5(lower(email)))``. The md5 is Mailchimp's subscriber hash, which the
  bridge can compute from an address or find for a source key, so a tombstone can be checked
  from either; without the salt the tombstone cannot be matched against a list of addresses.
- **Marketing permissions** (``cb_marketing_permissions``): each member's GDPR permission states
  as the provider last reported them (pull) or confirmed them (push).
- :func:`scrub_addresses`: the rule for text kept at rest (webhook errors, rejection messages):
  no address in clear unless ``log_emails`` is on. Other modules call it; it is pure.

The tables live here (not in ``state.py``) and are listed in ``migrations.MODEL_MODULES``; they
are described in docs/privacy.md.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import overload

import sqlalchemy as sa
from sqlalchemy import Boolean, Column, String, Table, Text
from sqlalchemy.engine import Connection

from campaign_bridge.state import HASH, MEMBER_KEY_COMMENT, UTC, metadata

__all__ = [
    "ERASED",
    "SALT_NAME",
    "erasures",
    "load_salt",
    "marketing_permissions",
    "new_salt",
    "privacy_keys",
    "scrub_addresses",
    "subscriber_hash",
    "tombstone",
    "tombstones_of",
]

SALT_NAME = "tombstone_salt"
ERASED = "forgotten"  # the ledger's new_status for an erasure

privacy_keys = Table(
    "cb_privacy_keys",
    metadata,
    Column("name", String(64), primary_key=True, comment="e.g. tombstone_salt"),
    Column("value", String(128), nullable=False, comment="secret: never logged or shown"),
    Column("created_at", UTC, nullable=False),
)

erasures = Table(
    "cb_erasures",
    metadata,
    Column(
        "subject_hash",
        String(HASH),
        primary_key=True,
        comment="HMAC-SHA256(privacy salt, md5(lower(email))): no address, no plain md5",
    ),
    Column("erased_at", UTC, nullable=False, comment="when the person was last erased"),
    Column("origin", String(32), nullable=False, comment="cli | source_column | request_table"),
    Column("requested_at", UTC, nullable=True, comment="the request's own time, if it has one"),
    Column("provider_result", Text, nullable=True, comment="e.g. mailchimp/<list>: deleted"),
)

marketing_permissions = Table(
    "cb_marketing_permissions",
    metadata,
    Column("provider", String(32), primary_key=True),
    Column("list_id", String(64), primary_key=True),
    Column("member_id", String(HASH), primary_key=True, comment=MEMBER_KEY_COMMENT),
    Column("permission_id", String(64), primary_key=True, comment="provider's permission id"),
    Column("text", Text, nullable=True, comment="the permission's wording on the audience"),
    Column("enabled", Boolean, nullable=False),
    Column("updated_at", UTC, nullable=False, comment="when this state was last confirmed"),
)


def subscriber_hash(email: str) -> str:
    """md5 of the trimmed, lowercased address: the bridge's key for a member (``email_hash``)."""
    return hashlib.md5(email.strip().lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def new_salt() -> str:
    """A fresh salt: 32 random bytes, hex."""
    return secrets.token_hex(32)


def load_salt(conn: Connection) -> str:
    """The store's privacy salt, created now if the store has none (a store migrated by hand)."""
    query = sa.select(privacy_keys.c.value).where(privacy_keys.c.name == SALT_NAME)
    value = conn.execute(query).scalar()
    if value is not None:
        return str(value)
    from campaign_bridge.db import insert_ignore_rows

    row = {"name": SALT_NAME, "value": new_salt(), "created_at": _now()}
    insert_ignore_rows(conn, privacy_keys, [row], ["name"])
    return str(conn.execute(query).scalar_one())


def tombstone(salt: str, email_hash: str) -> str:
    """The tombstone of a person: HMAC-SHA256 keyed by the salt over their subscriber hash."""
    return hmac.new(salt.encode(), email_hash.encode(), hashlib.sha256).hexdigest()


def tombstones_of(conn: Connection, email_hashes: Iterable[str]) -> dict[str, datetime]:
    """``{email_hash: erased_at}`` for the given subscriber hashes that have a tombstone."""
    salt = load_salt(conn)
    by_mark = {tombstone(salt, h): h for h in set(email_hashes)}
    found: dict[str, datetime] = {}
    marks = sorted(by_mark)
    for start in range(0, len(marks), 1000):
        query = sa.select(erasures.c.subject_hash, erasures.c.erased_at).where(
            erasures.c.subject_hash.in_(marks[start : start + 1000])
        )
        for mark, erased_at in conn.execute(query):
            found[by_mark[mark]] = erased_at
    return found


# The same shape of address as the log redactor looks for (campaign_bridge.logs).
_ADDRESS = re.compile(
    r"(?<![\w.%+\-/])[A-Za-z0-9._%+\-]+(?:@|%40)"
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)+"
)
REDACTED = "<email>"


@overload
def scrub_addresses(text: str, *, log_emails: bool = False) -> str: ...


@overload
def scrub_addresses(text: None, *, log_emails: bool = False) -> None: ...


def scrub_addresses(text: str | None, *, log_emails: bool = False) -> str | None:
    """``text`` fit to keep at rest: every email address (also URL-encoded, ``a%40b.c``)
    replaced by ``<email>``, unless ``log_emails`` is on. Not a hash: a hash of an address is
    still the address to anyone holding a list of addresses, and erasure must not miss it."""
    if text is None or log_emails:
        return text
    return _ADDRESS.sub(REDACTED, text)


def _now() -> datetime:
    from datetime import UTC as _UTC

    return datetime.now(_UTC)
