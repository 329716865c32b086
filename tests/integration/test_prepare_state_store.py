"""Engine runs migrate an embedded SQLite store themselves, never a shared server database."""

from __future__ import annotations

import pytest

from campaign_bridge import migrations
from campaign_bridge.errors import StateStoreError
from campaign_bridge.store import StateStore, prepare_state_store


def test_sqlite_store_is_brought_up_to_date(sqlite_url: str) -> None:
    assert migrations.current(sqlite_url) is None
    prepare_state_store(sqlite_url)
    assert migrations.is_current(sqlite_url)
    with StateStore(sqlite_url) as store:
        store.check()


@pytest.mark.postgresql
def test_shared_store_is_left_for_an_explicit_migrate(postgresql_url: str) -> None:
    prepare_state_store(postgresql_url)
    assert migrations.current(postgresql_url) is None
    with (
        StateStore(postgresql_url) as store,
        pytest.raises(StateStoreError, match="run `campaign-bridge migrate upgrade`"),
    ):
        store.check()


@pytest.mark.mariadb
def test_shared_store_behind_is_refused_with_the_hint(mariadb_url: str) -> None:
    migrations.upgrade(mariadb_url)
    migrations.downgrade(mariadb_url, "-1")
    prepare_state_store(mariadb_url)
    assert not migrations.is_current(mariadb_url)
    with (
        StateStore(mariadb_url) as store,
        pytest.raises(StateStoreError, match=f"needs {migrations.head()}"),
    ):
        store.check()
