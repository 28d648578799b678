"""The health probe against a real loopback consumer: every outcome is a value."""

from __future__ import annotations

import math
import socket

import httpx
from aiohttp import web
from conftest import Sim

from controller.core.types import HealthStatus
from controller.sim import LoopbackServer
from controller.sources.health import HealthProbe

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""


async def probe(url: str, timeout: float = 0.3) -> tuple[HealthStatus, str]:
    async with httpx.AsyncClient(follow_redirects=True, max_redirects=5) as client:
        result = await HealthProbe(client, url, timeout)()
        return result.status, result.detail


async def test_2xx_is_healthy(sim: Sim) -> None:
    for status in (200, 204):
        sim.consumer.health_status = status
        assert await probe(f"{sim.consumer_url}/healthz") == (HealthStatus.OK, f"HTTP {status}")


async def test_non_2xx_is_an_http_error(sim: Sim) -> None:
    for status in (404, 500, 503):
        sim.consumer.health_status = status
        assert await probe(f"{sim.consumer_url}/healthz") == (
            HealthStatus.HTTP_ERROR,
            f"HTTP {status}",
        )


async def test_hanging_consumer_times_out_within_the_timeout(sim: Sim) -> None:
    sim.consumer.health_delay = math.inf
    loop_time = __import__("asyncio").get_running_loop().time
    started = loop_time()
    assert await probe(f"{sim.consumer_url}/healthz", timeout=0.2) == (
        HealthStatus.TIMEOUT,
        "timed out after 0.2s",
    )
    assert loop_time() - started < 2.0, "the whole request is bounded by the timeout"


async def test_slow_but_in_time_is_healthy(sim: Sim) -> None:
    sim.consumer.health_delay = 0.05
    assert (await probe(f"{sim.consumer_url}/healthz", timeout=0.5))[0] is HealthStatus.OK


async def test_refused_connection_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        status, detail = await probe(f"http://127.0.0.1:{port}/healthz")
    assert status is HealthStatus.CONNECTION_ERROR
    assert detail.startswith("connection failed (ConnectError: "), detail


async def test_redirects_are_followed_and_loops_reported() -> None:
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/healthz")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/old", moved)
    app.router.add_get("/loop", loop)
    app.router.add_get("/healthz", ok)
    async with LoopbackServer(app) as server:
        assert await probe(f"{server.url}/old") == (HealthStatus.OK, "HTTP 200")
        assert await probe(f"{server.url}/loop") == (HealthStatus.HTTP_ERROR, "too many redirects")


async def test_a_huge_health_body_is_not_read_whole() -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(1000):
            await response.write(b"x" * 65536)  # 64 MiB if anyone read it all
        return response

    app = web.Application()
    app.router.add_get("/healthz", huge)
    async with LoopbackServer(app) as server:
        assert await probe(f"{server.url}/healthz", timeout=2.0) == (HealthStatus.OK, "HTTP 200")


async def test_probes_carry_no_cookies_whatever_the_consumer_sets() -> None:
    """A consumer setting a new cookie per response would grow every probe's Cookie header
    past the 8 KiB a stock aiohttp server accepts (healthy, yet answered 400 for good): no
    cookies are kept."""
    from controller.cookies import no_cookies

    seen: list[str | None] = []

    async def health(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.Response(text="ok")
        response.set_cookie(f"session{len(seen)}", "x" * 100, path="/")
        return response

    app = web.Application()
    app.router.add_get("/healthz", health)
    async with (
        LoopbackServer(app) as server,
        httpx.AsyncClient(follow_redirects=True, cookies=no_cookies()) as client,
    ):
        probe = HealthProbe(client, f"{server.url}/healthz", 1.0)
        results = [await probe() for _ in range(120)]
    assert all(r.status is HealthStatus.OK for r in results)
    assert seen == [None] * 120
