"""The layered loader: precedence, provenance, *_FILE secrets, every problem at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from campaign_bridge.config import Settings, load_settings, load_settings_with_provenance
from campaign_bridge.errors import ConfigurationError

KEY = "0123456789abcdef0123456789abcdef-us6"
OTHER_KEY = "fedcba9876543210fedcba9876543210-us6"

GOOD = f"""
log_level = "WARNING"

[server]
port = 8181
host = "0.0.0.0"

[syncs.customers.source]
url = "sqlite:///contacts.db"
table = "contacts"

[syncs.customers.destination]
api_key = "{KEY}"
list_id = "list1"

[syncs.customers.fields]
FNAME = "first_name"
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(exc: pytest.ExceptionInfo[ConfigurationError]) -> dict[str, str]:
    return {p.location: str(p) for p in exc.value.problems}


# --- precedence and provenance ---------------------------------------------------------------


def test_defaults_without_any_source(workdir: Path) -> None:
    loaded = load_settings_with_provenance(environ={})
    assert loaded.config_file is None
    assert loaded.settings.syncs == {}
    assert loaded.settings.server.port == 8080
    assert loaded.origin_of("server.port") == "default"
    assert loaded.settings.effective_state_url() == "sqlite:///.campaign-bridge/state.db"


def test_precedence_cli_over_env_over_file_over_default(workdir: Path) -> None:
    write(workdir / "campaign-bridge.toml", GOOD)  # the default file name in the cwd
    env = {
        "CAMPAIGN_BRIDGE_SERVER__PORT": "9000",
        "CAMPAIGN_BRIDGE_LOG_LEVEL": "ERROR",
    }
    loaded = load_settings_with_provenance(overrides={"log_level": "debug"}, environ=env)
    settings = loaded.settings
    assert settings.log_level == "DEBUG"  # cli beats env beats file, and is normalised
    assert loaded.origin_of("log_level") == "cli"
    assert settings.server.port == 9000  # env beats file
    assert loaded.origin_of("server.port") == "env:CAMPAIGN_BRIDGE_SERVER__PORT"
    assert settings.server.host == "0.0.0.0"  # file beats default
    assert loaded.origin_of("server.host") == "file:campaign-bridge.toml"
    assert settings.server.max_body_bytes == 1_048_576
    assert loaded.origin_of("server.max_body_bytes") == "default"
    assert loaded.config_file == Path("campaign-bridge.toml")


def test_dotted_cli_overrides_reach_nested_settings(workdir: Path) -> None:
    path = write(workdir / "c.toml", GOOD)
    loaded = load_settings_with_provenance(path, overrides={"server.port": 7000}, environ={})
    assert loaded.settings.server.port == 7000
    assert loaded.origin_of("server.port") == "cli"


def test_config_file_named_by_environment(workdir: Path) -> None:
    write(workdir / "elsewhere.toml", GOOD)
    settings = load_settings(environ={"CAMPAIGN_BRIDGE_CONFIG": "elsewhere.toml"})
    assert settings.server.port == 8181


def test_env_overrides_a_sync_from_the_file_case_insensitively(workdir: Path) -> None:
    path = write(workdir / "c.toml", GOOD.replace("syncs.customers", "syncs.Customers-EU"))
    env = {"CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS_EU__DESTINATION__LIST_ID": "list2"}
    loaded = load_settings_with_provenance(path, environ=env)
    assert list(loaded.settings.syncs) == ["Customers-EU"]
    assert loaded.settings.syncs["Customers-EU"].destination.list_id == "list2"
    assert loaded.origin_of("syncs.Customers-EU.destination.list_id") == (
        "env:CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS_EU__DESTINATION__LIST_ID"
    )
    assert loaded.origin_of("syncs.Customers-EU.source.table") == "file:" + str(path)


