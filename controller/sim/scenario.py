"""`presence-controller demo`: the real controller against the simulators, through a script.

Each step changes the simulated consumer or gateway and states what the bot's presence must
do; the timeline shows every decision and every call the gateway received, with its reason.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from controller.config import Settings
from controller.core.types import Presence
from controller.runtime.controller import Controller, Transition
from controller.runtime.logs import configure_logging
from controller.sim.consumer import SimConsumer
from controller.sim.gateway import Fault, GatewayCall, SimGateway
from controller.sim.server import LoopbackServer


@dataclass(frozen=True)
class Step:
    title: str
    change: Callable[[SimConsumer, SimGateway], None]
    expect: Presence
    hold: float = 0.0
    """> 0: the presence must stay `expect` for this long (seconds at speed 1), with no change."""


def _set(**changes: object) -> Callable[[SimConsumer, SimGateway], None]:
    def change(consumer: SimConsumer, gateway: SimGateway) -> None:
        for name, value in changes.items():
            setattr(consumer, name, value)

    return change


def _down_and_rate_limited(consumer: SimConsumer, gateway: SimGateway) -> None:
    consumer.health_status = 503
    gateway.set_faults.extend([Fault(429, {"Retry-After": "1"}), Fault(503)])


STEPS = (
    Step("healthy consumer: health 200, queue lag 1s", _set(lag=1.0), Presence.AVAILABLE),
    Step("lag spike: queue lag 45s (lag_high 30)", _set(lag=45.0), Presence.UNAVAILABLE),
    Step("recovery: queue lag 2s; back after the hold-down", _set(lag=2.0), Presence.AVAILABLE),
    Step(
        "flapping health: 200/500 on alternate probes",
        _set(flap=True),
        Presence.AVAILABLE,
        hold=3.0,
    ),
    Step(
        "lag 20s, between the watermarks: neutral ticks",
        _set(flap=False, lag=20.0),
        Presence.AVAILABLE,
        hold=2.0,
    ),
    Step(
        "consumer down (503) while the gateway answers 429 then 503",
        _down_and_rate_limited,
        Presence.UNAVAILABLE,
    ),
    Step("consumer back: health 200, lag 1s", _set(health_status=200, lag=1.0), Presence.AVAILABLE),
)


def demo_settings(
    consumer_url: str, gateway: SimGateway, gateway_url: str, speed: float
) -> Settings:
    def t(seconds: float) -> float:
        return seconds / speed

    return Settings.from_values(
        health_url=f"{consumer_url}/healthz",
        metrics_url=f"{consumer_url}/metrics",
        interval=t(0.2),
        timeout=t(0.15),
        jitter=0.1,
        rise=3,
        fall=3,
        hold_down=t(2.0),
        startup_grace=t(5.0),
        reassert_available=t(2.0),
        reassert_unavailable=t(6.0),
        session_check=t(10.0),
        listen="127.0.0.1:0",
        wawp={
            "base_url": gateway_url,
            "instance_id": gateway.instance_id,
            "access_token": gateway.access_token,
            "timeout": t(1.0),
        },
    )


class Timeline:
    """Prints events as they happen, time relative to the start."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.start = time.monotonic()
        self.last_set: str | None = None

    def line(self, kind: str, presence: str, text: str, at: float | None = None) -> None:
        elapsed = (at if at is not None else time.monotonic()) - self.start
        print(f"{elapsed:7.2f}s  {kind:<9} {presence:<12} {text}", file=self.out, flush=True)

    def gateway_call(self, call: GatewayCall) -> None:
        if call.operation == "session":
            self.line("gateway", "", f"GET  /v2/session/info -> {call.status}", call.at)
            return
        presence = call.presence or "?"
        note = ""
        if call.status == 200:
            note = " (re-assert)" if presence == self.last_set else ""
            self.last_set = presence
        self.line("gateway", presence, f"POST /v2/presence -> {call.status}{note}", call.at)

    def transition(self, t: Transition) -> None:
        self.line("decision", t.to.value, t.reason)


async def _wait_for(check: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


async def run_demo(speed: float = 1.0, out: TextIO = sys.stdout) -> int:
    """Run the scenario; 0 if every step behaved as stated, 1 otherwise."""
    configure_logging("text", "error", [])
    consumer, gateway = SimConsumer(), SimGateway()
    timeline = Timeline(out)
    gateway.on_call = timeline.gateway_call
    async with (
        LoopbackServer(consumer.app()) as consumer_srv,
        LoopbackServer(gateway.app()) as gateway_srv,
    ):
        settings = demo_settings(consumer_srv.url, gateway, gateway_srv.url, speed)
        controller = Controller(settings)
        controller.listeners.append(timeline.transition)
        print(
            "presence-controller demo: the real controller, a simulated consumer and a simulated "
            "Wawp gateway on loopback\n"
            f"interval {settings.interval:g}s, rise {settings.rise}, fall {settings.fall}, "
            f"hold-down {settings.hold_down:g}s, lag_low {settings.lag_low:g}, "
            f"lag_high {settings.lag_high:g}, re-assert available every "
            f"{settings.reassert_available:g}s\n\n"
            f"{'time':>8}  {'event':<9} {'presence':<12} reason / detail",
            file=out,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(controller.run(stop))
        failures = 0
        try:
            for number, step in enumerate(STEPS, 1):
                failures += not await _run_step(
                    number, step, consumer, gateway, controller, timeline, speed
                )
        finally:
            stop.set()
            timeline.line(
                "scenario",
                "",
                f"{len(STEPS) + 1}/{len(STEPS) + 1} SIGTERM: stop ticking, write unavailable",
            )
            await task
        shutdown_ok = gateway.presence == Presence.UNAVAILABLE.value
        failures += not shutdown_ok
        timeline.line(
            "check",
            "",
            f"{'ok' if shutdown_ok else 'FAILED'}: gateway shows {gateway.presence} after shutdown",
        )
    total = len(STEPS) + 1
    print(f"\n{total - failures}/{total} steps behaved as expected", file=out)
    return 0 if failures == 0 else 1


async def _run_step(
    number: int,
    step: Step,
    consumer: SimConsumer,
    gateway: SimGateway,
    controller: Controller,
    timeline: Timeline,
    speed: float,
) -> bool:
    timeline.line("scenario", "", f"{number}/{len(STEPS) + 1} {step.title}")
    step.change(consumer, gateway)
    expected = step.expect.value

    def shown() -> bool:
        return gateway.presence == expected and controller.actuator.state.applied is step.expect

    if step.hold:
        changes = len(controller.transitions)
        steady = await _wait_for(lambda: not shown(), step.hold / speed) is False
        ok = steady and len(controller.transitions) == changes
        verdict = f"stayed {expected} for {step.hold / speed:g}s, no flip" if ok else "FLIPPED"
    else:
        ok = await _wait_for(shown, 15.0 / speed + 3.0)
        verdict = (
            f"gateway shows {expected}"
            if ok
            else f"gateway shows {gateway.presence}, expected {expected}"
        )
    timeline.line("check", "", f"{'ok' if ok else 'FAILED'}: {verdict}")
    return ok
