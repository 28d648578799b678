"""Timing, asserted exactly: the real controller and actuator against loopback simulators in the
same event loop, whose clock is fake (looptime): an `asyncio.sleep(60)` takes no wall time, and
every delay the shell waits comes from the one injected `Clock`, so the instants the simulators
record are the instants the rules promise, to the microsecond. Production defaults throughout
(INTERVAL 5 s, FAST_INTERVAL 1 s, REASSERT_AVAILABLE 8 s, ...), no sleeps on the wall clock."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import looptime
import pytest

from controller.config import Settings
from controller.runtime.clock import VirtualClock
from controller.runtime.controller import Controller
from controller.sim.consumer import SimConsumer
from controller.sim.gateway import Fault, SimGateway
from controller.sim.harness import Simulation, gateway_values
from controller.sim.server import LoopbackServer

MONDAY_NOON = datetime(2026, 12, 7, 12, tzinfo=UTC)


def virtual(body: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run the async test `body` on an event loop of its own whose clock is fake from 0: the
    loop jumps to the next timer whenever nothing else can run (looptime)."""

    def test() -> None:
        with asyncio.Runner(loop_factory=lambda: looptime.new_event_loop(start=0.0)) as runner:
            runner.run(body())

    test.__name__, test.__doc__ = body.__name__, body.__doc__
    return test


@asynccontextmanager
async def world(**gateway: Any) -> AsyncIterator[Simulation]:
    """A consumer and a Wawp gateway on loopback, the gateway on the loop's (virtual) clock."""
    loop = asyncio.get_running_loop()
    consumer, sim_gateway = SimConsumer(), SimGateway(clock=loop.time, **gateway)
    async with (
        LoopbackServer(consumer.app()) as consumer_srv,
        LoopbackServer(sim_gateway.app()) as gateway_srv,
    ):
        yield Simulation(consumer, consumer_srv.url, sim_gateway, gateway_srv.url)


def settings(sim: Simulation, **values: Any) -> Settings:
    """Production defaults, pointed at the simulators; no jitter, so instants are exact."""
    return Settings.from_values(
        health_url=f"{sim.consumer_url}/healthz",
        listen="127.0.0.1:0",
        jitter=0.0,
        **gateway_values(sim.gateway, sim.gateway_url),
        **values,
    )


@asynccontextmanager
async def running(sim: Simulation, **values: Any) -> AsyncIterator[Controller]:
    controller = Controller(settings(sim, **values), clock=VirtualClock(MONDAY_NOON))
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        yield controller
    finally:
        stop.set()
        await task


def gaps(instants: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(instants)]


def sets(sim: Simulation, presence: str | None = None) -> list[float]:
    return [
        c.at
        for c in sim.gateway.calls
        if c.operation == "set" and c.status < 300 and presence in (None, c.presence)
    ]


@virtual
async def test_ticks_come_every_interval_and_every_fast_interval_while_a_flip_is_pending() -> None:
    """INTERVAL 5 s; from the first bad tick, FAST_INTERVAL 1 s until FALL 3 bad ticks flip the
    presence, then INTERVAL again (HAProxy's fastinter)."""
    async with world() as sim, running(sim) as controller:
        await asyncio.sleep(20.5)
        sim.consumer.health_status = 503
        await asyncio.sleep(20)
        assert controller.decision is not None
        assert controller.decision.presence == "unavailable"
    probes = sim.consumer.probed_at
    # At start good ticks could flip the presence too: 0, 1, 2 (available), then every 5 s;
    # the first bad tick at 22, the 2nd and 3rd at 23 and 24 (unavailable), then every 5 s.
    assert probes[:10] == [0.0, 1.0, 2.0, 7.0, 12.0, 17.0, 22.0, 23.0, 24.0, 29.0]


@virtual
async def test_available_is_reasserted_every_8_seconds_and_unavailable_every_60() -> None:
    async with world() as sim, running(sim) as controller:
        await asyncio.sleep(100)
        available = sets(sim, "available")
        sim.consumer.health_status = 503
        await asyncio.sleep(300)
        assert controller.decision is not None
    # Available from the third good tick (t = 2 s, fast re-probe), then exactly every 8 s.
    assert available[0] == 2.0
    assert set(gaps(available)) == {8.0}
    unavailable = sets(sim, "unavailable")
    # Unavailable from the third bad tick (102, 103, 104), then every 60 s; the last write is
    # the shutdown's, at 400.
    assert unavailable == [104.0, 164.0, 224.0, 284.0, 344.0, 400.0]


@virtual
async def test_a_429_is_retried_after_its_retry_after_exactly() -> None:
    async with world() as sim:
        sim.gateway.set_faults.append(Fault(429, {"Retry-After": "30"}))
        async with running(sim):
            await asyncio.sleep(60)
    calls = [(c.at, c.status) for c in sim.gateway.calls if c.operation == "set"]
    assert calls[0] == (2.0, 429)
    assert calls[1] == (32.0, 200), "the gateway said 30 s: not a moment sooner, nor later"


@virtual
async def test_back_off_doubles_from_one_second_with_full_jitter_within_its_bounds() -> None:
    """Transient failures: each retry comes within [floor, base x 2^n] of the last (full
    jitter), never sooner than the 0.5 s floor."""
    async with world() as sim:
        sim.gateway.set_faults.extend(Fault(503) for _ in range(6))
        async with running(sim):
            await asyncio.sleep(120)
    attempts = [c.at for c in sim.gateway.calls if c.operation == "set"][:7]
    waits = gaps(attempts)
    assert len(waits) == 6
    for n, wait in enumerate(waits):
        assert 0.5 <= wait <= 2.0**n + 1e-6, (n, waits)


@virtual
async def test_the_shutdown_write_gives_up_at_its_budget_exactly() -> None:
    """A gateway that never answers the shutdown write: the controller stops 4.5 s (the write
    budget inside the 5 s deadline) after SIGTERM, not later."""
    async with world() as sim:
        controller = Controller(settings(sim), clock=VirtualClock(MONDAY_NOON))
        stop = asyncio.Event()
        task = asyncio.create_task(controller.run(stop))
        await asyncio.sleep(20)
        assert sim.gateway.presence == "available"
        sim.gateway.set_faults.append(Fault(200, delay=3600))
        loop = asyncio.get_running_loop()
        stopped = loop.time()
        stop.set()
        await task
        assert loop.time() - stopped == pytest.approx(4.5, abs=1e-6)
    assert sim.gateway.presence == "available", "the write never landed"


@virtual
async def test_a_last_seen_pulse_shows_available_for_its_pulse_exactly() -> None:
    """Outside online hours (unavailable), LAST_SEEN_REFRESH 60 s: every 60 s unavailable, a
    pulse of `available` that ends LAST_SEEN_PULSE (5 s) later."""
    async with world() as sim:
        values = {"online_hours": "Mon 00:00-01:00 UTC", "last_seen_refresh": 60}
        async with running(sim, **values):
            await asyncio.sleep(200)
    writes = [(c.at, c.presence) for c in sim.gateway.calls if c.operation == "set"]
    pulses = [(at, p) for at, p in writes if p == "available"]
    assert pulses, writes
    for at, _ in pulses:
        ends = [t for t, p in writes if p == "unavailable" and t > at]
        assert ends[0] - at == pytest.approx(5.0, abs=1e-6)
