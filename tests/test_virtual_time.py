"""Timing, asserted exactly: the real controller and actuator against loopback simulators in the
same event loop, whose clock is fake (looptime): an `asyncio.sleep(60)` takes no wall time, and
every delay the shell waits comes from the one injected `Clock`, so the instants the simulators
record are the instants the rules promise, to the microsecond. Production defaults throughout
(INTERVAL 5 s, FAST_INTERVAL 1 s, REASSERT_AVAILABLE 8 s, ...), no sleeps on the wall clock."""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import random
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import looptime
import pytest

from controller.config import Settings
from controller.core.election import ElectionConfig
from controller.kube.client import KubeClient
from controller.kube.elector import LeaderElector
from controller.kube.events import SERIES_KEPT, EventRecorder
from controller.kube.watch import Backoff, ObjectWatch
from controller.runtime.clock import VirtualClock
from controller.runtime.controller import Controller
from controller.sim.consumer import SimConsumer
from controller.sim.fleet_scenario import run_fleet_demo
from controller.sim.gateway import Fault, SimGateway
from controller.sim.harness import Simulation, gateway_values
from controller.sim.kube import SimKube
from controller.sim.kube_discovery import write_kubeconfig
from controller.sim.scenario import run_demo
from controller.sim.server import LoopbackServer
from controller.sim.witness_scenario import run_witness_demo

MONDAY_NOON = datetime(2026, 12, 7, 12, tzinfo=UTC)
T = TypeVar("T")


