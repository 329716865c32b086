"""Many syncs in many files: `include` patterns, CAMPAIGN_BRIDGE_CONFIG_DIR, provenance, clashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign_bridge.config import load_settings_with_provenance
from campaign_bridge.errors import ConfigurationError

SANDBOX = "http://127.0.0.1:8089/3.0"


def sync_toml(name: str, *, key: str | None = "k-1", table: str = "contacts") -> str:
    lines = [
        f"[syncs.{name}.source]",
        'url = "sqlite:///contacts.db"',
        f'table = "{table}"',
        f"[syncs.{name}.destination]",
        f'base_url = "{SANDBOX}"',
        'list_id = "list1"',
    ]
    if key is not None:
        lines.append(f'api_key = "{key}"')
    return "\n".join(lines) + "\n"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf.d").mkdir()
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def locations(exc: pytest.ExceptionInfo[ConfigurationError]) -> dict[str, str]:
    return {p.location: str(p) for p in exc.value.problems}


def test_include_adds_every_file_and_provenance_names_the_file(workdir: Path) -> None:
    main = write(
        workdir / "campaign-bridge.toml",
        'include = ["conf.d/*.toml"]\nlog_level = "WARNING"\n' + sync_toml("home"),
    )
    for index in range(30):
        write(workdir / "conf.d" / f"client-{index:02}.toml", sync_toml(f"client-{index:02}"))
    write(workdir / "conf.d" / "notes.txt", "not toml, not matched")

    loaded = load_settings_with_provenance(environ={})

    assert loaded.config_file == Path("campaign-bridge.toml")
    assert list(loaded.settings.syncs) == ["home"] + [f"client-{i:02}" for i in range(30)]
    assert loaded.included_files == [Path("conf.d") / f"client-{i:02}.toml" for i in range(30)]
    assert loaded.origin_of("syncs.client-07.source.table") == "file:conf.d/client-07.toml"
    assert loaded.origin_of("syncs.home.source.table") == f"file:{main.name}"
    assert loaded.origin_of("log_level") == f"file:{main.name}"
    assert loaded.origin_of("syncs.client-07.mode") == "default"


def test_include_is_relative_to_the_main_file_not_the_working_directory(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("etc")
    (elsewhere / "conf.d").mkdir()
    main = write(elsewhere / "bridge.toml", 'include = "conf.d/*.toml"\n')
    write(elsewhere / "conf.d" / "a.toml", sync_toml("a"))

    loaded = load_settings_with_provenance(main, environ={})

    assert list(loaded.settings.syncs) == ["a"]
    assert loaded.origin_of("syncs.a.source.url") == f"file:{elsewhere / 'conf.d' / 'a.toml'}"


def test_config_dir_works_without_a_main_file(workdir: Path) -> None:
    write(workdir / "conf.d" / "b.toml", sync_toml("b"))
    write(workdir / "conf.d" / "a.toml", sync_toml("a") + sync_toml("a2"))

    loaded = load_settings_with_provenance(environ={"CAMPAIGN_BRIDGE_CONFIG_DIR": "conf.d"})

    assert loaded.config_file is None
    assert list(loaded.settings.syncs) == ["a", "a2", "b"]  # files in name order
    assert loaded.origin_of("syncs.a2.source.table") == "file:conf.d/a.toml"
    assert loaded.warnings == []  # the variable is the loader's, not an unknown setting


def test_a_file_matched_twice_is_read_once(workdir: Path) -> None:
    write(workdir / "campaign-bridge.toml", 'include = ["conf.d/*.toml", "conf.d/a.toml"]\n')
    write(workdir / "conf.d" / "a.toml", sync_toml("a"))

    loaded = load_settings_with_provenance(environ={"CAMPAIGN_BRIDGE_CONFIG_DIR": "conf.d"})

    assert list(loaded.settings.syncs) == ["a"]
    assert loaded.included_files == [Path("conf.d/a.toml")]


def test_per_sync_secrets_from_the_environment_and_from_files(workdir: Path) -> None:
    write(workdir / "campaign-bridge.toml", 'include = ["conf.d/*.toml"]\n')
    write(workdir / "conf.d" / "acme-eu.toml", sync_toml("acme-eu", key=None))
    write(workdir / "conf.d" / "brand.toml", sync_toml("brand", key=None))
    secret = write(workdir / "brand.key", "key-of-brand\n")
    write(
        workdir / "conf.d" / "shop.toml",
        sync_toml("shop", key=None).replace(
            'list_id = "list1"', f'list_id = "list1"\napi_key_file = "{secret}"'
        ),
    )
    env = {
        "CAMPAIGN_BRIDGE_SYNCS__ACME_EU__DESTINATION__API_KEY": "key-of-acme",
        "CAMPAIGN_BRIDGE_SYNCS__BRAND__DESTINATION__API_KEY_FILE": str(secret),
    }

    loaded = load_settings_with_provenance(environ=env)

    syncs = loaded.settings.syncs
    assert syncs["acme-eu"].destination.api_key.get_secret_value() == "key-of-acme"
    assert syncs["brand"].destination.api_key.get_secret_value() == "key-of-brand"
    assert syncs["shop"].destination.api_key.get_secret_value() == "key-of-brand"
    assert loaded.origin_of("syncs.acme-eu.destination.api_key") == (
        "env:CAMPAIGN_BRIDGE_SYNCS__ACME_EU__DESTINATION__API_KEY"
    )
    assert loaded.origin_of("syncs.brand.destination.api_key") == (
        "env-file:CAMPAIGN_BRIDGE_SYNCS__BRAND__DESTINATION__API_KEY_FILE"
    )
    assert loaded.origin_of("syncs.shop.destination.api_key") == (
        "file:conf.d/shop.toml (api_key_file)"
    )


def test_a_sync_defined_twice_names_both_files(workdir: Path) -> None:
    write(workdir / "campaign-bridge.toml", 'include = ["conf.d/*.toml"]\n' + sync_toml("home"))
    write(workdir / "conf.d" / "a.toml", sync_toml("Acme-EU"))
    write(workdir / "conf.d" / "b.toml", sync_toml("acme_eu"))
    write(workdir / "conf.d" / "c.toml", sync_toml("home"))

    with pytest.raises(ConfigurationError) as exc:
        load_settings_with_provenance(environ={})

    found = locations(exc)
    assert "conf.d/a.toml and in conf.d/b.toml" in found["syncs.acme_eu"]
    assert "campaign-bridge.toml and in conf.d/c.toml" in found["syncs.home"]


def test_every_problem_in_every_file_is_reported_at_once(workdir: Path) -> None:
    write(workdir / "campaign-bridge.toml", 'include = ["conf.d/*.toml"]\n')
    write(workdir / "conf.d" / "a.toml", sync_toml("a", key=None))
    write(workdir / "conf.d" / "b.toml", 'state_url = "sqlite:///x.db"\n' + sync_toml("b"))
    write(workdir / "conf.d" / "c.toml", sync_toml("c").replace('table = "contacts"', ""))

    with pytest.raises(ConfigurationError) as exc:
        load_settings_with_provenance(environ={})

    found = locations(exc)
    assert "is required but not set" in found["syncs.a.destination.api_key"]
    assert "[from file:conf.d/a.toml]" in found["syncs.a.destination.api_key"]
    assert "only define syncs" in found["conf.d/b.toml: state_url"]
    assert "[from file:conf.d/c.toml]" in found["syncs.c.source.table"]


def test_a_syntax_error_names_the_included_file_and_line(workdir: Path) -> None:
    write(workdir / "campaign-bridge.toml", 'include = ["conf.d/*.toml"]\n')
    write(workdir / "conf.d" / "a.toml", sync_toml("a"))
    write(workdir / "conf.d" / "b.toml", "[syncs.b.source\n")

    with pytest.raises(ConfigurationError) as exc:
        load_settings_with_provenance(environ={})

    assert [p.location for p in exc.value.problems] == ["conf.d/b.toml:1:16"]


def test_missing_includes(workdir: Path) -> None:
    write(workdir / "campaign-bridge.toml", 'include = ["conf.d/*.toml", "extra.toml"]\n')
    with pytest.raises(ConfigurationError) as exc:
        load_settings_with_provenance(environ={})
    assert "extra.toml does not exist" in locations(exc)["include"]

    write(workdir / "campaign-bridge.toml", 'include = ["conf.d/*.toml"]\n')
    loaded = load_settings_with_provenance(environ={})
    assert loaded.warnings == ["include pattern 'conf.d/*.toml' (conf.d/*.toml) matched no file"]

    with pytest.raises(ConfigurationError) as exc:
        load_settings_with_provenance(environ={"CAMPAIGN_BRIDGE_CONFIG_DIR": "nowhere"})
    assert "nowhere is not a directory" in locations(exc)["CAMPAIGN_BRIDGE_CONFIG_DIR"]

    write(workdir / "campaign-bridge.toml", "include = 3\n")
    with pytest.raises(ConfigurationError) as exc:
        load_settings_with_provenance(environ={})
    assert "list of file patterns" in locations(exc)["include"]
