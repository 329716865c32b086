"""The status pages of ``serve``: ``/`` (status), ``/rejected``, ``/contact``, and the admin
login (``/-/login``, ``/-/logout``). Rendering is :mod:`campaign_bridge.status_page`'s; this
module authenticates, reads the state store in a worker thread and answers ``503`` (saying only
that the store is down) when it does not answer.

The app's shared state is ``request.app.state.bridge`` (:class:`~campaign_bridge.server.
ServerState`); nothing here imports the server module, which imports this one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from campaign_bridge.tokens import match_token

if TYPE_CHECKING:
    from campaign_bridge.server import ServerState

__all__ = ["ADMIN_COOKIE", "ROUTES", "STORE_DOWN", "log_store_problem"]

log = logging.getLogger("campaign_bridge.server")

ADMIN_COOKIE = "cb_admin"
_COOKIE_CONTEXT = b"campaign-bridge status page v1"
STORE_DOWN = "state store: unreachable"  # what /-/ready and the status page say when it is down


def log_store_problem(what: str, exc: BaseException) -> None:
    log.error("%s: the state store failed: %s", what, exc, extra={"action": "serve"})


def _bridge(request: Request) -> ServerState:
    state: ServerState = request.app.state.bridge
    return state


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _cookie_value(token: str) -> str:
    return hmac.new(token.encode("utf-8"), _COOKIE_CONTEXT, hashlib.sha256).hexdigest()


def _is_admin(request: Request, state: ServerState) -> bool:
    token = state.admin_token
    if not token:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and match_token(given.strip(), [token]):
        return True
    cookie = request.cookies.get(ADMIN_COOKIE, "")
    return hmac.compare_digest(cookie.encode(), _cookie_value(token).encode())


async def _status_page(request: Request) -> Response:
    from campaign_bridge import status_page

    state = _bridge(request)
    if not _is_admin(request, state):
        return HTMLResponse(status_page.render_login(), status_code=401)
    try:
        data = await asyncio.to_thread(status_page.gather, state.store.engine, state.settings)
    except Exception as exc:
        return _unavailable("status page", exc)
    return HTMLResponse(status_page.render(data, can_log_out=state.admin_token is not None))


REJECTED_ROWS = 500  # shown on /rejected; `campaign-bridge rejected` lists them all


async def _rejected_page(request: Request) -> Response:
    from campaign_bridge import rejections, status_page

    state = _bridge(request)
    if not _is_admin(request, state):
        return HTMLResponse(status_page.render_login(), status_code=401)
    sync = request.query_params.get("sync") or None
    reason = request.query_params.get("reason") or None
    engine = state.store.engine
    try:
        rows = await asyncio.to_thread(
            rejections.open_rejections, engine, sync, reason, REJECTED_ROWS + 1
        )
        counts = await asyncio.to_thread(rejections.counts_by_reason, engine)
    except Exception as exc:
        return _unavailable("rejected records page", exc)
    page = status_page.render_rejected(
        rows[:REJECTED_ROWS],
        counts,
        sync=sync,
        reason=reason,
        truncated=len(rows) > REJECTED_ROWS,
        can_log_out=state.admin_token is not None,
    )
    return HTMLResponse(page)


async def _contact_page(request: Request) -> Response:
    """The lookup form; a POST looks the contact up (the address stays out of URLs and logs)."""
    from campaign_bridge import status_page
    from campaign_bridge.history import contact_history, explain_absence, scopes_of

    state = _bridge(request)
    if not _is_admin(request, state):
        return HTMLResponse(status_page.render_login(), status_code=401)
    can_log_out = state.admin_token is not None
    if request.method == "GET":
        return HTMLResponse(status_page.render_contact("", None, can_log_out=can_log_out))
    form = await request.form()
    query = form.get("q")
    if not isinstance(query, str) or not query.strip():
        page = status_page.render_contact("", None, can_log_out=can_log_out)
        return HTMLResponse(page, status_code=400)
    scopes = scopes_of(state.settings)
    try:
        history = await asyncio.to_thread(contact_history, state.store.engine, scopes, query)
    except Exception as exc:
        return _unavailable("contact lookup", exc)
    await asyncio.to_thread(explain_absence, state.settings, history)  # as the CLI does
    return HTMLResponse(status_page.render_contact(query.strip(), history, can_log_out=can_log_out))


_UNAVAILABLE_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    "<title>campaign-bridge: unavailable</title></head><body>"
    f'<h1>campaign-bridge</h1><p role="alert">{STORE_DOWN}. The status page shows again once '
    "the state database answers; the server log says why it does not.</p></body></html>"
)


def _unavailable(what: str, exc: BaseException) -> Response:
    """Say what is down (503); the details go to the log, not the page."""
    log_store_problem(what, exc)
    return HTMLResponse(_UNAVAILABLE_PAGE, status_code=503, headers={"Retry-After": "30"})


async def _login(request: Request) -> Response:
    from campaign_bridge import status_page

    state = _bridge(request)
    token = state.admin_token
    if request.method == "GET" or not token:
        return RedirectResponse("/", status_code=303)
    form = await request.form()
    given = form.get("token")
    if not isinstance(given, str) or not match_token(given, [token]):
        log.warning("status page login refused", extra={"client": _client(request)})
        return HTMLResponse(status_page.render_login(failed=True), status_code=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        ADMIN_COOKIE,
        _cookie_value(token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=12 * 3600,
    )
    return response


async def _logout(_request: Request) -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(ADMIN_COOKIE)
    return response


ROUTES = [
    Route("/-/login", _login, methods=["GET", "POST"]),
    Route("/-/logout", _logout, methods=["POST", "GET"]),
    Route("/", _status_page, methods=["GET", "HEAD"]),
    Route("/rejected", _rejected_page, methods=["GET", "HEAD"]),
    Route("/contact", _contact_page, methods=["GET", "POST"]),
]
