"""The witness in a running controller, against the simulated gateways' witness session (their
WhatsApp model says what a contact sees): each provider's path (WAHA and Wawp read, Evolution
posts webhooks), mismatch -> early write, calibration within bounds, a fighting gateway setting
named, failures that change nothing, the webhook receiver's refusals, and in fleet mode only the
leader's witness watching."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Running, running, until

from controller.config import Settings
from controller.core.types import Presence
from controller.core.witness import SETTLE
from controller.runtime.clock import VirtualClock
from controller.runtime.controller import Controller
from controller.sim.consumer import SimConsumer
from controller.sim.gateway import SimGateway
from controller.sim.harness import Simulation, gateway_values, wait_until, witness_values
from controller.sim.kube import SimKube
from controller.sim.kube_discovery import write_kubeconfig
from controller.sim.server import LoopbackServer
from controller.sim.whatsapp import PROFILES, WhatsApp
from controller.sim.witness import SimWitness
from controller.witness_check import check_witness

VIRTUAL_TIME = True
"""Minutes of witness reads take no wall time: the simulators run on the loop's clock."""
A, U = Presence.AVAILABLE, Presence.UNAVAILABLE
PROVIDERS = ("waha", "wawp", "evolution")
START = datetime(2026, 12, 7, 12, tzinfo=UTC)
"""The wall clock at loop time 0 (VirtualClock)."""


@asynccontextmanager
async def world(
    provider: str = "waha", profile: str = "baileys", **witness: Any
) -> AsyncIterator[Simulation]:
    loop = asyncio.get_running_loop()
    consumer = SimConsumer()
    gateway = SimGateway(provider=provider, profile=profile, clock=loop.time)
    gateway.witness = SimWitness(gateway, **witness)
    async with LoopbackServer(consumer.app()) as c, LoopbackServer(gateway.app()) as g:
        yield Simulation(consumer, c.url, gateway, g.url)


def settings(sim: Simulation, witness: dict[str, Any] | None = None, **values: Any) -> Settings:
    """Production defaults (but no jitter), pointed at the simulators, the witness on."""
    return Settings.from_values(
        health_url=f"{sim.consumer_url}/healthz",
        **{"listen": "127.0.0.1:0", "jitter": 0.0, **values},
        **gateway_values(sim.gateway, sim.gateway_url),
        **witness_values(sim.gateway, sim.gateway_url, **(witness or {})),
    )


@asynccontextmanager
async def watched(sim: Simulation, **values: Any) -> AsyncIterator[Running]:
    clock = VirtualClock(START)
    async with running(settings(sim, **values), clock=clock, rng=random.Random(1)) as run:
        assert sim.gateway.witness is not None
        port = run.admin.base_url.port
        sim.gateway.witness.webhook = f"http://127.0.0.1:{port}/witness/events"
        yield run


async def eventually(check: Callable[[], bool], within: float) -> None:
    """`until` for minutes of virtual time: looked at every second, not every 10 ms."""
    assert await wait_until(check, within, poll=1.0), "condition not reached in time"


def witness_status(run: Running) -> dict[str, Any]:
    document: dict[str, Any] = run.controller.status()["witness"]
    return document


def sets(sim: Simulation) -> list[tuple[float, str | None]]:
    return [(c.at, c.presence) for c in sim.gateway.sets()]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_each_providers_witness_sees_what_contacts_see(provider: str) -> None:
    async with world(provider) as sim, watched(sim) as run:
        await asyncio.sleep(80)
        status = witness_status(run)
        assert status["enabled"] and status["watching"] and status["error"] is None
        assert status["shown"] == "available" == sim.gateway.shown().value
        assert status["shown_available_ratio"] > 0.8
        assert await run.metric("presence_shown_state", {"state": "available"}) == 1
        witness = sim.gateway.witness
        assert witness is not None
        subscribes = [c for c in witness.calls if c.operation == "subscribe"]
        assert len(subscribes) == 2  # at 0 and at RESUBSCRIBE (45 s)
        if provider == "evolution":
            assert witness.pushed, "the witness's gateway posted what it saw"
        else:
            reads = [c for c in witness.calls if c.operation == "read"]
            assert 79 <= len(reads) <= 81  # every POLL (1 s)
        sim.consumer.health_status = 500
        await until(lambda: witness_status(run)["shown"] == "unavailable", within=60)
        assert run.controller.decision is not None and run.controller.decision.presence is U


