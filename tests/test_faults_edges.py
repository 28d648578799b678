"""Fault catalogue, part "clean edges": odd headers, signals, settings and log text that could
end in a traceback, a skipped shutdown write, a forged log line or a line per tick."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
from datetime import UTC, datetime

import pytest
from conftest import Sim, running, spawn, until

from controller.config import ConfigError, load_settings
from controller.core.retry_after import parse_retry_after
from controller.sim.collector import SimCollector
from controller.sim.gateway import Fault
from controller.sim.server import LoopbackServer
from controller.telemetry.logs import configure_logging, event

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.mark.parametrize("value", ["²", "١٢", "1e3", "-5", "", "soon"])
def test_odd_retry_after_values_fall_back_to_back_off(value: str) -> None:
    assert parse_retry_after(value, NOW) is None


async def test_a_retry_after_superscript_is_a_plain_429(sim: Sim) -> None:
    sim.gateway.set_faults.append(Fault(status=429, headers={"Retry-After": "²"}))
    async with running(sim.settings()) as run:
        await until(lambda: sim.gateway.presence == "available")
    assert len(sim.gateway.sets(status=429)) == 1
    assert all("exception" not in line for line in run.log_events())


async def test_sighup_writes_unavailable_like_sigterm(sim: Sim) -> None:
    proc = await spawn(sim.env())
    await until(lambda: sim.gateway.presence == "available", within=30)  # a process starting
    proc.send_signal(signal.SIGHUP)
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0
    assert sim.gateway.presence == "unavailable"
    assert "wrote unavailable on shutdown" in err.decode()


async def test_exit_stays_within_5_s_with_a_hung_gateway_and_collector(sim: Sim) -> None:
    """Used to take 5.9-6.6 s: the shutdown write's budget, then a flush on top of it."""
    receiver = SimCollector(hang=True)
    async with LoopbackServer(receiver.app()) as collector:
        env = sim.env(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
            OTEL_BSP_SCHEDULE_DELAY="50",
            PRESENCE_WAWP__TIMEOUT="30s",
        )
        proc = await spawn(env)
        await until(lambda: sim.gateway.presence == "available", within=30)
        sim.gateway.set_delay = 3600.0  # every set call hangs
        loop = asyncio.get_running_loop()
        sent = loop.time()
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
        took = loop.time() - sent
    assert proc.returncode == 0
    print(f"exit took {took:.2f}s")
    assert took < 5.5, f"exit took {took:.2f}s (the kubelet's grace period is the limit)"
    assert "shutdown write timed out" in err.decode()


def test_an_interval_below_50_ms_is_refused(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESENCE_INTERVAL", "1ms")
    monkeypatch.setenv("PRESENCE_TIMEOUT", "0.5ms")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.errors == [
        "PRESENCE_INTERVAL: Input should be greater than or equal to 0.05 (got '1ms')"
    ]


def test_text_logs_escape_newlines_and_terminal_sequences() -> None:
    stream = io.StringIO()
    configure_logging("text", "info", [], stream=stream)
    log = logging.getLogger("presence.test")
    forged = "DB\n12:00:00.000 info    transition: presence -> available \x1b[2J\x1b[31m"
    event(log, logging.INFO, "annotations", f"reason {forged}", maintenance_reason=forged)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "\x1b" not in lines[0] and "\\n12:00:00.000" in lines[0] and "\\x1b[2J" in lines[0]
    configure_logging("json", "info", [], stream=io.StringIO())


async def test_a_change_held_by_a_long_retry_after_is_shown_as_pending(sim: Sim) -> None:
    """`applied` says what the gateway last accepted; /status also says what waits, and until
    when (a 429 with Retry-After: 3600 would otherwise hide the change for an hour)."""
    async with running(sim.settings()) as run:
        await until(lambda: sim.gateway.presence == "available")
        assert (await run.status())["presence"]["pending"] is None
        sim.gateway.set_faults.append(Fault(status=429, headers={"Retry-After": "3600"}))
        sim.consumer.health_status = 503
        await until(lambda: run.controller.actuator.state.backoff_until > 0)
        presence = (await run.status())["presence"]
    assert presence["desired"] == "unavailable" and presence["applied"] == "available"
    pending = presence["pending"]
    assert pending["to"] == "unavailable"
    wait = datetime.fromisoformat(pending["not_before"]) - datetime.now(UTC)
    assert 3500 < wait.total_seconds() <= 3600
    assert "back-off" in pending["waiting_for"]
