"""Log lines: JSON or text, secrets masked, email addresses hashed unless the user opts in."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from campaign_bridge.config import Settings
from campaign_bridge.logs import configure_logging, email_hash

BREVO_KEY = "xkeysib-" + "0f" * 32 + "-Ab12Cd34Ef56Gh78"

KEY = "0123456789abcdef0123456789abcdef-us6"


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def capture(fmt: str = "json", **kwargs: object) -> io.StringIO:
    stream = io.StringIO()
    configure_logging("DEBUG", fmt, stream=stream, **kwargs)  # type: ignore[arg-type]
    return stream


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_email_hash_is_mailchimps_subscriber_hash() -> None:
    # The example from Mailchimp's documentation for the subscriber hash.
    assert email_hash("Urist.McVankab@freddiesjokes.com") == "62eeb292278cc15f5817cb78f7790b08"
    assert email_hash("  URIST.mcvankab@FreddiesJokes.com \n") == (
        "62eeb292278cc15f5817cb78f7790b08"
    )


def test_json_line_has_the_contract_fields_and_extras() -> None:
    stream = capture("json")
    logging.getLogger("campaign_bridge.push").info(
        "pushed %d contacts",
        3,
        extra={"action": "push", "provider": "mailchimp", "run_id": "r1", "counts": {"ok": 3}},
    )
    (line,) = json_lines(stream)
    assert line["level"] == "info"
    assert line["logger"] == "campaign_bridge.push"
    assert line["message"] == "pushed 3 contacts"
    assert line["action"] == "push"
    assert line["provider"] == "mailchimp"
    assert line["run_id"] == "r1"
    assert line["counts"] == {"ok": 3}
    assert str(line["ts"]).endswith("Z")


def test_auto_format_is_json_when_not_a_terminal() -> None:
    stream = capture("auto")
    logging.getLogger("x").warning("hello")
    assert json_lines(stream)[0]["message"] == "hello"


def test_text_format_for_people() -> None:
    stream = capture("text")
    logging.getLogger("campaign_bridge.pull").info("done", extra={"sync": "customers"})
    text = stream.getvalue()
    assert "INFO" in text
    assert "campaign_bridge.pull: done" in text
    assert "sync=customers" in text


def test_registered_secrets_from_settings_are_masked() -> None:
    settings = Settings.model_validate(
        {
            "state_url": "postgresql://bridge:Pa55word-xyz@db/bridge",
            "server": {"admin_token": "admin-token-value", "webhook_tokens": ["w" * 20]},
            "syncs": {
                "s": {
                    "source": {"url": "mysql://app:src-pass-123@db/app", "table": "t"},
                    "destination": {
                        "api_key": "sandbox-key-abc",
                        "list_id": "l",
                        "base_url": "http://127.0.0.1:8089",
                    },
                }
            },
        }
    )
    stream = capture("json", secrets=settings)
    log = logging.getLogger("campaign_bridge.test")
    log.info(
        "using sandbox-key-abc and admin-token-value and %s",
        "w" * 20,
        extra={"detail": {"password": "src-pass-123"}, "other": ["Pa55word-xyz"]},
    )
    (line,) = json_lines(stream)
    raw = stream.getvalue()
    for secret in ("sandbox-key-abc", "admin-token-value", "w" * 20, "src-pass-123", "Pa55word"):
        assert secret not in raw
    assert line["message"] == "using ******** and ******** and ********"
    assert line["detail"] == {"password": "********"}


@pytest.mark.parametrize(
    ("message", "leaked", "kept"),
    [
        (f"key is {KEY}", KEY, "key is ********"),
        ("headers {'Authorization': 'Basic dXNlcjprZXk='}", "dXNlcjprZXk=", "Authorization"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi", "Authorization: Bearer ********"),
        ("db postgresql://user:hunter22@db:5432/x", "hunter22", "postgresql://user:********@db"),
        (f"brevo key {BREVO_KEY}.", BREVO_KEY, "brevo key ********."),
        ("headers {'api-key': 'k3y-v4lue'}", "k3y-v4lue", "'api-key': '********'"),
    ],
)
def test_secret_patterns_are_masked_without_registration(
    message: str, leaked: str, kept: str
) -> None:
    stream = capture("text")
    logging.getLogger("x").error(message)
    text = stream.getvalue()
    assert leaked not in text
    assert kept in text


def test_emails_are_hashed_in_messages_extras_and_tracebacks() -> None:
    stream = capture("json")
    log = logging.getLogger("campaign_bridge.push")
    try:
        raise ValueError("bad address Jane.Doe@Example.org")
    except ValueError:
        log.exception(
            "rejected jane.doe@example.org",
            extra={"email": "Jane.Doe@Example.org", "n": 1, "by": {"jane.doe@example.org": 2}},
        )
    (line,) = json_lines(stream)
    hashed = f"email:{email_hash('jane.doe@example.org')}"
    assert line["message"] == f"rejected {hashed}"
    assert line["email"] == hashed
    assert line["n"] == 1
    assert line["by"] == {hashed: 2}
    assert hashed in str(line["exception"])
    assert "example.org" not in stream.getvalue().lower()


def test_database_urls_are_not_mistaken_for_addresses() -> None:
    stream = capture("json")
    logging.getLogger("x").info(
        "reading mysql://reader@db.internal/shop and postgresql://u:pw-123@db/x for email:a@b.org"
    )
    message = json_lines(stream)[0]["message"]
    assert "mysql://reader@db.internal/shop" in message
    assert "postgresql://u:********@db/x" in message
    assert message.endswith(f"email:email:{email_hash('a@b.org')}")


def test_emails_shown_when_the_user_opts_in() -> None:
    stream = capture("json", log_emails=True)
    logging.getLogger("x").info("hello jane@example.org")
    assert json_lines(stream)[0]["message"] == "hello jane@example.org"


def test_reconfiguring_replaces_the_handler_and_sets_the_level() -> None:
    first = io.StringIO()
    second = io.StringIO()
    configure_logging("INFO", "json", stream=first)
    configure_logging("WARNING", "json", stream=second)
    log = logging.getLogger("y")
    log.info("not shown")
    log.warning("shown")
    assert first.getvalue() == ""
    assert [line["message"] for line in json_lines(second)] == ["shown"]
