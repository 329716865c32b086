"""`doctor --rehearse`: the real push → webhook → pull → push round trip, in the target
environment, on the target's own state database, against an in-process sandbox of each provider
the configured syncs use (Mailchimp, Brevo, listmonk; ``doctor/_rehearsal_profiles.py``).

For each provider the round trip runs the real adapter, the real ``serve`` app and the real
write-back: push creates synthetic contacts in the provider's sandbox; a subscriber unsubscribes
there; a provider that reports such changes by webhook (Mailchimp, Brevo) delivers it to
``serve`` over HTTP, one that does not (listmonk) leaves it to the pull; the pull must write the
unsubscribe back to the source table; the next push must leave the member unsubscribed.

Where it runs: the bridge's tables have fixed names (``cb_*``, created by the real migrations),
so the rehearsal gets a namespace of its own on the same server, with the same driver, URL,
credentials and TLS settings, and removes it after (also after a failure):

- PostgreSQL: a throwaway schema ``cb_rehearsal_<hex>`` in the state database, made the
  connection's ``search_path`` (needs CREATE on the database, which the bridge's migrations
  user normally has);
- MariaDB/MySQL: a throwaway database ``cb_rehearsal_<hex>`` on the same server (MariaDB's
  schemas are databases; needs CREATE/DROP on ``cb\\_rehearsal\\_%``);
- SQLite: a throwaway file ``cb_rehearsal_<hex>.db`` beside the state database (same
  filesystem, same locking).

Every provider's round trip shares that namespace (the migrations run once), each with its own
sync and source table. The real ``cb_*`` tables and the real providers are never touched: every
URL, key and list of the rehearsal is its own, and the sandboxes listen on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from campaign_bridge._destinations import DEFAULT_PROVIDER
from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine, redact_url, sqlite_file_path
from campaign_bridge.doctor._rehearsal_profiles import PROFILES, Profile, label_of
from campaign_bridge.doctor._result import CheckResult, fail, ok, skip, warn
from campaign_bridge.errors import ConfigurationError

__all__ = ["CONTACTS", "PREFIX", "Rehearsal", "providers_of", "rehearse"]

PREFIX = "cb_rehearsal_"
CONTACTS = 5
SYNC = "rehearsal"
TABLE = "cb_rehearsal_contacts"


@dataclass
class Step:
    """One step; ``provider`` names the provider whose round trip it belongs to ("" for the
    steps every provider shares)."""

    name: str
    passed: bool
    message: str
    fix: str = ""
    seconds: float = 0.0
    provider: str = ""

    @property
    def title(self) -> str:
        return f"{self.name} ({label_of(self.provider)})" if self.provider else self.name


@dataclass
class Rehearsal:
    """What happened, step by step; ``namespace`` is where it ran (removed afterwards);
    ``providers`` those the configuration uses, ``unrehearsed`` those with no sandbox."""

    engine: str
    namespace: str
    providers: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    unrehearsed: list[str] = field(default_factory=list)
    removed: bool = False

    @property
    def passed(self) -> bool:
        return (
            bool(self.steps)
            and all(step.passed for step in self.steps)
            and self.removed
            and not self.unrehearsed
        )

    def results(self) -> list[CheckResult]:
        out = []
        for step in self.steps:
            name = f"rehearsal: {step.title}"
            timing = f" ({step.seconds:.1f} s)"
            out.append(
                ok(name, step.message + timing)
                if step.passed
                else fail(name, step.message, step.fix or "see the message; nothing was changed")
            )
        for provider in self.unrehearsed:
            out.append(
                warn(
                    f"rehearsal ({provider})",
                    f"the rehearsal has no sandbox for provider {provider}; its syncs were not "
                    "rehearsed",
                    "rehearse them by hand against a test list of that provider",
                )
            )
        if not self.steps:
            out.append(skip("rehearsal", "nothing ran"))
        cleanup = f"rehearsal: cleanup ({self.namespace})"
        if not self.namespace:
            return out  # nothing was created
        if self.removed:
            out.append(ok(cleanup, "the throwaway tables are removed"))
        else:
            out.append(
                fail(
                    cleanup,
                    f"{self.namespace} could not be removed",
                    f"remove it by hand (DROP SCHEMA/DATABASE {self.namespace} ... / delete the "
                    "file); it holds only synthetic data",
                )
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "namespace": self.namespace,
            "providers": list(self.providers),
            "unrehearsed": list(self.unrehearsed),
            "passed": self.passed,
            "removed": self.removed,
            "steps": [step.__dict__ for step in self.steps],
        }


class _StepFailed(Exception):
    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


# --------------------------------------------------------------------------------------------
# The throwaway namespace


@contextlib.contextmanager
def throwaway(state_url: str, data_dir: Path) -> Iterator[tuple[str, str, Callable[[], bool]]]:
    """Yield (rehearsal URL, namespace, a function that reports whether it is gone)."""
    name = f"{PREFIX}{uuid.uuid4().hex[:10]}"
    url = sa.make_url(state_url)
    dialect = url.get_backend_name()
    admin = create_engine(state_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    removed = [False]
    try:
        try:
            target = _create(admin, url, dialect, name, data_dir)
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise NamespaceError(name, dialect, detail) from exc
        rendered = target.render_as_string(hide_password=False)
        yield rendered, name, lambda: removed[0]
    finally:
        removed[0] = _drop(admin, dialect, name, state_url, data_dir)
        admin.dispose()


class NamespaceError(Exception):
    """The rehearsal's throwaway schema/database/file cannot be created."""

    def __init__(self, name: str, dialect: str, detail: str) -> None:
        super().__init__(detail)
        self.message = f"cannot create the throwaway {_KIND.get(dialect, 'file')} {name}: {detail}"
        self.fix = _GRANT.get(dialect, "make the state database's directory writable")


