"""The admin server's listening socket, bound with the standard library alone: a taken port
fails at start, before aiohttp (slow to import) is loaded or any tick runs."""

from __future__ import annotations

import socket


def bind(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port (`::` and IPv6 literals included); non-blocking."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