async def rewritten(sim: Simulation) -> None:
    """Until the next write of ours (a re-assert): the next comes REASSERT_UNAVAILABLE later."""
    count = len(sim.gateway.sets())
    await until(lambda: len(sim.gateway.sets()) > count, within=70)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_gateway_marking_the_bot_online_is_caught_and_corrected(provider: str) -> None:
    """`ideal` holds what was written: the gateway's own `available` (a reconnect's markOnline)
    would show until the next re-assert a minute later; the witness has it written over within
    POLL (the default grace is 0: at first sight)."""
    async with world(provider, "ideal") as sim, watched(sim) as run:
        sim.consumer.health_status = 500
        await until(lambda: sim.gateway.presence == "unavailable", within=60)
        await until(lambda: witness_status(run)["shown"] == "unavailable", within=30)
        await rewritten(sim)
        marked = asyncio.get_running_loop().time()
        sim.gateway.whatsapp.write(A)  # the gateway, not us
        await until(lambda: sim.gateway.shown() is U, within=20)
        corrected = asyncio.get_running_loop().time() - marked
        # At first sight (POLL 1 s, grace 0), but not within SETTLE (2 s) of our own write,
        # which came just before the gateway's: then the call.
        assert corrected <= SETTLE + 1, corrected
        assert sets(sim)[-1][1] == "unavailable"
        assert await run.metric("presence_witness_actions_total", {"reason": "false_online"}) == 1
        assert witness_status(run)["actions"] == {"false_online": 1}
        lines = [e for e in run.log_events() if e.get("event") == "witness_action"]
        assert len(lines) == 1 and "writing unavailable now" in lines[0]["msg"]
        # Seen from the read that saw it to the read that saw it gone: the settle and a POLL.
        await until(lambda: witness_status(run)["shown"] == "unavailable", within=10)
        seen = await run.metric("presence_witness_false_online_seconds_total")
        assert seen is not None and 0 < seen <= SETTLE + 1.0


async def test_act_off_sees_the_lie_and_leaves_it_to_the_re_assert() -> None:
    async with world("waha", "ideal") as sim, watched(sim, witness={"act": False}) as run:
        sim.consumer.health_status = 500
        await until(lambda: witness_status(run)["shown"] == "unavailable", within=60)
        await rewritten(sim)
        sim.gateway.whatsapp.write(A)
        await asyncio.sleep(20)
        assert (
            sim.gateway.shown() is A and witness_status(run)["mismatch"]["kind"] == "false_online"
        )
        assert witness_status(run)["actions"] == {}


async def test_calibration_follows_a_decay_longer_than_the_default_assumes() -> None:
    """A 30 s decay, REASSERT_AVAILABLE 60 s: the measured decay (seen gone at 30-35 s after a
    write) sets the period to 0.7 x its 10th percentile, about 21-25 s."""
    long = replace(PROFILES["baileys"], name="baileys-30s", decay=30.0)
    async with world("waha") as sim:
        sim.gateway.whatsapp = WhatsApp(long, clock=asyncio.get_running_loop().time)
        async with watched(sim, reassert_available=60, witness={"calibrate": True}) as run:
            await eventually(lambda: witness_status(run)["decay_seconds"]["samples"] >= 3, 600)
            status = witness_status(run)
            p10 = status["decay_seconds"]["p10"]
            assert 30 <= p10 <= 36
            period = status["effective_reassert_available"]
            assert period == pytest.approx(0.7 * p10)
            assert run.controller.actuator.cfg.reassert_available == period
            metric = await run.metric("presence_witness_effective_reassert_available_seconds")
            assert metric == period
            assert await run.metric("presence_witness_decay_seconds_count") >= 3
            # From here on the bot stays shown: the period is below the decay.
            await asyncio.sleep(120)
            before = witness_status(run)["decay_seconds"]["samples"]
            await asyncio.sleep(120)
            assert witness_status(run)["decay_seconds"]["samples"] == before