_KIND = {"postgresql": "schema", "mysql": "database"}
_GRANT = {
    "postgresql": "let the bridge's database user create schemas in the state database: "
    "GRANT CREATE ON DATABASE <state database> TO <user>",
    "mysql": "let the bridge's database user create and drop the rehearsal's databases: "
    "GRANT ALL ON `cb\\_rehearsal\\_%`.* TO '<user>'@'%'",
}


def _create(admin: sa.Engine, url: sa.URL, dialect: str, name: str, data_dir: Path) -> sa.URL:
    if dialect == "postgresql":
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        options = url.query.get("options", "")
        options = f"{options} -csearch_path={name}".strip()
        return url.update_query_dict({"options": options})
    if dialect == "mysql":
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        return url.set(database=name)
    state_file = sqlite_file_path(str(url))
    folder = state_file.parent if state_file is not None else data_dir
    folder.mkdir(parents=True, exist_ok=True)
    return url.set(database=str(folder / f"{name}.db"))


def _drop(admin: sa.Engine, dialect: str, name: str, state_url: str, data_dir: Path) -> bool:
    try:
        if dialect == "postgresql":
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        elif dialect == "mysql":
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        else:
            state_file = sqlite_file_path(state_url)
            folder = state_file.parent if state_file is not None else data_dir
            for suffix in ("", "-wal", "-shm", "-journal"):
                (folder / f"{name}.db{suffix}").unlink(missing_ok=True)
    except (sa.exc.SQLAlchemyError, OSError):
        return False
    return True


