"""Fault injection, fast cases: each asserts the documented outcome (state, reason, metrics,
readiness) and that nothing was logged with a traceback. The rest of the matrix lives with the
modules it concerns (test_health, test_lag, test_wawp, test_actuator, test_controller,
test_annotations_file, test_telemetry, test_cli); the long randomised run is `make soak`."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from conftest import Running, Sim, reason, running, until

from controller.runtime.clock import Clock
from controller.sim.downward_api import DownwardAPIVolume
from controller.sim.gateway import Fault

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""

P = "presence-controller/"


def no_tracebacks(run: Running) -> None:
    assert all("exception" not in line for line in run.log_events())


async def test_a_consumer_just_under_the_timeout_is_healthy_just_over_is_not(sim: Sim) -> None:
    sim.consumer.health_delay = 0.05
    async with running(sim.settings(interval=0.2, timeout=0.15)) as run:
        await until(lambda: sim.gateway.presence == "available")
        sim.consumer.health_delay = 0.25
        await until(lambda: sim.gateway.presence == "unavailable")
        assert "health timed out after 0.15s" in reason(run)
        assert await run.metric("presence_probe_total", {"probe": "health", "result": "timeout"})
    no_tracebacks(run)


async def test_metrics_with_a_wrong_content_type(sim: Sim) -> None:
    async def json_metrics(request: web.Request) -> web.Response:
        return web.json_response({"webhook_queue_lag_seconds": 3})

    async def html_but_valid(request: web.Request) -> web.Response:
        text = "webhook_queue_lag_seconds 3\n"
        return web.Response(text=text, content_type="text/html")

    app = web.Application()
    app.router.add_get("/json", json_metrics)
    app.router.add_get("/html", html_but_valid)
    from controller.sim import LoopbackServer

    async with LoopbackServer(app) as metrics:
        async with running(sim.settings(metrics_url=f"{metrics.url}/json")) as run:
            await until(lambda: sim.gateway.presence == "unavailable")
            status = await run.status()
            assert status["signals"]["lag_status"] == "missing"
            assert "unparseable Prometheus text" in status["signals"]["lag_detail"]
        sim.gateway.presence = None
        async with running(sim.settings(metrics_url=f"{metrics.url}/html")) as run:
            await until(lambda: sim.gateway.presence == "available")
            assert (await run.status())["signals"]["lag_seconds"] == 3.0
    no_tracebacks(run)


async def test_a_connection_reset_mid_response_is_retried(sim: Sim) -> None:
    sim.gateway.set_faults.append(Fault(200, reset=True))
    async with running(sim.settings()) as run:
        await until(lambda: sim.gateway.presence == "available", within=5)
        outcomes = {"provider": "wawp", "outcome": "transient_error"}
        assert await run.metric("presence_gateway_requests_total", outcomes) == 1
    errors = [e for e in run.log_events() if e.get("event") == "gateway_error"]
    assert errors[0]["msg"].startswith("set presence available: connection failed (")
    no_tracebacks(run)


async def test_a_session_flapping_between_states_gets_no_set_until_working(sim: Sim) -> None:
    sim.gateway.session_faults.extend(
        [Fault(200, body='{"status": "STARTING"}'), Fault(200, body='{"status": "STOPPED"}')]
    )
    async with running(sim.settings()) as run:
        await until(lambda: sim.gateway.presence == "available", within=8)
    ops = [(c.operation, c.status) for c in sim.gateway.calls]
    assert ops[:3] == [("session", 200), ("session", 200), ("session", 200)]
    assert ops[3] == ("set", 200), "the first set came after the session was WORKING"
    sessions = [e["session"] for e in run.log_events() if e.get("event") == "gateway_session"]
    assert sessions[:3] == ["STARTING", "STOPPED", "WORKING"]


@pytest.mark.real_time  # its simulator records times on the real clock
async def test_401_is_an_auth_failure_403_a_plan_limit_and_404_a_permanent_error(sim: Sim) -> None:
    sim.gateway.set_faults.append(Fault(401))
    async with running(sim.settings()) as run:
        await until(lambda: run.controller.actuator.state.auth_failed)
        assert await run.code("/readyz") == 200, "readiness never depends on the gateway"
    # Wawp's 403 is "Quota or Limit Reached": the plan, not the credentials.
    sim.gateway.quota_exceeded = True
    async with running(sim.settings()) as run:
        await until(lambda: run.controller.actuator.state.failures >= 1)
        status = await run.status()
        assert "quota" in status["gateway"]["last_error"]
        assert "not the token" in status["gateway"]["last_error"]
        assert not run.controller.actuator.state.auth_failed
        assert await run.metric("presence_gateway_auth_failed") == 0
        outcomes = {"provider": "wawp", "outcome": "quota_refused"}
        assert await run.metric("presence_gateway_requests_total", outcomes) >= 1
        left = run.controller.actuator.state.backoff_until - time.monotonic()
        assert left > 250, "retried as rarely as an auth failure (300 s)"
    sim.gateway.quota_exceeded = False
    sim.gateway.presence = None
    async with running(sim.settings(wawp={"instance_id": "unknown-instance"})) as run:
        await until(lambda: run.controller.actuator.state.failures >= 1)
        status = await run.status()
        assert "HTTP 404" in status["gateway"]["last_error"]
        assert not run.controller.actuator.state.auth_failed, "a wrong instance is not auth"
        outcomes = {"provider": "wawp", "outcome": "permanent_error"}
        assert await run.metric("presence_gateway_requests_total", outcomes) == 1
    no_tracebacks(run)


async def test_a_200_kb_annotation_does_not_slow_ticks(sim: Sim, tmp_path: Path) -> None:
    """Kubernetes caps a pod's annotations at 256 KiB in all: 200 KB is about the largest."""
    volume = DownwardAPIVolume(tmp_path / "podinfo")
    volume.write({"kubectl.kubernetes.io/last-applied-configuration": "x" * 200_000})
    async with running(sim.settings(annotations_file=volume.file)) as run:
        await until(lambda: sim.gateway.presence == "available")
        volume.write({"big": "y" * 200_000, P + "maintenance": "true"})
        await until(lambda: sim.gateway.presence == "unavailable")
        annotations = run.controller.sources.file
        assert annotations is not None
        version, ticks = annotations.snapshot.version, run.controller.ticks
        await until(lambda: run.controller.ticks >= ticks + 10)
        assert annotations.snapshot.version == version, "an unchanged file is not re-parsed"
    no_tracebacks(run)


