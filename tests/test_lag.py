"""The queue-lag scrape: selection and aggregation (pure), then real scrapes of every failure."""

from __future__ import annotations

import math

import httpx
import pytest
from aiohttp import web
from conftest import Sim

from controller.core.types import LagResult, LagStatus
from controller.sim import LoopbackServer
from controller.sim.consumer import MetricsMode
from controller.sources.lag import MAX_BODY_BYTES, LagProbe, parse_lag

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""

EXPOSITION = """\
# HELP webhook_queue_lag_seconds Age of the oldest queued webhook.
# TYPE webhook_queue_lag_seconds gauge
webhook_queue_lag_seconds{queue="inbound",tenant="a"} 4
webhook_queue_lag_seconds{queue="inbound",tenant="b"} 12.5
webhook_queue_lag_seconds{queue="outbound",tenant="a"} 40
# TYPE other gauge
other{queue="inbound"} 99
"""


@pytest.mark.parametrize(
    ("labels", "aggregate", "value"),
    [
        ({}, "max", 40.0),
        ({}, "min", 4.0),
        ({}, "sum", 56.5),
        ({}, "avg", 56.5 / 3),
        ({"queue": "inbound"}, "max", 12.5),
        ({"queue": "inbound", "tenant": "a"}, "max", 4.0),
        ({"tenant": "a"}, "sum", 44.0),
    ],
)
def test_select_and_aggregate(labels: dict[str, str], aggregate: str, value: float) -> None:
    result = parse_lag(EXPOSITION, False, "webhook_queue_lag_seconds", labels, aggregate)  # type: ignore[arg-type]
    assert result.status is LagStatus.OK
    assert result.value == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "openmetrics", "labels", "detail"),
    [
        (EXPOSITION, False, {"queue": "nope"}, "absent: no such series"),
        ("# TYPE other gauge\nother 1\n", False, {}, "absent: no such series"),
        ("webhook_queue_lag_seconds NaN\n", False, {}, "absent: 1 series are NaN"),
        ("<html>oops</html>\n", False, {}, "unparseable Prometheus text"),
        ('webhook_queue_lag_seconds{queue="a" 3\n', False, {}, "unparseable Prometheus text"),
        (
            "# TYPE webhook_queue_lag_seconds gauge\nwebhook_queue_lag_seconds 3\n",
            True,
            {},
            "unparseable OpenMetrics",
        ),
        ("", False, {}, "absent: no such series"),
    ],
)
def test_missing_and_unparseable(
    text: str, openmetrics: bool, labels: dict[str, str], detail: str
) -> None:
    result = parse_lag(text, openmetrics, "webhook_queue_lag_seconds", labels, "max")
    assert result.status is LagStatus.MISSING
    assert result.value is None
    assert detail in result.detail


def test_openmetrics_with_eof_and_infinite_lag() -> None:
    text = "# TYPE webhook_queue_lag_seconds gauge\nwebhook_queue_lag_seconds +Inf\n# EOF\n"
    result = parse_lag(text, True, "webhook_queue_lag_seconds", {}, "max")
    assert result.status is LagStatus.OK and result.value == math.inf


def test_counter_sample_names_are_matched_exactly() -> None:
    text = "# TYPE jobs counter\njobs_total 7\n# EOF\n"
    assert parse_lag(text, True, "jobs_total", {}, "max").value == 7.0
    assert parse_lag(text, True, "jobs", {}, "max").status is LagStatus.MISSING


async def scrape(url: str, timeout: float = 0.5, **kw: object) -> LagResult:
    async with httpx.AsyncClient() as client:
        probe = LagProbe(
            client, url, timeout, "webhook_queue_lag_seconds", kw.get("labels", {}), "max"
        )  # type: ignore[arg-type]
        return await probe()


@pytest.mark.parametrize("mode", [MetricsMode.PROMETHEUS, MetricsMode.OPENMETRICS])
async def test_scrape_both_formats(sim: Sim, mode: MetricsMode) -> None:
    sim.consumer.metrics_mode, sim.consumer.lag, sim.consumer.lag_series = mode, 7.5, 3
    result = await scrape(f"{sim.consumer_url}/metrics")
    assert (result.status, result.value, result.detail) == (LagStatus.OK, 7.5, "max over 3 series")


@pytest.mark.parametrize(
    ("mode", "detail"),
    [
        (MetricsMode.ABSENT, "metric webhook_queue_lag_seconds absent: no such series"),
        (MetricsMode.GARBAGE, "unparseable Prometheus text"),
        (MetricsMode.TRUNCATED, "unparseable OpenMetrics"),
        (MetricsMode.ERROR, "metrics endpoint answered HTTP 500"),
        (MetricsMode.HUGE, "refused: limit is 4 MiB"),
    ],
)
async def test_scrape_failures_are_values(sim: Sim, mode: MetricsMode, detail: str) -> None:
    sim.consumer.metrics_mode = mode
    result = await scrape(f"{sim.consumer_url}/metrics", timeout=2.0)
    assert result.status is LagStatus.MISSING
    assert detail in result.detail


async def test_scrape_timeout(sim: Sim) -> None:
    sim.consumer.metrics_delay = math.inf
    result = await scrape(f"{sim.consumer_url}/metrics", timeout=0.1)
    assert (result.status, result.detail) == (
        LagStatus.MISSING,
        "metrics scrape timed out after 0.1s",
    )


async def test_oversized_body_without_content_length_is_cut_off() -> None:
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse()  # chunked: no Content-Length to refuse up front
        await response.prepare(request)
        chunk = b"# " + b"x" * 65534 + b"\n"
        for _ in range(50 * 16):  # 50 MiB offered
            await response.write(chunk)
            sent += len(chunk)
        return response

    app = web.Application()
    app.router.add_get("/metrics", endless)
    async with LoopbackServer(app) as server:
        result = await scrape(f"{server.url}/metrics", timeout=5.0)
    assert result.status is LagStatus.MISSING
    assert result.detail == "metrics reply refused past 4 MiB"
    assert sent < 50 * 1024 * 1024, "the scrape stopped reading early"
    assert MAX_BODY_BYTES == 4 * 1024 * 1024


async def test_non_utf8_body(sim: Sim) -> None:
    async def latin(request: web.Request) -> web.Response:
        return web.Response(body=b'webhook_queue_lag_seconds{q="\xe9"} 1\n')

    app = web.Application()
    app.router.add_get("/metrics", latin)
    async with LoopbackServer(app) as server:
        result = await scrape(f"{server.url}/metrics")
    assert (result.status, result.detail) == (LagStatus.MISSING, "metrics body is not UTF-8 text")
