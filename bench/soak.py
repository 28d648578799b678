"""`make soak`: the real controller for 10 minutes at interval 0.05 s under seeded random faults.

Faults, a new one every few seconds: consumer down, hanging, slow (just under and over the
timeout), 500s, garbage, truncated, huge (over 4 MiB) and missing metrics; gateway 429 with and
without Retry-After, 5xx bursts, slow answers longer than the interval, 422, a session flapping
between states, one 401 early on; annotations rewritten every 10 ms, deleted, a 1 MiB annotation,
maintenance on and off; event-loop stalls; wall-clock jumps forward and back. The controller
runs in fleet mode against the fake API server, whose faults are drawn too: watches that stall,
send only bookmarks or garbage, end at once, answer 410, a 100 MB line or endless new Leases;
429s, a partition, a 403 on listing Leases, dropped streams; a Lease without spec, deleted,
forged heartbeats, 300 labelled Leases; maintenance on the Deployment, the Deployment deleted.

Asserts: RSS growth < 5 MiB after warm-up, asyncio tasks and open sockets at the quiet end
within 6 and 8 of their low-water marks (the in-process fake API server's handlers and
connections vary with the fault in progress when a sample is taken), no error logged with a
traceback and no unhandled exception, and that the final presence equals what the final inputs
demand. Writes its figures into bench/RESULTS.md ("6. Soak").

Usage: python bench/soak.py [--minutes 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from image_env import IMAGE_ENV
from procfs import open_sockets, rss_mib

from controller.core.types import Presence
from controller.runtime.admin import AdminServer
from controller.runtime.clock import Clock as ShellClock
from controller.runtime.controller import Controller
from controller.sim.consumer import MetricsMode
from controller.sim.downward_api import DownwardAPIVolume
from controller.sim.gateway import Fault
from controller.sim.harness import Simulation, simulation
from controller.sim.kube import SimKube
from controller.sim.kube_discovery import write_kubeconfig
from controller.sim.server import LoopbackServer
from controller.telemetry.logs import configure_logging

BENCH = Path(__file__).resolve().parent
P = "presence-controller/"
POD, CLIENT, LEASE = "soak-pod", "soak", "whatsapp-bot-presence"


class ErrorCounter(logging.Handler):
    """Counts log records that carry a traceback, or are errors from places that must not err."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.tracebacks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.tracebacks.append(f"{record.name}: {record.getMessage()}")


@dataclass
class Clock:
    """The controller's wall clock, which the soak makes jump."""

    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class World:
    sim: Simulation
    podinfo: DownwardAPIVolume
    clock: Clock
    rng: random.Random
    kube: SimKube
    annotations: dict[str, str] = field(default_factory=dict)
    churn: bool = False

    def reset(self) -> None:
        c, g = self.sim.consumer, self.sim.gateway
        c.health_status, c.health_delay, c.flap = 200, 0.0, False
        c.lag, c.metrics_mode, c.metrics_delay = 1.0, MetricsMode.PROMETHEUS, 0.0
        g.session_state, g.set_delay = "WORKING", 0.0
        g.set_faults.clear()
        g.session_faults.clear()
        self.churn = False
        self.clock.offset = timedelta(0)
        self.annotations = {}
        self.podinfo.write(self.annotations)
        k = self.kube
        k.calls.clear()  # the fake's request log: read by nobody here, it would only grow
        k.watch_faults.clear()
        k.throttled.clear()
        k.denied.clear()
        k.partitioned.clear()
        for plural, namespace, name in list(k.objects):
            if plural == "leases" and name.startswith(("forged-", "flood-", f"{LEASE}-ghost")):
                k.delete(plural, namespace, name)
            elif plural == "events":  # a real API server expires them (after an hour)
                del k.objects[(plural, namespace, name)]
        if k.get("deployments", "shop", "whatsapp-bot") is None:
            k.workload("shop", "whatsapp-bot", [POD])
        else:
            k.annotate("deployments", "shop", "whatsapp-bot", **{f"{P}maintenance": None})