async def test_calibration_never_goes_below_five_seconds() -> None:
    short = replace(PROFILES["baileys"], name="baileys-2s", decay=2.0)
    async with world("waha") as sim:
        sim.gateway.whatsapp = WhatsApp(short, clock=asyncio.get_running_loop().time)
        settings = {"reassert_available": 60, "witness": {"calibrate": True, "poll": 1}}
        async with watched(sim, **settings) as run:
            await eventually(lambda: witness_status(run)["decay_seconds"]["samples"] >= 3, 600)
            assert witness_status(run)["effective_reassert_available"] == 5.0


async def test_an_always_online_gateway_is_named() -> None:
    async with world("evolution", "evolution-always-online") as sim, watched(sim) as run:
        sim.consumer.health_status = 500
        await eventually(lambda: witness_status(run)["fight"] is not None, within=1800)
        fight = witness_status(run)["fight"]
        assert fight["pattern"] == "periodic" and "alwaysOnline" in fight["message"]
        assert await run.metric("presence_witness_fighting") == 1
        lines = [e for e in run.log_events() if e.get("event") == "witness_fight"]
        assert len(lines) == 1 and "alwaysOnline" in lines[0]["msg"]
        assert run.controller.decision is not None and run.controller.decision.presence is U


def decisions(run: Running) -> list[tuple[str, str, str]]:
    return [(t["from"], t["to"], t["reason"]) for t in run.controller.status()["transitions"]]


async def script(sim: Simulation) -> None:
    """Healthy, then a 40 s outage, then healthy again."""
    await asyncio.sleep(30)
    sim.consumer.health_status = 500
    await asyncio.sleep(40)
    sim.consumer.health_status = 200
    await asyncio.sleep(80)


FAILURES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "privacy hides the bot": ({"visible": False}, {}, "hidden"),
    "wrong witness credential": ({}, {"api_key": "not-the-witness-key"}, "not_subscribed"),
    "witness gateway down": ({}, {"base_url": "http://127.0.0.1:9"}, "not_subscribed"),
}


@pytest.mark.parametrize("case", FAILURES)
async def test_a_failing_witness_changes_nothing_else(case: str) -> None:
    """The same consumer script with and without a witness: the same decisions at the same
    instants, the same writes; the failing witness is reported, never acts."""
    sim_args, witness, reason = FAILURES[case]
    async with world("waha", **sim_args) as sim, watched(sim, witness={"enabled": False}) as run:
        await script(sim)
        blind_decisions, blind_sets = decisions(run), sets(sim)
    async with world("waha", **sim_args) as sim, watched(sim, witness=witness) as run:
        await script(sim)
        assert decisions(run) == blind_decisions
        assert [p for _, p in sets(sim)] == [p for _, p in blind_sets]
        status = witness_status(run)
        assert status["actions"] == {}
        assert status["error"]["reason"] == reason and status["shown"] == "unknown"
        assert await run.metric("presence_witness_errors_total", {"reason": reason}) >= 1
        assert "secret" not in str(status) and "not-the-witness-key" not in str(status)