def leftovers(state_url: str) -> list[str]:
    """Rehearsal namespaces a crashed rehearsal left behind (for doctor to mention)."""
    url = sa.make_url(state_url)
    dialect = url.get_backend_name()
    if dialect not in ("postgresql", "mysql"):
        state_file = sqlite_file_path(state_url)
        if state_file is None or not state_file.parent.exists():
            return []
        return sorted(p.name for p in state_file.parent.glob(f"{PREFIX}*.db"))
    if dialect == "postgresql":
        query = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'cb\\_rehearsal\\_%'"
    else:
        query = "SHOW DATABASES LIKE 'cb\\_rehearsal\\_%'"
    engine = create_engine(state_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return sorted(str(row[0]) for row in conn.execute(sa.text(query)))
    except sa.exc.SQLAlchemyError:
        return []
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# The round trip, once per provider the configuration uses


def providers_of(settings: Settings) -> list[str]:
    """The distinct providers of the configured syncs, in configuration order (the default
    provider when no sync is configured yet)."""
    found = dict.fromkeys(sync.destination.provider for sync in settings.syncs.values())
    return list(found) or [DEFAULT_PROVIDER]


async def rehearse(settings: Settings, *, say: Callable[[str], None] | None = None) -> Rehearsal:
    """Run the round trip against each configured provider's sandbox, in one throwaway
    namespace of ``settings``' state database."""
    state_url = settings.effective_state_url()
    providers = providers_of(settings)
    report = Rehearsal(
        engine=sa.make_url(state_url).get_backend_name(), namespace="", providers=providers
    )
    tell = say or (lambda _line: None)
    work = settings.data_dir / f"rehearsal-{uuid.uuid4().hex[:8]}"
    try:
        with throwaway(state_url, settings.data_dir) as (url, namespace, gone):
            report.namespace = namespace
            labels = ", ".join(label_of(provider) for provider in providers)
            tell(f"rehearsal in {namespace} on {redact_url(state_url)} against {labels}")
            if await _step(report, tell, "migrations", "", lambda: _migrate(url)):
                for provider in providers:
                    profile = PROFILES.get(provider)
                    if profile is None:
                        report.unrehearsed.append(provider)
                        continue
                    await _RoundTrip(profile, url, work, report, tell).run()
        report.removed = gone()
    except NamespaceError as exc:
        report.steps.append(Step("namespace", False, exc.message, exc.fix))
        report.removed = True  # nothing was created
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


async def _step(
    report: Rehearsal,
    say: Callable[[str], None],
    name: str,
    provider: str,
    action: Callable[[], Awaitable[str]],
) -> bool:
    """Run one step, record it (with its time) and say whether it passed."""
    started = time.monotonic()
    try:
        step = Step(name, True, await action(), provider=provider)
    except _StepFailed as exc:
        step = Step(name, False, exc.message, exc.fix, provider=provider)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {_one_line(str(exc))}"
        if provider:
            detail = f"{label_of(provider)}: {detail}"
        step = Step(name, False, detail, provider=provider)
    step.seconds = time.monotonic() - started
    report.steps.append(step)
    say(f"  {'ok  ' if step.passed else 'FAIL'} {step.title}: {step.message}")
    return step.passed


async def _migrate(url: str) -> str:
    from campaign_bridge import migrations

    await asyncio.to_thread(migrations.upgrade, url)
    at = await asyncio.to_thread(migrations.current, url)
    return f"the real migrations ran to {at} in the throwaway namespace"


class _RoundTrip:
    """push → (webhook | unsubscribe at the provider) → pull → push against one provider's
    sandbox, through the same adapter, serve app and write-back a real run uses."""

    def __init__(
        self, profile: Profile, url: str, work: Path, report: Rehearsal, say: Callable[[str], None]
    ) -> None:
        self.profile = profile
        self.label = profile.label
        self.url = url
        self.work = work
        self.report = report
        self.say = say
        self.sync = f"{SYNC}_{profile.provider}"
        self.table = f"{TABLE}_{profile.provider}"
        self.token = secrets.token_urlsafe(24)
        self.emails = [f"rehearsal.{i}.{uuid.uuid4().hex[:6]}@mailbox.org" for i in range(CONTACTS)]
        self.sandbox: Any = None

    def _settings(self, public_url: str = "http://127.0.0.1:9") -> Settings:
        return Settings.model_validate(
            {
                "data_dir": str(self.work),
                "state_url": self.url,
                "server": {"webhook_tokens": [self.token], "public_url": public_url},
                "syncs": {
                    self.sync: {
                        "source": {
                            "url": self.url,
                            "table": self.table,
                            "consent_column": "marketing_opt_in",
                        },
                        "destination": {
                            **self.profile.destination(self.sandbox),
                            "max_retries": 1,
                        },
                        "fields": self.profile.fields,
                        "writeback": {
                            "table": self.table,
                            "key_column": "id",
                            "status_column": "list_status",
                            "unsubscribed_at_column": "unsubscribed_at",
                        },
                    }
                },
            }
        )

    async def run(self) -> None:
        unsubscribe = (
            ("webhook", self._webhook)
            if self.profile.webhooks
            else ("unsubscribe at the provider", self._unsubscribe_only)
        )
        steps: list[tuple[str, Callable[[], Awaitable[str]]]] = [
            ("source", self._source),
            ("push", self._push),
            unsubscribe,
            ("pull", self._pull),
            ("push again", self._push_again),
        ]
        with contextlib.ExitStack() as stack:
            if not await self._step("sandbox", lambda: self._start(stack)):
                return
            for name, action in steps:
                if not await self._step(name, action):
                    return

    async def _step(self, name: str, action: Callable[[], Awaitable[str]]) -> bool:
        return await _step(self.report, self.say, name, self.profile.provider, action)

    async def _start(self, stack: contextlib.ExitStack) -> str:
        try:
            self.sandbox = stack.enter_context(self.profile.start())
        except (RuntimeError, OSError) as exc:
            raise _StepFailed(
                f"the {self.label} sandbox did not start on 127.0.0.1: {exc}",
                "check that this host may listen on a loopback port",
            ) from exc
        return f"the {self.label} sandbox listens on {self.sandbox.root_url}"

    async def _source(self) -> str:
        await asyncio.to_thread(self._create_source)
        return f"{CONTACTS} synthetic contacts in {self.table} for the {self.label} sync"

    def _create_source(self) -> None:
        metadata = sa.MetaData()
        table = sa.Table(
            self.table,
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("email", sa.String(200), nullable=False),
            sa.Column("first_name", sa.String(50)),
            sa.Column("marketing_opt_in", sa.Boolean, nullable=False),
            sa.Column("list_status", sa.String(20)),
            sa.Column("unsubscribed_at", sa.DateTime),
        )
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                metadata.create_all(conn)
                conn.execute(
                    table.insert(),
                    [
                        {"id": i + 1, "email": e, "first_name": f"R{i}", "marketing_opt_in": True}
                        for i, e in enumerate(self.emails)
                    ],
                )
        finally:
            engine.dispose()

    async def _push(self) -> str:
        from campaign_bridge.push import run_push

        summary = await run_push(self._settings(), self.sync)
        if summary.status != "succeeded" or summary.created != CONTACTS:
            raise _StepFailed(
                f"{self.label} push {summary.status}: created {summary.created} of {CONTACTS}, "
                f"rejected {dict(summary.rejected)}{_error(summary.error)}",
                f"run `campaign-bridge push --dry-run` on your {self.label} sync and read its "
                "rejections",
            )
        return f"created {summary.created} members in the {self.label} sandbox's list"

    def _control(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.sandbox.control_url, timeout=30)

    async def _webhook(self) -> str:
        from campaign_bridge.server import create_app, open_store

        with contextlib.closing(open_store(self._settings())) as store:
            return await self._deliver(create_app(self._settings(), store=store, checks={}))

    async def _deliver(self, app: Any) -> str:
        from campaign_bridge.server import register_webhooks

        with _serving(app) as root, _applier_errors() as errors:
            await register_webhooks(self._settings(root))
            async with self._control() as control:
                await self.profile.unsubscribe(self.sandbox, control, self.emails[0])
                flushed = (await control.post("/webhooks/flush", json={"timeout": 20})).json()
            if flushed.get("failed"):
                raise _StepFailed(
                    f"the {self.label} sandbox could not deliver {flushed['failed']} webhook(s) "
                    f"to {root}",
                    f"check that nothing on this machine blocks loopback connections (the "
                    f"{self.label} sandbox calls serve's /webhooks/{self.profile.provider}/…)",
                )
            applied = await asyncio.to_thread(self._wait_applied, errors)
        return (
            f"an unsubscribe at {self.label} was delivered to serve over HTTP and applied "
            f"({applied} event)"
        )

    def _wait_applied(self, errors: list[str]) -> int:
        from campaign_bridge.state import webhook_events

        query = sa.select(webhook_events.c.applied_at, webhook_events.c.error).where(
            webhook_events.c.provider == self.profile.provider
        )
        engine = create_engine(self.url, poolclass=sa.pool.NullPool)
        deadline = time.monotonic() + 20
        try:
            while True:
                with engine.connect() as conn:
                    rows = conn.execute(query).all()
                if rows and all(row.applied_at is not None for row in rows):
                    return len(rows)
                # what the applier stored on the event, or logged (a problem of the whole
                # sync, such as a write-back column that is gone, is logged only)
                failed = [str(r.error) for r in rows if r.applied_at is None and r.error]
                if failed or errors:
                    raise _StepFailed(
                        f"the {self.label} webhook was stored but serve could not apply it: "
                        f"{_one_line((failed or errors)[0])}",
                        "serve writes the unsubscribe to the state store and your write-back "
                        "table: check the write-back table's columns and UPDATE grant (doctor's "
                        f"write-back line) of your {self.label} sync",
                    )
                if time.monotonic() > deadline:
                    raise _StepFailed(
                        f"{len(rows)} {self.label} webhook event(s) stored, not all applied "
                        "within 20 s",
                        f"read the service log for the applier's error on the {self.label} event",
                    )
                time.sleep(0.05)
        finally:
            engine.dispose()

    async def _unsubscribe_only(self) -> str:
        async with self._control() as control:
            await self.profile.unsubscribe(self.sandbox, control, self.emails[0])
        return (
            f"a subscriber unsubscribed at {self.label}, which calls no webhook for it: the "
            "pull must bring it back"
        )

    async def _pull(self) -> str:
        from campaign_bridge.pull import run_pull

        fix = (
            "check the write-back table's columns and UPDATE grant (doctor's write-back line) "
            f"of your {self.label} sync"
        )
        try:
            summary = await run_pull(self._settings(), self.sync)
        except ConfigurationError as exc:  # e.g. a write-back column that is not there
            raise _StepFailed(f"{self.label} pull stopped: {_one_line(str(exc))}", fix) from exc
        status = await asyncio.to_thread(self._source_status, 1)
        if summary.status != "succeeded" or status != "unsubscribed":
            raise _StepFailed(
                f"{self.label} pull {summary.status}; the source row of the contact who "
                f"unsubscribed at {self.label} says {status!r}{_error(summary.error)}",
                fix,
            )
        return f"pull from {self.label} succeeded; the unsubscribe is written back to {self.table}"

    def _source_status(self, key: int) -> str | None:
        engine = create_engine(self.url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                query = sa.text(f"SELECT list_status FROM {self.table} WHERE id = :k")
                value = conn.execute(query, {"k": key}).scalar()
        finally:
            engine.dispose()
        return None if value is None else str(value)

    async def _push_again(self) -> str:
        from campaign_bridge.push import run_push

        summary = await run_push(self._settings(), self.sync)
        async with self._control() as control:
            status = await self.profile.member_status(self.sandbox, control, self.emails[0])
        if summary.status != "succeeded" or status != "unsubscribed":
            raise _StepFailed(
                f"{self.label} push {summary.status}; the member who unsubscribed is now "
                f"{status!r} at {self.label}{_error(summary.error)}",
                f"this is a bug (the {self.label} adapter or the consent rules): report it "
                "with `doctor --rehearse --bundle FILE`",
            )
        return f"the contact who unsubscribed stayed unsubscribed at {self.label}"


def _one_line(text: str, limit: int = 300) -> str:
    """A multi-line error (a configuration problem lists its problems below) on one line."""
    joined = " ".join(text.split())
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


@contextlib.contextmanager
def _applier_errors() -> Iterator[list[str]]:
    """The errors serve's webhook applier logs meanwhile (its events stay pending)."""
    errors: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record.getMessage())

    handler = Collect(logging.ERROR)
    logger = logging.getLogger("campaign_bridge.webhook_applier")
    logger.addHandler(handler)
    try:
        yield errors
    finally:
        logger.removeHandler(handler)


def _error(error: str | None) -> str:
    return f" ({str(error).splitlines()[0]})" if error else ""


@contextlib.contextmanager
def _serving(app: Any) -> Iterator[str]:
    """The bridge's app on a loopback port, in a thread (as `serve` runs it)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise _StepFailed("the bridge's web app did not start on a loopback port")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
