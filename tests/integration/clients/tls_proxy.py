"""A TLS-terminating HTTPS proxy that sends Mailchimp's host names to a local sandbox.

Some clients only ever talk to ``https://<dc>.api.mailchimp.com`` and
``https://login.mailchimp.com`` (Singer's tap-mailchimp builds its URLs that way). Without
patching them, the legitimate way to aim them elsewhere is the one every HTTP stack honours:
``HTTPS_PROXY`` points at this proxy, and ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE`` at a test
certificate authority (``trustme``) that signed the proxy's certificate for those names.

The client sends ``CONNECT us6.api.mailchimp.com:443``; the proxy answers 200, completes the
TLS handshake as that host, and relays the decrypted bytes to the sandbox's plain HTTP port
unchanged (the ``Host`` header still names Mailchimp, so the sandbox writes ``https://`` links
for it). Only ``*.mailchimp.com`` is accepted; every tunnelled host is recorded in ``hosts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trustme

__all__ = ["MAILCHIMP_HOSTS", "TlsProxy", "running_proxy"]

MAILCHIMP_HOSTS = ("login.mailchimp.com", "*.api.mailchimp.com", "us6.api.mailchimp.com")


@dataclass
class TlsProxy:
    port: int
    ca_file: Path
    hosts: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """What a client process needs in its environment to go through the proxy."""
        return {
            "HTTPS_PROXY": self.url,
            "https_proxy": self.url,
            "REQUESTS_CA_BUNDLE": str(self.ca_file),
            "SSL_CERT_FILE": str(self.ca_file),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _serve(
    target_port: int, context: ssl.SSLContext, proxy: TlsProxy
) -> tuple[asyncio.AbstractEventLoop, asyncio.Server, int]:
    loop = asyncio.new_event_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        method, _, rest = head.decode("latin-1").partition(" ")
        host = rest.split(" ", 1)[0].rsplit(":", 1)[0].lower()
        if method != "CONNECT" or not host.endswith(".mailchimp.com"):
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        proxy.hosts.append(host)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await writer.start_tls(context)
        except (ssl.SSLError, ConnectionError):
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            for each in (writer, up_writer):
                each.close()
                with contextlib.suppress(Exception):
                    await each.wait_closed()

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
    port = int(server.sockets[0].getsockname()[1])
    return loop, server, port


@contextlib.contextmanager
def running_proxy(target_port: int, directory: Path) -> Iterator[TlsProxy]:
    """Run the proxy in a thread, relaying to ``127.0.0.1:<target_port>``."""
    ca = trustme.CA()
    cert = ca.issue_cert(*MAILCHIMP_HOSTS)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = directory / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    proxy = TlsProxy(port=0, ca_file=ca_file)
    loop, server, port = _serve(target_port, context, proxy)
    proxy.port = port
    thread = threading.Thread(target=loop.run_forever, name="tls-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        _close(loop)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the relays still open, let them close their sockets, close the loop."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
