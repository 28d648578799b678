"""What the controller says is what happened: metrics that alerts can use from the first error,
dry run that claims no call, log lines that describe the signal as it is."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from conftest import Sim, running, until
from prometheus_client.parser import text_string_to_metric_families

from controller.core.actuation import FailureKind
from controller.core.types import HealthStatus, LagStatus
from controller.sim.downward_api import DownwardAPIVolume
from controller.sim.gateway import Fault
from controller.telemetry.metrics import RULES

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""

P = "presence-controller/"


@pytest.fixture
def volume(tmp_path: Path) -> DownwardAPIVolume:
    volume = DownwardAPIVolume(tmp_path / "podinfo")
    volume.write({"app": "bot"})
    return volume


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_every_labelled_counter_is_born_at_zero(sim: Sim) -> None:
    """rate()/increase() need a sample before the first error: a series born at 1 hides it."""
    sim.consumer.health_status = 503
    async with running(sim.settings(startup_grace=60)) as run:
        exposition = samples((await run.admin.get("/metrics")).text)
    for outcome in ["ok", *(kind.value for kind in FailureKind)]:
        key = (
            "presence_gateway_requests_total",
            frozenset({"provider": "wawp", "outcome": outcome}.items()),
        )
        assert key in exposition, outcome
    for status in HealthStatus:
        key = ("presence_probe_total", frozenset({"probe": "health", "result": status}.items()))
        assert key in exposition, status
    for lag in (LagStatus.OK, LagStatus.MISSING):
        key = ("presence_probe_total", frozenset({"probe": "lag", "result": lag}.items()))
        assert key in exposition, lag
    for to in ("available", "unavailable"):
        for rule in RULES:
            key = ("presence_transitions_total", frozenset({"to": to, "rule": rule}.items()))
            assert key in exposition, (to, rule)


async def test_the_session_gauge_is_unknown_until_read_then_says_working(sim: Sim) -> None:
    sim.gateway.session_state = "SCAN_QR_CODE"
    async with running(sim.settings(startup_grace=60)) as run:
        value = await run.metric("presence_gateway_session_working")
        assert value is not None and math.isnan(value), "not read yet: NaN, no alert"
        await until(lambda: run.controller.actuator.state.session == "SCAN_QR_CODE")
        assert await run.metric("presence_gateway_session_working") == 0
        assert (
            await run.metric(
                "presence_gateway_requests_total", {"provider": "wawp", "outcome": "ok"}
            )
            >= 1
        ), "a session read that says SCAN_QR_CODE is a successful call: only the gauge shows it"


async def test_confirmation_time_and_reassert_period_are_exported(sim: Sim) -> None:
    settings = sim.settings(reassert_available=0.2, reassert_unavailable=0.5)
    async with running(settings) as run:
        assert await run.metric("presence_gateway_last_success_timestamp_seconds") == 0
        assert await run.metric("presence_reassert_interval_seconds") == 0, "nothing decided"
        await until(lambda: sim.gateway.presence == "available")
        await until(lambda: run.controller.actuator.last_success is not None)
        confirmed = await run.metric("presence_gateway_last_success_timestamp_seconds")
        assert confirmed is not None and abs(confirmed - time.time()) < 30
        assert await run.metric("presence_reassert_interval_seconds") == 0.2
        status = await run.status()
        assert status["gateway"]["last_success"] is not None
        # A 503 outage: "applied" still says available, the confirmation time stops moving.
        sim.gateway.set_faults.extend(Fault(status=503) for _ in range(1000))
        await until(lambda: len(sim.gateway.sets(status=503)) >= 1, within=30)
        stalled = run.controller.actuator.last_success  # a call in flight may have landed first
        await until(lambda: len(sim.gateway.sets(status=503)) >= 3, within=30)
        assert run.controller.actuator.last_success == stalled
        assert (await run.status())["presence"]["applied"] == "available"
        sim.consumer.health_status = 503
        await until(
            lambda: (
                run.controller.decision is not None
                and run.controller.decision.presence == "unavailable"
            )
        )
        assert await run.metric("presence_reassert_interval_seconds") == 0.5


async def test_an_invalid_annotation_is_a_gauge_while_it_stays(
    sim: Sim, volume: DownwardAPIVolume
) -> None:
    async with running(sim.settings(annotations_file=volume.file)) as run:
        await until(lambda: sim.gateway.presence == "available")
        assert await run.metric("presence_annotation_invalid") == 0
        volume.write({P + "maintenance": "sometimes"})
        await until(lambda: sim.gateway.presence == "unavailable")
        ticks = run.controller.ticks
        await until(lambda: run.controller.ticks >= ticks + 5)
        assert await run.metric("presence_annotation_invalid") == 1, "still invalid: still 1"
        assert await run.metric("presence_annotation_errors_total") == 1, "counted once"
        volume.write({})
        await until(lambda: sim.gateway.presence == "available")
        assert await run.metric("presence_annotation_invalid") == 0


async def test_dry_run_reports_no_call_it_did_not_make(sim: Sim) -> None:
    settings = sim.settings(dry_run=True, reassert_available=0.1)
    async with running(settings) as run:
        await until(
            lambda: (
                run.controller.decision is not None
                and run.controller.decision.presence == "available"
            )
        )
        ticks = run.controller.ticks
        await until(lambda: run.controller.ticks >= ticks + 10)
        status = await run.status()
        assert status["presence"]["desired"] == "available"
        assert status["presence"]["applied"] == "unknown"
        assert status["presence"]["dry_run"] is True
        assert status["gateway"]["set_calls_last_minute"] == 0
        assert status["gateway"]["last_success"] is None
        assert await run.metric("presence_applied_state", {"state": "unknown"}) == 1
        assert await run.metric("presence_reassert_interval_seconds") == 0
        assert await run.metric("presence_dry_run") == 1, "the alerts on applied presence skip it"
    events = run.log_events()  # after the shutdown
    assert sim.gateway.calls == []
    said = [e["msg"] for e in events if e.get("event") == "dry_run"]
    assert said == ["dry run: would set presence available (change); not sent"]
    shutdown = [e["msg"] for e in events if e.get("event") == "shutdown"]
    assert shutdown[-1] == "dry run: would write unavailable on shutdown (no gateway call made)"
    assert not any("wrote unavailable" in m for m in shutdown)


async def test_a_neutral_tick_after_bad_ones_is_not_called_a_recovery(sim: Sim) -> None:
    sim.consumer.lag = 45.0  # bad: >= lag_high 30
    async with running(sim.settings()) as run:
        await until(lambda: sim.gateway.presence == "unavailable")
        sim.consumer.lag = 20.0  # between the watermarks: neutral
        ticks = run.controller.ticks
        await until(lambda: run.controller.ticks >= ticks + 5)
        assert sim.gateway.presence == "unavailable"
        middle = [e["event"] for e in run.log_events() if e.get("event", "").startswith("signal_")]
        sim.consumer.lag = 1.0  # good
        await until(lambda: sim.gateway.presence == "available")
        events = [e for e in run.log_events() if e.get("event", "").startswith("signal_")]
    assert middle == ["signal_bad", "signal_neutral"]
    neutral = events[1]["msg"]
    assert "no longer bad, not yet good" in neutral and "presence stays unavailable" in neutral
    assert [e["event"] for e in events] == ["signal_bad", "signal_neutral", "signal_recovered"]
