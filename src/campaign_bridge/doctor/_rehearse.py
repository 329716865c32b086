"""`doctor --rehearse`: the real push → webhook → pull → push round trip, in the target
environment, on the target's own state database, against an in-process Mailchimp sandbox.

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

The real ``cb_*`` tables and the real provider are never touched: every URL, key and audience of
the rehearsal is its own, and the sandbox listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from campaign_bridge.config import Settings
from campaign_bridge.db import create_engine, redact_url, sqlite_file_path
from campaign_bridge.doctor._result import CheckResult, fail, ok, skip

__all__ = ["CONTACTS", "PREFIX", "Rehearsal", "rehearse"]

PREFIX = "cb_rehearsal_"
CONTACTS = 5
SYNC = "rehearsal"
TABLE = "cb_rehearsal_contacts"


@dataclass
class Step:
    name: str
    passed: bool
    message: str
    fix: str = ""
    seconds: float = 0.0


@dataclass
class Rehearsal:
    """What happened, step by step; ``namespace`` is where it ran (removed afterwards)."""

    engine: str
    namespace: str
    steps: list[Step] = field(default_factory=list)
    removed: bool = False

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(step.passed for step in self.steps) and self.removed

    def results(self) -> list[CheckResult]:
        out = []
        for step in self.steps:
            name = f"rehearsal: {step.name}"
            timing = f" ({step.seconds:.1f} s)"
            out.append(
                ok(name, step.message + timing)
                if step.passed
                else fail(name, step.message, step.fix or "see the message; nothing was changed")
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
# The round trip


async def rehearse(settings: Settings, *, say: Callable[[str], None] | None = None) -> Rehearsal:
    """Run the round trip in a throwaway namespace of ``settings``' state database."""
    from campaign_bridge.sandbox.mailchimp.server import run_in_thread

    state_url = settings.effective_state_url()
    report = Rehearsal(engine=sa.make_url(state_url).get_backend_name(), namespace="")
    tell = say or (lambda _line: None)
    work = settings.data_dir / f"rehearsal-{uuid.uuid4().hex[:8]}"
    try:
        with throwaway(state_url, settings.data_dir) as (url, namespace, gone):
            report.namespace = namespace
            tell(f"rehearsal in {namespace} on {redact_url(state_url)}")
            with run_in_thread() as sandbox:
                trip = _RoundTrip(url, sandbox, work, report, tell)
                await trip.run()
        report.removed = gone()
    except NamespaceError as exc:
        report.steps.append(Step("namespace", False, exc.message, exc.fix))
        report.removed = True  # nothing was created
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


