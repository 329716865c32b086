"""Shared fixtures: a fresh real database per test, and an environment free of our variables."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings

from campaign_bridge.db import create_engine

POSTGRES_ADMIN_URL = os.environ.get(
    "CB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MARIADB_ADMIN_URL = os.environ.get("CB_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")

# No test is timed (speed targets live in bench/): Hypothesis's per-example deadline would fail
# a property test on a busy machine, not on a wrong result. Tests that set their own settings
# keep them; the rest take this profile.
settings.register_profile("campaign-bridge", deadline=None)
settings.load_profile("campaign-bridge")

# pytester: the tests of our pytest plugin (campaign_bridge.testing) run pytest sessions
pytest_plugins = ("pytester",)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell must not leak CAMPAIGN_BRIDGE_* settings into a test."""
    for name in list(os.environ):
        if name.startswith("CAMPAIGN_BRIDGE_"):
            monkeypatch.delenv(name)


HOW_TO_START = {
    "postgresql": "start it (`.ci/run` starts every service the tests need; or `pg_ctlcluster "
    "<version> main start`), or point CB_TEST_POSTGRES_URL at another server",
    "mariadb": "start it (`.ci/run` starts every service the tests need; or `mariadbd &`), or "
    "point CB_TEST_MARIADB_URL at another server",
}


def _unavailable(what: str, marker: str, exc: Exception) -> None:
    """A missing service fails the test, never skips it: a green run means everything ran."""
    pytest.fail(
        f"{what} is not reachable ({type(exc).__name__}: {exc}); {HOW_TO_START[marker]}. "
        f"To leave these tests out on purpose: pytest -m 'not {marker}'",
        pytrace=False,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a server database, so `-m 'not <server>'` leaves it out."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for marker in ("postgresql", "mariadb"):
            if f"{marker}_url" in fixtures:
                item.add_marker(getattr(pytest.mark, marker))


def _server_database(admin_url: str, label: str, marker: str) -> Iterator[str]:
    """Create an empty database on a real server, yield its URL, drop it afterwards."""
    name = f"cb_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            if admin.dialect.name == "mysql":
                conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
            else:
                conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as exc:
        _unavailable(label, marker, exc)
    url = sa.make_url(admin_url).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if admin.dialect.name == "postgresql":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def _where(name: str, url: str) -> str:
    parsed = sa.make_url(url)
    return f"{name} at {parsed.host}:{parsed.port}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'test.db').as_posix()}"


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    yield from _server_database(
        POSTGRES_ADMIN_URL, _where("PostgreSQL", POSTGRES_ADMIN_URL), "postgresql"
    )


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    yield from _server_database(MARIADB_ADMIN_URL, _where("MariaDB", MARIADB_ADMIN_URL), "mariadb")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on each of the three supported engines in turn."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgresql_url", "mariadb": "mariadb_url"}
    return str(request.getfixturevalue(fixture[request.param]))


# --- Mailchimp sandbox (owned by the sandbox core; see docs/sandbox.md) -----------------------


@pytest.fixture
def mailchimp_sandbox() -> Iterator[object]:
    """A fresh Mailchimp sandbox on a real socket (uvicorn in a thread).

    Yields a ``SandboxHandle``: ``base_url`` (``http://127.0.0.1:<port>/3.0``), ``api_key``,
    ``list_id`` (a seeded audience), ``control_url`` and ``sandbox`` (the state, for asserts).
    """
    from campaign_bridge.sandbox.mailchimp.server import run_in_thread

    with run_in_thread() as handle:
        yield handle


@pytest.fixture
def mailchimp_sandbox_app() -> object:
    """A fresh in-process sandbox app for ``httpx.ASGITransport``; ``app.state.sandbox`` has
    ``default_api_key`` and ``default_list_id``."""
    from campaign_bridge.sandbox.mailchimp.app import create_app

    return create_app()


# --- Brevo sandbox (see docs/sandbox.md, "The Brevo sandbox") ----------------------------------


@pytest.fixture
def brevo_sandbox() -> Iterator[object]:
    """A fresh Brevo sandbox on a real socket: a ``BrevoHandle`` with ``base_url``
    (``http://127.0.0.1:<port>/v3``), ``api_key``, ``list_id``, ``control_url`` and ``sandbox``.
    tests/integration/sandbox_brevo/ overrides it with a frozen clock."""
    from campaign_bridge.sandbox.brevo import run_in_thread

    with run_in_thread() as handle:
        yield handle


@pytest.fixture
def brevo_sandbox_app() -> object:
    """A fresh in-process Brevo sandbox app for ``httpx.ASGITransport``; ``app.state.sandbox``
    has ``default_api_key``."""
    from campaign_bridge.sandbox.brevo import create_app

    return create_app()


# --- listmonk sandbox (see docs/sandbox.md, "The listmonk sandbox") ----------------------------


@pytest.fixture
def listmonk_sandbox() -> Iterator[object]:
    """A fresh listmonk sandbox on a real socket: a ``ListmonkHandle`` with ``base_url``
    (``http://127.0.0.1:<port>``; the API is under ``/api``), ``api_user``, ``api_token``,
    ``auth_header``, ``list_id``, ``control_url`` and ``sandbox``.
    tests/integration/sandbox_listmonk/ overrides it with a frozen clock."""
    from campaign_bridge.sandbox.listmonk import run_in_thread

    with run_in_thread() as handle:
        yield handle


@pytest.fixture
def listmonk_sandbox_app() -> object:
    """A fresh in-process listmonk sandbox app for ``httpx.ASGITransport``;
    ``app.state.sandbox`` has ``default_user`` and ``default_token``."""
    from campaign_bridge.sandbox.listmonk import create_app

    return create_app()
