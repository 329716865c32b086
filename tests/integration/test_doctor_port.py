"""doctor's serve-port check judges the port the way `serve` will bind it."""

from __future__ import annotations

import socket

from campaign_bridge.doctor._host import check_port_free


def _listener() -> socket.socket:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_a_listener_fails_the_check() -> None:
    with _listener() as server:
        port = server.getsockname()[1]
        result = check_port_free("127.0.0.1", port)
    assert result.status.value == "fail", result
    assert f"127.0.0.1:{port} is not free" in result.message


def test_a_stopped_servers_closed_connections_do_not_fail_it() -> None:
    """After a restart the old server's connections linger in TIME_WAIT; serve starts anyway."""
    server = _listener()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end of the connection enters TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    result = check_port_free("127.0.0.1", port)
    assert result.status.value == "ok", result
