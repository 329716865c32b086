"""Alembic environment for the bridge's own tables, shipped inside the package.

It is driven by :mod:`campaign_bridge.migrations`, which hands over an open connection through
``config.attributes["connection"]``; nobody needs an ``alembic.ini``. Offline (SQL script) mode
is supported for DBAs who want to review the DDL: it uses the URL in ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from campaign_bridge.migrations import VERSION_TABLE, include_name, target_metadata

config = context.config


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata(),
        version_table=VERSION_TABLE,
        include_name=include_name,
        literal_binds=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        version_table=VERSION_TABLE,
        include_name=include_name,
        compare_type=True,
        render_as_batch=True,  # SQLite alters tables by copying them; see docs/state-store.md
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "campaign_bridge migrations run through campaign_bridge.migrations.upgrade(url) "
            "or `campaign-bridge migrate`, which pass a connection"
        )
    run_online(connection)
