"""`presence-controller demo`: the real controller against the simulators, through a script.

Each step changes the simulated consumer, gateway or pod annotations and states what the bot's
presence must do; the timeline shows every decision and every call the gateway received.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from controller.config import Settings
from controller.config.values import MIN_INTERVAL
from controller.core.types import Presence
from controller.runtime.controller import Controller
from controller.sim.consumer import SimConsumer
from controller.sim.downward_api import DownwardAPIVolume
from controller.sim.gateway import Fault, SimGateway
from controller.sim.harness import gateway_values
from controller.sim.scenes import Scene, Timeline, play
from controller.sim.server import LoopbackServer
from controller.sim.whatsapp import DEFAULT_PROFILE, PROFILES
from controller.telemetry.logs import configure_logging

MAINTENANCE = "presence-controller/maintenance"
PROVIDER_NAMES = {"wawp": "Wawp", "waha": "WAHA", "evolution": "Evolution API"}


@dataclass(frozen=True)
class World:
    """What a step may change."""

    consumer: SimConsumer
    gateway: SimGateway
    podinfo: DownwardAPIVolume


Step = Scene[World]


class Contacts:
    """The single demo's stage: what contacts see (the WhatsApp model), and the controller's
    decisions."""

    def __init__(self, world: World, controller: Controller) -> None:
        self.world, self.controller = world, controller
        self._marked_at = 0.0

    def showing(self, expect: Presence) -> bool:
        applied = self.controller.actuator.state.applied is expect
        return self.world.gateway.shown() is expect and applied

    def mark(self) -> int:
        self._marked_at = self.world.gateway.clock()
        return len(self.controller.transitions)

    def strayed(self, since: int, expect: Presence) -> str | None:
        decided = list(self.controller.transitions)[since:]
        if decided:
            return f"decided {decided[0].to}: {decided[0].reason}"
        shown = self.world.gateway.whatsapp.timeline()
        other = [p for at, p in shown if at >= self._marked_at and p is not expect]
        return f"contacts saw {other[0]}" if other else None

    def shown(self) -> str:
        gateway = self.world.gateway
        return f"{gateway.shown()} (gateway applied {gateway.presence})"


def _consumer(**changes: object) -> Callable[[World], None]:
    def change(world: World) -> None:
        for name, value in changes.items():
            setattr(world.consumer, name, value)

    return change


def _annotate(**annotations: str) -> Callable[[World], None]:
    def change(world: World) -> None:
        world.podinfo.write(
            {f"presence-controller/{k.replace('_', '-')}": v for k, v in annotations.items()}
        )

    return change


def _down_and_rate_limited(world: World) -> None:
    world.consumer.health_status = 503
    world.gateway.set_faults.extend([Fault(429, {"Retry-After": "1"}), Fault(503)])


STEPS = (
    Step("healthy consumer: health 200, queue lag 1s", _consumer(lag=1.0), Presence.AVAILABLE),
    Step("lag spike: queue lag 45s (lag_high 30)", _consumer(lag=45.0), Presence.UNAVAILABLE),
    Step(
        "recovery: queue lag 2s; back after the hold-down", _consumer(lag=2.0), Presence.AVAILABLE
    ),
    Step(
        "flapping health: 200/500 on alternate probes",
        _consumer(flap=True),
        Presence.AVAILABLE,
        hold=3.0,
    ),
    Step(
        "lag 20s, between the watermarks: neutral ticks",
        _consumer(flap=False, lag=20.0),
        Presence.AVAILABLE,
        hold=2.0,
    ),
    Step(
        "consumer down (503) while the gateway answers 429 then 503",
        _down_and_rate_limited,
        Presence.UNAVAILABLE,
    ),
    Step(
        "consumer back: health 200, lag 1s",
        _consumer(health_status=200, lag=1.0),
        Presence.AVAILABLE,
    ),
    Step(
        f"kubectl annotate {MAINTENANCE}=true, consumer still healthy",
        _annotate(maintenance="true", maintenance_reason="DB migration"),
        Presence.UNAVAILABLE,
    ),
    Step(f"kubectl annotate {MAINTENANCE}- (removed)", _annotate(), Presence.AVAILABLE),
)


def demo_values(
    consumer_url: str, gateway: SimGateway, gateway_url: str, speed: float
) -> dict[str, Any]:
    """The demos' settings (both scenes), timings divided by `speed`."""

    def t(seconds: float) -> float:
        return seconds / speed

    # The tick cannot go below MIN_INTERVAL: above speed 4 it stays there (the steps' waits
    # are generous enough for RISE/FALL ticks at 50 ms).
    interval = max(t(0.2), MIN_INTERVAL)
    return {
        "health_url": f"{consumer_url}/healthz",
        "metrics_url": f"{consumer_url}/metrics",
        "interval": interval,
        "timeout": min(t(0.15), 0.75 * interval),
        "jitter": 0.1,
        "rise": 3,
        "fall": 3,
        "hold_down": t(2.0),
        "startup_grace": t(5.0),
        # Below the WhatsApp model's decay (10 s) at every speed, or contacts would see gaps.
        "reassert_available": min(t(2.0), 8.0),
        "reassert_unavailable": t(6.0),
        "session_check": t(10.0),
        "listen": "127.0.0.1:0",
        **gateway_values(gateway, gateway_url, timeout=t(1.0)),
    }


