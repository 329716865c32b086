"""What went wrong on the network, said once for every caller (the adapters' HTTP client, doctor).

:func:`classify` turns an ``httpx`` transport error into a :class:`NetworkFault`: its kind, whether
it is a configuration problem (fatal: retrying cannot help) or a passing one (retriable), and a
message naming the URL and the fix.

============  =================================================  ==========================
kind          what happened                                      what the caller does
============  =================================================  ==========================
tls_untrusted the certificate is signed by a CA we do not trust   fatal (SSL_CERT_FILE)
tls_hostname  the certificate is for another host name            fatal
tls_protocol  the TLS handshake failed (not HTTPS, old protocol)  fatal
proxy         HTTPS_PROXY / HTTP_PROXY is set but unreachable     fatal
dns           the host name does not resolve                      fatal
refused       nothing listens at the host and port                fatal before any answer,
                                                                  retriable after one
reset         the connection was cut                              retriable
timeout       no answer in time                                   retriable
connection    any other transport failure                         retriable
============  =================================================  ==========================
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from campaign_bridge.db import redact_url
from campaign_bridge.errors import NetworkConfigurationError, NetworkRetriableError

__all__ = ["NetworkFault", "classify", "proxy_for", "tls_context"]

_HOSTNAME_CODES = frozenset(
    {62, 64}
)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
_PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")


@dataclass(frozen=True)
class NetworkFault:
    kind: str
    fatal: bool
    message: str

    def error(self, url: str) -> NetworkConfigurationError | NetworkRetriableError:
        if self.fatal:
            return NetworkConfigurationError(self.message, kind=self.kind, url=url)
        return NetworkRetriableError(self.message, kind=self.kind, url=url)


def proxy_for(url: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable name, proxy URL) of the proxy ``httpx`` uses for ``url`` under ``env``, if any
    (``NO_PROXY`` respected)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    no_proxy = env.get("NO_PROXY") or env.get("no_proxy") or ""
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if no_proxy and bypass(host, {"no": no_proxy}):
        return None
    wanted = (
        ("HTTPS_PROXY", "ALL_PROXY") if parts.scheme == "https" else ("HTTP_PROXY", "ALL_PROXY")
    )
    for name in wanted:
        value = env.get(name) or env.get(name.lower())
        if value:
            return name, value
    return None


def classify(
    exc: httpx.TransportError,
    url: str,
    *,
    answered_before: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> NetworkFault:
    """The fault behind ``exc``, raised while requesting ``url``.

    ``answered_before``: the host has answered this client already, so a refused connection is
    a restart in progress (retriable), not a wrong address (fatal). ``env``: the environment
    the proxies come from (default: ``os.environ``).
    """
    import os

    environ = os.environ if env is None else env
    parts = urlsplit(url)
    host = parts.hostname or url
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = proxy_for(url, environ)
    via = f" through proxy {redact_url(proxy[1])}" if proxy else ""
    cause = _root(exc)

    if isinstance(exc, httpx.TimeoutException):
        within = f" within {timeout:g} s" if timeout else " in time"
        return NetworkFault(
            "timeout",
            False,
            f"timeout: {host} did not answer{within}{via} ({url}). Fix: if it keeps happening, "
            "check the network path and any proxy or firewall, or raise "
            "destination.timeout_seconds",
        )
    if isinstance(cause, ssl.SSLCertVerificationError):
        detail = cause.verify_message or str(cause)
        if cause.verify_code in _HOSTNAME_CODES:
            return NetworkFault(
                "tls_hostname",
                True,
                f"TLS: the certificate presented at {url}{via} is not valid for the host name "
                f"{host} ({detail}). Fix: use the host name the certificate names in "
                "destination.base_url, or have the server present a certificate for this name",
            )
        return NetworkFault(
            "tls_untrusted",
            True,
            f"TLS: the certificate presented at {url}{via} is not trusted ({detail}). Fix: if "
            "the server or a TLS-inspecting proxy uses a private CA, point destination.ca_bundle "
            "(or SSL_CERT_FILE) at a CA bundle (PEM) that includes it; otherwise check "
            "destination.base_url",
        )
    if isinstance(cause, ssl.SSLError):
        return NetworkFault(
            "tls_protocol",
            True,
            f"TLS: the handshake with {host}:{port}{via} failed ({cause.reason or cause}) for "
            f"{url}. Fix: check that this port speaks HTTPS (https:// vs http:// in "
            "destination.base_url) and that no proxy interferes",
        )
    if proxy is not None and (isinstance(exc, httpx.ProxyError) or _is_connect_failure(exc)):
        name, value = proxy
        return NetworkFault(
            "proxy",
            True,
            f"proxy: {redact_url(value)} (from {name}) cannot be used to reach {url} "
            f"({_describe(cause)}). Fix: start or repair that proxy, correct {name}, or list "
            f"{host} in NO_PROXY if it should be reached directly",
        )
    if isinstance(cause, socket.gaierror):
        return NetworkFault(
            "dns",
            True,
            f"DNS: the host name {host} does not resolve ({cause.strerror or cause}) for "
            f"{url}. Fix: check destination.base_url (or the API key's data-centre suffix) "
            "and this machine's DNS",
        )
    if _is_refused(cause):
        fix = "check destination.base_url and that nothing (a firewall) blocks the port"
        if host in ("127.0.0.1", "localhost", "::1"):
            fix = (
                "check destination.base_url; if it is the bundled sandbox, start it with "
                f"`campaign-bridge sandbox serve --port {port}`"
            )
        return NetworkFault(
            "refused",
            not answered_before,
            f"connection refused: nothing listens at {host}:{port} ({url}). Fix: {fix}",
        )
    if _is_reset(exc, cause):
        return NetworkFault(
            "reset",
            False,
            f"connection reset: {host} cut the connection{via} ({url}). Fix: if it keeps "
            "happening, a firewall, proxy or load balancer may be dropping connections",
        )
    return NetworkFault(
        "connection",
        False,
        f"connection failed to {host}{via} ({url}): {_describe(cause)}. Fix: check the network, "
        "any proxy or firewall, and destination.base_url",
    )


def _root(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        nxt = current.__cause__ or current.__context__
        if nxt is None:
            break
        current = nxt
    if current.args and isinstance(current.args[0], BaseException):
        return current.args[0]
    return current


def _is_connect_failure(exc: BaseException) -> bool:
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def _is_refused(cause: BaseException) -> bool:
    if isinstance(cause, ConnectionRefusedError):
        return True
    if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
        return True
    text = str(cause).lower()
    return "connection refused" in text or "errno 111" in text


def _is_reset(exc: BaseException, cause: BaseException) -> bool:
    if isinstance(cause, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return True
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return True
    return "reset by peer" in str(cause).lower()


def _describe(cause: BaseException) -> str:
    text = str(cause).strip()
    return text or type(cause).__name__


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The TLS context for a provider's HTTPS: ``ca_bundle``'s CAs, else what httpx would trust
    (``SSL_CERT_FILE``, ``SSL_CERT_DIR``, else certifi's bundle).

    Built once per bundle and shared by every client: loading a CA bundle costs about 0.1 s of
    CPU, which once per provider client made ``doctor`` on 200 syncs and every queued job pay it.
    """
    names = (ca_bundle, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    stamps = tuple(_modified(name) for name in names)
    return _cached_context(ca_bundle, names[1:], stamps)


def _modified(path: str | None) -> float | None:
    try:
        return os.stat(path).st_mtime if path else None
    except OSError:
        return None


@functools.lru_cache(maxsize=16)
def _cached_context(
    ca_bundle: str | None, _env: tuple[str | None, ...], _stamps: tuple[float | None, ...]
) -> ssl.SSLContext:
    if ca_bundle:
        return ssl.create_default_context(cafile=ca_bundle)
    return httpx.create_ssl_context(verify=True, trust_env=True)