def faults(world: World) -> dict[str, Callable[[], None]]:
    c, g, rng = world.sim.consumer, world.sim.gateway, world.rng

    def set_(obj: object, **values: object) -> Callable[[], None]:
        return lambda: [setattr(obj, k, v) for k, v in values.items()] and None

    def annotate(**values: str) -> Callable[[], None]:
        def change() -> None:
            world.annotations = {P + k.replace("_", "-"): v for k, v in values.items()}
            world.podinfo.write(world.annotations)

        return change

    def stall() -> None:
        time.sleep(rng.uniform(0.1, 0.6))  # blocks the event loop on purpose

    def delete_annotations() -> None:
        data = world.podinfo.directory / "..data"
        if data.is_symlink():
            data.unlink()

    def replace_annotations(kind: str) -> Callable[[], None]:
        def change() -> None:
            target = world.podinfo.file.resolve()
            if not target.exists():
                return
            target.unlink()
            if kind == "fifo":
                os.mkfifo(target)
            else:
                target.write_bytes(bytes(rng.randrange(256) for _ in range(4096)))

        return change

    k = world.kube

    def lease_without_spec() -> None:
        lease = k.get("leases", "shop", LEASE)
        if lease is not None:
            k.put("leases", {"metadata": {"name": LEASE, "namespace": "shop"}})

    def forged() -> None:
        for name, holder in ((f"{LEASE}-ghost", "ghost"), ("forged-copy", POD)):
            k.put("leases", {
                "metadata": {"name": name, "namespace": "shop",
                             "labels": {"presence-controller/lease": LEASE},
                             "annotations": {"presence-controller/verdict": "available"}},
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": 2},
            })  # fmt: skip

    def flood() -> None:
        for i in range(300):
            k.put("leases", {"metadata": {"name": f"flood-{i}", "namespace": "shop",
                                          "labels": {"presence-controller/lease": LEASE}},
                             "spec": {"holderIdentity": f"flood-{i}"}})  # fmt: skip

    def maybe(action: Callable[[], None], *keys: tuple[str, str, str]) -> Callable[[], None]:
        return lambda: action() if all(k.get(*key) for key in keys) else None

    deployment = ("deployments", "shop", "whatsapp-bot")
    fleet_faults: dict[str, Callable[[], None]] = {
        **{f"API: watches {what}": (lambda f=fault: k.watch_faults.__setitem__(CLIENT, f))
           for fault, what in (("stall", "stall"), ("bookmarks", "send only bookmarks"),
                               ("garbage", "send garbage"), ("eof", "end at once"),
                               ("expired", "answer 410"), ("huge", "send a 100 MB line"),
                               ("endless", "send endless new Leases"))},
        "API: 429 + Retry-After": lambda: k.throttled.__setitem__(CLIENT, 1.0),
        "API: partition": lambda: k.partitioned.add(CLIENT),
        "API: 403 on listing Leases": lambda: k.denied.add(("list", "leases")),
        "API: open watches dropped": k.drop_watches,
        "API: leader Lease without spec": lease_without_spec,
        "API: leader Lease deleted": maybe(
            lambda: k.delete("leases", "shop", LEASE), ("leases", "shop", LEASE)
        ),
        "API: forged heartbeats": forged,
        "API: 300 labelled Leases": flood,
        "maintenance on the Deployment": maybe(
            lambda: k.annotate(*deployment, **{f"{P}maintenance": "true"}), deployment
        ),
        "Deployment deleted": maybe(lambda: k.delete(*deployment), deployment),
    }  # fmt: skip
    return {
        **fleet_faults,
        "consumer down (503)": set_(c, health_status=503),
        "consumer hanging": set_(c, health_delay=math.inf),
        "consumer just under the timeout": set_(c, health_delay=0.02),
        "consumer just over the timeout": set_(c, health_delay=0.05),
        "consumer flapping": set_(c, flap=True),
        "lag spike": set_(c, lag=90.0),
        "lag between the watermarks": set_(c, lag=20.0),
        "metrics garbage": set_(c, metrics_mode=MetricsMode.GARBAGE),
        "metrics truncated": set_(c, metrics_mode=MetricsMode.TRUNCATED),
        "metrics huge": set_(c, metrics_mode=MetricsMode.HUGE),
        "metrics absent": set_(c, metrics_mode=MetricsMode.ABSENT),
        "metrics 500": set_(c, metrics_mode=MetricsMode.ERROR),
        "metrics hanging": set_(c, metrics_delay=math.inf),
        "gateway 429 + Retry-After": lambda: g.set_faults.append(Fault(429, {"Retry-After": "1"})),
        "gateway 429": lambda: g.set_faults.extend([Fault(429)] * 2),
        "gateway 5xx burst": lambda: g.set_faults.extend([Fault(503), Fault(500), Fault(502)]),
        "gateway slower than the interval": set_(g, set_delay=0.2),
        "gateway 422": lambda: g.set_faults.extend([Fault(422)]),
        "session not WORKING": set_(g, session_state=rng.choice(["STARTING", "SCAN_QR_CODE"])),
        "session flapping": lambda: g.session_faults.extend(
            [Fault(200, body='{"status": "STARTING"}'), Fault(200, body='{"status": "STOPPED"}')]
        ),
        "maintenance on": annotate(maintenance="true", maintenance_reason="soak"),
        "maintenance invalid": annotate(maintenance="Someday 25:00-26:00 UTC"),
        "force unavailable": annotate(force="unavailable"),
        "1 MiB annotation": annotate(blob="x" * (1 << 20)),
        "annotations rewritten every 10 ms": set_(world, churn=True),
        "annotations deleted": delete_annotations,
        "event-loop stall": stall,
        # Hostile inputs (fail safe, bounded):
        "gateway 429 + Retry-After: 0 on session reads": lambda: g.session_faults.extend(
            [Fault(429, {"Retry-After": "0"})] * 200
        ),
        "gateway echoes the token": set_(g, session_state=g.access_token),
        "gateway reply of 100 KB": lambda: g.session_faults.append(
            Fault(200, body='{"status": "' + "W" * 100_000 + '"}')
        ),
        "gateway reply compressed": lambda: g.session_faults.append(
            Fault(200, {"Content-Encoding": "gzip"})
        ),
        "lag +Inf": set_(c, lag=math.inf),
        "maintenance in the year 9999": annotate(maintenance="9999-12-31T00:00:00Z/P2D"),
        "annotations file garbled": replace_annotations("garbage"),
        "annotations file replaced by a FIFO": replace_annotations("fifo"),
        "wall clock +1 day": set_(world.clock, offset=timedelta(days=1)),
        "wall clock -1 hour": set_(world.clock, offset=timedelta(hours=-1)),
    }


