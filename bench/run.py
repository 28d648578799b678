"""`make bench`: measure presence-controller side by side with what a user would write instead,
in one run, and write bench/RESULTS.md and bench/flap-economy.png.

1. Reaction: consumer fails at t0 -> `unavailable` received by the simulated gateway, and back;
   >= 30 trials at interval 0.5 s, fall 3 / rise 3, against the bounds fall x interval and
   rise x interval + hold-down.
2. Footprint: steady RSS of `presence-controller run` after 60 s, against the import floor of
   its dependencies, measured in the same run.
3. Cost per tick: CPU time per tick at interval 0.1 s, against a hand-written httpx poller
   doing the same two GETs (bench/floor_poller.py).
4. Start-up: process start -> first health probe.
5. Flap economy: a seeded noisy lag trace with real incidents; presence changes of the
   controller's decision core vs a naive single-threshold controller; every incident caught?
   And a crash-looping consumer with flap damping on and off. Fast re-probe on and off in 1.
Then schedule evaluation, fleet mode and presence truth (bench/truth.py: what contacts are
shown, on each profile of the WhatsApp model, at the defaults and around them).

Usage: python bench/run.py [--quick]   (quick: fewer trials and shorter windows, for a smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import random
import signal
import statistics
import sys
import time
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from fleet import FleetFigures, fleet_bench
from image_env import IMAGE_ENV
from procfs import cpu_seconds, rss_mib
from truth import truth_lines, truth_rows, wall_check
from witness_truth import witness_lines, witness_rows

from controller.core.replay import Sample, replay
from controller.core.replay import incidents as replay_incidents
from controller.core.schedule import WEEKDAYS
from controller.core.schedule import clear_caches as clear_schedule_caches
from controller.core.schedule_grammar import MAX_SPEC_CHARS
from controller.core.schedule_grammar import parse as parse_schedule
from controller.core.types import (
    Presence,
)
from controller.replay.command import decision_settings
from controller.runtime.controller import Controller
from controller.sim.collector import SimCollector
from controller.sim.gateway import GatewayCall
from controller.sim.harness import simulation, wait_until
from controller.sim.server import LoopbackServer
from controller.telemetry.logs import configure_logging

BENCH = Path(__file__).resolve().parent
DEFAULTS = decision_settings({})
"""The shipped decision settings (as `replay` sees them with no PRESENCE_* variables)."""


# Measuring other processes.


async def spawn(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)


def controller_cmd() -> list[str]:
    return [sys.executable, "-m", "controller", "run"]


def image(env: dict[str, str]) -> dict[str, str]:
    """`env` plus what the container image sets (bench/image_env.py)."""
    return {**env, **IMAGE_ENV}


@dataclass
class Spread:
    """min / median / max of a sample, with its size."""

    values: list[float]

    def row(self, fmt: str = "{:.3f}") -> str:
        v = self.values
        return " | ".join(fmt.format(x) for x in (min(v), statistics.median(v), max(v)))

    def quantile(self, q: float) -> float:
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# 1. Reaction.


async def reaction(
    cycles: int, parallel: int, fast: float = 0.0, probe_timeout: float = 0.2
) -> tuple[Spread, Spread, dict[str, float]]:
    """`parallel` controllers, each failing and recovering its consumer `cycles` times;
    `fast`: FAST_INTERVAL (0: off)."""
    interval, fall, rise, hold_down = 0.5, 3, 3, 0.0
    cfg = {
        "interval": interval,
        "fall": fall,
        "rise": rise,
        "hold_down": hold_down,
        "fast_interval": fast,
    }

    async def one(seed: int) -> tuple[list[float], list[float]]:
        rng = random.Random(seed)
        falls: list[float] = []
        rises: list[float] = []
        async with simulation() as sim:
            arrived: dict[str, float] = {}

            def record(call: GatewayCall) -> None:
                if call.operation == "set" and call.status == 200 and call.presence:
                    arrived[call.presence] = call.at

            sim.gateway.on_call = record
            settings = sim.settings(
                **cfg,
                timeout=probe_timeout,
                jitter=0.0,
                startup_grace=30,
                reassert_available=600,
                reassert_unavailable=600,
                session_check=600,
            )
            controller = Controller(settings)
            stopping = asyncio.Event()
            task = asyncio.create_task(controller.run(stopping))
            await wait_for(lambda: "available" in arrived, 10)
            for _ in range(cycles):
                for health, target, out in ((503, "unavailable", falls), (200, "available", rises)):
                    await asyncio.sleep(rng.uniform(0.3, 0.3 + interval))  # random tick phase
                    arrived.pop(target, None)
                    t0 = time.monotonic()
                    sim.consumer.health_status = health
                    await wait_for(lambda target=target: target in arrived, 10)  # type: ignore[misc]
                    out.append(arrived[target] - t0)
            stopping.set()
            await task
        return falls, rises

    results = await asyncio.gather(*(one(seed) for seed in range(parallel)))
    falls = Spread([x for f, _ in results for x in f])
    rises = Spread([x for _, r in results for x in r])
    bounds = {"fall": fall * interval, "rise": rise * interval + hold_down, "interval": interval}
    return falls, rises, bounds


async def wait_for(check: Callable[[], bool], within: float) -> None:
    """Fine-grained polling: the start-up figure is read at this resolution."""
    if not await wait_until(check, within, poll=0.002):
        raise TimeoutError("benchmark condition not reached")


# 2 and 3. Footprint and cost per tick, from /proc of real processes.


async def footprint(seconds: float, collector: str) -> dict[str, Spread]:
    """Steady RSS of `run` at the default 5 s interval, without and with trace export."""
    out: dict[str, Spread] = {}
    async with simulation() as sim:
        variants = {
            "run, tracing none": sim.env(
                PRESENCE_INTERVAL="5s", PRESENCE_TIMEOUT="2s", PRESENCE_LOG_LEVEL="warning"
            ),
            "run, tracing otlp": sim.env(
                PRESENCE_INTERVAL="5s",
                PRESENCE_TIMEOUT="2s",
                PRESENCE_LOG_LEVEL="warning",
                OTEL_TRACES_EXPORTER="otlp",
                OTEL_EXPORTER_OTLP_ENDPOINT=collector,
            ),
        }
        procs = {
            name: await spawn(*controller_cmd(), env=image(env)) for name, env in variants.items()
        }
        await asyncio.sleep(seconds)
        samples: dict[str, list[float]] = {name: [] for name in procs}
        for _ in range(5):  # five readings over the next 5 s: the steady value after `seconds`
            for name, proc in procs.items():
                samples[name].append(rss_mib(proc.pid))
            await asyncio.sleep(1)
        for proc in procs.values():
            await stop(proc)
    out = {name: Spread(values) for name, values in samples.items()}
    floor = []
    script = (
        "import aiohttp, httpx, pydantic_settings, opentelemetry.sdk.trace, prometheus_client;"
        "print([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])"
    )
    for _ in range(3):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
        )
        text, _ = await proc.communicate()
        floor.append(int(text) / 1024)
    out["import floor (deps only)"] = Spread(floor)
    return out


async def cost_per_tick(seconds: float, windows: int, collector: str) -> dict[str, Spread]:
    """CPU ms per tick at interval 0.1 s: the controller vs the hand-written floor."""
    async with simulation() as sim:
        health, metrics = f"{sim.consumer_url}/healthz", f"{sim.consumer_url}/metrics"
        fast = {
            "PRESENCE_INTERVAL": "100ms",
            "PRESENCE_TIMEOUT": "50ms",
            "PRESENCE_LOG_LEVEL": "warning",
            "PRESENCE_REASSERT_AVAILABLE": "1h",
        }
        procs = {
            "presence-controller, tracing none": await spawn(
                *controller_cmd(), env=image(sim.env(**fast))
            ),
            "presence-controller, tracing otlp": await spawn(
                *controller_cmd(),
                env=image(
                    sim.env(
                        **fast, OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=collector
                    )
                ),
            ),
            "floor: hand-written httpx poller": await spawn(
                sys.executable,
                str(BENCH / "floor_poller.py"),
                health,
                metrics,
                "0.1",
                env=dict(os.environ),
            ),
        }
        await asyncio.sleep(3)  # start-up is measured separately
        per_tick: dict[str, list[float]] = {name: [] for name in procs}
        window = seconds / windows
        for _ in range(windows):
            before = {name: cpu_seconds(p.pid) for name, p in procs.items()}
            await asyncio.sleep(window)
            for name, proc in procs.items():
                ticks = window / 0.1
                per_tick[name].append((cpu_seconds(proc.pid) - before[name]) * 1000 / ticks)
        for proc in procs.values():
            await stop(proc)
    return {name: Spread(values) for name, values in per_tick.items()}


# 4. Start-up.


async def startup(repeats: int) -> Spread:
    times = []
    for _ in range(repeats):
        async with simulation() as sim:
            env = sim.env(PRESENCE_INTERVAL="5s", PRESENCE_TIMEOUT="2s")
            started = time.monotonic()
            proc = await spawn(*controller_cmd(), env=image(env))
            await wait_for(lambda sim=sim: sim.consumer.health_requests > 0, 10)  # type: ignore[misc]
            times.append(time.monotonic() - started)
            await stop(proc)
    return Spread(times)


# 5. Flap economy, on the decision core (the same code the controller runs), seeded.


@dataclass
class FlapResult:
    controller_changes: int
    naive_changes: int
    incidents: list[tuple[int, int]]
    caught: list[int | None]
    """Per incident: ticks from its start until the controller went unavailable (None: missed)."""
    naive_caught: list[int | None]
    offline_outside: tuple[float, float]
    """Minutes unavailable outside incidents: (controller, naive)."""
    lag: list[float]
    controller: list[Presence]
    naive: list[bool]


def lag_trace(seed: int, ticks: int) -> tuple[list[float], list[tuple[int, int]]]:
    """A healthy consumer's lag (mean-reverting around 4 s), slow periods that sit between the
    watermarks for minutes, one-tick spikes above lag_high (a slow batch, not an incident),
    and real incidents: lag far above lag_high for 1-5 minutes."""
    rng = random.Random(seed)
    incidents, slow = [], []
    start = 60
    while start < ticks - 80:
        length = rng.randint(12, 60)  # 1-5 minutes at 5 s
        incidents.append((start, start + length))
        gap = rng.randint(100, 220)
        slow.append((start + length + gap // 3, start + length + gap // 3 + rng.randint(24, 60)))
        start += length + gap
    lag, level = [], 4.0
    for t in range(ticks):
        target = 18.0 if any(a <= t < b for a, b in slow) else 4.0
        level = max(0.5, level + 0.3 * (target - level) + rng.gauss(0, 1.0))
        value = level + abs(rng.gauss(0, 1.0))
        if rng.random() < 0.04:
            value = rng.uniform(30, 45)
        if any(a <= t < b for a, b in incidents):
            value = rng.uniform(45, 180)
        lag.append(value)
    return lag, incidents


def trace_samples(lag: Sequence[float]) -> list[Sample]:
    """The trace as replay samples, one per 5 s tick (also what `trace_csv` writes)."""
    at = datetime(2026, 11, 24, tzinfo=UTC)
    return [Sample(at + timedelta(seconds=5 * t), value) for t, value in enumerate(lag)]


def trace_csv(lag: Sequence[float], path: Path) -> None:
    """The trace as a `replay --csv` file."""
    lines = ["time,lag"]
    lines += [f"{s.at:%Y-%m-%dT%H:%M:%SZ},{s.lag!r}" for s in trace_samples(lag)]
    path.write_text("\n".join(lines) + "\n")


def flap_economy(seed: int = 7, ticks: int = 1440) -> FlapResult:
    """Two hours at the default 5 s interval with the default settings, through the replay core
    (`presence-controller replay --csv` on the same trace prints the same figures)."""
    lag, _ = lag_trace(seed, ticks)
    samples = trace_samples(lag)
    cfg = DEFAULTS.hysteresis()  # rise 3, fall 3, hold_down 30, lag_low 10, lag_high 30
    incidents = replay_incidents(samples, cfg.lag_high, 60.0)
    score = replay("controller", samples, cfg, incidents)
    naive = [value < cfg.lag_high for value in lag]

    def changes(values: Sequence[object]) -> int:
        return sum(1 for a, b in itertools.pairwise(values) if a != b)

    outside = [t for t in range(ticks) if not any(a <= t < b for a, b in incidents)]
    return FlapResult(
        controller_changes=score.changes,
        naive_changes=changes(naive),
        incidents=incidents,
        caught=list(score.detect),
        naive_caught=[
            next((t - a for t in range(a, b) if not naive[t]), None) for a, b in incidents
        ],
        offline_outside=(
            score.minutes_unavailable_outside,
            sum(not naive[t] for t in outside) * 5 / 60,
        ),
        lag=lag,
        controller=list(score.track),
        naive=naive,
    )


@dataclass
class CrashLoop:
    outages: int
    changes: dict[str, int]
    detect: dict[str, list[int | None]]
    """Per outage: ticks from the crash to unavailable (FALL - 1 = 2 when caught at once)."""
    held_minutes: float
    """Damping on: minutes the consumer was healthy but the bot held unavailable."""


def crash_loop(minutes: int = 60, every: float = 180.0, down: float = 20.0) -> CrashLoop:
    """A consumer that crashes for `down` s every `every` s for `minutes`, at the default 5 s
    interval (health only), through the decision core with damping on and off."""
    at = datetime(2026, 11, 24, tzinfo=UTC)
    ticks = int(minutes * 60 / 5)
    # Healthy at start, then down for `down` s at every `every` s.
    crashes = [(t, t + int(down / 5)) for t in range(1, ticks) if (5 * t) % every == 0]
    sick = {t for a, b in crashes for t in range(a, b)}
    samples = [
        Sample(at + timedelta(seconds=5 * t), 2.0, healthy=t not in sick) for t in range(ticks)
    ]
    on = DEFAULTS.hysteresis()
    off = DEFAULTS.model_copy(
        update={"damping": DEFAULTS.damping.model_copy(update={"enabled": False})}
    ).hysteresis()
    scores = {name: replay(name, samples, cfg, crashes) for name, cfg in (("on", on), ("off", off))}
    held = sum(
        5 / 60
        for t, p in enumerate(scores["on"].track)
        if samples[t].healthy
        and p is Presence.UNAVAILABLE
        and scores["off"].track[t] is Presence.AVAILABLE
    )
    return CrashLoop(
        outages=len(crashes),
        changes={k: v.changes for k, v in scores.items()},
        detect={k: list(v.detect) for k, v in scores.items()},
        held_minutes=held,
    )


def plot(result: FlapResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [t * 5 / 60 for t in range(len(result.lag))]
    fig, (ax_lag, ax_p) = plt.subplots(
        2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    ax_lag.plot(minutes, result.lag, lw=0.7, color="#555", label="queue lag (s)")
    ax_lag.axhline(30, color="red", ls="--", lw=1, label="lag_high 30 (naive threshold too)")
    ax_lag.axhline(10, color="green", ls="--", lw=1, label="lag_low 10")
    for a, b in result.incidents:
        ax_lag.axvspan(a * 5 / 60, b * 5 / 60, color="orange", alpha=0.2)
    ax_lag.set_ylim(0, 80)
    ax_lag.set_ylabel("lag (s)")
    ax_lag.legend(loc="upper right", fontsize=8)
    ax_lag.set_title(
        f"Flap economy: controller {result.controller_changes} presence changes, "
        f"naive threshold {result.naive_changes}; incidents shaded"
    )
    online = [1.0 if p is Presence.AVAILABLE else 0.0 for p in result.controller]
    ax_p.step(minutes, [1.2 + 0.8 * x for x in online], where="post", color="tab:blue")
    ax_p.step(minutes, [0.8 * float(x) for x in result.naive], where="post", color="tab:red")
    ax_p.set_yticks([0.4, 1.6], ["naive", "controller"])
    ax_p.set_xlabel("minutes (5 s ticks); high = available")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# The report.


def worst_specs() -> dict[str, str]:
    """Window specs of at most 4 KiB (and 50 windows) that make the schedule search work
    hardest: edges that cannot end the activity because another zone holds it, in as many
    zones with DST as fit, so every edge in the 16-day search must be looked at."""
    cuts = [round(i * 1440 / 50) for i in range(51)]
    covering = "; ".join(
        f"Mon-Sun {a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d} Europe/Berlin"
        for a, b in itertools.pairwise(cuts)
    )
    zones = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "UTC"]
    scattered = "; ".join(
        f"{WEEKDAYS[i % 7]} {i % 24:02d}:{i * 7 % 60:02d}-{(i + 1) % 24:02d}:30 {zones[i % 5]}"
        for i in range(49)
    )
    # Always active, but no single zone covers the week: nothing can be skipped.
    mask = "Mon-Sun 00:00-13:00 UTC; Mon-Sun 12:00-01:00 Etc/GMT"
    winter, summer = datetime(2026, 1, 15), datetime(2026, 7, 15)
    with_dst = sorted(
        (
            z
            for z in zoneinfo.available_timezones()
            if z.startswith(("Europe/", "America/", "Australia/"))
            and ZoneInfo(z).utcoffset(winter) != ZoneInfo(z).utcoffset(summer)
        ),
        key=lambda z: (len(z), z),
    )[:48]
    daily = "; ".join(
        f"Mon-Sun {i % 24:02d}:{i % 60:02d}-{i % 24:02d}:{i % 60 + 1:02d} {z}"
        for i, z in enumerate(with_dst)
    )
    return {
        "48 one-minute daily windows in 48 DST zones, held active by two zones": f"{mask}; {daily}",
        "50 windows covering every minute (always active, Europe/Berlin)": covering,
        "49 weekly windows in 5 zones + an interval in 2036": scattered
        + "; 2036-01-01T00:00:00Z/P2D",
        "an interval active until 2036 + 49 weekly windows": "2026-01-01T00:00:00Z/"
        "2036-01-01T00:00:00Z; " + scattered,
        "Sun 02:00-03:00 Europe/Berlin from the week before the DST gap": "Sun 02:00-03:00 "
        "Europe/Berlin",
    }


def schedule_cost(repeats: int) -> dict[str, tuple[int, float, Spread]]:
    """Milliseconds for one next_change() on each worst spec: the first call with empty caches
    (DST transitions are searched once per zone and year), then `repeats` more. The controller
    caches the result until the change, or an hour."""
    at = datetime(2026, 3, 22, 12, tzinfo=UTC)
    out = {}
    for name, spec in worst_specs().items():
        assert len(spec) <= MAX_SPEC_CHARS, name
        clear_schedule_caches()
        schedule = parse_schedule(spec)
        started = time.perf_counter()
        schedule.next_change(at)
        cold = (time.perf_counter() - started) * 1000
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            schedule.next_change(at)
            times.append((time.perf_counter() - started) * 1000)
        out[name] = (len(spec), cold, Spread(times))
    return out


def fleet_lines(f: FleetFigures) -> list[str]:
    solo = f.rss_solo
    worst_rss = max(f.rss_fleet)
    return [
        "## Fleet mode",
        "",
        "Three `presence-controller run` processes in fleet mode at the default timings (lease "
        "15 s, renew 10 s, retry 2 s, heartbeat 5 s, interval 5 s) against the fake Kubernetes "
        "API server (controller/sim/kube.py) and the simulated gateway; one run.",
        "",
        "| | value | goal |",
        "|---|---|---|",
        *(
            f"| API requests per minute, {pod} | {rate:.0f} | <= 40 |"
            for pod, rate in sorted(f.requests_per_minute.items())
        ),
        f"| leader SIGTERM -> a successor holds the Lease (s) | {f.sigterm_failover:.1f} | "
        "<= 2.2 x retry = 4.4 |",
        f"| `unavailable` writes during that handover | {f.sigterm_unavailable_writes} | 0 |",
        f"| leader SIGKILL -> a successor holds the Lease (s) | {f.sigkill_failover:.1f} | "
        "<= lease + 2.2 x retry = 19.4 |",
        f"| RSS with fleet mode (MiB, worst of 3) vs without | {worst_rss:.1f} vs {solo:.1f} "
        f"(+{worst_rss - solo:.1f}) | <= +8 |",
        "",
        f"Requests counted over {f.steady_seconds:.0f} s of steady state: the leader renews its "
        "Lease every 2 s and its heartbeat every 10 s; followers read the Lease every 2-4.4 s "
        "and renew their heartbeat every 5 s; every replica keeps two watches (heartbeats, the "
        "Deployment), each restarted every 60 s and listed again every 5 minutes.",
        "",
    ]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return f"{os.cpu_count()} cores, {cpu}; Python {platform.python_version()}; {platform.system()}"


def reaction_lines(
    falls: Spread,
    rises: Spread,
    bounds: dict[str, float],
    fast_falls: Spread,
    slow_falls: Spread,
) -> list[str]:
    fall_over = Spread([x - bounds["fall"] for x in falls.values])
    rise_over = Spread([x - bounds["rise"] for x in rises.values])
    return [
        "## 1. Reaction",
        "",
        f"{len(falls.values)} trials each way, interval {bounds['interval']} s, jitter 0, "
        f"fall 3, rise 3, hold-down 0 (FAST_INTERVAL at its default 1 s, above the interval: "
        "no effect); the failure lands at a random tick phase.",
        "",
        "| | min | median | max | p99 |",
        "|---|---|---|---|---|",
        f"| consumer fails -> gateway receives unavailable (s) | {falls.row()} | "
        f"{falls.quantile(0.99):.3f} |",
        f"| overshoot over fall x interval = {bounds['fall']} s | {fall_over.row('{:+.3f}')} | "
        f"{fall_over.quantile(0.99):+.3f} |",
        f"| consumer recovers -> gateway receives available (s) | {rises.row()} | "
        f"{rises.quantile(0.99):.3f} |",
        f"| overshoot over rise x interval + hold-down = {bounds['rise']} s | "
        f"{rise_over.row('{:+.3f}')} | {rise_over.quantile(0.99):+.3f} |",
        "",
        f"Goal: p99 overshoot <= +0.100 s. Fall: {fall_over.quantile(0.99):+.3f} s, "
        f"rise: {rise_over.quantile(0.99):+.3f} s. A negative overshoot means the change "
        "arrived before the worst case: the first bad probe can come up to one interval "
        "after the failure, so latency lies between (fall - 1) and fall intervals, plus the "
        "probe and the gateway call.",
        "",
        "### Fast re-probe",
        "",
        f"The same trial at the default timings divided by 10 (interval 0.5 s, fall 3, "
        f"FAST_INTERVAL 0.1 s or off), {len(fast_falls.values)} trials each; figures x10 = "
        "at the defaults (interval 5 s, FAST_INTERVAL 1 s).",
        "",
        "| consumer fails -> gateway receives unavailable | min | median | max | "
        "median x10 (defaults) |",
        "|---|---|---|---|---|",
        f"| fast re-probe on (s) | {fast_falls.row()} | "
        f"{10 * statistics.median(fast_falls.values):.1f} |",
        f"| fast re-probe off (s) | {slow_falls.row()} | "
        f"{10 * statistics.median(slow_falls.values):.1f} |",
        "",
        "Goal: median below 8 s at the defaults with it on (15 s worst case without). With it "
        "on, the first bad probe comes within one interval and the other two follow at the "
        "fast interval: interval x U(0,1) + 2 x fast.",
        "",
    ]


def footprint_lines(prints: dict[str, Spread], quick: bool) -> list[str]:
    return [
        "## 2. Footprint",
        "",
        "| process | RSS MiB min | median | max |",
        "|---|---|---|---|",
        *(f"| {name} | {spread.row('{:.1f}')} |" for name, spread in prints.items()),
        "",
        f"`run` RSS read five times, 1 s apart, after {10 if quick else 60} s at the default "
        "5 s interval; the import floor is a Python process importing aiohttp, httpx, "
        "pydantic-settings, opentelemetry-sdk and prometheus-client, nothing else (3 runs). "
        "Goal: <= 64 MiB.",
        "",
    ]


def cost_lines(costs: dict[str, Spread], floor: float, quick: bool) -> list[str]:
    return [
        "## 3. Cost per tick",
        "",
        "| process | CPU ms per tick min | median | max | vs floor (median) |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {spread.row('{:.2f}')} | {statistics.median(spread.values) / floor:.2f}x |"
            for name, spread in costs.items()
        ),
        "",
        f"Interval 0.1 s, CPU time from /proc over 3 windows of {(6 if quick else 21) / 3:.0f} s; "
        "all three processes ran at the same time against the same simulators. The floor "
        "(bench/floor_poller.py) does the same two GETs with httpx and a string scan of the "
        "lag, nothing else. Goal: <= 1.5x the floor.",
        "",
    ]


def startup_lines(boot: Spread) -> list[str]:
    return [
        "## 4. Start-up",
        "",
        "| | min | median | max |",
        "|---|---|---|---|",
        f"| process start -> first health probe (s), {len(boot.values)} runs | {boot.row()} |",
        "",
        "Goal: <= 1.0 s.",
        "",
    ]


def flap_lines(flap: FlapResult, loop: CrashLoop) -> list[str]:
    return [
        "## 5. Flap economy",
        "",
        "Two hours of a seeded lag trace at the default 5 s interval (seed 7): a healthy lag "
        "around 4 s, slow periods around 18 s (between the watermarks) lasting minutes, "
        "one-tick spikes to 30-45 s on 4% of ticks, and "
        f"{len(flap.incidents)} real incidents (lag 45-180 s for 1-5 minutes). The controller's "
        "decision core with the default settings (rise 3, fall 3, hold-down 30 s, watermarks "
        "10/30; the same `decide()` the controller runs each tick) against a naive controller "
        "(available iff lag < 30).",
        "",
        "| | presence changes | incidents caught | ticks to catch (per incident) | "
        "minutes offline outside incidents |",
        "|---|---|---|---|---|",
        f"| presence-controller | {flap.controller_changes} | "
        f"{sum(c is not None for c in flap.caught)}/{len(flap.incidents)} | {flap.caught} | "
        f"{flap.offline_outside[0]:.1f} |",
        f"| naive threshold | {flap.naive_changes} | "
        f"{sum(c is not None for c in flap.naive_caught)}/{len(flap.incidents)} | "
        f"{flap.naive_caught} | {flap.offline_outside[1]:.1f} |",
        "",
        "The controller's offline minutes outside incidents are its recovery after each "
        "incident (hold-down 30 s, then rise x interval) and slow periods that began while it "
        "was still down; the naive controller's are single-tick spikes, each one a flip.",
        "",
        "![flap economy](flap-economy.png)",
        "",
        "The trace is in `bench/flap-economy.csv`: `presence-controller replay --csv "
        "bench/flap-economy.csv` prints the same figures (a test checks it).",
        "",
        "### Crash loop: flap damping on and off",
        "",
        f"A consumer down 20 s every 3 minutes for an hour ({loop.outages} crashes), health only, "
        "default settings, the decision core; damping at its defaults (half-life 15 m, "
        "suppress 2500, reuse 800, max 30 m) against damping off.",
        "",
        "| damping | presence changes | ticks to go offline per crash |",
        "|---|---|---|",
        f"| on | {loop.changes['on']} | {loop.detect['on']} |",
        f"| off | {loop.changes['off']} | {loop.detect['off']} |",
        "",
        f"{loop.changes['off'] / max(loop.changes['on'], 1):.1f}x fewer changes (goal: >= 5x). "
        "Every outage that finds the bot online is caught at the FALL-th bad tick (2 ticks "
        "after the first), with damping as without; 0 means the bot was already held offline. "
        f"The price: {loop.held_minutes:.0f} minutes offline while the consumer was up between "
        "crashes (held back at most 30 minutes at a time).",
        "",
    ]


def calendar_lines() -> list[str]:
    """bench/calendar_cost.py in its own process (it starts the calendar worker)."""
    import subprocess

    table = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(Path(__file__).with_name("calendar_cost.py"))],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout.strip()  # fmt: skip
    return ["## Calendar evaluation", "", CALENDAR_TEXT, "", table, ""]


CALENDAR_TEXT = (
    "The largest calendar the controller accepts (2,000 events; 5,000 occurrences listed at "
    "most): expanded once per change (and daily) in the worker process, then evaluated at "
    "2,000 instants as each tick's re-evaluation does (`Expansion.near` + `evaluate`). Goal: "
    "an evaluation below the window-spec worst case (~5 ms)."
)


def schedule_lines(schedules: dict[str, tuple[int, float, Spread]]) -> list[str]:
    return [
        "## Schedule evaluation",
        "",
        "One `next_change()` on the hardest window specs of at most 4 KiB, from 2026-03-22 "
        "12:00 UTC (a week before the Berlin DST gap), in milliseconds: the first call with "
        "empty caches (DST transitions are searched once per zone and year), then repeats. "
        "The controller computes it when an annotation changes or the last result runs out, "
        "and at least hourly; it is cached in between.",
        "",
        "| spec | characters | first call ms | min ms | median ms | max ms |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {size} | {cold:.2f} | {spread.row('{:.2f}')} |"
            for name, (size, cold, spread) in schedules.items()
        ),
        "",
    ]


async def main(quick: bool) -> None:
    configure_logging("text", "error", [])
    started = time.monotonic()
    async with LoopbackServer(SimCollector().app()) as collector:
        (falls, rises, bounds), prints, costs = await asyncio.gather(
            reaction(cycles=2 if quick else 5, parallel=3 if quick else 6),
            footprint(10 if quick else 60, collector.url),
            cost_per_tick(6 if quick else 21, 3, collector.url),
        )
    # Fast re-probe on and off, at the defaults divided by 10 (interval 0.5 s, fast 0.1 s).
    (fast_falls, _, _), (slow_falls, _, _) = await asyncio.gather(
        reaction(cycles=2 if quick else 5, parallel=3 if quick else 6, fast=0.1),
        reaction(cycles=2 if quick else 5, parallel=3 if quick else 6, fast=0.0),
    )
    boot = await startup(3 if quick else 7)
    fleet = await fleet_bench(20 if quick else 60, spawn, stop, controller_cmd, image)
    schedules = schedule_cost(5 if quick else 25)
    flap = flap_economy()
    plot(flap, BENCH / "flap-economy.png")
    trace_csv(flap.lag, BENCH / "flap-economy.csv")
    loop = crash_loop()
    truth_seeds = 2 if quick else 5
    truth = truth_rows(seeds=truth_seeds)
    witnessed = witness_rows(seeds=truth_seeds)
    wall = await wall_check(30 if quick else 120, 8.0)
    took = time.monotonic() - started

    floor = statistics.median(costs["floor: hand-written httpx poller"].values)
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {took:.0f} s"
        + (" (QUICK run: fewer repeats)" if quick else "")
        + ".",
        f"Machine: {machine()}.",
        "Every figure is min | median | max over the repeats named. Simulated consumer and "
        "gateway on loopback (controller/sim), real controller code.",
        "",
    ]
    lines += reaction_lines(falls, rises, bounds, fast_falls, slow_falls)
    lines += footprint_lines(prints, quick)
    lines += cost_lines(costs, floor, quick)
    lines += startup_lines(boot)
    lines += flap_lines(flap, loop)
    lines += schedule_lines(schedules)
    lines += calendar_lines()
    lines += fleet_lines(fleet)
    lines += truth_lines(truth, wall, truth_seeds)
    lines += witness_lines(witnessed, truth_seeds)
    lines.append((BENCH / "NOTES.md").read_text())
    results = BENCH / "RESULTS.md"
    soak = results.read_text().partition("## 6. Soak")[2] if results.exists() else ""
    if soak:  # written by `make soak`: keep it
        lines += ["## 6. Soak" + soak.rstrip(), ""]
    results.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    asyncio.run(main(parser.parse_args().quick))