async def test_a_lapsed_subscription_misleads_the_witness_but_never_the_decision() -> None:
    """RESUBSCRIBE longer than the subscription lasts: the witness reads a stale view. It may
    then write early, but only ever the desired presence, and the decisions do not change."""
    async with world("waha") as sim, watched(sim, witness={"enabled": False}) as run:
        await script(sim)
        blind = decisions(run)
    async with world("waha", lifetime=5.0) as sim, watched(sim, witness={"resubscribe": 60}) as run:
        await script(sim)
        assert decisions(run) == blind
        changes = sorted(
            ((datetime.fromisoformat(t["at"]) - START).total_seconds(), t["to"])
            for t in run.controller.status()["transitions"]
        )

        def decided(t: float) -> str | None:
            before = [to for at, to in changes if at <= t]
            return before[-1] if before else None

        for call in sim.gateway.sets():
            # The decision in force as the call started (one taken in the same instant may
            # follow it).
            then = {decided(call.at), decided(call.at - 0.001)}
            assert call.presence in then, (call.at, call.presence, changes)


class Broken:
    """A witness client with a bug: every call raises something unexpected."""

    provider, pushes = "waha", False

    async def subscribe(self) -> None:
        raise RuntimeError("a bug in the witness client")

    async def read(self, at: float) -> Any:
        raise RuntimeError("a bug in the witness client")

    async def aclose(self) -> None:
        pass


async def test_a_bug_in_the_witness_is_logged_once_and_changes_nothing() -> None:
    async with world("waha") as sim, watched(sim, witness={"enabled": False}) as run:
        await script(sim)
        blind = decisions(run)
    async with world("waha") as sim:
        clock = VirtualClock(START)
        args = {"controller_class": WithABug, "clock": clock, "rng": random.Random(1)}
        async with running(settings(sim), **args) as run:
            await script(sim)
            assert decisions(run) == blind
            bugs = [e for e in run.log_events() if e["msg"].startswith("witness step failed")]
            assert len(bugs) == 1, bugs
            assert witness_status(run)["actions"] == {}