async def test_wall_clock_jumps_move_windows_but_not_ticks(sim: Sim) -> None:
    offset = timedelta(0)
    friday_noon = datetime(2026, 11, 27, 12, tzinfo=UTC)

    def wall() -> datetime:
        return friday_noon + offset

    settings = sim.settings(maintenance_windows="Sat 00:00-24:00 UTC")
    async with running(settings, clock=Clock(wall=wall)) as run:
        await until(lambda: sim.gateway.presence == "available")
        offset = timedelta(days=1)  # the clock jumps into Saturday
        await until(lambda: reason(run).startswith("maintenance: PRESENCE_MAINTENANCE_WINDOWS"))
        offset = timedelta(0)  # and back: the cached evaluation must not outlive the jump
        await until(lambda: reason(run).startswith("maintenance ended: consumer available"))
        ticks = run.controller.ticks
        await asyncio.sleep(0.5)
        assert run.controller.ticks >= ticks + 6, "ticks follow the monotonic clock"
    no_tracebacks(run)


async def test_an_event_loop_stall_is_survived(sim: Sim) -> None:
    async with running(sim.settings()) as run:
        await until(lambda: sim.gateway.presence == "available")
        time.sleep(0.8)  # block the event loop: 16 intervals
        ticks = run.controller.ticks
        await until(lambda: run.controller.ticks >= ticks + 3)
        assert await run.code("/healthz") == 200
        assert run.controller.decision is not None
        assert run.controller.decision.presence.value == "available"
    no_tracebacks(run)
