"""The whole controller on loopback: simulated consumer and gateway, real admin server."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from conftest import Sim, reason, running, until

from controller.runtime.admin import AdminServer
from controller.runtime.clock import Clock
from controller.runtime.controller import Controller
from controller.sim.consumer import MetricsMode
from controller.sim.downward_api import DownwardAPIVolume
from controller.sim.gateway import Fault

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""

P = "presence-controller/"


async def test_follows_the_consumer_and_explains_itself(sim: Sim) -> None:
    async with running(sim.settings()) as run:
        await until(lambda: sim.gateway.presence == "available")
        assert await run.code("/healthz") == 200
        assert await run.code("/readyz") == 200
        status = await run.status()
        assert status["presence"]["desired"] == "available"
        assert status["presence"]["applied"] == "available"
        assert status["presence"]["reason"].startswith("healthy: health HTTP 200, queue lag 1")
        assert status["signals"]["health"] == "ok" and status["signals"]["lag_seconds"] == 1.0
        assert status["gateway"]["session"] == "WORKING"
        assert status["maintenance"]["active"] is False and status["maintenance"]["errors"] == []
        assert status["override"]["active"] is False
        assert status["online_hours"] == {
            "configured": None, "inside": True, "next_change": None, "holidays": None,
            "holiday": None,
        }  # fmt: skip

        sim.consumer.lag = 45
        await until(lambda: sim.gateway.presence == "unavailable")
        status = await run.status()
        assert status["presence"]["reason"] == (
            "unhealthy: queue lag 45 >= lag_high 30 (2 consecutive bad ticks, fall 2)"
        )
        assert [(t["from"], t["to"]) for t in status["transitions"]] == [
            ("available", "unavailable"),
            ("unknown", "available"),
        ]
        transitions = {"to": "unavailable", "rule": "health"}
        assert await run.metric("presence_transitions_total", transitions) == 1
        assert await run.metric("presence_desired_state", {"state": "unavailable"}) == 1
        assert await run.metric("presence_queue_lag_seconds") == 45
        ticks = run.controller.ticks
        await until(lambda: run.controller.ticks >= ticks + 8)

    transitions = [e for e in run.log_events() if e.get("event") == "transition"]
    assert [(e["from"], e["to"]) for e in transitions] == [
        ("unknown", "available"),
        ("available", "unavailable"),
    ]
    assert len(run.log_events()) < run.controller.ticks, "log lines are per event, not per tick"


async def test_metrics_endpoint_exports_the_contract_names(sim: Sim) -> None:
    async with running(sim.settings()) as run:
        await until(lambda: sim.gateway.presence == "available")
        response = await run.admin.get("/metrics")
    text = response.text
    assert response.headers["content-type"].startswith("text/plain")
    for name in (
        'presence_desired_state{state="available"} 1.0',
        'presence_applied_state{state="available"} 1.0',
        'presence_transitions_total{rule="health",to="available"} 1.0',
        'presence_gateway_requests_total{outcome="ok",provider="wawp"}',
        "presence_gateway_request_duration_seconds_bucket",
        'presence_probe_total{probe="health",result="ok"}',
        'presence_probe_total{probe="lag",result="ok"}',
        "presence_queue_lag_seconds 1.0",
        "presence_maintenance_active 0.0",
        "presence_reconcile_duration_seconds_count",
    ):
        assert name in text, name


async def test_hanging_consumer_goes_unavailable_and_the_loop_keeps_ticking(sim: Sim) -> None:
    async with running(sim.settings()) as run:
        await until(lambda: sim.gateway.presence == "available")
        sim.consumer.health_delay = math.inf
        await until(lambda: sim.gateway.presence == "unavailable")
        ticks = run.controller.ticks
        await asyncio.sleep(0.3)
        assert run.controller.ticks > ticks
        assert await run.code("/healthz") == 200
        status = await run.status()
        assert status["signals"]["health"] == "timeout"
        assert "health timed out after 0.04s" in status["presence"]["reason"]


@pytest.mark.parametrize(("missing", "expected"), [("bad", "unavailable"), ("ignore", "available")])
async def test_garbage_metrics_follow_missing_lag(sim: Sim, missing: str, expected: str) -> None:
    sim.consumer.metrics_mode = MetricsMode.GARBAGE
    async with running(sim.settings(missing_lag=missing)) as run:
        await until(lambda: sim.gateway.presence == expected)
        status = await run.status()
        assert status["signals"]["lag_status"] == "missing"
        assert "unparseable Prometheus text" in status["signals"]["lag_detail"]
        assert await run.metric("presence_probe_total", {"probe": "lag", "result": "missing"})
        assert math.isnan(await run.metric("presence_queue_lag_seconds") or 0.0)


async def test_auth_failure_is_loud_but_never_unready(sim: Sim) -> None:
    """Readiness gates the pod's Service endpoints: a revoked gateway token must not stop
    webhook delivery to the consumer."""
    settings = sim.settings(wawp={"access_token": "wrong-token"})
    async with running(settings) as run:
        await until(lambda: run.controller.actuator.state.auth_failed)
        assert await run.code("/readyz") == 200
        assert await run.code("/healthz") == 200
        errors = [e for e in run.log_events() if e.get("event") == "gateway_error"]
        assert errors and errors[0]["level"] == "error"
        status = await run.status()
        assert status["gateway"]["auth_failed"] is True
        assert status["gateway"]["backoff_until"] is not None
        assert await run.metric("presence_gateway_auth_failed") == 1
    errors = [e for e in run.log_events() if e.get("event") == "gateway_error"]
    assert errors and errors[0]["level"] == "error" and errors[0]["outcome"] == "auth_error"


async def test_session_not_working_means_no_set_calls(sim: Sim) -> None:
    sim.gateway.session_state = "SCAN_QR_CODE"
    async with running(sim.settings()) as run:
        await until(lambda: len(sim.gateway.calls) >= 2)
        assert sim.gateway.sets(None) == []
        status = await run.status()
        assert status["presence"]["desired"] == "available"
        assert status["presence"]["applied"] == "unknown"
        assert status["gateway"]["session"] == "SCAN_QR_CODE"
        assert "SCAN_QR_CODE" in status["gateway"]["last_error"]
        sim.gateway.session_state = "WORKING"
        await until(lambda: sim.gateway.presence == "available")


async def test_a_slow_gateway_does_not_stall_the_ticks(sim: Sim) -> None:
    sim.gateway.set_faults.append(Fault(200, delay=5.0))
    async with running(sim.settings(wawp={"timeout": 10.0})) as run:
        await until(lambda: sim.gateway.in_flight == 1)
        ticks = run.controller.ticks
        await until(lambda: run.controller.ticks >= ticks + 3)
        assert sim.gateway.in_flight == 1, "three ticks while the set call still hangs"
        assert await run.code("/healthz") == 200


@pytest.mark.real_time  # its simulator records times on the real clock
async def test_rate_limits_and_5xx_bursts_end_in_the_right_presence(sim: Sim) -> None:
    sim.gateway.set_faults.extend([Fault(429, {"Retry-After": "1"}), Fault(503), Fault(502)])
    # After the 429's second, the back-off grows: up to 2 then 4 s (full jitter, seeded here).
    async with running(sim.settings(), rng=random.Random(4)) as run:
        await until(lambda: sim.gateway.presence == "available", within=10.0)
        sets = sim.gateway.sets(None)
        assert [c.status for c in sets][:4] == [429, 503, 502, 200]
        assert sets[1].at - sets[0].at >= 0.99, "Retry-After: 1 was honoured"
        assert (
            await run.metric(
                "presence_gateway_requests_total", {"provider": "wawp", "outcome": "rate_limited"}
            )
            == 1
        )


async def test_shutdown_writes_unavailable(sim: Sim) -> None:
    stop = asyncio.Event()
    async with running(sim.settings(), stop) as run:
        await until(lambda: sim.gateway.presence == "available")
        started = asyncio.get_running_loop().time()
        stop.set()
        await until(lambda: run.controller.actuator.state.applied.value == "unavailable")
        assert asyncio.get_running_loop().time() - started < 5.0, "the documented bound: within 5 s"
    assert sim.gateway.presence == "unavailable"
    shutdown = [e for e in run.log_events() if e.get("event") == "shutdown"]
    assert shutdown[-1]["msg"] == "wrote unavailable on shutdown"


async def test_on_shutdown_keep_leaves_presence(sim: Sim) -> None:
    async with running(sim.settings(on_shutdown="keep")):
        await until(lambda: sim.gateway.presence == "available")
    assert sim.gateway.presence == "available"
    assert sim.gateway.sets()[-1].presence == "available"


async def test_dry_run_decides_but_calls_nothing(sim: Sim) -> None:
    async with running(sim.settings(dry_run=True)) as run:
        await until(lambda: run.controller.actuator.state.applied.value == "available")
        status = await run.status()
        assert status["presence"]["dry_run"] is True
        assert status["presence"]["desired"] == "available"
    assert sim.gateway.calls == []


async def test_startup_grace_writes_unavailable_when_undecided(sim: Sim) -> None:
    sim.consumer.flap = True  # never two good or two bad probes in a row
    async with running(sim.settings(startup_grace=0.3)) as run:
        await until(lambda: sim.gateway.presence == "unavailable")
        status = await run.status()
        assert status["presence"]["reason"].startswith("startup grace 0.3s expired")


async def test_not_ticking_is_unhealthy_and_undecided_is_unready(sim: Sim) -> None:
    controller = Controller(sim.settings())
    async with AdminServer(controller, "127.0.0.1", 0) as admin, httpx.AsyncClient() as client:
        base = f"http://127.0.0.1:{admin.port}"
        assert (await client.get(f"{base}/healthz")).status_code == 503
        response = await client.get(f"{base}/readyz")
        assert (response.status_code, response.text) == (503, "no decision yet\n")
        status = (await client.get(f"{base}/status")).json()
        assert status["presence"]["desired"] == "unknown"
    await controller.gateway.aclose()


async def test_the_token_appears_nowhere(sim: Sim) -> None:
    token = sim.gateway.access_token
    sim.gateway.set_faults.extend([Fault(500, body=f'{{"echo": "{token}"}}'), Fault(401)])
    async with running(sim.settings(reassert_available=0.1)) as run:
        await until(lambda: run.controller.actuator.state.auth_failed, within=5.0)
        texts = [
            (await run.admin.get(path)).text
            for path in ("/status", "/metrics", "/healthz", "/readyz")
        ]
    texts.append(run.logs.getvalue())
    assert all(token not in text for text in texts)
    assert run.logs.getvalue(), "there were log lines to check"


class FlakyProbes(Controller):
    """Its observation raises on the first three ticks (a bug no probe catches)."""

    failures = 0

    async def observe(self) -> Any:
        if self.failures < 3:
            self.failures += 1
            raise RuntimeError("bug in a probe")
        return await super().observe()


async def test_a_failing_tick_is_logged_and_the_loop_goes_on(sim: Sim) -> None:
    async with running(sim.settings(), controller_class=FlakyProbes) as run:
        await until(lambda: sim.gateway.presence == "available")
        assert isinstance(run.controller, FlakyProbes) and run.controller.failures == 3
    errors = [e for e in run.log_events() if e["msg"].startswith("tick failed")]
    assert len(errors) == 1, "one traceback per distinct error, not one per tick"
    assert errors[0]["msg"] == "tick failed: RuntimeError: bug in a probe"
    assert "RuntimeError: bug in a probe" in errors[0]["exception"]


# Maintenance, force and online hours through a Downward API volume, end to end.


@pytest.fixture
def volume(tmp_path: Any) -> DownwardAPIVolume:
    volume = DownwardAPIVolume(tmp_path / "podinfo")
    volume.write({"app": "bot"})
    return volume


async def test_maintenance_annotation_takes_a_healthy_bot_offline_and_back(
    sim: Sim, volume: DownwardAPIVolume
) -> None:
    async with running(sim.settings(annotations_file=volume.file)) as run:
        await until(lambda: sim.gateway.presence == "available")
        volume.write(
            {"app": "bot", P + "maintenance": "true", P + "maintenance-reason": "DB migration"}
        )
        await until(lambda: sim.gateway.presence == "unavailable")
        status = await run.status()
        assert status["presence"]["reason"] == (
            "maintenance: DB migration (annotation presence-controller/maintenance 'true')"
        )
        assert status["maintenance"]["active"] is True
        assert status["maintenance"]["source"] == "annotation presence-controller/maintenance"
        assert status["annotations"]["values"] == {
            P + "maintenance": "true",
            P + "maintenance-reason": "DB migration",
        }
        assert await run.metric("presence_maintenance_active") == 1
        assert status["signals"]["health"] == "ok", "the consumer is healthy all along"

        volume.write({"app": "bot", P + "maintenance": "false"})
        await until(lambda: sim.gateway.presence == "available")
        assert await run.metric("presence_maintenance_active") == 0
    events = [
        e["msg"] for e in run.log_events() if e.get("event") in ("maintenance", "annotations")
    ]
    assert events == [
        "presence annotations changed",
        "maintenance started: DB migration (annotation presence-controller/maintenance 'true')",
        "presence annotations changed",
        "maintenance ended",
    ]


async def test_an_invalid_maintenance_annotation_fails_closed_and_is_reported_once(
    sim: Sim, volume: DownwardAPIVolume
) -> None:
    async with running(sim.settings(annotations_file=volume.file)) as run:
        await until(lambda: sim.gateway.presence == "available")
        volume.write({P + "maintenance": "Saturday night"})
        await until(lambda: sim.gateway.presence == "unavailable")
        ticks = run.controller.ticks
        await until(lambda: run.controller.ticks >= ticks + 5)
        status = await run.status()
        error = (
            "invalid annotation presence-controller/maintenance: window 'Saturday night': "
            "unknown day 'Saturday': expected Mon, Tue, Wed, Thu, Fri, Sat, Sun"
        )
        assert status["presence"]["reason"] == f"maintenance: {error}"
        assert status["maintenance"]["errors"] == [error]
        assert await run.metric("presence_annotation_errors_total") == 1
    logged = [e for e in run.log_events() if e.get("event") == "annotation_error"]
    assert [e["msg"] for e in logged] == [error]


async def test_force_overrides_health_but_not_maintenance(
    sim: Sim, volume: DownwardAPIVolume
) -> None:
    sim.consumer.health_status = 503
    async with running(sim.settings(annotations_file=volume.file)) as run:
        await until(lambda: sim.gateway.presence == "unavailable")
        volume.write({P + "force": "available"})
        await until(lambda: sim.gateway.presence == "available")
        assert (await run.status())["override"]["active"] is True
        volume.write({P + "force": "available", P + "maintenance": "on"})
        await until(lambda: sim.gateway.presence == "unavailable")
        volume.write({P + "force": "available", P + "force-until": "2020-01-01T00:00:00Z"})
        await until(lambda: reason(run).startswith("maintenance ended: consumer unavailable"))
        assert (await run.status())["override"]["expired"] is True


async def test_a_vanished_annotations_file_keeps_the_last_good_values(
    sim: Sim, volume: DownwardAPIVolume
) -> None:
    volume.write({P + "maintenance": "true"})
    async with running(sim.settings(annotations_file=volume.file)) as run:
        await until(lambda: sim.gateway.presence == "unavailable")
        (volume.directory / "..data").unlink()
        await until(lambda: run.controller.sources.report().stale)
        ticks = run.controller.ticks
        await until(lambda: run.controller.ticks >= ticks + 3)
        status = await run.status()
        assert status["annotations"]["stale"] is True
        assert status["maintenance"]["active"] is True, "kept the last good annotations"
        assert "unreadable" in status["maintenance"]["errors"][-1]
        assert sim.gateway.presence == "unavailable"
        assert await run.metric("presence_annotation_errors_total") == 1


async def test_configured_windows_and_online_hours(sim: Sim) -> None:
    friday_night = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    settings = sim.settings(online_hours="Mon-Fri 09:00-18:00 Europe/Berlin")
    async with running(settings, clock=Clock(wall=lambda: friday_night)) as run:
        await until(lambda: reason(run).startswith("outside online hours"))
        await until(lambda: sim.gateway.presence == "unavailable")
        status = await run.status()
        assert status["presence"]["reason"] == (
            "outside online hours: 'Mon-Fri 09:00-18:00 Europe/Berlin', "
            "back at 2026-11-30T08:00:00+00:00"
        )
        assert status["online_hours"]["inside"] is False
    settings = sim.settings(maintenance_windows="Fri 22:00-02:00 UTC")
    async with running(settings, clock=Clock(wall=lambda: friday_night)) as run:
        await until(lambda: reason(run).startswith("maintenance"))
        status = await run.status()
        assert status["presence"]["reason"] == (
            "maintenance: PRESENCE_MAINTENANCE_WINDOWS 'Fri 22:00-02:00 UTC'"
        )
        assert status["maintenance"]["ends"] == "2026-11-28T02:00:00+00:00"
