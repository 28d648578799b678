"""Run an aiohttp app on an ephemeral loopback port."""

from __future__ import annotations

import ssl

from aiohttp import web


class LoopbackServer:
    """`async with LoopbackServer(app) as server:` serves on 127.0.0.1; `server.url` is its base."""

    def __init__(
        self,
        app: web.Application,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        # A hung handler is cancelled when its client gives up, as in a real server: otherwise
        # every timed-out probe of a "hanging" simulator would leave a sleeping task behind.
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.1, handler_cancellation=True
        )
        self._host, self._port, self._ssl = host, port, ssl_context
        self.url = ""

    async def __aenter__(self) -> LoopbackServer:
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl).start()
        port = int(self._runner.addresses[0][1])
        self.url = f"{'https' if self._ssl else 'http'}://{self._host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
