"""Every network fault gets its own diagnosis (defects 2 and 4), over real sockets.

A self-signed TLS server (certificate made with the openssl CLI), a TLS client talking to plain
HTTP, a dead proxy port, a closed port, a server that resets, a server that never answers and
a name that does not resolve. Configuration faults fail at once, without a retry; passing
faults are retried, then named.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from campaign_bridge.errors import NetworkConfigurationError, NetworkRetriableError
from campaign_bridge.providers._http import ApiClient, RetryPolicy

pytestmark = pytest.mark.anyio

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_proxy_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)


def client(base_url: str, *, retries: int = 3, timeout: float = 2.0) -> ApiClient:
    return ApiClient(
        base_url=base_url,
        api_key="network-fault-test-key",
        headers={},
        provider="mailchimp",
        concurrency=2,
        timeout_seconds=timeout,
        retry=RetryPolicy(max_retries=retries, base_delay=0.001, max_delay=0.002),
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"health_status":"Everything\'s Chimpy!"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(tls: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def _stop(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


def certificate(tmp_path: Path, name: str, san: str = "") -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make a self-signed certificate")
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-addext", f"subjectAltName={san or 'DNS:' + name}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS server whose self-signed certificate names ``bridge.test``: (port, cert path)."""
    cert, key = certificate(tmp_path, "bridge.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server, port = _serve(context)
    yield port, cert
    _stop(server)


@pytest.fixture
def plain_server() -> Iterator[int]:
    server, port = _serve()
    yield port
    _stop(server)


def _raw_server(behaviour: str) -> tuple[socket.socket, threading.Event]:
    """A TCP server that reads a request, then resets the connection (``reset``) or keeps it
    open without a word (``silent``)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    done = threading.Event()

    def serve() -> None:
        held: list[socket.socket] = []
        listener.settimeout(0.05)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                conn.recv(65536)
            if behaviour == "reset":  # SO_LINGER 0: close sends RST
                conn.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                conn.close()
            else:
                held.append(conn)
        for conn in held:
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener, done


@pytest.fixture
def resetting_server() -> Iterator[int]:
    listener, done = _raw_server("reset")
    yield int(listener.getsockname()[1])
    done.set()
    listener.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    listener, done = _raw_server("silent")
    yield int(listener.getsockname()[1])
    done.set()
    listener.close()


async def _fatal(api: ApiClient) -> NetworkConfigurationError:
    started = time.monotonic()
    try:
        with pytest.raises(NetworkConfigurationError) as caught:
            await api.request("GET", "/ping")
    finally:
        await api.aclose()
    assert api.stats.retries == {}  # a configuration fault is not retried
    assert time.monotonic() - started < 5
    return caught.value


async def test_an_untrusted_certificate_fails_at_once_naming_tls_and_the_fix(
    tls_server: tuple[int, Path],
) -> None:
    port, _cert = tls_server
    error = await _fatal(client(f"https://127.0.0.1:{port}/3.0"))
    assert error.kind == "tls_untrusted"
    assert f"https://127.0.0.1:{port}/3.0/ping" in str(error)
    assert "TLS" in str(error)
    assert "SSL_CERT_FILE" in str(error)


async def test_a_certificate_for_another_name_is_a_hostname_mismatch(
    tls_server: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted, but issued to bridge.test
    error = await _fatal(client(f"https://127.0.0.1:{port}/3.0"))
    assert error.kind == "tls_hostname"
    assert "127.0.0.1" in str(error)


async def test_tls_spoken_to_plain_http_is_a_protocol_fault(plain_server: int) -> None:
    error = await _fatal(client(f"https://127.0.0.1:{plain_server}/3.0"))
    assert error.kind == "tls_protocol"
    assert "https:// vs http://" in str(error)


async def test_a_dead_proxy_is_named_with_its_password_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead = closed_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://corp:pr0xy-secret@127.0.0.1:{dead}")
    error = await _fatal(client("https://us6.api.mailchimp.com/3.0"))
    assert error.kind == "proxy"
    assert f"http://corp:***@127.0.0.1:{dead} (from HTTPS_PROXY)" in str(error)
    assert "pr0xy-secret" not in str(error)
    assert "NO_PROXY" in str(error)


async def test_a_closed_port_fails_fast_with_the_url() -> None:
    port = closed_port()
    error = await _fatal(client(f"http://127.0.0.1:{port}/3.0", retries=8))
    assert error.kind == "refused"
    assert f"127.0.0.1:{port}" in str(error)
    assert "sandbox serve" in str(error)


async def test_a_name_that_does_not_resolve_is_a_dns_fault() -> None:
    error = await _fatal(client("http://no-such-host.invalid/3.0"))
    assert error.kind == "dns"
    assert "no-such-host.invalid" in str(error)


async def test_a_refusal_after_answers_is_a_restart_and_is_retried(plain_server: int) -> None:
    server_port = plain_server
    api = client(f"http://127.0.0.1:{server_port}/3.0", retries=2)
    try:
        assert (await api.request("GET", "/ping")).status_code == 200
        # now point at a closed port on the same client: it has been answered before
        api.base_url = f"http://127.0.0.1:{closed_port()}/3.0"
        with pytest.raises(NetworkRetriableError) as caught:
            await api.request("GET", "/ping")
    finally:
        await api.aclose()
    assert caught.value.kind == "refused"
    assert api.stats.retries == {"refused": 2}


async def test_a_reset_is_retried_then_named(resetting_server: int) -> None:
    api = client(f"http://127.0.0.1:{resetting_server}/3.0", retries=2)
    try:
        with pytest.raises(NetworkRetriableError) as caught:
            await api.request("GET", "/ping")
    finally:
        await api.aclose()
    assert caught.value.kind == "reset"
    assert "failed 3 times" in str(caught.value)
    assert api.stats.retries == {"reset": 2}


async def test_a_server_that_never_answers_is_a_timeout(silent_server: int) -> None:
    api = client(f"http://127.0.0.1:{silent_server}/3.0", retries=1, timeout=0.3)
    try:
        with pytest.raises(NetworkRetriableError) as caught:
            await api.request("GET", "/ping")
    finally:
        await api.aclose()
    assert caught.value.kind == "timeout"
    assert "within 0.3 s" in str(caught.value)
    assert api.stats.retries == {"timeout": 1}


async def test_a_ca_bundle_setting_trusts_a_private_ca(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path, "local", san="IP:127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server, port = _serve(context)
    api = ApiClient(
        base_url=f"https://127.0.0.1:{port}/3.0",
        api_key="network-fault-test-key",
        headers={},
        provider="mailchimp",
        concurrency=1,
        timeout_seconds=2,
        retry=RetryPolicy(max_retries=0),
        ca_bundle=str(cert),
    )
    try:
        assert (await api.request("GET", "/ping")).status_code == 200
    finally:
        await api.aclose()
        _stop(server)


def test_the_ca_bundle_setting_must_name_a_file(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from campaign_bridge.config import MailchimpDestination

    with pytest.raises(ValidationError, match="no such file"):
        MailchimpDestination.model_validate(
            {"api_key": "0" * 32 + "-us6", "list_id": "l1", "ca_bundle": str(tmp_path / "nope")}
        )