class WithABug(Controller):
    """A controller whose witness client has a bug."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.witness is not None
        self.witness.reader = Broken()


# Evolution's webhooks (POST /witness/events).


def event(instance: str = "witness", presence: str = "available") -> dict[str, Any]:
    jid = "15550000000@s.whatsapp.net"
    return {"event": "presence.update", "instance": instance,
            "data": {"id": jid, "presences": {jid: {"lastKnownPresence": presence}}}}  # fmt: skip


async def test_the_webhook_receiver_refuses_what_it_must() -> None:
    async with world("evolution") as sim, watched(sim) as run:
        good = {"X-Witness-Token": "sim-witness-webhook-secret"}
        post = run.admin.post
        assert (await post("/witness/events", json=event())).status_code == 401
        wrong = {"X-Witness-Token": "sim-witness-webhook-secreX"}
        assert (await post("/witness/events", json=event(), headers=wrong)).status_code == 401
        huge = b'{"pad": "' + b"x" * 70_000 + b'"}'
        assert (await post("/witness/events", content=huge, headers=good)).status_code == 413

        async def endless() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b"x" * 1024

        chunked = await post("/witness/events", content=endless(), headers=good)
        assert chunked.status_code == 413
        other = await post("/witness/events", json=event("another"), headers=good)
        assert other.status_code == 403
        garbage = await post("/witness/events", content=b"{not json", headers=good)
        assert garbage.status_code == 400
        message = {**event(), "event": "messages.upsert"}
        assert (await post("/witness/events", json=message, headers=good)).status_code == 202
        assert (await run.admin.get("/witness/events")).status_code == 405
        assert (await post("/witness/events", json=event(), headers=good)).status_code == 200
        assert await run.metric("presence_witness_errors_total", {"reason": "webhook"}) == 6
        refusals = [e for e in run.log_events() if e.get("event") == "witness_webhook"]
        assert len(refusals) == 4  # one line per kind of refusal, not per request
        assert all("sim-witness-webhook-secret" not in str(e) for e in run.log_events())


async def test_no_webhook_without_an_evolution_witness() -> None:
    async with world("waha") as sim, watched(sim) as run:
        reply = await run.admin.post("/witness/events", json=event())
        assert reply.status_code == 404
    async with world("waha") as sim, watched(sim, witness={"enabled": False}) as run:
        assert (await run.admin.post("/witness/events", json=event())).status_code == 404
        assert run.controller.status()["witness"] == {"enabled": False}
        assert await run.metric("presence_witness_errors_total", {"reason": "hidden"}) is None


# Fleet mode.


async def test_in_fleet_mode_only_the_leaders_witness_watches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["pod-a", "pod-b"]
    fake = SimKube(tokens={f"token-{n}": n for n in names})
    fake.workload("shop", "whatsapp-bot", names)
    async with LoopbackServer(fake.app()) as api, world("waha") as sim:
        config = write_kubeconfig(tmp_path / "kubeconfig", api.url, "token-pod-a", "shop")
        monkeypatch.setenv("KUBECONFIG", str(config))
        runs: dict[str, Running] = {}
        async with AsyncExitStack() as stack:
            for name in names:
                kube = {"enabled": True, "namespace": "shop", "pod_name": name,
                        "workload": "deployment/whatsapp-bot", "heartbeat": 0.5}  # fmt: skip
                runs[name] = await stack.enter_async_context(watched(sim, kube=kube))

            def watching() -> list[str]:
                return [n for n, r in runs.items() if witness_status(r)["watching"]]

            await until(lambda: len(watching()) == 1 and sim.gateway.presence is not None, 60)
            await asyncio.sleep(30)
            assert len(watching()) == 1
            (leader,) = watching()
            assert runs[leader].controller.fleet is not None
            assert runs[leader].controller.fleet.leading()
            follower = next(n for n in names if n != leader)
            status = witness_status(runs[follower])
            assert status["note"].startswith("not the leader") and status["shown"] == "unknown"
            assert sim.gateway.witness is not None
            reads = [c for c in sim.gateway.witness.calls if c.operation == "read"]
            recent = [c for c in reads if c.at >= reads[-1].at - 30]
            assert len(recent) <= 31  # one witness reads every second, not two


# check-gateway --witness: one calibration run.


async def calibration(sim: Simulation, **values: Any) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = await check_witness(settings(sim, **values), say=lines.append)
    return code, lines


async def test_a_calibration_run_measures_and_suggests() -> None:
    async with world("waha") as sim:
        code, lines = await calibration(sim)
    text = "\n".join(lines)
    assert code == 0, text
    assert "available written: the witness saw it after 0.0s" in text
    faded = next(line for line in lines if "faded after" in line)
    decay = float(faded.split("faded after ")[1].split("s")[0])
    assert 10.0 <= decay <= 11.5, faded  # the model's 10 s, seen within a 1 s poll
    assert f"PRESENCE_REASSERT_AVAILABLE={max(5, round(0.7 * decay))}s" in text
    assert "the witness costs 61.3 calls a minute at POLL 1s" in text
    assert sim.gateway.presence == "unavailable"  # it ends on unavailable


async def test_a_calibration_through_evolution_webhooks() -> None:
    async with world("evolution") as sim:
        port = free_port()
        assert sim.gateway.witness is not None
        sim.gateway.witness.webhook = f"http://127.0.0.1:{port}/witness/events"
        code, lines = await calibration(sim, listen=f"127.0.0.1:{port}")
    assert code == 0, lines
    assert any("faded after 1" in line for line in lines), lines


async def test_a_witness_that_cannot_see_the_bot_says_why() -> None:
    async with world("waha", visible=False) as sim:
        code, lines = await calibration(sim)
        assert sim.gateway.presence == "unavailable"
    assert code == 1
    text = "\n".join(lines)
    for reason in ("privacy", "no prior chat", "a second linked device"):
        assert reason in text, text


async def test_writes_that_show_nothing_are_named() -> None:
    async with world("waha", "silent") as sim:
        code, lines = await calibration(sim)
    assert code == 1 and any("push name" in line for line in lines), lines


async def test_the_calibration_needs_a_witness() -> None:
    async with world("waha") as sim:
        code, lines = await calibration(sim, witness={"enabled": False})
    assert code == 1 and "PRESENCE_WITNESS__ENABLED=true" in lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
