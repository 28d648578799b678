"""`presence-controller demo --witness`: the witness catches what the gateway does behind our
back. During maintenance the gateway's session reconnects and marks the bot online (NOWEB's
markOnline): the controller's next re-assert is a minute away, but the witness, a second session
that sees the bot as a contact does, sees it shown online and has `unavailable` written again
within seconds. The same scene runner as `demo`; the checks say what contacts see.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from controller.config import Settings
from controller.core.types import Presence
from controller.runtime.admin import AdminServer
from controller.runtime.controller import Controller
from controller.sim.consumer import SimConsumer
from controller.sim.downward_api import DownwardAPIVolume
from controller.sim.gateway import SimGateway
from controller.sim.harness import witness_values
from controller.sim.scenario import PROVIDER_NAMES, Contacts, World, demo_values
from controller.sim.scenes import Scene, Timeline, play
from controller.sim.server import LoopbackServer
from controller.sim.whatsapp import PROFILES, WhatsApp
from controller.sim.witness import SimWitness
from controller.telemetry.logs import configure_logging

MAINTENANCE = "presence-controller/maintenance"


@dataclass(frozen=True)
class Watched:
    """The demo's world, and the controller whose witness is watched."""

    world: World
    controller: Controller

    def actions(self) -> int:
        witness = self.controller.witness
        return 0 if witness is None else witness.actions["false_online"]


def _annotate(maintenance: bool) -> Scene[Watched]:
    def change(w: Watched) -> None:
        w.world.podinfo.write({MAINTENANCE: "true"} if maintenance else {})

    title = f"kubectl annotate {MAINTENANCE}=true" if maintenance else f"{MAINTENANCE}- (removed)"
    return Scene(title, change, Presence.UNAVAILABLE if maintenance else Presence.AVAILABLE)


def _reconnect(w: Watched) -> None:
    w.world.gateway.whatsapp.reconnect()


SCENES = (
    Scene[Watched](
        "healthy consumer: the witness sees the bot online",
        lambda w: None,
        Presence.AVAILABLE,
        ready=lambda w: w.controller.status()["witness"]["shown"] == "available",
    ),
    _annotate(True),
    Scene[Watched](
        "the gateway reconnects (STARTING for 4s) and marks the bot online: our next re-assert "
        "is a minute away",
        _reconnect,
        Presence.UNAVAILABLE,
        ready=lambda w: w.actions() >= 1,
    ),
    _annotate(False),
)


class _Stage(Contacts):
    def __init__(self, watched: Watched) -> None:
        super().__init__(watched.world, watched.controller)


def _watched_controller(settings: Settings, timeline: Timeline) -> Controller:
    """The controller, its decisions, gateway calls and witness lines on the timeline."""
    controller = Controller(settings)
    controller.listeners.append(timeline.transition)
    assert controller.witness is not None

    def said(kind: str, text: str) -> None:
        timeline.line("witness", "", text)
        timeline.last_set = None  # the write it asks for is not a plain re-assert

    controller.witness.listeners.append(said)
    return controller


def _header(provider: str) -> str:
    return (
        "presence-controller demo --witness: the real controller, a simulated consumer, a "
        f"simulated {PROVIDER_NAMES[provider]} gateway serving the bot's session and a witness "
        "session (a second number that sees the bot as a contact does), on loopback\n"
        "witness poll 1s, mismatch grace 0 (the defaults); re-assert unavailable every 60s, "
        "session read every 60s\n\n"
        f"{'time':>8}  {'event':<9} {'presence':<12} reason / detail"
    )


async def _play(
    world: World, controller: Controller, timeline: Timeline, speed: float, total: int
) -> int:
    """Run the controller (and the admin server that takes Evolution's witness webhooks)
    through the scenes; the number that did not behave."""
    gateway = world.gateway
    assert gateway.witness is not None
    gateway.on_call = timeline.gateway_call
    stop = asyncio.Event()
    async with AdminServer(controller, "127.0.0.1", 0) as admin:
        gateway.witness.webhook = f"http://127.0.0.1:{admin.port}/witness/events"
        task = asyncio.create_task(controller.run(stop))
        try:
            watched = Watched(world, controller)
            return await play(SCENES, watched, _Stage(watched), timeline, speed, total)
        finally:
            stop.set()
            timeline.line("scenario", "", "SIGTERM: stop, write unavailable")
            await task


async def run_witness_demo(
    speed: float = 1.0, out: TextIO = sys.stdout, provider: str = "waha"
) -> int:
    """The witness scene against a simulated `provider` gateway (its WhatsApp model `ideal`:
    what is written holds, so that only the reconnect changes what contacts see); 0 if contacts
    saw what every step states, 1 otherwise."""
    configure_logging("text", "error", [])
    podinfo = Path(tempfile.mkdtemp(prefix="presence-demo-"))
    loop = asyncio.get_running_loop()
    gateway = SimGateway(provider=provider, profile="ideal", clock=loop.time)
    # A reconnect reads STARTING for 4 s (at speed 1), then shows the bot online.
    ideal = replace(PROFILES["ideal"], reconnect_starting=4.0 / speed)
    gateway.whatsapp = WhatsApp(ideal, clock=loop.time)
    gateway.witness = SimWitness(gateway)
    world = World(SimConsumer(), gateway, DownwardAPIVolume(podinfo))
    world.podinfo.write({})
    timeline = Timeline(out)
    total, failures = len(SCENES), 0
    try:
        async with (
            LoopbackServer(world.consumer.app()) as consumer_srv,
            LoopbackServer(gateway.app()) as gateway_srv,
        ):
            values = demo_values(consumer_srv.url, gateway, gateway_srv.url, speed)
            # The production re-assert and session periods: the witness, not they, corrects.
            values.update(reassert_unavailable=60.0, session_check=60.0)
            settings = Settings.from_values(
                **values,
                **witness_values(gateway, gateway_srv.url),  # POLL 1 s, grace 0: the defaults
                annotations_file=world.podinfo.file,
            )
            controller = _watched_controller(settings, timeline)
            print(_header(provider), file=out)
            failures += await _play(world, controller, timeline, speed, total)
    finally:
        shutil.rmtree(podinfo, ignore_errors=True)
    print(f"\n{total - failures}/{total} steps behaved as expected", file=out)
    return 0 if failures == 0 else 1