class _RoundTrip:
    def __init__(
        self, url: str, sandbox: Any, work: Path, report: Rehearsal, say: Callable[[str], None]
    ) -> None:
        self.url = url
        self.sandbox = sandbox
        self.report = report
        self.say = say
        self.token = secrets.token_urlsafe(24)
        self.emails = [f"rehearsal.{i}.{uuid.uuid4().hex[:6]}@mailbox.org" for i in range(CONTACTS)]
        self.settings = self._settings(work, "http://127.0.0.1:9")

    def _settings(self, work: Path, public_url: str) -> Settings:
        sandbox = self.sandbox
        return Settings.model_validate(
            {
                "data_dir": str(work),
                "state_url": self.url,
                "server": {"webhook_tokens": [self.token], "public_url": public_url},
                "syncs": {
                    SYNC: {
                        "source": {
                            "url": self.url,
                            "table": TABLE,
                            "consent_column": "marketing_opt_in",
                        },
                        "destination": {
                            "api_key": sandbox.api_key,
                            "list_id": sandbox.list_id,
                            "base_url": sandbox.base_url,
                            "max_retries": 1,
                        },
                        "fields": {"FNAME": "first_name"},
                        "writeback": {
                            "table": TABLE,
                            "key_column": "id",
                            "status_column": "mc_status",
                            "unsubscribed_at_column": "unsubscribed_at",
                        },
                    }
                },
            }
        )

    async def run(self) -> None:
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("migrations", self._migrate),
            ("source", self._source),
            ("push", self._push),
            ("webhook", self._webhook),
            ("pull", self._pull),
            ("push again", self._push_again),
        ]
        for name, action in steps:
            started = time.monotonic()
            try:
                message = await action()
            except _StepFailed as exc:
                self._record(Step(name, False, exc.message, exc.fix, time.monotonic() - started))
                return
            except Exception as exc:
                detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                self._record(Step(name, False, detail, "", time.monotonic() - started))
                return
            self._record(Step(name, True, message, "", time.monotonic() - started))

    def _record(self, step: Step) -> None:
        self.report.steps.append(step)
        self.say(f"  {'ok  ' if step.passed else 'FAIL'} {step.name}: {step.message}")

    async def _migrate(self) -> str:
        from campaign_bridge import migrations

        await asyncio.to_thread(migrations.upgrade, self.url)
        at = await asyncio.to_thread(migrations.current, self.url)
        return f"the real migrations ran to {at} in the throwaway namespace"

    async def _source(self) -> str:
        await asyncio.to_thread(self._create_source)
        return f"{CONTACTS} synthetic contacts in {TABLE}"

    def _create_source(self) -> None:
        metadata = sa.MetaData()
        table = sa.Table(
            TABLE,
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("email", sa.String(200), nullable=False),
            sa.Column("first_name", sa.String(50)),
            sa.Column("marketing_opt_in", sa.Boolean, nullable=False),
            sa.Column("mc_status", sa.String(20)),
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

        summary = await run_push(self.settings, SYNC)
        if summary.status != "succeeded" or summary.created != CONTACTS:
            raise _StepFailed(
                f"push {summary.status}: created {summary.created} of {CONTACTS}, rejected "
                f"{dict(summary.rejected)}",
                "run `campaign-bridge push --dry-run` on the real sync and read its rejections",
            )
        return f"created {summary.created} members in the sandbox audience"

    async def _webhook(self) -> str:
        from campaign_bridge.server import create_app, open_store

        with contextlib.closing(open_store(self.settings)) as store:
            return await self._deliver(create_app(self.settings, store=store, checks={}))

    async def _deliver(self, app: Any) -> str:
        from campaign_bridge.server import register_webhooks
        from campaign_bridge.status_changes import email_hash

        with _serving(app) as root:
            settings = self._settings(Path(self.settings.data_dir), root)
            await register_webhooks(settings)
            member = email_hash(self.emails[0])
            async with httpx.AsyncClient(base_url=self.sandbox.control_url, timeout=30) as client:
                path = f"/lists/{self.sandbox.list_id}/members/{member}/unsubscribe"
                (await client.post(path, json={"reason": "rehearsal"})).raise_for_status()
                flushed = (await client.post("/webhooks/flush", json={"timeout": 20})).json()
            if flushed.get("failed"):
                raise _StepFailed(
                    f"the sandbox could not deliver {flushed['failed']} webhook(s) to {root}",
                    "check that nothing on this machine blocks loopback connections",
                )
            applied = await asyncio.to_thread(self._wait_applied)
        return f"an unsubscribe was delivered to serve over HTTP and applied ({applied} event)"

    def _wait_applied(self) -> int:
        from campaign_bridge.state import webhook_events

        engine = create_engine(self.url, poolclass=sa.pool.NullPool)
        deadline = time.monotonic() + 20
        try:
            while True:
                with engine.connect() as conn:
                    rows = conn.execute(sa.select(webhook_events.c.applied_at)).all()
                if rows and all(row.applied_at is not None for row in rows):
                    return len(rows)
                if time.monotonic() > deadline:
                    raise _StepFailed(
                        f"{len(rows)} webhook event(s) stored, not all applied within 20 s",
                        "read the service log for the applier's error",
                    )
                time.sleep(0.05)
        finally:
            engine.dispose()

    async def _pull(self) -> str:
        from campaign_bridge.pull import run_pull

        summary = await run_pull(self.settings, SYNC)
        status = await asyncio.to_thread(self._source_status, 1)
        if summary.status != "succeeded" or status != "unsubscribed":
            raise _StepFailed(
                f"pull {summary.status}; the source row of the unsubscribed contact says "
                f"{status!r}",
                "check the write-back table's columns and UPDATE grant (doctor's write-back line)",
            )
        return f"pull succeeded; the unsubscribe is written back to {TABLE}"

    def _source_status(self, key: int) -> str | None:
        engine = create_engine(self.url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                query = sa.text(f"SELECT mc_status FROM {TABLE} WHERE id = :k")
                value = conn.execute(query, {"k": key}).scalar()
        finally:
            engine.dispose()
        return None if value is None else str(value)

    async def _push_again(self) -> str:
        from campaign_bridge.push import run_push
        from campaign_bridge.status_changes import email_hash

        summary = await run_push(self.settings, SYNC)
        members = self.sandbox.sandbox.lists[self.sandbox.list_id].members
        member = members.get(email_hash(self.emails[0]))
        status = str(getattr(member, "status", None))
        if summary.status != "succeeded" or status != "unsubscribed":
            raise _StepFailed(
                f"push {summary.status}; the unsubscribed member is now {status!r}",
                "this is a bug: report it with `doctor --rehearse --bundle FILE`",
            )
        return "the unsubscribed contact stayed unsubscribed"


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
