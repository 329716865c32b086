"""One destination model per provider: chosen by ``provider``, each checked by its own rules,
located and sourced the way the user wrote it (no pydantic union tag in the path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from campaign_bridge.config import (
    BrevoDestination,
    ListmonkDestination,
    MailchimpDestination,
    load_settings,
    load_settings_with_provenance,
)
from campaign_bridge.errors import ConfigurationError

BREVO_KEY = "xkeysib-" + "ab" * 32 + "-" + "A1b2C3d4E5f6G7h8"


def write(tmp_path: Path, destination: str) -> Path:
    path = tmp_path / "campaign-bridge.toml"
    path.write_text(
        '[syncs.crm.source]\nurl = "sqlite:///x.db"\ntable = "contacts"\n\n'
        "[syncs.crm.destination]\n" + destination,
        encoding="utf-8",
    )
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(path, environ=env or {})
    return {p.location: f"{p.problem} | {p.expected}" for p in caught.value.problems}


def test_a_destination_without_provider_is_mailchimp(tmp_path: Path) -> None:
    path = write(tmp_path, 'api_key = "k"\nlist_id = "a1"\nbase_url = "http://127.0.0.1:1/3.0"\n')
    destination = load_settings(path, environ={}).syncs["crm"].destination
    assert isinstance(destination, MailchimpDestination)
    assert destination.api_root() == "http://127.0.0.1:1/3.0"
    assert destination.audience_key() == ("mailchimp", "http://127.0.0.1:1/3.0", "k", "a1")


def test_mailchimp_root_comes_from_the_key() -> None:
    key = "0" * 32 + "-us6"
    destination = MailchimpDestination(api_key=key, list_id="a1")  # type: ignore[arg-type]
    assert destination.api_root() == "https://us6.api.mailchimp.com/3.0"
    assert "suffix is 'us6'" in destination.credential_fix()


def test_brevo_takes_its_own_key_format_and_a_numbered_list(tmp_path: Path) -> None:
    path = write(tmp_path, f'provider = "brevo"\napi_key = "{BREVO_KEY}"\nlist_id = 7\n')
    destination = load_settings(path, environ={}).syncs["crm"].destination
    assert isinstance(destination, BrevoDestination)
    assert destination.list_id == "7"  # list ids cross the contract as text
    assert destination.api_root() == "https://api.brevo.com/v3"


def test_brevo_problems_are_located_as_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'provider = "brevo"\napi_key = "0123456789abcdef0123456789abcdef-us6"\n'
        'list_id = "news"\nwebhook_sources = ["user"]\n',
    )
    found = problems(path)
    assert set(found) == {
        "syncs.crm.destination.api_key",
        "syncs.crm.destination.list_id",
        "syncs.crm.destination.webhook_sources",
    }
    assert "does not look like a Brevo API key" in found["syncs.crm.destination.api_key"]
    assert "positive integer" in found["syncs.crm.destination.list_id"]
    assert "unknown setting 'webhook_sources'" in found["syncs.crm.destination.webhook_sources"]
    assert "0123456789abcdef" not in " ".join(found.values())  # no secret in messages


def test_any_brevo_key_for_a_sandbox_url(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'provider = "brevo"\napi_key = "k"\nlist_id = 2\nbase_url = "http://s:1/v3"\n'
    )
    assert load_settings(path, environ={}).syncs["crm"].destination.list_id == "2"


def test_brevo_double_opt_in_needs_a_template(tmp_path: Path) -> None:
    path = write(tmp_path, f'provider = "brevo"\napi_key = "{BREVO_KEY}"\nlist_id = 2\n')
    text = path.read_text(encoding="utf-8").replace(
        "[syncs.crm.destination]", "[syncs.crm]\ndouble_opt_in = true\n\n[syncs.crm.destination]"
    )
    path.write_text(text, encoding="utf-8")
    assert "double_opt_in_template_id is not set" in " ".join(problems(path).values())


def test_an_unknown_provider_is_named(tmp_path: Path) -> None:
    found = problems(write(tmp_path, 'provider = "sendgrid"\napi_key = "k"\n'))
    assert list(found) == ["syncs.crm.destination.provider"]
    assert "mailchimp, brevo, listmonk" in found["syncs.crm.destination.provider"]


@pytest.mark.parametrize(
    ("credentials", "problem"),
    [
        ('api_user = "bridge"\n', "incomplete"),
        ('api_user = "bridge"\napi_token = "t"\nusername = "u"\npassword = "p"\n', "both"),
        ("", "incomplete"),
    ],
)
def test_listmonk_needs_one_complete_way_in(tmp_path: Path, credentials: str, problem: str) -> None:
    path = write(
        tmp_path,
        f'provider = "listmonk"\nbase_url = "http://lists:9000"\nlist_id = 1\n{credentials}',
    )
    assert problem in " ".join(problems(path).values())


def test_listmonk_needs_its_base_url(tmp_path: Path) -> None:
    found = problems(write(tmp_path, 'provider = "listmonk"\nlist_id = 1\napi_user = "b"\n'))
    assert "syncs.crm.destination.base_url" in found


def test_listmonk_secrets_from_env_files_keep_their_provenance(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n", encoding="utf-8")
    path = write(
        tmp_path, 'provider = "listmonk"\nbase_url = "http://lists:9000/"\nlist_id = "3"\n'
    )
    env: dict[str, Any] = {
        "CAMPAIGN_BRIDGE_SYNCS__CRM__DESTINATION__API_USER": "bridge",
        "CAMPAIGN_BRIDGE_SYNCS__CRM__DESTINATION__API_TOKEN_FILE": str(secret),
    }
    loaded = load_settings_with_provenance(path, environ=env)
    destination = loaded.settings.syncs["crm"].destination
    assert isinstance(destination, ListmonkDestination)
    assert destination.api_root() == "http://lists:9000"
    assert destination.credential() == "bridge:s3cret"
    assert loaded.origin_of("syncs.crm.destination.api_token") == (
        "env-file:CAMPAIGN_BRIDGE_SYNCS__CRM__DESTINATION__API_TOKEN_FILE"
    )
    assert loaded.origin_of("syncs.crm.destination.api_user") == (
        "env:CAMPAIGN_BRIDGE_SYNCS__CRM__DESTINATION__API_USER"
    )


def test_a_setting_of_another_provider_is_refused_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, f'provider = "brevo"\napi_key = "{BREVO_KEY}"\nlist_id = 2\n')
    env = {"CAMPAIGN_BRIDGE_SYNCS__CRM__DESTINATION__API_USER": "bridge"}
    assert "unknown setting 'api_user'" in problems(path, env)["syncs.crm.destination.api_user"]