async def churn_annotations(world: World) -> None:
    i = 0
    while True:
        if world.churn:
            i += 1
            world.podinfo.write({**world.annotations, "churn": str(i)})
        await asyncio.sleep(0.01)


async def soak(minutes: float, seed: int) -> dict[str, object]:
    errors = ErrorCounter()
    logging.getLogger().addHandler(errors)
    unhandled: list[str] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda loop, context: unhandled.append(str(context.get("message")))
    )
    rng = random.Random(seed)
    podinfo_dir = Path(tempfile.mkdtemp(prefix="presence-soak-"))
    samples: list[tuple[float, float, int, int, int, int]] = []
    applied_faults: dict[str, int] = {}
    kube = SimKube(tokens={"soak-token": CLIENT}, history_size=200)  # full within warm-up
    kube.workload("shop", "whatsapp-bot", [POD])
    async with simulation() as sim, LoopbackServer(kube.app()) as api:
        config = write_kubeconfig(podinfo_dir / "kubeconfig", api.url, "soak-token", "shop")
        os.environ["KUBECONFIG"] = str(config)
        world = World(sim, DownwardAPIVolume(podinfo_dir / "podinfo"), Clock(), rng, kube)
        world.reset()
        settings = sim.settings(
            interval=0.05,
            timeout=0.04,
            rise=3,
            fall=3,
            hold_down=1.0,
            reassert_available=1.0,
            reassert_unavailable=3.0,
            session_check=2.0,
            annotations_file=world.podinfo.file,
            wawp={"timeout": 0.5},
            kube={"enabled": True, "namespace": "shop", "pod_name": POD,
                  "workload": "deployment/whatsapp-bot", "lease_duration": 3.0,
                  "renew_deadline": 2.0, "retry_period": 0.4, "heartbeat": 0.5},
        )  # fmt: skip
        controller = Controller(
            settings, clock=ShellClock(wall=world.clock), rng=random.Random(seed)
        )
        stop = asyncio.Event()
        catalogue = faults(world)
        async with AdminServer(controller, "127.0.0.1", 0):
            task = asyncio.create_task(controller.run(stop))
            churner = asyncio.create_task(churn_annotations(world))
            started = time.monotonic()
            end = started + minutes * 60
            quiet_from = end - 30  # the last 30 s: no faults, inputs healthy
            next_sample = started
            auth_done = False
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_sample:
                    gc.collect()
                    samples.append(
                        (
                            now - started,
                            rss_mib(),
                            len(asyncio.all_tasks()),
                            open_sockets(),
                            sys.getallocatedblocks(),
                            len(gc.get_objects()),
                        )
                    )
                    next_sample += 10
                if now >= quiet_from:
                    world.reset()
                    await asyncio.sleep(0.5)
                    continue
                if not auth_done and now - started > 30:
                    sim.gateway.set_faults.append(Fault(401))  # once: it parks calls for 5 min
                    auth_done = True
                world.reset()
                for name in rng.sample(sorted(catalogue), rng.choice([1, 1, 2, 3])):
                    applied_faults[name] = applied_faults.get(name, 0) + 1
                    catalogue[name]()
                await asyncio.sleep(rng.uniform(0.5, 4.0))
            await asyncio.sleep(0.1)
            final = (
                controller.decision.presence if controller.decision else Presence.UNKNOWN,
                controller.actuator.state.applied,
                sim.gateway.presence,
                controller.decision.reason if controller.decision else "",
            )
            churner.cancel()
            stop.set()
            await asyncio.wait_for(task, 10)
    logging.getLogger().removeHandler(errors)
    return {
        "samples": samples,
        "faults": applied_faults,
        "final": final,
        "tracebacks": errors.tracebacks,
        "unhandled": unhandled,
        "ticks": controller.ticks,
        "minutes": minutes,
        "seed": seed,
        "gateway_calls": len(sim.gateway.calls),
    }


