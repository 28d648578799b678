"""The admin HTTP server: /healthz, /readyz, /status, /metrics (aiohttp)."""

from __future__ import annotations

import json
import socket

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from controller.redaction import scrub_document
from controller.runtime.controller import Controller
from controller.runtime.listen import bind

CONTROLLER_KEY = web.AppKey("controller", Controller)


def make_app(controller: Controller) -> web.Application:
    app = web.Application()
    app[CONTROLLER_KEY] = controller
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/status", _status)
    app.router.add_get("/metrics", _metrics)
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


class AdminServer:
    """Runs the admin app on a bound socket (or host:port); `port` is the bound port."""

    def __init__(
        self,
        controller: Controller,
        host: str = "",
        port: int = 0,
        sock: socket.socket | None = None,
    ) -> None:
        self._runner = web.AppRunner(make_app(controller), access_log=None)
        self._sock = sock if sock is not None else bind(host, port)
        self.port = int(self._sock.getsockname()[1])

    async def __aenter__(self) -> AdminServer:
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
