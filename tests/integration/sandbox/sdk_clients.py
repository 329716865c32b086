"""The two Python SDKs pointed at a running sandbox (see docs/sandbox.md)."""

from __future__ import annotations

from typing import Any

import mailchimp_marketing
from mailchimp3 import MailChimp


def official(handle: Any) -> Any:
    """``mailchimp_marketing.Client`` aimed at the sandbox (its host must not contain "server")."""
    client = mailchimp_marketing.Client()
    client.set_config({"api_key": handle.api_key, "timeout": 30})
    client.api_client.host = handle.base_url
    return client


def mailchimp3(handle: Any) -> Any:
    client = MailChimp(mc_api=handle.api_key, timeout=30)
    client.base_url = handle.base_url + "/"
    return client
