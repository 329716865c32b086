"""What an account without those features answers: empty collections, and OAuth metadata.

The sandbox models audiences, members, campaigns, reports, webhooks and batches. An account
also has collections the sandbox does not model (automations, templates, landing pages, ...).
A real account that never used a feature answers ``GET`` on its collection with an empty list,
not 404, and third-party clients (Singer's tap-mailchimp, Airbyte) read some of them before
the data they came for: ``EMPTY_COLLECTIONS`` serves each as an empty page in the shape of
Mailchimp's schema (``{<key>: [], total_items: 0, _links}``).

``oauth_metadata`` answers ``GET /oauth2/metadata`` (on Mailchimp: ``https://login.mailchimp
.com/oauth2/metadata``), which a client started with an OAuth token calls to find its data
centre: ``{dc, role, accountname, user_id, login{...}, login_url, api_endpoint}``. Here
``api_endpoint`` is the origin the request came in on (so a client that appends ``/3.0``
reaches this sandbox), or ``https://<dc>.api.mailchimp.com`` when the request was addressed to
``login.mailchimp.com`` (through a proxy that sends Mailchimp's host names to the sandbox).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from campaign_bridge.sandbox.mailchimp.model import Sandbox
from campaign_bridge.sandbox.mailchimp.wire import (
    JSON_TYPE,
    ApiRequest,
    Reply,
    Route,
    collection_links,
    dumps,
    paging,
)

__all__ = ["EMPTY_COLLECTIONS", "metadata", "oauth_metadata", "routes"]

#: collection path -> the key of its items in Mailchimp's schema
EMPTY_COLLECTIONS: dict[str, str] = {
    "/account-exports": "exports",
    "/activity-feed/chimp-chatter": "chimp_chatter",
    "/authorized-apps": "apps",
    "/automations": "automations",
    "/campaign-folders": "folders",
    "/connected-sites": "sites",
    "/conversations": "conversations",
    "/ecommerce/orders": "orders",
    "/ecommerce/stores": "stores",
    "/facebook-ads": "facebook_ads",
    "/file-manager/files": "files",
    "/file-manager/folders": "folders",
    "/landing-pages": "landing_pages",
    "/reporting/facebook-ads": "facebook_ads",
    "/reporting/landing-pages": "landing_pages",
    "/reporting/surveys": "surveys",
    "/template-folders": "folders",
    "/templates": "templates",
    "/verified-domains": "domains",
}

#: collections whose schema carries more than the items, the total and the links
_EXTRA: dict[str, dict[str, Any]] = {
    "/file-manager/files": {"total_file_size": 0},
}


def _empty(path: str, key: str) -> Route:
    def handler(request: ApiRequest) -> Reply:
        paging(request.query)  # the same 400s for a bad count/offset as a real collection
        body: dict[str, Any] = {key: [], **_EXTRA.get(path, {}), "total_items": 0}
        body["_links"] = collection_links(request.base_url, path)
        return Reply(body)

    handler.__name__ = f"empty_{key}"
    return Route("GET", path, handler)


routes = [_empty(path, key) for path, key in EMPTY_COLLECTIONS.items()]


# --- OAuth metadata (served at /oauth2/metadata, outside /3.0) -------------------------------


def metadata(sandbox: Sandbox, origin: str, host: str) -> dict[str, Any]:
    """The metadata document for this sandbox's account, as seen from ``origin``."""
    dc = sandbox.config.dc
    endpoint = f"https://{dc}.api.mailchimp.com" if host == "login.mailchimp.com" else origin
    account = sandbox.account
    return {
        "dc": dc,
        "role": "owner",
        "accountname": account.account_name,
        "user_id": int(account.account_id[:7], 16),
        "login": {
            "email": "owner@sandbox.invalid",
            "avatar": None,
            "login_id": int(account.account_id[3:10], 16),
            "login_name": "sandbox",
            "login_email": "owner@sandbox.invalid",
        },
        "login_url": "https://login.mailchimp.com",
        "api_endpoint": endpoint,
    }


async def oauth_metadata(request: Request) -> Response:
    """``GET /oauth2/metadata`` with ``Authorization: OAuth <token>`` (or ``Bearer``)."""
    sandbox: Sandbox = request.app.state.sandbox
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    with sandbox.lock:
        known = token.strip() in sandbox.oauth_tokens
    if scheme.lower() not in ("oauth", "bearer") or not known:
        body = {"error": "invalid_token", "error_description": "Invalid or missing token."}
        return Response(dumps(body), status_code=401, media_type=JSON_TYPE)
    host = request.headers.get("host", "").split(":")[0]
    origin = f"{request.url.scheme}://{request.headers.get('host', '')}"
    with sandbox.lock:
        body = metadata(sandbox, origin, host)
    return Response(dumps(body), media_type=JSON_TYPE)