def test_a_sync_entirely_from_the_environment(workdir: Path) -> None:
    prefix = "CAMPAIGN_BRIDGE_SYNCS__NEWSLETTER__"
    env = {
        prefix + "SOURCE__URL": "postgresql://app:pw@db/app",
        prefix + "SOURCE__QUERY": "SELECT id, email FROM people",
        prefix + "DESTINATION__API_KEY": KEY,
        prefix + "DESTINATION__LIST_ID": "abc",
        prefix + "FIELDS__FNAME": "first_name",
        prefix + "TAGS": '{"VIP": "is_vip"}',
        prefix + "SCHEDULE__PUSH": "*/10 * * * *",
        "CAMPAIGN_BRIDGE_SERVER__WEBHOOK_TOKENS": "aaaaaaaaaaaaaaaa1, bbbbbbbbbbbbbbbb2",
    }
    settings = load_settings(environ=env)
    sync = settings.syncs["newsletter"]  # sync names are lower-cased
    assert sync.source.query == "SELECT id, email FROM people"
    assert sync.fields == {"FNAME": "first_name"}  # mapping keys keep their case
    assert sync.tags == {"VIP": "is_vip"}
    assert sync.schedule.push == "*/10 * * * *"
    tokens = [t.get_secret_value() for t in settings.server.webhook_tokens]
    assert tokens == ["aaaaaaaaaaaaaaaa1", "bbbbbbbbbbbbbbbb2"]


def test_env_mapping_entries_merge_with_the_files(workdir: Path) -> None:
    path = write(workdir / "c.toml", GOOD)
    env = {"CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__FIELDS__LNAME": "last_name"}
    loaded = load_settings_with_provenance(path, environ=env)
    assert loaded.settings.syncs["customers"].fields == {
        "FNAME": "first_name",
        "LNAME": "last_name",
    }
    assert loaded.origin_of("syncs.customers.fields.FNAME").startswith("file:")
    assert loaded.origin_of("syncs.customers.fields.LNAME").startswith("env:")


def test_empty_env_value_unsets_an_optional_setting(workdir: Path) -> None:
    path = write(workdir / "c.toml", GOOD + '\n[syncs.customers.schedule]\npush = "every 15m"\n')
    env = {"CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__SCHEDULE__PUSH": ""}
    settings = load_settings(path, environ=env)
    assert settings.syncs["customers"].schedule.push is None


def test_unknown_top_level_variable_is_a_warning_not_an_error(workdir: Path) -> None:
    loaded = load_settings_with_provenance(environ={"CAMPAIGN_BRIDGE_SOMETHING_ELSE": "1"})
    assert loaded.warnings == [
        "CAMPAIGN_BRIDGE_SOMETHING_ELSE is not a campaign-bridge setting; it was ignored"
    ]


