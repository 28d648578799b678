"""Fault catalogue, part "wrong presence": inputs and bugs that could freeze the decision while
the actuator kept re-asserting the last `available`. Each case ends in a decision that fails
safe (towards `unavailable`), says why, and keeps the loop (and /healthz) alive."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from conftest import Sim, reason, running, until

from controller.config import ConfigError, load_settings
from controller.core.schedule import ScheduleError
from controller.core.schedule_grammar import parse
from controller.core.types import HealthResult, HealthStatus, LagResult, LagStatus, PolicyInputs
from controller.runtime.clock import Clock
from controller.runtime.controller import Controller
from controller.sim import LoopbackServer
from controller.sim.downward_api import DownwardAPIVolume
from controller.sources.health import HealthProbe
from controller.sources.lag import LagProbe, parse_lag

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""

P = "presence-controller/"
LAG = "webhook_queue_lag_seconds"


def exposition(*lines: str) -> str:
    return "\n".join(lines) + "\n"


# The lag metric: values that could raise out of the aggregation or the selection.


@pytest.mark.parametrize(
    ("text", "aggregate", "status", "value"),
    [
        # fsum overflows: an infinite lag, which is simply a bad tick.
        (exposition(f"{LAG} 1e308", f'{LAG}{{q="b"}} 1e308'), "sum", LagStatus.OK, math.inf),
        (exposition(f"{LAG} 1e308", f'{LAG}{{q="b"}} 1e308'), "avg", LagStatus.OK, math.inf),
        (exposition(f"{LAG} +Inf", f'{LAG}{{q="b"}} 3'), "avg", LagStatus.OK, math.inf),
        # +Inf - Inf is undefined: no lag reading.
        (exposition(f"{LAG} +Inf", f'{LAG}{{q="b"}} -Inf'), "sum", LagStatus.MISSING, None),
        (exposition(f"{LAG} +Inf", f'{LAG}{{q="b"}} -Inf'), "avg", LagStatus.MISSING, None),
    ],
)
def test_overflowing_and_infinite_lags_are_values(
    text: str, aggregate: Any, status: LagStatus, value: float | None
) -> None:
    result = parse_lag(text, False, LAG, {}, aggregate)
    assert (result.status, result.value) == (status, value), result


def test_a_native_histogram_named_like_the_lag_metric_is_not_a_lag() -> None:
    text = exposition(
        f"# TYPE {LAG} histogram",
        f"{LAG} {{count:24,sum:100,schema:0,zero_threshold:0.001,zero_count:4,"
        "positive_spans:[0:2],positive_deltas:[2,1]}",
        "# EOF",
    )
    result = parse_lag(text, True, LAG, {}, "max")
    assert result.status is LagStatus.MISSING
    assert "not numbers" in result.detail


async def test_an_infinite_lag_takes_the_bot_offline(sim: Sim) -> None:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=exposition(f"{LAG} 1e308", f'{LAG}{{q="b"}} 1e308'))

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    async with LoopbackServer(app) as server:
        settings = sim.settings(metrics_url=f"{server.url}/metrics", lag_aggregate="sum")
        async with running(settings) as run:
            await until(lambda: sim.gateway.presence == "unavailable")
            assert reason(run).startswith("unhealthy: queue lag inf >= lag_high 30")
            body = (await run.admin.get("/status")).text
            assert "Infinity" not in body, "/status stays valid JSON"
            assert (await run.status())["signals"]["lag_seconds"] is None
            assert await run.code("/healthz") == 200
    assert all("exception" not in line for line in run.log_events())


# Redirects to URLs httpx cannot follow.


@pytest.mark.parametrize(
    "target", ["javascript:alert(1)", "mailto:x@example.com", "http://xn--a.com/"]
)
async def test_a_redirect_to_an_unusable_url_is_a_failed_probe(target: str) -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    app = web.Application()
    app.router.add_get("/healthz", redirect)
    app.router.add_get("/metrics", redirect)
    async with LoopbackServer(app) as server, httpx.AsyncClient(follow_redirects=True) as client:
        health = await HealthProbe(client, f"{server.url}/healthz", 1.0)()
        lag = await LagProbe(client, f"{server.url}/metrics", 1.0, LAG, {}, "max")()
    assert health.status is HealthStatus.HTTP_ERROR, health
    assert health.detail.startswith("unusable redirect ("), health
    assert lag.status is LagStatus.MISSING and "metrics scrape failed" in lag.detail, lag


# Timestamps and leads that could overflow date arithmetic on every tick.


@pytest.mark.parametrize(
    "spec",
    [
        "9999-12-31T00:00:00Z/P2D",
        "9999-12-30T00:00:00Z/P2D; Sat 02:00-04:00 UTC",
        "2026-01-01T00:00:00Z/P99999999D",
        "9999-12-31T23:00:00-05:00/PT1H",
    ],
)
def test_far_future_windows_are_refused_at_parse(spec: str) -> None:
    with pytest.raises(ScheduleError, match="timestamps must lie before 9000-01-01"):
        parse(spec)


async def test_a_far_future_maintenance_annotation_fails_closed(sim: Sim, tmp_path: Path) -> None:
    volume = DownwardAPIVolume(tmp_path / "podinfo")
    volume.write({P + "maintenance": "9999-12-31T00:00:00Z/P2D"})
    async with running(sim.settings(annotations_file=volume.file)) as run:
        await until(lambda: sim.gateway.presence == "unavailable")
        assert "timestamps must lie before 9000-01-01" in reason(run)
        ticks = run.controller.ticks
        await until(lambda: run.controller.ticks >= ticks + 5)
        assert await run.code("/healthz") == 200
    assert all("exception" not in line for line in run.log_events())


def test_a_maintenance_lead_past_a_week_is_refused(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESENCE_MAINTENANCE_LEAD", "99999999999h")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.errors == [
        "PRESENCE_MAINTENANCE_LEAD: at most 7d, got 3.6e+14: a drain of more than a week is a "
        "mistake (and far leads are date arithmetic that could overflow)"
    ]


# Bugs: whatever raises, the loop fails safe.


class BrokenProbes(Controller):
    """A controller whose observation path raises (a bug no probe catches)."""

    async def observe(self) -> tuple[HealthResult, LagResult]:
        raise RuntimeError("boom in the probe path")


async def test_a_tick_that_raises_counts_as_bad_and_the_bot_goes_offline(sim: Sim) -> None:
    async with running(sim.settings(on_shutdown="keep")):
        await until(lambda: sim.gateway.presence == "available")
    assert sim.gateway.presence == "available", "kept: the broken controller must change it"
    settings = sim.settings(fall=3)
    async with running(settings, controller_class=BrokenProbes) as run:
        await until(lambda: sim.gateway.presence == "unavailable")
        assert reason(run) == (
            "controller error: RuntimeError: boom in the probe path (3 failed ticks, fall 3)"
        )
        assert await run.metric("presence_decision_rule", {"rule": "error"}) == 1
        ticks = run.controller.ticks
        await until(lambda: run.controller.ticks >= ticks + 5)
        assert await run.code("/healthz") == 200, "alive and deciding: no restart loop"
        assert (await run.status())["presence"]["desired"] == "unavailable"
    tracebacks = [line for line in run.log_events() if "exception" in line]
    assert len(tracebacks) == 1, "one traceback per distinct error, not one per tick"


async def test_a_maintenance_source_that_raises_fails_closed(sim: Sim) -> None:
    # A wall clock in the year 9999: the next window's dates overflow (a real OverflowError).
    end_of_time = Clock(wall=lambda: datetime.max.replace(tzinfo=UTC) - timedelta(days=1))
    settings = sim.settings(maintenance_windows="Sat 00:00-24:00 UTC")
    async with running(settings, clock=end_of_time) as run:
        await until(lambda: sim.gateway.presence == "unavailable")
        assert reason(run) == (
            "maintenance: evaluation failed (OverflowError: date value out of range): fail closed"
        )
        assert run.controller.observation is not None
        assert run.controller.observation.policy == PolicyInputs(
            maintenance="evaluation failed (OverflowError: date value out of range): fail closed"
        )
    assert len([line for line in run.log_events() if "exception" in line]) == 1


# Unbounded annotation text: every user string that reaches a reason, a log line, a span or
# /status is a short excerpt.


def test_a_huge_window_spec_is_refused_in_a_short_message() -> None:
    with pytest.raises(ScheduleError) as caught:
        parse("x" * 200_000)
    assert len(str(caught.value)) < 200
    with pytest.raises(ScheduleError, match="at most 50 windows"):
        parse("; ".join(["Sat 02:00-04:00 UTC"] * 51))
    with pytest.raises(ScheduleError) as caught:
        parse("Sat 02:00-04:00 " + "Z" * 3000)
    assert len(str(caught.value)) < 300 and "(3000 characters)" in str(caught.value)


async def test_a_200_kb_invalid_maintenance_value_stays_out_of_reasons_logs_and_status(
    sim: Sim, tmp_path: Path
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from controller.telemetry.tracing import span_limits

    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=span_limits({}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    volume = DownwardAPIVolume(tmp_path / "podinfo")
    volume.write({P + "maintenance": "Sat " + "y" * 200_000})
    settings = sim.settings(annotations_file=volume.file)
    async with running(settings, tracer=provider.get_tracer("t")) as run:
        await until(lambda: sim.gateway.presence == "unavailable")
        assert len(reason(run)) < 400
        status = (await run.admin.get("/status")).text
    assert len(status) < 32 * 1024
    assert max(len(line) for line in run.logs.getvalue().splitlines()) < 4096
    for span in exporter.get_finished_spans():
        for value in (span.attributes or {}).values():
            assert not isinstance(value, str) or len(value) <= 1024
