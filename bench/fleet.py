"""`make bench`, fleet mode: three real `presence-controller run` processes at the default
timings against a fake Kubernetes API server and the simulated gateway. API requests per minute
per replica in steady state, leader failover after SIGTERM and after SIGKILL, and RSS with fleet
mode on against a process without it."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from procfs import rss_mib

from controller.sim.harness import simulation, wait_until
from controller.sim.kube import SimKube
from controller.sim.kube_discovery import write_kubeconfig
from controller.sim.server import LoopbackServer

PODS = ("bot-a", "bot-b", "bot-c")
LEASE = "whatsapp-bot-presence"


@dataclass
class FleetFigures:
    requests_per_minute: dict[str, float]
    """Per replica, `leader` or `follower` in the key."""
    steady_seconds: float
    sigterm_failover: float
    sigterm_unavailable_writes: int
    sigkill_failover: float
    rss_fleet: list[float]
    rss_solo: float


def _kubeconfig(folder: Path, server: str, pod: str) -> Path:
    return write_kubeconfig(folder / f"kubeconfig-{pod}", server, f"token-{pod}", "shop")


def _holder(kube: SimKube) -> str:
    lease = kube.get("leases", "shop", LEASE)
    return str(lease["spec"]["holderIdentity"]) if lease else ""


async def _until(check: Callable[[], bool], within: float) -> float:
    started = time.monotonic()
    if not await wait_until(check, within, poll=0.02):
        raise RuntimeError(f"fleet bench: condition not reached within {within:g}s")
    return time.monotonic() - started


async def fleet_bench(
    steady: float,
    spawn: Callable[..., object],
    stop: Callable[..., object],
    controller_cmd: Callable[[], list[str]],
    image: Callable[[dict[str, str]], dict[str, str]],
) -> FleetFigures:
    kube = SimKube(tokens={f"token-{pod}": pod for pod in PODS})
    kube.workload("shop", "whatsapp-bot", list(PODS))
    with tempfile.TemporaryDirectory(prefix="presence-fleet-bench-") as folder:
        async with simulation() as sim, LoopbackServer(kube.app()) as api:
            base = sim.env(PRESENCE_INTERVAL="5s", PRESENCE_TIMEOUT="2s", PRESENCE_RISE="3",
                           PRESENCE_FALL="3", PRESENCE_LOG_LEVEL="warning")  # fmt: skip
            procs = {}
            for pod in PODS:
                env = image({
                    **base,
                    "PRESENCE_KUBE__ENABLED": "true",
                    "PRESENCE_KUBE__NAMESPACE": "shop",
                    "PRESENCE_KUBE__POD_NAME": pod,
                    "PRESENCE_KUBE__WORKLOAD": "deployment/whatsapp-bot",
                    "KUBECONFIG": str(_kubeconfig(Path(folder), api.url, pod)),
                })  # fmt: skip
                procs[pod] = await spawn(*controller_cmd(), env=env)  # type: ignore[misc]
            solo = await spawn(*controller_cmd(), env=image({**base, "PRESENCE_DRY_RUN": "true"}))  # type: ignore[misc]
            try:
                await _until(lambda: _holder(kube) in PODS, 30)
                await _until(lambda: sim.gateway.presence == "available", 60)
                await asyncio.sleep(10)  # past start-up: every watch open, heartbeats flowing
                mark, started = len(kube.calls), time.monotonic()
                await asyncio.sleep(steady)
                window = time.monotonic() - started
                counts = Counter(call.client for call in kube.calls[mark:])
                leader = _holder(kube)
                rates = {
                    f"{pod} ({'leader' if pod == leader else 'follower'})": counts[pod]
                    * 60
                    / window
                    for pod in PODS
                }
                rss_fleet = [rss_mib(p.pid) for p in procs.values()]  # type: ignore[attr-defined]
                rss_solo = rss_mib(solo.pid)  # type: ignore[attr-defined]
                # SIGTERM to the leader: it releases the Lease; a follower takes it.
                sets_before = len(sim.gateway.sets())
                procs[leader].send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
                term = await _until(lambda: _holder(kube) not in {"", leader}, 30)
                successor = _holder(kube)
                await _until(lambda: len(sim.gateway.sets()) > sets_before, 30)
                await asyncio.sleep(2)
                offline = [
                    c for c in sim.gateway.sets()[sets_before:] if c.presence == "unavailable"
                ]
                # SIGKILL to the new leader: no release; the last one waits the lease out.
                procs[successor].send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
                kill = await _until(lambda: _holder(kube) not in {"", successor}, 60)
            finally:
                for proc in [*procs.values(), solo]:
                    if proc.returncode is None:  # type: ignore[attr-defined]
                        await stop(proc)  # type: ignore[misc]
    return FleetFigures(rates, window, term, len(offline), kill, rss_fleet, rss_solo)
