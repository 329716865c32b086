"""Authentication as Mailchimp does it: Basic (key as password), Bearer and OAuth tokens.

Keys look like ``<32 lowercase hex>-<dc>``; the data centre must be this sandbox's. A missing
key is ``401 API Key Missing``; a malformed, unknown or wrong-datacentre key is
``401 API Key Invalid`` with the wrong-datacentre detail seen in real traffic.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from campaign_bridge.sandbox.mailchimp.model import Sandbox
from campaign_bridge.sandbox.mailchimp.wire import Problem

__all__ = ["authenticate", "key_is_well_formed"]

KEY_RE = re.compile(r"^[0-9a-f]{32}-([a-z]+[0-9]+)$")
INVALID_DETAIL = "Your API key may be invalid, or you've attempted to access the wrong datacenter."


def _missing() -> Problem:
    return Problem(401, "API Key Missing", "Your request did not include an API key.")


def _invalid() -> Problem:
    return Problem(401, "API Key Invalid", INVALID_DETAIL)


def key_is_well_formed(key: str) -> bool:
    return KEY_RE.match(key) is not None


def authenticate(sandbox: Sandbox, headers: Mapping[str, str]) -> str:
    """Return the credential (API key or OAuth token) the request authenticated with."""
    header = headers.get("authorization", "").strip()
    if not header:
        raise _missing()
    scheme, _, value = header.partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise _invalid() from None
        _user, sep, secret = decoded.partition(":")
        if not sep or not secret:
            raise _missing()
        return _check_key(sandbox, secret)
    if scheme in ("bearer", "oauth"):
        if not value:
            raise _missing()
        if value in sandbox.oauth_tokens:
            return value
        return _check_key(sandbox, value)
    raise _invalid()


def _check_key(sandbox: Sandbox, key: str) -> str:
    match = KEY_RE.match(key)
    if match is None or match.group(1) != sandbox.config.dc or key not in sandbox.api_keys:
        raise _invalid()
    return key
