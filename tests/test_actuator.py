"""The actuator shell against the simulated gateway: it carries out the plan, one call at a time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from conftest import Sim, until
from opentelemetry import trace

from controller.config import WawpSettings
from controller.core.actuation import ActuationConfig
from controller.core.types import Presence
from controller.gateway.wawp import WawpGateway
from controller.runtime.actuator import Actuator
from controller.sim.gateway import Fault
from controller.telemetry.metrics import Metrics

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""

A, U = Presence.AVAILABLE, Presence.UNAVAILABLE
FAST = ActuationConfig(
    reassert_available=0.3,
    reassert_unavailable=0.6,
    session_check=10.0,
    backoff_base=0.05,
    backoff_cap=0.2,
    auth_retry=300.0,
)


def wawp(sim: Sim) -> WawpGateway:
    """A Wawp client for the simulated gateway."""
    return WawpGateway(
        WawpSettings.model_validate(
            {
                "base_url": sim.gateway_url,
                "instance_id": sim.gateway.instance_id,
                "access_token": sim.gateway.access_token,
                "timeout": 0.5,
            }
        )
    )


@asynccontextmanager
async def actuating(
    sim: Sim, cfg: ActuationConfig = FAST, tracer: trace.Tracer | None = None
) -> AsyncIterator[Actuator]:
    gateway = wawp(sim)
    actuator = Actuator(gateway, cfg, Metrics(), rng=random.Random(5), tracer=tracer)
    task = asyncio.create_task(actuator.run())
    try:
        yield actuator
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await gateway.aclose()


def counter(actuator: Actuator, outcome: str) -> float:
    value = actuator.metrics.registry.get_sample_value(
        "presence_gateway_requests_total", {"provider": "wawp", "outcome": outcome}
    )
    return value or 0.0


@pytest.mark.real_time  # its simulator records times on the real clock
async def test_checks_session_then_sets_then_reasserts(sim: Sim) -> None:
    async with actuating(sim) as act:
        act.want(A)
        # The gateway records a call before the actuator has counted its answer: wait for both.
        await until(lambda: len(sim.gateway.sets()) >= 3 and counter(act, "ok") >= 4, within=10)
    ops = [(c.operation, c.presence) for c in sim.gateway.calls]
    assert ops[:3] == [("session", None), ("set", "available"), ("set", "available")]
    times = [c.at for c in sim.gateway.sets()]
    assert times[1] - times[0] >= FAST.reassert_available * 0.95
    assert act.state.applied is A
    assert counter(act, "ok") >= 4


async def test_a_change_is_written_without_waiting(sim: Sim) -> None:
    """A change does not wait for the re-assert period (an hour here)."""
    slow = replace(FAST, reassert_available=3600.0, reassert_unavailable=3600.0)
    async with actuating(sim, slow) as act:
        act.want(A)
        await until(lambda: act.state.applied is A, within=10)
        act.want(U)
        await until(lambda: act.state.applied is U, within=10)
    assert sim.gateway.presence == "unavailable"


async def test_no_set_while_the_session_is_not_working(sim: Sim) -> None:
    sim.gateway.session_state = "SCAN_QR_CODE"
    async with actuating(sim) as act:
        act.want(A)
        await until(lambda: len(sim.gateway.calls) >= 3)
        assert sim.gateway.sets(None) == []
        assert act.state.session == "SCAN_QR_CODE"
        assert act.state.last_error == "gateway session is SCAN_QR_CODE, not WORKING"
        assert act.metrics.registry.get_sample_value("presence_gateway_session_working") == 0
        sim.gateway.session_state = "WORKING"
        await until(lambda: sim.gateway.presence == "available")


@pytest.mark.real_time  # its simulator records times on the real clock
async def test_retry_after_is_respected(sim: Sim) -> None:
    sim.gateway.set_faults.append(Fault(429, {"Retry-After": "1"}))
    async with actuating(sim) as act:
        act.want(A)
        await until(lambda: act.state.applied is A, within=10)
    first, second = sim.gateway.sets(None)[:2]
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.99
    assert counter(act, "rate_limited") == 1


async def test_a_burst_of_5xx_is_retried_with_backoff(sim: Sim) -> None:
    sim.gateway.set_faults.extend([Fault(503), Fault(500), Fault(502)])
    async with actuating(sim) as act:
        act.want(A)
        await until(lambda: act.state.applied is A, within=10)
    assert [c.status for c in sim.gateway.sets(None)] == [503, 500, 502, 200]
    assert counter(act, "transient_error") == 3
    assert act.state.failures == 0 and act.state.last_error is None


async def test_auth_failure_stops_calls_and_is_flagged(sim: Sim) -> None:
    sim.gateway.set_faults.append(Fault(401))
    async with actuating(sim) as act:
        act.want(A)
        await until(lambda: act.state.auth_failed)
        calls = len(sim.gateway.calls)
        act.want(U)  # even a change does not hammer a gateway that rejects us
        await asyncio.sleep(0.3)
        assert len(sim.gateway.calls) == calls
        assert act.metrics.registry.get_sample_value("presence_gateway_auth_failed") == 1
        assert act.next_action.startswith(
            "wait: auth failure after: set presence available: HTTP 401"
        )


async def test_budget_caps_set_calls_whatever_the_desire_does(sim: Sim) -> None:
    async with actuating(sim) as act:
        for i in range(120):
            act.want(A if i % 2 else U)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
    assert len(sim.gateway.sets(None)) == 20
    assert act.next_action.startswith("wait: call budget spent: 20 set calls in 60s")


async def test_dry_run_calls_nothing(sim: Sim) -> None:
    async with actuating(sim, ActuationConfig(dry_run=True, reassert_available=0.1)) as act:
        act.want(A)
        await until(lambda: act.state.applied is A)
        await asyncio.sleep(0.25)
        assert await act.shutdown_write(1.0)
    assert sim.gateway.calls == []


async def test_shutdown_write_ignores_backoff_and_budget(sim: Sim) -> None:
    sim.gateway.set_faults.append(Fault(503))
    async with actuating(sim, ActuationConfig(backoff_base=30, backoff_cap=60)) as act:
        act.want(A)
        await until(lambda: act.state.failures == 1)
        assert act.state.backoff_until > 0
        assert await act.shutdown_write(1.0)
    assert sim.gateway.presence == "unavailable"


async def test_one_call_in_flight_even_with_a_concurrent_shutdown_write(sim: Sim) -> None:
    sim.gateway.set_delay = 0.2
    async with actuating(sim) as act:
        act.want(A)
        await until(lambda: sim.gateway.in_flight == 1)
        assert await act.shutdown_write(2.0)
    assert sim.gateway.max_in_flight == 1
    assert sim.gateway.presence == "unavailable"


async def test_a_crashing_provider_is_reported_not_fatal(sim: Sim) -> None:
    async with actuating(sim) as act:

        async def broken(presence: Presence) -> None:
            raise KeyError("bug")

        act.gateway.set_presence = broken  # type: ignore[method-assign]
        act.want(A)
        await until(lambda: act.state.failures >= 1)
        assert act.state.last_error == "set: unexpected KeyError in the gateway client"
        assert counter(act, "permanent_error") == 1


class FailsOnce(trace.NoOpTracer):
    """A tracer whose first span raises: a bug outside any gateway call."""

    failed = False

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise RuntimeError("bug")
        return super().start_as_current_span(*args, **kwargs)


async def test_a_bug_in_a_step_is_logged_and_the_actuator_goes_on(
    sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    tracer = FailsOnce()
    async with actuating(sim, tracer=tracer) as act:
        act.want(A)
        await until(lambda: act.state.applied is A, within=10)
    assert tracer.failed
    assert "actuator step failed" in caplog.text
    assert "RuntimeError: bug" in caplog.text


async def test_a_cancel_that_meets_a_wake_up_is_never_lost(sim: Sim) -> None:
    """Python 3.11's `wait_for` returns normally when its inner wait completes in the same loop
    step as the cancel, and swallows the cancel: the actuator then ran on after shutdown and the
    controller never stopped (seen in CI). Cancel exactly as a wake-up arrives, many times."""
    slow = replace(FAST, reassert_available=3600.0, reassert_unavailable=3600.0)
    for presence in [A, U] * 10:
        gateway = wawp(sim)
        act = Actuator(gateway, slow, Metrics(), rng=random.Random(5))
        act.want(presence)
        task = asyncio.create_task(act.run())

        def settled(act: Actuator = act, presence: Presence = presence) -> bool:
            return act.next_action.startswith("wait") and act.state.applied is presence

        await until(settled)
        act.want(U if presence is A else A)  # the wake-up ...
        task.cancel()  # ... and the cancel, in the same loop step
        done, _ = await asyncio.wait([task], timeout=5)
        await gateway.aclose()
        assert done, "the cancel was lost: the actuator kept running"
        assert task.cancelled()


async def test_a_fleet_leader_starts_a_call_only_if_it_can_end_before_a_takeover(sim: Sim) -> None:
    """The gate is asked with the gateway call's timeout: a leader whose lease would lapse
    before the call could end does not start it (a 6 s call against a 5 s margin would)."""
    asked: list[float] = []
    room = [0.0]

    def gate(within: float) -> bool:
        asked.append(within)
        return within < room[0]

    gateway = wawp(sim)
    act = Actuator(gateway, FAST, Metrics(), rng=random.Random(5), gate=gate, call_timeout=6.0)
    act.want(Presence.AVAILABLE)
    task = asyncio.create_task(act.run())
    try:
        await until(lambda: len(asked) >= 2)
        assert set(asked) == {6.0} and sim.gateway.calls == [], "no room for a 6 s call"
        room[0] = 10.0
        await until(lambda: sim.gateway.presence == "available")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await gateway.aclose()