def test_default_environment_is_os_environ(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_BRIDGE_SERVER__PORT", "8123")
    assert load_settings().server.port == 8123
    assert "CAMPAIGN_BRIDGE_SERVER__PORT" in os.environ


# --- secrets from files ------------------------------------------------------------------------


def test_env_file_secret_is_read_and_trailing_newline_stripped(workdir: Path) -> None:
    path = write(workdir / "c.toml", GOOD.replace(f'api_key = "{KEY}"\n', ""))
    secret = write(workdir / "key.txt", OTHER_KEY + "\n")
    var = "CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__DESTINATION__API_KEY_FILE"
    loaded = load_settings_with_provenance(path, environ={var: str(secret)})
    api_key = loaded.settings.syncs["customers"].destination.api_key
    assert api_key.get_secret_value() == OTHER_KEY
    assert loaded.origin_of("syncs.customers.destination.api_key") == f"env-file:{var}"


def test_env_file_secret_beats_the_file_value(workdir: Path) -> None:
    path = write(workdir / "c.toml", GOOD)
    secret = write(workdir / "key.txt", OTHER_KEY)
    var = "CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__DESTINATION__API_KEY_FILE"
    settings = load_settings(path, environ={var: str(secret)})
    assert settings.syncs["customers"].destination.api_key.get_secret_value() == OTHER_KEY


def test_toml_file_secret(workdir: Path) -> None:
    secret = write(workdir / "key.txt", OTHER_KEY + "\r\n")
    text = GOOD.replace(f'api_key = "{KEY}"', f'api_key_file = "{secret}"')
    path = write(workdir / "c.toml", text)
    loaded = load_settings_with_provenance(path, environ={})
    destination = loaded.settings.syncs["customers"].destination
    assert destination.api_key.get_secret_value() == OTHER_KEY
    assert loaded.origin_of("syncs.customers.destination.api_key") == (
        f"file:{path} (api_key_file)"
    )


def test_url_password_and_token_lists_from_files(workdir: Path) -> None:
    state = write(workdir / "state_url", "postgresql://bridge:s3cret@db/bridge\n")
    tokens = write(workdir / "tokens", "token-one-0123456789\n\ntoken-two-0123456789\n")
    env = {
        "CAMPAIGN_BRIDGE_STATE_URL_FILE": str(state),
        "CAMPAIGN_BRIDGE_SERVER__WEBHOOK_TOKENS_FILE": str(tokens),
    }
    settings = load_settings(environ=env)
    assert settings.state_url == "postgresql://bridge:s3cret@db/bridge"
    assert [t.get_secret_value() for t in settings.server.webhook_tokens] == [
        "token-one-0123456789",
        "token-two-0123456789",
    ]


def test_unreadable_secret_files_name_the_variable(workdir: Path) -> None:
    path = write(
        workdir / "c.toml",
        GOOD.replace(f'api_key = "{KEY}"', 'api_key_file = "missing-key.txt"'),
    )
    env = {"CAMPAIGN_BRIDGE_SERVER__ADMIN_TOKEN_FILE": str(workdir / "nope")}
    with pytest.raises(ConfigurationError) as exc:
        load_settings(path, environ=env)
    found = problems_of(exc)
    assert (
        "cannot read the secret file named by CAMPAIGN_BRIDGE_SERVER__ADMIN_TOKEN_FILE"
        in (found["server.admin_token"])
    )
    assert "No such file or directory" in found["server.admin_token"]
    assert (
        "cannot read the secret file named by api_key_file"
        in (found["syncs.customers.destination.api_key"])
    )


def test_value_and_file_form_together_is_an_error(workdir: Path) -> None:
    secret = write(workdir / "t", "x" * 20)
    env = {
        "CAMPAIGN_BRIDGE_SERVER__ADMIN_TOKEN": "y" * 20,
        "CAMPAIGN_BRIDGE_SERVER__ADMIN_TOKEN_FILE": str(secret),
    }
    with pytest.raises(ConfigurationError) as exc:
        load_settings(environ=env)
    assert (
        "both CAMPAIGN_BRIDGE_SERVER__ADMIN_TOKEN and CAMPAIGN_BRIDGE_SERVER__ADMIN_TOKEN_FILE"
        in (problems_of(exc)["server.admin_token"])
    )


def test_file_form_of_a_non_secret_is_refused(workdir: Path) -> None:
    secret = write(workdir / "p", "9000")
    path = write(workdir / "c.toml", f'[server]\nhost_file = "{secret}"\n')
    env = {"CAMPAIGN_BRIDGE_SERVER__PORT_FILE": str(secret)}
    with pytest.raises(ConfigurationError) as exc:
        load_settings(path, environ=env)
    found = problems_of(exc)
    assert "server.port is not a secret" in found["CAMPAIGN_BRIDGE_SERVER__PORT_FILE"]
    assert "host is not a secret" in found["server.host_file"]


# --- every problem at once ---------------------------------------------------------------------

BROKEN = """
log_level = "LOUD"

[server]
port = 99999
prot = 1

[syncs.customers.source]
url = "not a url"
query = "SELECT 1"
table = "contacts"

[syncs.customers.destination]
api_key = "not-a-key-Zz9"

[syncs.customers.schedule]
push = "every day"
pull = "61 * * * *"

[syncs.orders.source]
url = "sqlite:///o.db"

[syncs.orders.destination]
api_key = "0123456789abcdef0123456789abcdef-us6"
base_url = "https://us9.api.mailchimp.com/3.0"
list_id = "x"
concurrency = "many"
"""


def test_every_problem_is_reported_in_one_exception(workdir: Path) -> None:
    path = write(workdir / "broken.toml", BROKEN)
    env = {"CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__MODE": "sideways"}
    with pytest.raises(ConfigurationError) as exc:
        load_settings(path, environ=env)
    found = problems_of(exc)
    assert exc.value.exit_code == 2
    assert exc.value.source == str(path)
    assert set(found) == {
        "log_level",
        "server.port",
        "server.prot",
        "syncs.customers.source.url",
        "syncs.customers.source.table",
        "syncs.customers.destination.api_key",
        "syncs.customers.destination.list_id",
        "syncs.customers.schedule.push",
        "syncs.customers.schedule.pull",
        "syncs.customers.mode",
        "syncs.orders.source.table",
        "syncs.orders.destination.api_key",
        "syncs.orders.destination.concurrency",
    }
    assert "unknown log level 'LOUD'" in found["log_level"]
    assert "expected less than or equal to 65535" in found["server.port"]
    assert "did you mean 'port'?" in found["server.prot"]
    assert "both source.query and source.table are set" in found["syncs.customers.source.table"]
    assert "neither source.query nor source.table" in found["syncs.orders.source.table"]
    assert "does not look like a Mailchimp API key" in found["syncs.customers.destination.api_key"]
    assert "is required but not set" in found["syncs.customers.destination.list_id"]
    assert (
        "CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__DESTINATION__LIST_ID"
        in (found["syncs.customers.destination.list_id"])
    )
    assert "every day" in found["syncs.customers.schedule.push"]
    assert "minute" in found["syncs.customers.schedule.pull"]
    assert (
        "data centre 'us6' but base_url points at 'us9'"
        in (found["syncs.orders.destination.api_key"])
    )
    # where each value came from
    assert found["server.port"].endswith(f"[from file:{path}]")
    assert found["syncs.customers.mode"].endswith(
        "[from env:CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__MODE]"
    )
    # the message lists them all
    text = str(exc.value)
    assert text.startswith(f"invalid configuration in {path}: 13 problems")
    assert all(location in text for location in found)


def test_secrets_never_appear_in_problems(workdir: Path) -> None:
    secret = "supersecretvalue-not-a-mailchimp-key"
    path = write(
        workdir / "c.toml",
        GOOD.replace(KEY, secret).replace("sqlite:///contacts.db", "postgresql://u:pw1234@/x"),
    )
    env = {"CAMPAIGN_BRIDGE_SERVER__ADMIN_TOKEN": "tok-123", "CAMPAIGN_BRIDGE_SERVER__PORT": "x"}
    with pytest.raises(ConfigurationError) as exc:
        load_settings(path, environ=env)
    text = str(exc.value)
    assert "syncs.customers.destination.api_key" in text
    assert secret not in text
    assert "pw1234" not in text


def test_toml_syntax_error_has_the_line_number(workdir: Path) -> None:
    path = write(workdir / "c.toml", 'log_level = "INFO"\n[server\nport = 1\n')
    with pytest.raises(ConfigurationError) as exc:
        load_settings(path, environ={})
    (problem,) = exc.value.problems
    assert problem.location == f"{path}:2:8"
    assert problem.problem.startswith("TOML syntax error")


def test_missing_explicit_file_is_an_error_but_a_missing_default_is_not(workdir: Path) -> None:
    assert load_settings(environ={}).syncs == {}
    with pytest.raises(ConfigurationError) as exc:
        load_settings(workdir / "absent.toml", environ={})
    assert "does not exist" in str(exc.value)
    with pytest.raises(ConfigurationError):
        load_settings(environ={"CAMPAIGN_BRIDGE_CONFIG": "also-absent.toml"})


def test_unknown_setting_inside_a_known_section_is_an_error(workdir: Path) -> None:
    with pytest.raises(ConfigurationError) as exc:
        load_settings(environ={"CAMPAIGN_BRIDGE_SERVER__PROT": "1"})
    assert (
        "unknown setting 'server.prot' (did you mean 'port'?)"
        in (problems_of(exc)["CAMPAIGN_BRIDGE_SERVER__PROT"])
    )


def test_invalid_json_in_env_is_reported(workdir: Path) -> None:
    env = {"CAMPAIGN_BRIDGE_SERVER": "{port: 1}"}
    with pytest.raises(ConfigurationError) as exc:
        load_settings(environ=env)
    assert "is not valid JSON" in problems_of(exc)["server"]


# --- destination key rules ---------------------------------------------------------------------


def sync_data(**destination: object) -> dict[str, object]:
    return {
        "syncs": {
            "s": {
                "source": {"url": "sqlite:///x.db", "table": "t"},
                "destination": {"list_id": "l", **destination},
            }
        }
    }


def test_any_key_is_accepted_by_a_non_mailchimp_base_url() -> None:
    settings = Settings.model_validate(
        sync_data(api_key="sandbox", base_url="http://127.0.0.1:8089/3.0/")
    )
    destination = settings.syncs["s"].destination
    assert destination.base_url == "http://127.0.0.1:8089/3.0"


@pytest.mark.parametrize(
    ("key", "base_url", "fragment"),
    [
        ("short-us6", None, "does not look like a Mailchimp API key"),
        ("0123456789ABCDEF0123456789ABCDEF-us6", None, "does not look like"),
        (KEY, "https://us7.api.mailchimp.com/3.0", "data centre 'us6'"),
        (KEY, "ftp://example.org", "is not an http(s) URL"),
        ("   ", "http://127.0.0.1:8089", "is empty"),
    ],
)
def test_bad_keys_are_refused(key: str, base_url: str | None, fragment: str) -> None:
    with pytest.raises(Exception, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        Settings.model_validate(sync_data(api_key=key, base_url=base_url))


def test_matching_mailchimp_host_is_accepted() -> None:
    settings = Settings.model_validate(
        sync_data(api_key=KEY, base_url="https://us6.api.mailchimp.com/3.0")
    )
    assert settings.syncs["s"].destination.api_key.get_secret_value() == KEY


@pytest.mark.parametrize("schedule", ["every 15m", "every 1h30m", "0 6 * * mon-fri", "@daily"])
def test_valid_schedules(schedule: str) -> None:
    data = sync_data(api_key=KEY)
    data["syncs"]["s"]["schedule"] = {"push": schedule}  # type: ignore[index]
    assert Settings.model_validate(data).syncs["s"].schedule.push == schedule


def test_the_shipped_deployment_environment_is_valid(workdir: Path) -> None:
    env_file = Path(__file__).resolve().parents[2] / "deploy" / "bridge.env"
    assert env_file.exists(), "deploy/bridge.env ships with the deploy kit"
    env = {}
    for line in env_file.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip().strip('"')
    key_var = "CAMPAIGN_BRIDGE_SYNCS__CUSTOMERS__DESTINATION__API_KEY_FILE"
    assert key_var in env
    env[key_var] = str(write(workdir / "mailchimp_api_key", KEY + "\n"))
    contents = {
        "database_url": "postgresql://bridge:pw@postgres/bridge\n",
        "admin_token": "admin-" + "a1b2c3d4" * 5 + "\n",
        "webhook_token": "hook-" + "e5f6g7h8" * 5 + "\n",
    }
    for name, value in env.items():
        if value.startswith("/run/secrets/") and name != key_var:
            secret = value.removeprefix("/run/secrets/")
            env[name] = str(write(workdir / secret, contents[secret]))
    loaded = load_settings_with_provenance(environ=env)
    assert loaded.warnings == []
    assert loaded.settings.server.admin_token is not None
    assert loaded.settings.syncs["customers"].destination.api_key.get_secret_value() == KEY
