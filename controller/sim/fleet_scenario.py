"""`presence-controller demo --fleet`: three real controllers in fleet mode, each beside its own
simulated consumer, against one simulated gateway and a fake Kubernetes API server.

The scene: a leader is elected; one consumer dies (still available: 2/3 >= 50%); a second dies
(unavailable); they recover; `kubectl annotate deploy` maintenance takes every replica offline
and its removal brings the bot back; the leader gets SIGTERM and hands over with no offline gap;
the last replica's shutdown turns the bot off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from controller.config import Settings
from controller.core.types import Presence
from controller.runtime.controller import Controller
from controller.runtime.reporter import Transition
from controller.sim.consumer import SimConsumer
from controller.sim.gateway import SimGateway
from controller.sim.kube import SimKube
from controller.sim.kube_discovery import write_kubeconfig
from controller.sim.scenario import demo_values
from controller.sim.scenes import Scene, Timeline, play
from controller.sim.server import LoopbackServer
from controller.sim.whatsapp import DEFAULT_PROFILE
from controller.telemetry.logs import configure_logging

NAMESPACE, WORKLOAD = "whatsapp-bot", "whatsapp-bot"
PODS = ("whatsapp-bot-7d4b9-a", "whatsapp-bot-7d4b9-b", "whatsapp-bot-7d4b9-c")
TOKEN = "demo-service-account-token"  # noqa: S105 (the fake API server's fake credential)
MAINTENANCE = "presence-controller/maintenance"


@dataclass
class Fleet:
    kube: SimKube
    gateway: SimGateway
    consumers: dict[str, SimConsumer]
    controllers: dict[str, Controller] = field(default_factory=dict)
    stops: dict[str, asyncio.Event] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def leader(self) -> str | None:
        leading = [n for n, c in self.controllers.items() if c.fleet and c.fleet.leading()]
        return leading[0] if len(leading) == 1 else None

    def running(self) -> list[str]:
        return [n for n, t in self.tasks.items() if not t.done()]

    def all_available(self) -> bool:
        """The leader counts every member available (the scene's starting point)."""
        leader = self.leader()
        decision = self.controllers[leader].decision if leader is not None else None
        return decision is not None and decision.reason.startswith(
            f"fleet: {len(PODS)}/{len(PODS)} members available"
        )


def fleet_settings(
    consumer_url: str, gateway: SimGateway, gateway_url: str, pod: str, speed: float
) -> Settings:
    """The single-replica demo's settings, in fleet mode (a shorter hold-down, fast leases).
    The Lease timings follow `speed` only up to 2: shorter leases than 1.5 s lapse while a
    leader shuts down (its last write waits for the others' heartbeats), and the last one out
    would leave the bot online."""
    lease = min(speed, 2.0)
    # Three controllers share one process here: ticks no faster than 100 ms, or on a loaded
    # machine a healthy member's probe times out and the fleet counts it down.
    interval = max(0.2 / speed, 0.1)
    return Settings.from_values(
        **{
            **demo_values(consumer_url, gateway, gateway_url, speed),
            "interval": interval,
            "timeout": 0.75 * interval,
            "hold_down": 1.0 / speed,
            "kube": {
                "enabled": True,
                "namespace": NAMESPACE,
                "pod_name": pod,
                "workload": f"deployment/{WORKLOAD}",
                "lease_duration": 3.0 / lease,
                "renew_deadline": 2.0 / lease,
                "retry_period": 0.4 / lease,
                "heartbeat": 0.5 / lease,
                "events": True,
            },
        }
    )


@contextlib.contextmanager
def _kubeconfig(server: str) -> Any:
    """KUBECONFIG pointing at the fake API server, for this process, restored afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="presence-fleet-demo-"))
    path = write_kubeconfig(folder / "kubeconfig", server, TOKEN, NAMESPACE)
    before = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = before
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def _world(speed: float, timeline: Timeline, profile: str) -> AsyncIterator[Fleet]:
    kube = SimKube(tokens={TOKEN: "presence-controller"})
    kube.put("namespaces", {"metadata": {"name": NAMESPACE}})
    kube.workload(NAMESPACE, WORKLOAD, list(PODS))
    gateway = SimGateway(profile=profile, clock=asyncio.get_running_loop().time)
    fleet = Fleet(kube, gateway, {pod: SimConsumer() for pod in PODS})
    fleet.gateway.on_call = timeline.gateway_call
    async with AsyncExitStack() as stack:
        kube_srv = await stack.enter_async_context(LoopbackServer(kube.app()))
        gateway_srv = await stack.enter_async_context(LoopbackServer(fleet.gateway.app()))
        stack.enter_context(_kubeconfig(kube_srv.url))
        for pod, consumer in fleet.consumers.items():
            srv = await stack.enter_async_context(LoopbackServer(consumer.app()))
            settings = fleet_settings(srv.url, fleet.gateway, gateway_srv.url, pod, speed)
            controller = Controller(settings)
            controller.listeners.append(_decisions(timeline, pod, controller))
            fleet.controllers[pod] = controller
            fleet.stops[pod] = asyncio.Event()
        for pod, controller in fleet.controllers.items():
            fleet.tasks[pod] = asyncio.create_task(controller.run(fleet.stops[pod]))
        watcher = asyncio.create_task(_watch_leader(fleet, timeline))
        try:
            yield fleet
        finally:
            watcher.cancel()
            for stop in fleet.stops.values():
                stop.set()
            await asyncio.gather(*fleet.tasks.values(), watcher, return_exceptions=True)


def _decisions(
    timeline: Timeline, pod: str, controller: Controller
) -> Callable[[Transition], None]:
    def show(t: Transition) -> None:
        if controller.fleet is not None and controller.fleet.leading():
            timeline.line("decision", t.to.value, f"[{pod[-1]}, leader] {t.reason}")

    return show


async def _watch_leader(fleet: Fleet, timeline: Timeline) -> None:
    shown: str | None = None
    while True:
        leader = fleet.leader()
        if leader != shown and leader is not None:
            timeline.line("leader", "", f"{leader} holds lease {WORKLOAD}-presence")
        shown = leader if leader is not None else shown
        await asyncio.sleep(0.05)


class Gateway:
    """The fleet demo's stage: what the gateway was sent, and who leads."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def showing(self, expect: Presence) -> bool:
        return self.fleet.gateway.presence == expect.value and self.fleet.leader() is not None

    def mark(self) -> int:
        return len(self.fleet.gateway.calls)

    def strayed(self, since: int, expect: Presence) -> str | None:
        calls = self.fleet.gateway.calls[since:]
        other = [c.presence for c in calls if c.presence not in {None, expect.value}]
        return f"the gateway was sent {other[0]}" if other else None

    def shown(self) -> str:
        return str(self.fleet.gateway.presence)


def _health(status: int, *pods: int) -> Callable[[Fleet], None]:
    def change(fleet: Fleet) -> None:
        for pod in pods:
            fleet.consumers[PODS[pod]].health_status = status

    return change


def _annotate(value: str | None) -> Callable[[Fleet], None]:
    def change(fleet: Fleet) -> None:
        notes: dict[str, str | None] = {MAINTENANCE: value}
        if value is not None:
            notes["presence-controller/maintenance-reason"] = "DB migration"
        else:
            notes["presence-controller/maintenance-reason"] = None
        fleet.kube.annotate("deployments", NAMESPACE, WORKLOAD, **notes)

    return change


def _sigterm_leader(fleet: Fleet) -> None:
    leader = fleet.leader()
    if leader is not None:
        fleet.stops[leader].set()


SCENES: tuple[Scene[Fleet], ...] = (
    Scene[Fleet](
        "three replicas, all consumers healthy: one leader writes",
        lambda f: None,
        Presence.AVAILABLE,
        # Every member counted before one dies: on a loaded machine the bot can be online
        # with 2/3 while the third is still rising, and step 2 would see 1/3.
        ready=Fleet.all_available,
    ),
    Scene[Fleet](
        "consumer a dies (503): 2/3 available >= 50%", _health(503, 0), Presence.AVAILABLE, hold=3.0
    ),
    Scene[Fleet]("consumer b dies too: 1/3 available < 50%", _health(503, 1), Presence.UNAVAILABLE),
    Scene[Fleet](
        "consumers a and b recover",
        _health(200, 0, 1),
        Presence.AVAILABLE,
    ),
    Scene[Fleet](
        f"kubectl annotate deploy/{WORKLOAD} {MAINTENANCE}=true",
        _annotate("true"),
        Presence.UNAVAILABLE,
    ),
    Scene[Fleet](
        f"kubectl annotate deploy/{WORKLOAD} {MAINTENANCE}-", _annotate(None), Presence.AVAILABLE
    ),
    Scene[Fleet](
        "SIGTERM to the leader: it hands its Lease over, the bot stays online",
        _sigterm_leader,
        Presence.AVAILABLE,
        hold=4.0,
    ),
)


async def run_fleet_demo(
    speed: float = 1.0, out: TextIO = sys.stdout, profile: str = DEFAULT_PROFILE
) -> int:
    """Run the fleet scene against a gateway whose WhatsApp model plays `profile`; 0 if every
    step behaved as stated, 1 otherwise."""
    configure_logging("text", "error", [])
    timeline = Timeline(out)
    total = len(SCENES) + 1
    failures = 0
    print(
        "presence-controller demo --fleet: three real controllers in fleet mode, each beside its "
        "own simulated consumer,\none simulated Wawp gateway and a fake Kubernetes API server, on "
        "loopback (MIN_AVAILABLE 50%)\n\n"
        f"{'time':>8}  {'event':<9} {'presence':<12} reason / detail",
        file=out,
    )
    async with _world(speed, timeline, profile) as fleet:
        stage = Gateway(fleet)
        failures += await play(SCENES, fleet, stage, timeline, speed, total, "gateway shows")
        timeline.line("scenario", "", f"{total}/{total} SIGTERM to the others: the last one out")
        for stop in fleet.stops.values():
            stop.set()
        await asyncio.gather(*fleet.tasks.values(), return_exceptions=True)
        shown = fleet.gateway.presence
        ok = shown == Presence.UNAVAILABLE.value
        failures += not ok
        timeline.line("check", "", f"{'ok' if ok else 'FAILED'}: gateway shows {shown}")
        events = sorted(
            {e["reason"] for (plural, *_), e in fleet.kube.objects.items() if plural == "events"}
        )
        timeline.line("events", "", f"Events on deploy/{WORKLOAD}: {', '.join(events)}")
    print(f"\n{total - failures}/{total} steps behaved as expected", file=out)
    return 0 if failures == 0 else 1
