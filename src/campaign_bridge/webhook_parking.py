"""Webhook events that failed to apply too often: parked, listed, retried on request.

The applier (:class:`campaign_bridge.webhook_applier.WebhookApplier`) applies stored events in
order. An event that fails on its own (a value the user's table refuses, a bug) is retried on
the next scans, :data:`MAX_APPLY_ATTEMPTS` times in all, then parked: ``parked_at`` is set, its
error is kept, and the rest of the queue goes on. A database that cannot be reached (the state
store, or the write-back database) is not the event's fault: it counts no attempt and parks
nothing. Nor does a sync whose configuration is wrong: an event that failed on its own in one
sync while another sync of its audience waits for its configuration counts no attempt (its
error names both), so parking never takes an event from a sync about to be fixed.

``campaign-bridge webhooks parked`` lists parked events (``observe.parked_events`` counts them
for the status page and ``/-/metrics``); ``webhooks retry-parked`` puts them
back in the queue. The stored error never holds an email address unless ``log_emails`` is
on (the at-rest rule of :func:`campaign_bridge.privacy.scrub_addresses`: ``<email>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaign_bridge.logs import Redactor
from campaign_bridge.privacy import scrub_addresses
from campaign_bridge.state import webhook_events

__all__ = [
    "MAX_APPLY_ATTEMPTS",
    "ParkedEvent",
    "error_text",
    "is_store_failure",
    "parked_events",
    "retry_parked",
]

MAX_APPLY_ATTEMPTS = 5
_ERROR_CHARS = 500

# MySQL/MariaDB report both "cannot connect" and "a CHECK constraint failed" as
# OperationalError; the client's 2xxx codes and these server codes are the connection ones.
_MYSQL_UNREACHABLE = frozenset({1040, 1045, 1049, 1053, 1077, 1129, 1152, 1158, 1159, 1160, 1161})


@dataclass(frozen=True)
class ParkedEvent:
    id: int
    event_type: str
    list_id: str | None
    received_at: datetime
    parked_at: datetime
    attempts: int
    error: str | None


def is_store_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says a database could not be reached, as
    opposed to refusing one event's values."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ConnectionError | TimeoutError | sa.exc.DisconnectionError):
            return True
        if isinstance(seen, sa.exc.DBAPIError):
            if seen.connection_invalidated:
                return True
            seen = seen.orig  # the driver's own error says more
            continue
        names = {kind.__name__ for kind in type(seen).__mro__}
        if "InterfaceError" in names:
            return True
        if "OperationalError" in names:
            code = seen.args[0] if seen.args and isinstance(seen.args[0], int) else None
            if code is None:  # psycopg, sqlite3: connection, lock and I/O failures
                return True
            return 2000 <= code < 3000 or code in _MYSQL_UNREACHABLE
        seen = seen.__cause__ or seen.__context__
    return False


def error_text(exc: BaseException, *, log_emails: bool = False) -> str:
    """What is stored about a failed apply: the error's type and message, secrets masked and
    email addresses scrubbed by the one at-rest rule (:func:`privacy.scrub_addresses`)."""
    text = Redactor(log_emails=True).redact(f"{type(exc).__name__}: {exc}")  # secrets only
    return scrub_addresses(text, log_emails=log_emails)[:_ERROR_CHARS]


def parked_events(engine: Engine, limit: int = 100) -> list[ParkedEvent]:
    """Parked events, oldest first."""
    t = webhook_events
    query = (
        sa.select(t.c.id, t.c.event_type, t.c.list_id, t.c.received_at, t.c.parked_at, t.c.attempts)
        .add_columns(t.c.error)
        .where(t.c.parked_at.is_not(None))
        .order_by(t.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [ParkedEvent(*row) for row in conn.execute(query)]


def retry_parked(engine: Engine, ids: Sequence[int] | None = None) -> int:
    """Put parked events (all, or those with ``ids``) back in the queue with fresh attempts;
    returns how many. The server's applier finds them on its next scan."""
    t = webhook_events
    stmt = t.update().where(t.c.parked_at.is_not(None))
    if ids is not None:
        stmt = stmt.where(t.c.id.in_(list(ids)))
    with engine.begin() as conn:
        result = conn.execute(stmt.values(parked_at=None, attempts=0))
    return int(result.rowcount or 0)
