"""The pytest plugin ``campaign_bridge.testing``, used as another project would: a test file in
a fresh directory, no conftest, the fixtures found through the ``pytest11`` entry point.

Each generated file runs in its own pytest process (``runpytest_subprocess``): an inline run
drops the modules it imported when it ends, and a later test of this session would then get a
second copy of httpcore whose exceptions httpx no longer maps."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

SEEDED = """
import pytest

@pytest.fixture
def mailchimp_audiences():
    return [
        {
            "name": "Shop",
            "merge_fields": [{"tag": "PLAN", "name": "Plan", "type": "text"}],
            "members": [
                {"email_address": "ada@mail.example.org", "status": "subscribed",
                 "merge_fields": {"PLAN": "pro"}},
                {"email_address": "bob@mail.example.org", "status": "unsubscribed"},
            ],
        }
    ]
"""


def test_the_plugin_is_registered_through_its_entry_point() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("campaign_bridge") == "campaign_bridge.testing.plugin"


def test_in_process_sandbox_with_seeded_audiences_and_faults(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        SEEDED
        + """
@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.anyio
async def test_app(mailchimp_app):
    shop = mailchimp_app.audiences[0]
    async with mailchimp_app.client() as client:
        members = (await client.get(f"/lists/{shop}/members")).json()["members"]
        assert {m["email_address"]: m["status"] for m in members} == {
            "ada@mail.example.org": "subscribed", "bob@mail.example.org": "unsubscribed"}
        assert members[0]["merge_fields"]["PLAN"] == "pro"
        mailchimp_app.control.add_fault("503", path="^/ping$", count=1)
        assert (await client.get("/ping")).status_code == 503
        assert (await client.get("/ping")).status_code == 200
        before = mailchimp_app.sandbox.clock.now()
        mailchimp_app.control.advance_clock(3600)
        assert (mailchimp_app.sandbox.clock.now() - before).total_seconds() >= 3600
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_threaded_and_process_sandboxes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        SEEDED
        + """
import httpx
from campaign_bridge.sandbox.mailchimp import SandboxConfig
from campaign_bridge.testing.mailchimp import SandboxControlError

@pytest.fixture
def mailchimp_config():
    return SandboxConfig(seed=7, control_token="t0ken")

def check(sandbox):
    auth = ("x", sandbox.api_key)
    shop = sandbox.audiences[0]
    answer = httpx.get(f"{sandbox.base_url}/lists/{shop}", auth=auth).json()
    assert answer["stats"]["member_count"] == 1
    sandbox.control.add_fault("429", method="GET", path="/members", count=2)
    statuses = [httpx.get(f"{sandbox.base_url}/lists/{shop}/members", auth=auth).status_code
                for _ in range(3)]
    assert statuses == [429, 429, 200]
    assert httpx.get(sandbox.control_url + "/state").status_code == 401  # token required
    with pytest.raises(SandboxControlError, match="404"):
        sandbox.control.call("GET", "/lists/0000000000")

def test_server(mailchimp_server):
    check(mailchimp_server)
    assert mailchimp_server.sandbox is not None

def test_process(mailchimp_process):
    check(mailchimp_process)
    assert mailchimp_process.process.poll() is None
    assert mailchimp_process.api_key.endswith("-us6")
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_fixtures_are_listed_with_their_help(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    for name in ("mailchimp_app", "mailchimp_server", "mailchimp_process", "mailchimp_audiences"):
        result.stdout.fnmatch_lines([f"{name}*"])
