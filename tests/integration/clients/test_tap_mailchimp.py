"""Singer's tap-mailchimp, installed from PyPI in its own environment, run unmodified against
``campaign-bridge sandbox serve``: every stream lands exactly what the sandbox holds.

The tap only talks to ``https://<dc>.api.mailchimp.com`` (API key) or asks
``https://login.mailchimp.com/oauth2/metadata`` for its endpoint (OAuth token), so it runs
through a TLS-terminating proxy (``HTTPS_PROXY``) trusted through ``REQUESTS_CA_BUNDLE``: the
tap's code and configuration are the ones a real user has. Email activity goes through
``/batches`` (one GET per campaign, without ``count``): it lands every record only because a
batch returns every page of a paged GET.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from campaign_bridge.testing import ServedSandbox
from tests.integration.clients.conftest import everything
from tests.integration.clients.tls_proxy import TlsProxy

STREAMS = (
    "automations",
    "campaigns",
    "list_members",
    "list_segment_members",
    "list_segments",
    "lists",
    "reports_email_activity",
    "unsubscribes",
)


def _moment(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_tap(bin_dir: Path, config: dict[str, Any], proxy: TlsProxy, work: Path) -> list[Any]:
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    env.update(proxy.client_env())
    config_file = work / "config.json"
    config_file.write_text(json.dumps(config))
    tap = str(bin_dir / "tap-mailchimp")
    discovered = subprocess.run(
        [tap, "--config", str(config_file), "--discover"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert discovered.returncode == 0, discovered.stderr[-3000:]
    catalog = json.loads(discovered.stdout)
    for stream in catalog["streams"]:  # select every stream and field, as a user would
        for entry in stream["metadata"]:
            entry["metadata"]["selected"] = True
        stream["metadata"].append({"breadcrumb": [], "metadata": {"selected": True}})
    catalog_file = work / "catalog.json"
    catalog_file.write_text(json.dumps(catalog))
    synced = subprocess.run(
        [tap, "--config", str(config_file), "--catalog", str(catalog_file)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert synced.returncode == 0, synced.stderr[-3000:]
    return [json.loads(line) for line in synced.stdout.splitlines() if line.strip()]


def expected_records(mc: ServedSandbox) -> dict[str, Counter[Any]]:
    """What each stream must hold, read directly from the sandbox's API."""
    out: dict[str, Counter[Any]] = {name: Counter() for name in STREAMS}
    with httpx.Client(base_url=mc.base_url, auth=("x", mc.api_key), timeout=30) as api:
        for lst in everything(api, "/lists", "lists"):
            out["lists"][str(lst["id"])] += 1
            path = f"/lists/{lst['id']}"
            for member in everything(api, f"{path}/members", "members"):
                out["list_members"][(member["id"], lst["id"])] += 1
            for segment in everything(api, f"{path}/segments", "segments"):
                out["list_segments"][str(segment["id"])] += 1  # an integer; the tap: text
                members = everything(api, f"{path}/segments/{segment['id']}/members", "members")
                out["list_segment_members"].update(m["id"] for m in members)
        for campaign in everything(api, "/campaigns", "campaigns", status="sent"):
            cid = campaign["id"]
            out["campaigns"][str(cid)] += 1
            for unsub in everything(api, f"/reports/{cid}/unsubscribed", "unsubscribes"):
                out["unsubscribes"][(cid, unsub["email_id"])] += 1
            for email in everything(api, f"/reports/{cid}/email-activity", "emails"):
                for act in email["activity"]:
                    key = (cid, email["email_id"], act["action"], _moment(act["timestamp"]))
                    out["reports_email_activity"][key] += 1
    return out


def landed_records(messages: list[Any]) -> dict[str, Counter[Any]]:
    out: dict[str, Counter[Any]] = {name: Counter() for name in STREAMS}
    for message in messages:
        if message["type"] != "RECORD":
            continue
        stream, record = message["stream"], message["record"]
        if stream == "list_members":
            key: Any = (record["id"], record["list_id"])
        elif stream == "unsubscribes":
            key = (record["campaign_id"], record["email_id"])
        elif stream == "reports_email_activity":
            key = (
                record["campaign_id"],
                record["email_id"],
                record["action"],
                _moment(record["timestamp"]),
            )
        else:
            key = str(record["id"])
        out[stream][key] += 1
    return out


@pytest.mark.timeout(900)
def test_tap_mailchimp_lands_every_stream_with_an_api_key(
    populated: ServedSandbox, tap_mailchimp_bin: Path, mailchimp_proxy: TlsProxy, tmp_path: Path
) -> None:
    config = {
        "api_key": populated.api_key,
        "dc": "us6",
        "start_date": "2000-01-01T00:00:00Z",
        "page_size": "7",  # pages everywhere (23 members, 4 pages)
        "request_timeout": 60,
    }
    messages = run_tap(tap_mailchimp_bin, config, mailchimp_proxy, tmp_path)
    expected, landed = expected_records(populated), landed_records(messages)
    assert {m["stream"] for m in messages if m["type"] == "SCHEMA"} == set(STREAMS)
    for stream in STREAMS:
        assert landed[stream] == expected[stream], stream
    assert sum(expected["reports_email_activity"].values()) > 2 * 10  # more than a page each
    assert len(expected["list_members"]) == 23 + 2 + 3
    assert expected["automations"] == Counter()  # an empty list, not a 404
    assert set(mailchimp_proxy.hosts) == {"us6.api.mailchimp.com"}


@pytest.mark.timeout(900)
def test_tap_mailchimp_finds_its_endpoint_with_an_oauth_token(
    populated: ServedSandbox, tap_mailchimp_bin: Path, mailchimp_proxy: TlsProxy, tmp_path: Path
) -> None:
    config = {
        "access_token": populated.control.oauth_token(),
        "start_date": "2000-01-01T00:00:00Z",
        "request_timeout": 60,
    }
    messages = run_tap(tap_mailchimp_bin, config, mailchimp_proxy, tmp_path)
    landed = landed_records(messages)
    expected = expected_records(populated)
    for stream in STREAMS:
        assert landed[stream] == expected[stream], stream
    assert mailchimp_proxy.hosts[0] == "login.mailchimp.com"  # /oauth2/metadata first
    assert set(mailchimp_proxy.hosts) == {"login.mailchimp.com", "us6.api.mailchimp.com"}
