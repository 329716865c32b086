"""The plugin's Brevo and listmonk fixtures, used as another project would: a test file in a
fresh directory, no conftest, the fixtures found through the ``pytest11`` entry point. The
examples of docs/sandbox.md ("Brevo and listmonk fixtures") are run here too.

Each generated file runs in its own pytest process (``runpytest_subprocess``): an inline run
drops the modules it imported when it ends, and a later test of this session would then get a
second copy of httpcore whose exceptions httpx no longer maps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "sandbox.md"


def documented_examples() -> dict[str, str]:
    """The plugin section's Brevo and listmonk examples, by provider (``# brevo: ...``)."""
    text = DOC.read_text(encoding="utf-8").split("\n# The Brevo sandbox\n")[0]
    found = re.findall(r"^```python\n# (brevo|listmonk): .*?\n(.*?)^```", text, flags=re.M | re.S)
    return dict(found)


def test_the_documented_examples_pass(pytester: pytest.Pytester) -> None:
    examples = documented_examples()
    assert sorted(examples) == ["brevo", "listmonk"]
    for provider, code in examples.items():
        pytester.makepyfile(**{f"test_{provider}_documented": code})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


BREVO = """
import asyncio
import httpx
import pytest
from campaign_bridge.sandbox.brevo import BrevoConfig
from campaign_bridge.testing import SandboxControlError

def test_in_process(brevo_app):
    async def run():
        async with brevo_app.client() as client:
            made = await client.post("/contacts", json={"email": "grace@example.org",
                                                        "listIds": [brevo_app.list_id]})
            assert made.status_code == 201, made.text
            read = await client.get(f"/contacts/{made.json()['id']}")
            assert read.json()["email"] == "grace@example.org"
            brevo_app.control.add_fault("503", method="GET", path="^/contacts", count=1)
            assert (await client.get("/contacts/grace@example.org")).status_code == 503
            assert (await client.get("/contacts/grace@example.org")).status_code == 200
            refused = await client.get("/contacts", headers={"api-key": "wrong"})
            assert refused.status_code == 401
    asyncio.run(run())
    assert "grace@example.org" in brevo_app.sandbox.by_email
    brevo_app.control.reset()
    assert "grace@example.org" not in brevo_app.sandbox.by_email

class TestWithAControlToken:
    @pytest.fixture
    def brevo_config(self):
        return BrevoConfig(control_token="t0ken")

    def test_served(self, brevo_server):
        seeded = brevo_server.control.seed(lists=[{"name": "Shop"}],
                                           contacts=[{"email": "ada@example.org"}])
        shop = seeded["lists"][0]
        headers = {"api-key": brevo_server.api_key}
        answer = httpx.get(f"{brevo_server.base_url}/contacts/lists/{shop}", headers=headers)
        assert answer.json()["name"] == "Shop"
        assert httpx.get(brevo_server.control_url + "/state").status_code == 401
        with pytest.raises(SandboxControlError, match="404"):
            brevo_server.control.call("GET", "/contacts/nobody@example.org")
        before = brevo_server.sandbox.now()
        brevo_server.control.advance_clock(3600)
        assert brevo_server.sandbox.now() - before >= 3600

    def test_in_process_with_the_token(self, brevo_app):
        assert brevo_app.control.state()["limits"]["rejected"] == 0
"""

LISTMONK = """
import httpx
import pytest
from campaign_bridge.sandbox.listmonk import ListmonkConfig

@pytest.fixture
def listmonk_config():
    return ListmonkConfig(control_token="t0ken")

def test_served(listmonk_server):
    api = f"{listmonk_server.base_url}/api"
    with httpx.Client(headers=listmonk_server.auth_header) as client:
        made = client.post(f"{api}/subscribers", json={
            "email": "ada@example.org", "name": "Ada", "lists": [listmonk_server.list_id]})
        assert made.status_code == 200, made.text
        subscriber = made.json()["data"]
        read = client.get(f"{api}/subscribers/{subscriber['id']}").json()["data"]
        assert read["email"] == "ada@example.org"
        listmonk_server.control.add_fault("500", path="^/subscribers", count=1)
        assert client.get(f"{api}/subscribers").status_code == 500
        listed = client.get(f"{api}/subscribers").json()["data"]["results"]
        assert [s["email"] for s in listed] == ["ada@example.org"]
    basic = (listmonk_server.api_user, listmonk_server.api_token)
    assert httpx.get(f"{api}/lists", auth=basic).status_code == 200
    assert httpx.get(listmonk_server.control_url + "/state").status_code == 401
    listmonk_server.control.reset()  # a fresh instance: a new API token, no subscriber
    gone = httpx.get(f"{api}/subscribers/{subscriber['id']}", headers=listmonk_server.auth_header)
    assert (gone.status_code, gone.json()["message"]) == (400, "Subscriber (1: ) not found")
"""


def test_brevo_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_brevo=BREVO)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_listmonk_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_listmonk=LISTMONK)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_fixtures_are_listed_with_their_help(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    for name in ("brevo_app", "brevo_server", "brevo_config", "listmonk_app", "listmonk_server"):
        result.stdout.fnmatch_lines([f"{name}*"])
