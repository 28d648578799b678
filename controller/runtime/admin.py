"""The admin HTTP server: /healthz, /readyz, /status, /metrics (aiohttp)."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from controller.gateway.witness import MAX_EVENT_BYTES, TOKEN_HEADER
from controller.redaction import scrub_document
from controller.runtime.listen import bind
from controller.telemetry.metrics import Metrics


class Observable(Protocol):
    """What the admin server asks of the controller."""

    metrics: Metrics

    def healthy(self) -> bool: ...

    def ready(self) -> tuple[bool, str]: ...

    def status(self) -> dict[str, Any]: ...

    def secrets(self) -> list[str]: ...

    def witness_event(self, token: str | None, body: bytes | None) -> tuple[int, str]: ...


CONTROLLER_KEY = web.AppKey("controller", Observable)
MAX_CONNECTIONS = 32
"""Open admin connections at most (kubelet probes, a scraper or two, a person with curl)."""
IDLE_TIMEOUT = 10.0
"""Seconds before an idle connection, or one that has not completed its request, is closed."""
BACKLOG = 64


def make_app(controller: Observable) -> web.Application:
    app = web.Application()
    app[CONTROLLER_KEY] = controller
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/status", _status)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/witness/events", _witness_event)
    return app


async def _healthz(request: web.Request) -> web.Response:
    ok = request.app[CONTROLLER_KEY].healthy()
    return web.Response(status=200 if ok else 503, text="ok\n" if ok else "not ticking\n")


async def _readyz(request: web.Request) -> web.Response:
    ok, why = request.app[CONTROLLER_KEY].ready()
    return web.Response(status=200 if ok else 503, text=why + "\n")


async def _status(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER_KEY]
    # Nothing in /status should hold a secret; scrub it anyway, the last line of defence.
    document = scrub_document(controller.status(), controller.secrets())
    body = json.dumps(document, indent=2, allow_nan=False)
    return web.Response(text=body + "\n", content_type="application/json")


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[CONTROLLER_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def read_event(request: web.Request) -> bytes | None:
    """A webhook's body, read up to MAX_EVENT_BYTES (chunked or not); None past it, read no
    further."""
    length = request.content_length
    if length is not None and length > MAX_EVENT_BYTES:
        return None
    body = b""
    while chunk := await request.content.read(MAX_EVENT_BYTES + 1):
        body += chunk
        if len(body) > MAX_EVENT_BYTES:
            return None
    return body


async def _witness_event(request: web.Request) -> web.Response:
    """Evolution's witness webhooks (the controller's witness says what they come to)."""
    body = await read_event(request)
    token = request.headers.get(TOKEN_HEADER)
    status, text = request.app[CONTROLLER_KEY].witness_event(token, body)
    return web.Response(status=status, text=text)


class AdminServer:
    """Runs the admin app on a bound socket (or host:port); `port` is the bound port."""

    def __init__(
        self,
        controller: Observable,
        host: str = "",
        port: int = 0,
        sock: socket.socket | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._max_connections = max_connections
        self._runner = web.AppRunner(
            make_app(controller),
            access_log=None,
            # Also closes a connection that never completes its request (slowloris): aiohttp
            # arms this timer when the connection opens.
            keepalive_timeout=idle_timeout,
            max_line_size=8190,
            max_field_size=8190,
        )
        self._sock = sock if sock is not None else bind(host, port)
        self.port = int(self._sock.getsockname()[1])
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> AdminServer:
        await self._runner.setup()
        handlers = self._runner.server
        assert handlers is not None

        def protocol() -> asyncio.BaseProtocol:
            # Past the cap a connection is closed at once: scrapes and probes need a handful,
            # and every open connection costs memory and a file descriptor of the whole pod.
            if len(handlers.connections) >= self._max_connections:
                return _Refuse()
            return handlers()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(protocol, sock=self._sock, backlog=BACKLOG)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        await self._runner.cleanup()


class _Refuse(asyncio.Protocol):
    """Closes the connection it is given: the admin server is at its connection cap."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()