def demo_settings(world: World, consumer_url: str, gateway_url: str, speed: float) -> Settings:
    values = demo_values(consumer_url, world.gateway, gateway_url, speed)
    return Settings.from_values(**values, annotations_file=world.podinfo.file)


async def run_demo(
    speed: float = 1.0,
    out: TextIO = sys.stdout,
    provider: str = "wawp",
    profile: str = DEFAULT_PROFILE,
) -> int:
    """Run the scenario against a simulated `provider` gateway whose WhatsApp model plays
    `profile`; 0 if contacts saw what every step states, 1 otherwise."""
    configure_logging("text", "error", [])
    podinfo = Path(tempfile.mkdtemp(prefix="presence-demo-"))
    # On the loop's clock, like the scene runner: the demo can run in virtual time (tests).
    clock = asyncio.get_running_loop().time
    gateway = SimGateway(provider=provider, profile=profile, clock=clock)
    world = World(SimConsumer(), gateway, DownwardAPIVolume(podinfo))
    world.podinfo.write({})
    timeline = Timeline(out)
    world.gateway.on_call = timeline.gateway_call
    total = len(STEPS) + 1
    failures = 0
    try:
        async with (
            LoopbackServer(world.consumer.app()) as consumer_srv,
            LoopbackServer(world.gateway.app()) as gateway_srv,
        ):
            settings = demo_settings(world, consumer_srv.url, gateway_srv.url, speed)
            controller = Controller(settings)
            controller.listeners.append(timeline.transition)
            print(
                "presence-controller demo: the real controller, a simulated consumer, a simulated "
                f"{PROVIDER_NAMES[provider]} gateway and pod annotations, on loopback\n"
                f"interval {settings.interval:g}s, rise {settings.rise}, fall {settings.fall}, "
                f"hold-down {settings.hold_down:g}s, lag_low {settings.lag_low:g}, "
                f"lag_high {settings.lag_high:g}, re-assert available every "
                f"{settings.reassert_available:g}s\n"
                f"WhatsApp model: {profile} ({PROFILES[profile].description}); the checks "
                "say what contacts see\n\n"
                f"{'time':>8}  {'event':<9} {'presence':<12} reason / detail",
                file=out,
            )
            stop = asyncio.Event()
            task = asyncio.create_task(controller.run(stop))
            try:
                stage = Contacts(world, controller)
                failures += await play(STEPS, world, stage, timeline, speed, total)
            finally:
                stop.set()
                timeline.line("scenario", "", f"{total}/{total} SIGTERM: stop, write unavailable")
                await task
            shown = world.gateway.shown()
            ok = shown is Presence.UNAVAILABLE
            failures += not ok
            timeline.line("check", "", f"{'ok' if ok else 'FAILED'}: contacts see {shown}")
    finally:
        shutil.rmtree(podinfo, ignore_errors=True)
    print(f"\n{total - failures}/{total} steps behaved as expected", file=out)
    return 0 if failures == 0 else 1
