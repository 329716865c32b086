"""Fixtures for third-party clients run unmodified against ``campaign-bridge sandbox serve``.

The sandbox is the ``mailchimp_process`` fixture of our own pytest plugin
(``campaign_bridge.testing``), seeded here with data that needs paging everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaign_bridge.testing import ServedSandbox
from tests.integration.clients.tls_proxy import TlsProxy, running_proxy
from tests.integration.clients.venvs import client_venv

MEMBERS = 23  # with page size 7: four pages, the last one short


@pytest.fixture
def mailchimp_audiences() -> list[dict[str, Any]]:
    members = [
        {"email_address": f"reader{i}@mail.example.org", "status": "subscribed"}
        for i in range(MEMBERS)
    ]
    members += [
        {"email_address": "gone@mail.example.org", "status": "unsubscribed"},
        {"email_address": "bounced@mail.example.org", "status": "cleaned"},
    ]
    small = [
        {"email_address": f"fan{i}@mail.example.org", "status": "subscribed"} for i in range(3)
    ]
    return [{"name": "Readers", "members": members}, {"name": "Fans", "members": small}]


@pytest.fixture
def populated(mailchimp_process: ServedSandbox) -> ServedSandbox:
    """Two sent campaigns with activity, a draft, a static segment; the clock moved past all
    activity."""
    mc = mailchimp_process
    readers = mc.audiences[0]
    with httpx.Client(base_url=mc.base_url, auth=("x", mc.api_key), timeout=30) as api:
        segment = api.post(
            f"/lists/{readers}/segments",
            json={
                "name": "First three",
                "static_segment": [f"reader{i}@mail.example.org" for i in range(3)],
            },
        )
        assert segment.status_code == 200, segment.text
        draft = api.post("/campaigns", json={"type": "regular", "recipients": {"list_id": readers}})
        assert draft.status_code == 200, draft.text
    rates = {"open": 0.8, "click": 0.5, "unsubscribe": 0.1, "hard_bounce": 0.05}
    for _ in range(2):
        mc.control.call("POST", "/campaigns/seed", {"list_id": readers, "rates": rates})
    mc.control.advance_clock(3 * 86400)
    return mc


@pytest.fixture(scope="session")
def tap_mailchimp_bin() -> Path:
    """``bin`` of a cached virtual environment with Singer's tap-mailchimp from PyPI."""
    return client_venv("tap-mailchimp")


@pytest.fixture(scope="session")
def dlt_bin() -> Path:
    """``bin`` of a cached virtual environment with dlt (and duckdb) from PyPI."""
    return client_venv("dlt")


@pytest.fixture
def mailchimp_proxy(mailchimp_process: ServedSandbox, tmp_path: Path) -> Iterator[TlsProxy]:
    """A TLS-terminating proxy that sends ``*.mailchimp.com`` to the sandbox process."""
    port = int(mailchimp_process.root_url.rsplit(":", 1)[1])
    with running_proxy(port, tmp_path) as proxy:
        yield proxy


def everything(api: httpx.Client, path: str, key: str, **query: Any) -> list[dict[str, Any]]:
    """Every item of a collection, read directly (pages of 1000)."""
    items: list[dict[str, Any]] = []
    while True:
        answer = api.get(path, params={**query, "count": 1000, "offset": len(items)})
        assert answer.status_code == 200, answer.text
        page = answer.json()[key]
        items += page
        if len(page) < 1000:
            return items
