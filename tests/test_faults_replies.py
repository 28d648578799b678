"""Fault catalogue, part "replies": endless, huge, compressed (gzip bombs) and absurdly nested
answers from the gateway and the consumer. Every reply is bounded while streaming and never
inflated; each ends as a reported failure value, not memory growth or a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web

from controller.config import WawpSettings
from controller.core.types import HealthStatus, LagResult, LagStatus
from controller.gateway.base import PermanentError
from controller.gateway.http import MAX_REPLY_BYTES
from controller.gateway.wawp import WawpGateway
from controller.sim import LoopbackServer
from controller.sources.health import HealthProbe
from controller.sources.lag import LagProbe

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""

BOMB = gzip.compress(b"0" * (200 * 1024 * 1024), compresslevel=9)
"""200 MiB of zeros in about 200 KB: what a hostile server can make a client inflate."""


@contextlib.contextmanager
def allocations() -> Iterator[list[int]]:
    """The peak of Python allocations inside the block (bytes), in a one-item list. Unlike the
    process's RSS high-water mark, earlier tests in the same process cannot hide growth."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


async def endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"status": "')
    with_limit = 0
    while with_limit < 4 * 1024 * 1024 * 1024:  # the client must stop long before 4 GiB
        await response.write(b"W" * 65536)
        with_limit += 65536
    return response


async def bomb(request: web.Request) -> web.Response:
    return web.Response(
        body=BOMB, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )


async def deep(request: web.Request) -> web.Response:
    return web.Response(text="[" * 8_000 + "]" * 8_000, content_type="application/json")


def wawp(base_url: str) -> WawpGateway:
    return WawpGateway(
        WawpSettings.model_validate(
            {
                "base_url": base_url,
                "instance_id": "instance-1",
                "access_token": "k3j5h6g7f8d9",
                "timeout": 5.0,
            }
        )
    )


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (endless, f"reply refused past {MAX_REPLY_BYTES // 1024} KiB"),
        (bomb, "compressed reply (gzip) refused"),
        (deep, "reply is not JSON"),
    ],
)
async def test_a_hostile_session_reply_is_a_bounded_failure(handler: object, message: str) -> None:
    app = web.Application()
    app.router.add_get("/v2/session/info", handler)  # type: ignore[arg-type]
    async with LoopbackServer(app) as server:
        gateway = wawp(server.url)
        try:
            with allocations() as peak, pytest.raises(PermanentError) as caught:
                await asyncio.wait_for(gateway.session_status(), 10)
        finally:
            await gateway.aclose()
    assert caught.value.message == f"session info: {message}"
    # Measured well under 1 MiB; inflating the bomb alone would take 200 MiB.
    assert peak[0] < 16 * 2**20, f"peak {peak[0] / 2**20:.1f} MiB: a reply buffered or inflated"


async def test_a_gzip_bomb_from_the_consumer_is_never_inflated() -> None:
    app = web.Application()
    app.router.add_get("/healthz", bomb)
    app.router.add_get("/metrics", bomb)
    async with LoopbackServer(app) as server, httpx.AsyncClient() as client:
        with allocations() as peak:
            health = await HealthProbe(client, f"{server.url}/healthz", 5.0)()
            lag = await LagProbe(client, f"{server.url}/metrics", 5.0, "lag", {}, "max")()
    assert health.status is HealthStatus.OK, "a 200 is healthy; its body is drained raw"
    assert lag.status is LagStatus.MISSING
    assert lag.detail == "metrics compressed reply (gzip) refused"
    assert peak[0] < 16 * 2**20, f"peak {peak[0] / 2**20:.1f} MiB: the bomb was inflated"


async def test_probes_and_gateway_ask_for_uncompressed_replies() -> None:
    seen: list[str | None] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Accept-Encoding"))
        return web.json_response({"status": "WORKING"})

    app = web.Application()
    for path in ("/healthz", "/metrics", "/v2/session/info"):
        app.router.add_get(path, record)
    async with LoopbackServer(app) as server, httpx.AsyncClient() as client:
        await HealthProbe(client, f"{server.url}/healthz", 5.0)()
        await LagProbe(client, f"{server.url}/metrics", 5.0, "lag", {}, "max")()
        gateway = wawp(server.url)
        try:
            assert await gateway.session_status() == "WORKING"
        finally:
            await gateway.aclose()
    assert seen == ["identity"] * 3


# The metrics scrape: what it costs depends on the lag series, not on the whole exposition.


def parse_cost(
    text: str, metric: str = "webhook_queue_lag_seconds"
) -> tuple[float, int, LagResult]:
    import time
    import tracemalloc

    from controller.sources.lag import parse_lag

    tracemalloc.start()
    started = time.process_time()
    result = parse_lag(text, False, metric, {}, "max")
    took = time.process_time() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return took, peak, result


def test_4_mib_of_tiny_samples_parse_in_bounded_time_and_memory() -> None:
    """Used to peak at ~500 MB and 10 s of CPU per tick (every sample parsed)."""
    lines = [f"m{i % 97} {i}" for i in range(500_000)]
    text = "\n".join(lines)[: 4 * 1024 * 1024 - 100] + "\nwebhook_queue_lag_seconds 7\n"
    took, peak, result = parse_cost(text)
    assert result.value == 7.0
    assert peak < 32 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
    assert took < 2.0, f"{took:.2f} s of CPU"


def test_78k_realistic_series_cost_little() -> None:
    lines = [
        f'http_requests_total{{method="GET",path="/api/v1/item/{i}",code="200"}} {i}'
        for i in range(78_000)
    ]
    text = "\n".join([*lines, 'webhook_queue_lag_seconds{queue="inbound"} 3'])
    _, peak, result = parse_cost(text)
    assert result.value == 3.0
    assert peak < 48 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"


def test_too_many_lag_series_are_refused() -> None:
    text = "\n".join(f'webhook_queue_lag_seconds{{shard="{i}"}} 1' for i in range(20_000))
    _, _, result = parse_cost(text)
    assert result.status is LagStatus.MISSING
    assert "more than 10000 series: refused" in result.detail


def test_comment_lines_do_not_let_extra_series_through() -> None:
    """The cap counts samples only: 10,500 series behind four HELP/TYPE/UNIT lines are refused
    as too many, never cut to 10,000 silently (the max over them would be wrong)."""
    header = "# HELP lag x\n# TYPE lag gauge\n# UNIT lag seconds\n# HELP lag again\n"
    text = header + "\n".join(f'lag{{s="{i}"}} {i}' for i in range(10_500))
    _, _, result = parse_cost(text, metric="lag")
    assert result.status is LagStatus.MISSING
    assert "more than 10000 series: refused" in result.detail
