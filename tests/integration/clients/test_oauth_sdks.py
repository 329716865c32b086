"""SDKs started with an OAuth token find their data centre through ``/oauth2/metadata``: the
``mailchimp3`` constructor calls ``https://login.mailchimp.com/oauth2/metadata`` itself, so it
runs unmodified through the TLS-terminating proxy (``HTTPS_PROXY``, ``REQUESTS_CA_BUNDLE``)."""

from __future__ import annotations

import httpx
import pytest

from campaign_bridge.testing import ServedSandbox
from tests.integration.clients.conftest import everything
from tests.integration.clients.tls_proxy import TlsProxy


def test_mailchimp3_in_oauth_mode_reads_the_sandbox(
    mailchimp_process: ServedSandbox, mailchimp_proxy: TlsProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailchimp3 import MailChimp

    token = mailchimp_process.control.oauth_token()
    for name, value in mailchimp_proxy.client_env().items():
        monkeypatch.setenv(name, value)
    client = MailChimp(access_token=token, timeout=30)  # asks login.mailchimp.com at once
    assert client.base_url == "https://us6.api.mailchimp.com/3.0/"
    members = client.lists.members.all(mailchimp_process.audiences[0], get_all=True)
    with httpx.Client(
        base_url=mailchimp_process.base_url, auth=("x", mailchimp_process.api_key)
    ) as api:
        direct = everything(api, f"/lists/{mailchimp_process.audiences[0]}/members", "members")
    assert [m["id"] for m in members["members"]] == [m["id"] for m in direct]
    assert len(direct) == 25
    assert mailchimp_proxy.hosts[0] == "login.mailchimp.com"
    assert set(mailchimp_proxy.hosts) == {"login.mailchimp.com", "us6.api.mailchimp.com"}