def in_virtual_time(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` on an event loop of its own whose clock is fake from 0: the loop jumps to
    the next timer whenever nothing else can run (looptime)."""
    with asyncio.Runner(loop_factory=lambda: looptime.new_event_loop(start=0.0)) as runner:
        return runner.run(work)


def virtual(body: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """The async test `body`, run in virtual time."""

    def test() -> None:
        in_virtual_time(body())

    test.__name__, test.__doc__ = body.__name__, body.__doc__
    return test


@asynccontextmanager
async def world(**gateway: Any) -> AsyncIterator[Simulation]:
    """A consumer and a Wawp gateway on loopback, the gateway on the loop's (virtual) clock."""
    loop = asyncio.get_running_loop()
    consumer, sim_gateway = SimConsumer(probed_at=[]), SimGateway(clock=loop.time, **gateway)
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
    controller = Controller(
        settings(sim, **values), clock=VirtualClock(MONDAY_NOON), rng=random.Random(1)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        yield controller
    finally:
        stop.set()
        await task


class Lines(logging.Handler):
    """The INFO lines of one logger, while it is attached (`timed`: with the loop time)."""

    def __init__(self, name: str, timed: bool = False) -> None:
        super().__init__(logging.INFO)
        self.logger, self.lines, self.timed = logging.getLogger(name), list[Any](), timed
        self.level_before = self.logger.level
        self.logger.addHandler(self)
        self.logger.setLevel(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.timed:
            self.lines.append((asyncio.get_running_loop().time(), message))
        else:
            self.lines.append(message)

    def close(self) -> list[Any]:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level_before)
        super().close()
        return self.lines


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
        assert controller.status()["hysteresis"]["fast_reprobe"] is False
        sim.consumer.health_status = 503
        await asyncio.sleep(2)  # 22.5: one bad tick
        assert controller.status()["hysteresis"]["fast_reprobe"] is True
        await asyncio.sleep(18)
        assert controller.status()["hysteresis"]["fast_reprobe"] is False
        assert controller.decision is not None
        assert controller.decision.presence == "unavailable"
    probes = sim.consumer.probed_at
    assert probes is not None
    # At start good ticks could flip the presence too: 0, 1, 2 (available), then every 5 s;
    # the first bad tick at 22, the 2nd and 3rd at 23 and 24 (unavailable), then every 5 s.
    # Without the fast re-probe the bot would have gone offline at 32, not 24.
    assert probes[:10] == [0.0, 1.0, 2.0, 7.0, 12.0, 17.0, 22.0, 23.0, 24.0, 29.0]
    assert sets(sim, "unavailable")[0] == 24.0, "written at the third bad tick"


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
    """Transient failures: the n-th retry comes within [floor, base x 2^(n-1)] of the last
    (full jitter), never sooner than the 0.5 s floor; the ceiling does double (the seeded
    draws go past what any ceiling short of 32 s would allow)."""
    async with world() as sim:
        sim.gateway.set_faults.extend(Fault(503) for _ in range(6))
        async with running(sim):
            await asyncio.sleep(120)
    attempts = [c.at for c in sim.gateway.calls if c.operation == "set"][:7]
    waits = gaps(attempts)
    assert len(waits) == 6
    for n, wait in enumerate(waits):
        assert 0.5 <= wait <= 2.0**n + 1e-6, (n, waits)
    assert max(waits[2:]) > 16.0, waits  # 26.7 s: only a ceiling doubled to 32 s allows it


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
    # Unavailable from the first tick (outside online hours); a pulse once it has shown
    # unavailable for 60 s, lasting 5 s; the next 60 s after that one ended; the shutdown write.
    assert writes == [
        (0.0, "unavailable"),
        (60.0, "available"),
        (65.0, "unavailable"),
        (125.0, "available"),
        (130.0, "unavailable"),
        (190.0, "available"),
        (195.0, "unavailable"),
        (200.0, "unavailable"),
    ]


# The Kubernetes shell in virtual time: the real client library against the fake API server.

NAMES = ("pod-a", "pod-b", "pod-c")


@asynccontextmanager
async def api(folder: Path) -> AsyncIterator[tuple[SimKube, Callable[[str], KubeClient]]]:
    """The fake API server on loopback, and a factory of clients (one per pod's token) that
    note the loop time of every request they make."""
    sim = SimKube(tokens={f"token-{n}": n for n in NAMES})
    sim.workload("shop", "whatsapp-bot", list(NAMES))
    clients: list[KubeClient] = []
    async with LoopbackServer(sim.app()) as server:

        def client(name: str, log: list[tuple[float, str, str, int]] | None = None) -> KubeClient:
            def seen(verb: str, resource: str, code: int) -> None:
                if log is not None:
                    log.append((asyncio.get_running_loop().time(), verb, resource, code))

            path = write_kubeconfig(folder / f"kubeconfig-{name}", server.url, f"token-{name}",
                                    "shop")  # fmt: skip
            made = KubeClient("shop", 1.0, path, on_request=seen)
            clients.append(made)
            return made

        try:
            yield sim, client
        finally:
            for made in clients:
                await made.aclose()


@virtual
async def test_a_leader_renews_every_retry_period_and_a_partitioned_one_stops_at_its_deadline() -> (
    None
):
    """Production timing (lease 15 s, renew deadline 10 s, retry period 2 s): the leader renews
    every 2 s; cut off from the API, it stops leading exactly 10 s after its last renewal was
    sent, and another replica takes over only once the lease has expired by its own clock:
    15 s after it saw the last renewal, at its next try."""
    loop = asyncio.get_running_loop()
    changes: list[tuple[float, str, bool]] = []
    with tempfile.TemporaryDirectory() as folder:
        async with api(Path(folder)) as (sim, client):
            electors: dict[str, LeaderElector] = {}
            for i, name in enumerate(NAMES):

                def changed(leading: bool, name: str = name) -> None:
                    changes.append((loop.time(), name, leading))

                electors[name] = LeaderElector(
                    client(name), "bot-presence", ElectionConfig(name),
                    clock=VirtualClock(MONDAY_NOON), rng=random.Random(i), on_change=changed,
                )  # fmt: skip
            tasks = [asyncio.create_task(e.run()) for e in electors.values()]
            renewals: list[str] = []
            for _ in range(40):  # 20 s, looking every half second
                await asyncio.sleep(0.5)
                renewed = sim.get("leases", "shop", "bot-presence")["spec"]["renewTime"]
                if renewed not in renewals:
                    renewals.append(renewed)
            leaders = [n for n, e in electors.items() if e.leading()]
            assert len(leaders) == 1
            old = electors[leaders[0]]
            stamps = [datetime.fromisoformat(r.replace("Z", "+00:00")) for r in renewals]
            assert {(b - a).total_seconds() for a, b in itertools.pairwise(stamps)} == {2.0}
            sim.partitioned.add(leaders[0])
            await asyncio.sleep(1.0)  # its next renewal (sent, then lost) comes after this
            last = old.state.renewed_at
            assert last is not None
            await asyncio.sleep(last + 10.0 - loop.time() - 1e-6)
            assert old.leading(), "still within its renew deadline"
            await asyncio.sleep(2e-6)
            assert not old.leading(), "past it: stopped, by its own clock"
            while not any(e.leading() for e in electors.values() if e is not old):
                await asyncio.sleep(0.1)
            assert old.error is not None, "the partition is reported"
            sim.partitioned.discard(leaders[0])
            await asyncio.sleep(10)
            assert old.error is None, "and its end"
            assert len([e for e in electors.values() if e.leading()]) == 1
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    took_over = min(at for at, name, leading in changes if name != leaders[0] and leading)
    # The successor saw the last renewal at its first try after it (its tries come every
    # 2 s x [1, 2.2)), waited out the 15 s from there, and took the lease at its next try.
    assert last + 15.0 <= took_over <= last + 15.0 + 2 * 4.4
    assert took_over > last + 10.0, "never two leaders at once"
    acting: set[str] = set()
    for _, name, leading in sorted(changes):
        (acting.add if leading else acting.discard)(name)
        assert len(acting) <= 1, "never two leaders at once, by their own reports"


def the_deployment(sim: SimKube) -> dict[str, Any]:
    """What the Events regard: the bot's Deployment in the fake."""
    deployment = sim.get("deployments", "shop", "whatsapp-bot")
    assert deployment is not None
    uid = deployment["metadata"]["uid"]
    return {"kind": "Deployment", "apiVersion": "apps/v1", "name": "whatsapp-bot",
            "namespace": "shop", "uid": uid}  # fmt: skip


@virtual
async def test_repeated_events_are_one_event_whose_count_is_patched_every_flush() -> None:
    """The same Event every 10 s: created once, its series count patched at most every 30 s
    (FLUSH): at 30, 60 and 90 s, with counts 4, 7 and 10."""
    requests: list[tuple[float, str, str, int]] = []
    with tempfile.TemporaryDirectory() as folder:
        async with api(Path(folder)) as (sim, client):
            regarding = the_deployment(sim)
            recorder = EventRecorder(
                client("pod-a", requests), "pod-a", lambda: regarding,
                clock=VirtualClock(MONDAY_NOON),
            )  # fmt: skip
            task = asyncio.create_task(recorder.run())
            for _ in range(10):
                recorder.record("Warning", "PresenceUnavailable", "fleet: 1/3 available", "Set")
                await asyncio.sleep(10)
            await asyncio.sleep(0.5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            events = [o for (plural, *_), o in sim.objects.items() if plural == "events"]
    calls = [(round(at, 6), verb) for at, verb, resource, _ in requests if resource == "events"]
    assert calls == [(0.0, "create"), (30.0, "patch"), (60.0, "patch"), (90.0, "patch")]
    assert len(events) == 1 and events[0]["series"]["count"] == 10


@virtual
async def test_event_series_are_remembered_within_a_bound() -> None:
    """Notes carry reasons, and reasons vary: at most SERIES_KEPT series are remembered, the
    least recently seen forgotten (its repeat is a new Event), whatever the 10-minute window
    holds."""
    with tempfile.TemporaryDirectory() as folder:
        async with api(Path(folder)) as (sim, client):
            regarding = the_deployment(sim)
            recorder = EventRecorder(
                client("pod-a"), "pod-a", lambda: regarding, clock=VirtualClock(MONDAY_NOON)
            )
            task = asyncio.create_task(recorder.run())

            def events() -> int:
                return len([1 for (plural, *_) in sim.objects if plural == "events"])

            for i in range(SERIES_KEPT + 10):
                recorder.record("Warning", "PresenceUnavailable", f"fleet: {i}/3", "Set")
                await asyncio.sleep(1)
            assert events() == SERIES_KEPT + 10
            newest = SERIES_KEPT + 9
            recorder.record("Warning", "PresenceUnavailable", f"fleet: {newest}/3", "Set")
            await asyncio.sleep(1)
            assert events() == SERIES_KEPT + 10, "the repeat of a remembered one joins it"
            recorder.record("Warning", "PresenceUnavailable", "fleet: 0/3", "Set")
            await asyncio.sleep(1)
            assert events() == SERIES_KEPT + 11, "the least recently seen was forgotten"
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@virtual
async def test_a_failing_watch_backs_off_as_client_go_s_reflector_does() -> None:
    """A list refused (403) again and again: the attempts come after 0.8 s doubling to a 30 s
    cap, each stretched by up to 100% jitter, exactly the delays its back-off draws."""
    requests: list[tuple[float, str, str, int]] = []
    with tempfile.TemporaryDirectory() as folder:
        async with api(Path(folder)) as (sim, client):
            sim.denied.add(("list", "leases"))
            watch = ObjectWatch(
                client("pod-a", requests), "leases", VirtualClock(MONDAY_NOON),
                labels={"presence-controller/lease": "bot-presence"}, rng=random.Random(7),
            )  # fmt: skip
            task = asyncio.create_task(watch.run())
            await asyncio.sleep(200)
            attempts = [at for at, verb, _, code in requests if verb == "list"]
            # The API answers again (the elector's first good renewal says so): the watch,
            # maybe 30-60 s into a back-off, lists at once rather than stay blind that long.
            sim.denied.clear()
            healed = asyncio.get_running_loop().time()
            watch.retry_now()
            await asyncio.sleep(0.1)
            assert watch.listed and watch.error is None
            assert [at for at, verb, _, code in requests if verb == "list"][-1] == healed
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    twin, failed_at = Backoff(random.Random(7)), attempts[0]
    expected = [failed_at]
    while len(expected) < len(attempts):
        failed_at += twin.delay(failed_at)
        expected.append(failed_at)
    # Exact but for the fake clock's 1 us resolution, once per wait.
    assert attempts == pytest.approx(expected, abs=1e-5)
    assert len(attempts) >= 8 and max(gaps(attempts)) <= 60.0


@virtual
async def test_a_seen_reconnect_rewrites_the_desired_presence_in_the_same_instant() -> None:
    """Re-asserts 50 minutes apart: the session read that sees WORKING after STARTING (a
    reconnect, which may have shown the bot online or offline by itself) is followed by the
    write at the same instant, not at the next re-assert."""
    rare = {"reassert_available": 3000, "reassert_unavailable": 3000}
    lines = Lines("presence.actuator")
    async with world() as sim, running(sim, **rare) as run:
        await asyncio.sleep(20)
        assert sim.gateway.presence == "available"
        sim.gateway.session_state = "STARTING"
        await asyncio.sleep(40)
        assert run.actuator.state.session == "STARTING"
        sim.gateway.session_state = "WORKING"
        await asyncio.sleep(60)
    reads = [c for c in sim.gateway.calls if c.operation == "session"]
    seen = next(c.at for c in reads if c.at > 60.0)  # the first read after the reconnect
    writes = sets(sim, "available")
    assert writes == [2.0, seen], "one write at start, one in the instant the reconnect was seen"
    assert "gateway accepted: presence available (reconnect)" in lines.close(), "news: INFO"


@virtual
async def test_retry_after_zero_on_the_session_read_never_spins() -> None:
    """A gateway answering every session read 429 with Retry-After: 0: reads come no sooner
    than the 0.5 s retry floor, and no more than 20 in any 60 s (the read budget)."""
    async with world() as sim:
        sim.gateway.session_faults.extend(
            Fault(status=429, headers={"Retry-After": "0"}) for _ in range(10_000)
        )
        async with running(sim):
            await asyncio.sleep(150)
    reads = [c.at for c in sim.gateway.calls if c.operation == "session"]
    assert reads[:20] == [2.0 + 0.5 * i for i in range(20)], "every 0.5 s, from the first"
    assert reads[20] == 62.0, "then the budget: the 21st waits until the 1st is a minute old"
    assert min(gaps(reads)) >= 0.5
    assert all(sum(a <= t < a + 60 for t in reads) <= 20 for a in reads)


@virtual
async def test_a_flapping_signal_logs_a_summary_per_minute_not_a_line_per_tick() -> None:
    """Health alternating 200/500: at most 6 signal lines a minute, then one summary line per
    minute saying how many changes it did not log one by one."""
    lines = Lines("presence.controller", timed=True)
    async with world() as sim:
        sim.consumer.flap = True
        async with running(sim):
            await asyncio.sleep(200)
    logged = lines.close()
    signal = [(at, m) for at, m in logged if m.startswith(("bad tick", "good tick", "no longer"))]
    summaries = [(at, m) for at, m in logged if m.startswith("signal flapping")]
    assert len(sim.consumer.probed_at or ()) > 60, "a change at (nearly) every tick"
    assert 6 <= len(signal) <= 6 * 4
    for at, _ in signal:
        assert sum(at <= t < at + 60 for t, _ in signal) <= 6
    assert 2 <= len(summaries) <= 4
    assert all(b - a >= 60 for (a, _), (b, _) in itertools.pairwise(summaries))
    assert all("more changes not logged one by one" in m for _, m in summaries)


def played(
    demo: Callable[..., Coroutine[Any, Any, int]],
    steps: int,
    *lines: str,
    speed: float = 1.0,
    **options: Any,
) -> None:
    """Run a demo in virtual time: it exits 0, every one of its `steps` behaved as it says,
    and its output holds `lines`."""
    out = io.StringIO()
    assert in_virtual_time(demo(speed=speed, out=out, **options)) == 0, out.getvalue()
    text = out.getvalue()
    assert f"{steps}/{steps} steps behaved as expected" in text and "FAILED" not in text
    for line in lines:
        assert line in text, line


@pytest.mark.parametrize(
    ("provider", "set_call"),
    [
        ("wawp", "POST /v2/presence -> 429"),
        ("waha", "POST /api/sim-instance/presence -> 429"),
        ("evolution", "POST /instance/setPresence/sim-instance -> 429"),
    ],
)
def test_the_demo_at_its_own_speed_in_virtual_time(provider: str, set_call: str) -> None:
    """`presence-controller demo` at speed 1 (its real timings, about 40 s of scenario) against
    each simulated gateway: every step behaves as it says, in a fraction of a second."""
    played(
        run_demo,
        10,
        "lag spike",
        "flapping health",
        "no flip",
        set_call,
        "maintenance: DB migration (annotation presence-controller/maintenance 'true')",
        "SIGTERM",
        provider=provider,
    )


@pytest.mark.parametrize("provider", ["waha", "wawp", "evolution"])
def test_the_witness_demo_at_its_own_speed_in_virtual_time(provider: str) -> None:
    """`demo --witness`: during maintenance a reconnect marks the bot online; the witness sees
    it and has `unavailable` written within POLL (1 s), long before the next re-assert (a
    minute); Evolution's sights come through the admin server's webhook."""
    played(
        run_witness_demo,
        4,
        "the gateway reconnects",
        "contacts are shown available while unavailable is intended (first seen 0.0s ago): "
        "writing unavailable now",
        "ok: contacts see unavailable",
        provider=provider,
    )


def test_the_demo_runs_at_the_top_of_its_speed_range() -> None:
    """At speed 10 the demo's tick goes down to the minimum interval: its own settings must
    still be valid, and every step behave as it says."""
    played(run_demo, 10, speed=10.0)


def test_the_fleet_demo_at_its_own_speed_in_virtual_time() -> None:
    """`demo --fleet` at speed 1: three fleet-mode controllers (the real Kubernetes client
    against the fake API server), one gateway; every scene behaves as it says."""
    played(
        run_fleet_demo,
        8,
        "holds lease whatsapp-bot-presence",
        "fleet: 2/3 members available, 2 needed (MIN_AVAILABLE 50%)",
        "fleet: 1/3 members available",
        "maintenance: DB migration (deployment/whatsapp-bot annotation",
        "never anything else",
        "Events on deploy/whatsapp-bot: LeaderElected",
    )
