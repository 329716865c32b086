"""The deploy kit, tested as it runs: every command in deploy/compose.yaml (healthchecks, the init
step, migrate, serve) and deploy/campaign-bridge.service (ExecStartPre, ExecStart) is executed
against live processes, with only container/host paths and ports adapted (see _kit.py)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from campaign_bridge.db import create_engine
from tests.acceptance import _kit

pytestmark = pytest.mark.slow

ADMIN = "admin-token-for-the-kit-test-5f0c2b7e91"
HOOK = "webhook-token-for-the-kit-test-a83d6e21f4"


def _secrets(adapter: _kit.Adapter, database_url: str) -> None:
    """What docs/deploy.md step 5 has the operator create in deploy/secrets/."""
    adapter.secrets.mkdir(parents=True)
    values = {
        "postgres_password": "unused-here",
        "database_url": database_url,
        # the key the bundled sandbox seeds (docs/deploy.md says the same)
        "mailchimp_api_key": "1027c4d1c386bbc4cd613e30d8f16adf-us6",
        "admin_token": ADMIN,
        "webhook_token": HOOK,
    }
    for name in _kit.compose()["secrets"]:
        path = adapter.secrets / name
        path.write_text(values[name] + "\n", encoding="utf-8")
        path.chmod(0o400)


def _adapter(tmp_path: Path, postgresql_url: str) -> _kit.Adapter:
    adapter = _kit.Adapter(
        tmp_path, {"sandbox:8089": _kit.free_port(), "bridge:8080": _kit.free_port()}
    )
    _secrets(adapter, postgresql_url)
    return adapter


def _pg_env(url: str) -> dict[str, str]:
    parsed = sa.make_url(url)
    return {"PGHOST": str(parsed.host), "PGPORT": str(parsed.port or 5432)}


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_kit.CLI, *args], env=env, capture_output=True, text=True, timeout=300)


def test_the_old_sandbox_healthcheck_could_never_pass(tmp_path: Path) -> None:
    """Defect 2's cause, kept as a fact: Mailchimp's ping needs a key; the control API does not."""
    from campaign_bridge.sandbox.mailchimp.server import run_in_thread

    with run_in_thread() as sandbox:
        root = sandbox.base_url.removesuffix("/3.0")
        assert httpx.get(f"{root}/3.0/ping").status_code == 401
        assert httpx.get(f"{root}/_sandbox/health").status_code == 200


def test_compose_stack_starts_seeds_migrates_serves_and_protects_the_status_page(
    tmp_path: Path, postgresql_url: str
) -> None:
    adapter = _adapter(tmp_path, postgresql_url)
    with _kit.compose_up(adapter, {"postgres": _pg_env(postgresql_url)}) as stack:
        assert set(stack.completed) == {"init", "migrate"}
        assert "created customers" in stack.completed["init"].stdout
        engine = create_engine(postgresql_url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM customers")).scalar()
        engine.dispose()
        assert rows == 507  # 500 demo contacts + 7 deliberately broken rows

        env = stack.envs["bridge"]
        bridge = f"http://127.0.0.1:{adapter.ports['bridge:8080']}"
        assert httpx.get(f"{bridge}/").status_code == 401  # protected
        page = httpx.get(f"{bridge}/", headers={"Authorization": f"Bearer {ADMIN}"})
        assert page.status_code == 200
        assert "Log out" in page.text

        # The init step is idempotent: running it again leaves the table alone.
        again = _cli(_kit.compose()["services"]["init"]["command"], env)
        assert again.returncode == 0, again.stderr
        assert "exists; left as it is" in again.stdout

        pre = _cli(["doctor", "--json"], env)
        results = {row["name"]: row for row in json.loads(pre.stdout)}
        assert results["migrations"]["status"] == "ok"
        assert results["data sample [customers]"]["status"] in ("ok", "warn")
        register = _cli(["webhooks", "register"], env)
        assert register.returncode == 0, register.stdout + register.stderr
        live = _cli(["doctor", "--live", "--json"], env)
        assert live.returncode == 0, live.stdout + live.stderr
        statuses = {row["name"]: row["status"] for row in json.loads(live.stdout)}
        assert statuses["service ready"] == "ok"
        assert statuses["webhook registered [customers]"] == "ok"


def test_image_builds_where_a_container_engine_answers() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip(
            "no container engine answers `docker info` here; the image build is checked where "
            "one does (the compose services' commands are run above as local processes)"
        )
    done = subprocess.run(
        [docker, "build", "-t", "campaign-bridge:kit-test", str(_kit.REPO)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _systemd_env(tmp_path: Path, adapter: _kit.Adapter) -> tuple[_kit.HostPaths, dict[str, str]]:
    """/etc/campaign-bridge/bridge.env as docs/deploy.md step 2 has the operator write it."""
    paths = _kit.HostPaths(tmp_path / "host", prefix=_kit.BIN.parent)
    (paths.root / "etc").mkdir(parents=True)
    (paths.root / "var").mkdir()
    env_file = paths.root / "etc" / "bridge.env"
    lines = []
    for key, value in _kit.read_env_file(_kit.DEPLOY / "bridge.env").items():
        lines.append(f"{key}={adapter.text(value)}")
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env_file.chmod(0o600)
    return paths, _kit.unit_environment(_kit.unit(), paths)


def test_systemd_unit_commands_refuse_a_broken_environment_and_run_a_good_one(
    tmp_path: Path, postgresql_url: str
) -> None:
    from campaign_bridge.demo_data import seed_demo_table
    from campaign_bridge.sandbox.mailchimp.server import run_in_thread

    settings = _kit.unit()
    assert settings["ExecStartPre"], "the unit runs doctor before start"
    adapter = _adapter(tmp_path, postgresql_url)
    seed_demo_table(postgresql_url, "customers", 50)
    with run_in_thread(port=adapter.ports["sandbox:8089"]) as sandbox:
        from campaign_bridge.sandbox.mailchimp.control import seed_demo

        seed_demo(sandbox.sandbox)
        paths, env = _systemd_env(tmp_path, adapter)
        env["CAMPAIGN_BRIDGE_SERVER__PORT"] = str(adapter.ports["bridge:8080"])
        cwd = Path(paths.text(settings["WorkingDirectory"][0]))
        assert env["CAMPAIGN_BRIDGE_DATA_DIR"] == str(paths.root / "var")

        # A broken environment: ExecStartPre fails, so systemd never starts the service.
        broken = {**env, "CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__SOURCE__TABLE": "no_such_table"}
        for line in settings["ExecStartPre"]:
            refused = subprocess.run(
                _kit.unit_command(line, paths), env=broken, cwd=cwd, capture_output=True,
                text=True, timeout=300,
            )  # fmt: skip
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert "no_such_table" in refused.stdout

        # A correct fresh install: doctor passes before migrate (migrations are the next step).
        for line in settings["ExecStartPre"]:
            pre = subprocess.run(
                _kit.unit_command(line, paths), env=env, cwd=cwd, capture_output=True,
                text=True, timeout=300,
            )  # fmt: skip
            assert pre.returncode == 0, pre.stdout + pre.stderr
            assert "next" in pre.stdout
        assert _cli(["migrate", "upgrade"], env).returncode == 0

        start = settings["ExecStart"][0]
        process = subprocess.Popen(
            _kit.unit_command(start, paths), env=env, cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{adapter.ports['bridge:8080']}"
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                try:
                    if httpx.get(f"{url}/-/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the unit's ExecStart never became ready"
                time.sleep(0.2)
            assert _cli(["webhooks", "register"], env).returncode == 0
            live = _cli(["doctor", "--live"], env)
            assert live.returncode == 0, live.stdout + live.stderr
        finally:
            process.send_signal(getattr(signal, settings["KillSignal"][0]))
            stop = float(settings["TimeoutStopSec"][0])
            # uvicorn shuts down gracefully, then re-raises the signal; systemd counts an exit
            # by SIGTERM as clean (SuccessExitStatus includes it).
            assert process.wait(timeout=stop) in (0, -signal.SIGTERM)
            output = process.stdout.read() if process.stdout else ""
            if process.stdout:
                process.stdout.close()
            assert '"message": "stopped"' in output