def verdict(result: dict[str, object]) -> tuple[list[str], list[str]]:
    samples: list[tuple[float, float, int, int, int, int]] = result["samples"]  # type: ignore[assignment]
    warm = [s for s in samples if s[0] >= 60] or samples
    rss_growth = warm[-1][1] - warm[0][1]
    tasks = [s[2] for s in warm]
    sockets = [s[3] for s in warm]
    desired, applied, shown, reason = result["final"]  # type: ignore[misc]
    failures = []
    if rss_growth >= 5:
        failures.append(f"RSS grew {rss_growth:.1f} MiB after warm-up")
    # The fake API server runs in this process: its handlers and connections, and the requests
    # in flight, vary with the fault drawn when a sample is taken. A leak shows at the quiet end.
    if tasks[-1] - min(tasks) > 6:
        failures.append(f"asyncio tasks ended at {tasks[-1]}, low {min(tasks)}")
    if sockets[-1] - min(sockets) > 8:
        failures.append(f"open sockets ended at {sockets[-1]}, low {min(sockets)}")
    blocks = [s[4] for s in warm]
    if blocks[-1] > blocks[0] * 1.02:
        failures.append(f"Python allocated blocks grew {blocks[0]} -> {blocks[-1]} (> 2%)")
    if result["tracebacks"]:
        failures.append(f"errors with tracebacks: {result['tracebacks'][:3]}")
    if result["unhandled"]:
        failures.append(f"unhandled: {result['unhandled'][:3]}")
    if not (
        desired is Presence.AVAILABLE and applied is Presence.AVAILABLE and shown == "available"
    ):
        failures.append(
            f"final presence {desired}/{applied}/{shown} ({reason}), expected available"
        )
    lines = [
        "## 6. Soak",
        "",
        f"`make soak` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: the real controller (in process, "
        f"with its admin server) for {result['minutes']} minutes at interval 0.05 s, seed "
        f"{result['seed']}, {result['ticks']} ticks, {result['gateway_calls']} gateway calls, "
        f"faults drawn {sum(result['faults'].values())} times "  # type: ignore[attr-defined]
        f"from {len(result['faults'])} kinds; the last 30 s without faults.",  # type: ignore[arg-type]
        "",
        "| | after warm-up (60 s) | at the end | min | max |",
        "|---|---|---|---|---|",
        f"| RSS MiB (whole soak process: controller and simulators) | {warm[0][1]:.1f} | "
        f"{warm[-1][1]:.1f} | {min(s[1] for s in warm):.1f} | {max(s[1] for s in warm):.1f} |",
        f"| asyncio tasks | {tasks[0]} | {tasks[-1]} | {min(tasks)} | {max(tasks)} |",
        f"| open sockets | {sockets[0]} | {sockets[-1]} | {min(sockets)} | {max(sockets)} |",
        f"| Python allocated blocks | {warm[0][4]} | {warm[-1][4]} | "
        f"{min(s[4] for s in warm)} | {max(s[4] for s in warm)} |",
        f"| live objects (gc) | {warm[0][5]} | {warm[-1][5]} | "
        f"{min(s[5] for s in warm)} | {max(s[5] for s in warm)} |",
        "",
        "RSS every minute (MiB): "
        + ", ".join(f"{s[1]:.1f}" for s in samples if round(s[0]) % 60 < 10)
        + ".",
        "",
        f"RSS growth after warm-up: {rss_growth:+.1f} MiB (limit 5); Python allocated blocks "
        f"{(blocks[-1] - blocks[0]) / blocks[0]:+.1%} (limit +2%). The process runs with the "
        "image's glibc settings (bench/image_env.py). Errors logged with a "
        f"traceback: {len(result['tracebacks'])}. Unhandled exceptions: "  # type: ignore[arg-type]
        f"{len(result['unhandled'])}. Final presence: desired {desired}, applied {applied}, "  # type: ignore[arg-type]
        f"gateway shows {shown} (inputs healthy, no maintenance: expected available).",
        "",
        "Faults drawn: "
        + ", ".join(f"{k} x{v}" for k, v in sorted(result["faults"].items()))
        + ".",  # type: ignore[attr-defined]
        "",
        "Result: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)),
        "",
    ]
    return failures, lines


def record(lines: list[str]) -> None:
    """Replace (or add) the soak section of bench/RESULTS.md."""
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    head = text.partition("## 6. Soak")[0]
    path.write_text(head.rstrip() + "\n\n" + "\n".join(lines))


def main() -> int:
    if any(os.environ.get(k) != v for k, v in IMAGE_ENV.items()):
        # Run as the image runs: glibc reads these only at process start.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **IMAGE_ENV})  # noqa: S606
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with open(os.devnull, "w") as devnull:  # the soak's own log lines are not the point
        configure_logging("json", "warning", [], stream=devnull)
        result = asyncio.run(soak(args.minutes, args.seed))
    failures, lines = verdict(result)
    record(lines)
    print("\n".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
