"""Fleet mode against the fake API server on loopback, through the real client library."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Running, Sim, running, until
from manifests import K8S, OVERLAY, render

from controller.core.election import ElectionConfig
from controller.kube.client import KubeClient
from controller.kube.elector import LeaderElector
from controller.kube.wire import micro_time
from controller.runtime.clock import SYSTEM
from controller.runtime.controller import Controller
from controller.sim.consumer import SimConsumer
from controller.sim.gateway import GatewayCall
from controller.sim.kube import SimKube
from controller.sim.kube_discovery import write_kubeconfig
from controller.sim.server import LoopbackServer

VIRTUAL_TIME = True
"""The async tests of this module, their fixtures and the controllers they run wait in virtual
time (conftest.pytest_asyncio_loop_factories; docs/architecture.md, "Time")."""
FAST = {"lease_duration": 1.5, "renew_deadline": 1.0, "retry_period": 0.2}
FAST_KUBE = {**FAST, "heartbeat": 0.5}
"""A controller's fleet settings at test speed: a new leader's view of the fleet is complete
after one heartbeat window (3 x HEARTBEAT)."""
NAMES = ["pod-a", "pod-b", "pod-c"]


def kubeconfig(tmp_path: Path, server: str, token: str) -> Path:
    return write_kubeconfig(tmp_path / f"kubeconfig-{token}", server, token, "shop")


@pytest.fixture
async def kube() -> AsyncIterator[tuple[SimKube, str]]:
    """The fake API server, holding what a cluster holds for the bot: its Deployment, a
    ReplicaSet and the pods NAMES (tests replace the Deployment to annotate it)."""
    sim = SimKube(tokens={f"token-{n}": n for n in NAMES})
    sim.workload("shop", "whatsapp-bot", NAMES)
    async with LoopbackServer(sim.app()) as server:
        yield sim, server.url


def lease_spec(sim: SimKube, name: str = "bot-presence") -> dict[str, Any]:
    """The spec of a Lease in the fake (the test fails if it does not exist)."""
    lease = sim.get("leases", "shop", name)
    assert lease is not None, f"no lease {name}"
    spec: dict[str, Any] = lease["spec"]
    return spec


class Fleet:
    def __init__(
        self, sim: SimKube, url: str, tmp_path: Path, timing: dict[str, float] = FAST
    ) -> None:
        self.sim = sim
        self.changes: list[tuple[float, str, bool]] = []
        self.electors: dict[str, LeaderElector] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.clients: list[KubeClient] = []
        for name in NAMES:
            client = KubeClient("shop", 0.5, kubeconfig(tmp_path, url, f"token-{name}"))
            self.clients.append(client)

            def changed(leading: bool, name: str = name) -> None:
                self.changes.append((asyncio.get_running_loop().time(), name, leading))

            self.electors[name] = LeaderElector(
                client, "bot-presence", ElectionConfig(name, **timing), on_change=changed
            )

    async def __aenter__(self) -> Fleet:
        for name, elector in self.electors.items():
            self.tasks[name] = asyncio.create_task(elector.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def leaders(self) -> list[str]:
        return [n for n, e in self.electors.items() if e.leading()]

    async def stop(self, name: str) -> None:
        self.tasks[name].cancel()
        await asyncio.gather(self.tasks[name], return_exceptions=True)

    async def close(self) -> None:
        for name in list(self.tasks):
            await self.stop(name)
        for client in self.clients:
            await client.aclose()

    def overlaps(self) -> list[tuple[float, list[str]]]:
        """Instants where two replicas both considered themselves leader."""
        acting: set[str] = set()
        out = []
        for at, name, leading in sorted(self.changes):
            (acting.add if leading else acting.discard)(name)
            if len(acting) > 1:
                out.append((at, sorted(acting)))
        return out


async def test_one_leader_is_elected_and_renews(kube: tuple[SimKube, str], tmp_path: Path) -> None:
    sim, url = kube
    async with Fleet(sim, url, tmp_path) as fleet:
        await until(lambda: len(fleet.leaders()) == 1)
        leader = fleet.leaders()[0]
        assert lease_spec(sim)["holderIdentity"] == leader
        renewed = lease_spec(sim)["renewTime"]
        await until(lambda: lease_spec(sim)["renewTime"] != renewed)
        assert fleet.leaders() == [leader] and fleet.overlaps() == []
        others = [e for n, e in fleet.electors.items() if n != leader]
        await until(lambda: all(e.leader() == leader for e in others))  # after their next read


async def test_a_released_lease_is_taken_within_a_retry_period(
    kube: tuple[SimKube, str], tmp_path: Path
) -> None:
    sim, url = kube
    # A long lease, so that taking a released lease (next try: ~0.2-0.44 s) and waiting out an
    # expired one (>= 6 s) cannot be confused, however loaded the machine.
    slow_expiry = {"lease_duration": 6.0, "renew_deadline": 2.0, "retry_period": 0.2}
    async with Fleet(sim, url, tmp_path, slow_expiry) as fleet:
        await until(lambda: len(fleet.leaders()) == 1)
        old = fleet.leaders()[0]
        await fleet.stop(old)
        released = asyncio.get_running_loop().time()
        await fleet.electors[old].release()
        assert not fleet.electors[old].leading()
        assert lease_spec(sim)["holderIdentity"] in {"", *NAMES}
        await until(lambda: len([n for n in fleet.leaders() if n != old]) == 1)
        took = asyncio.get_running_loop().time() - released
        # A successor takes a released lease at its next try, not after the lease duration.
        assert took < slow_expiry["lease_duration"], took
        assert lease_spec(sim)["leaseTransitions"] == 1
        assert fleet.overlaps() == []


def test_micro_time_always_has_six_digits() -> None:
    from datetime import UTC, datetime

    assert micro_time(datetime(2026, 5, 1, 12, tzinfo=UTC)) == "2026-05-01T12:00:00.000000Z"


# Whole controllers: three replicas, one gateway.


async def test_three_replicas_one_writer_and_a_handover_on_shutdown(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = kube
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, url, "token-pod-a")))
    controllers: dict[str, Controller] = {}
    writers: list[list[str]] = []

    def leaders() -> list[str]:
        return [n for n, c in controllers.items() if c.fleet is not None and c.fleet.leading()]

    writer_agents: list[tuple[list[str], str]] = []

    def record(call: GatewayCall) -> None:
        if call.operation == "set":
            writers.append(leaders())
            writer_agents.append((leaders(), call.agent))

    sim.gateway.on_call = record
    stops = {name: asyncio.Event() for name in NAMES}
    async with AsyncExitStack() as stack:
        runs = {}
        for name in NAMES:
            settings = sim.settings(
                kube={
                    "enabled": True,
                    "namespace": "shop",
                    "pod_name": name,
                    "workload": "deployment/whatsapp-bot",
                    **FAST_KUBE,
                }
            )
            runs[name] = await stack.enter_async_context(running(settings, stops[name]))
            controllers[name] = runs[name].controller
        await until(lambda: len(leaders()) == 1 and sim.gateway.presence == "available")
        first = leaders()[0]
        status = await runs[first].status()
        assert status["fleet"]["is_leader"] and status["fleet"]["lease"] == "whatsapp-bot-presence"
        lease = fake.get("leases", "shop", "whatsapp-bot-presence")
        assert lease is not None and lease["spec"]["holderIdentity"] == first
        follower = next(n for n in NAMES if n != first)
        await until(lambda: controllers[follower].fleet.status()["leader"] == first)  # type: ignore[union-attr]
        assert (await runs[follower].metric("presence_leader")) == 0
        assert (await runs[first].metric("presence_leader")) == 1
        # The leader shuts down: it releases the Lease, a follower leads and writes at once.
        before = len(sim.gateway.sets())
        stops[first].set()
        await until(lambda: len([n for n in leaders() if n != first]) == 1)
        successor = leaders()[0]
        await until(lambda: controllers[successor].actuator.last_success is not None)
        assert len(sim.gateway.sets()) > before
        assert sim.gateway.presence == "available"
    assert writers, "the gateway saw set calls"
    assert all(len(w) <= 1 for w in writers), "never two leaders while a set call arrived"
    # Each call names its replica: it came from the one leading when it arrived (or from a
    # replica whose lease lapsed that instant, which the leader list then shows empty).
    for leading, agent in writer_agents:
        assert agent.startswith("presence-controller (pod-"), agent
        assert not leading or agent == f"presence-controller ({leading[0]})", (leading, agent)


async def test_a_killed_leader_is_replaced_after_the_lease_expires(
    kube: tuple[SimKube, str], tmp_path: Path
) -> None:
    """No release (SIGKILL): the others wait out the lease duration from when they last saw it
    change, then one takes over; never two at once."""
    sim, url = kube
    async with Fleet(sim, url, tmp_path) as fleet:
        await until(lambda: len(fleet.leaders()) == 1)
        old = fleet.leaders()[0]
        await fleet.stop(old)  # its loop ends; the Lease keeps naming it
        await until(lambda: any(e.leading() for n, e in fleet.electors.items() if n != old))
        holder = lease_spec(sim)["holderIdentity"]
        assert holder != old
        # The killed replica could not have acted past its renew deadline: the successor
        # started after that (its own on_change never fired: it was killed).
        took_over = min(at for at, n, leading in fleet.changes if n != old and leading)
        last_renewal = fleet.electors[old].state.renewed_at
        assert last_renewal is not None and took_over >= last_renewal + FAST["renew_deadline"]
        # And only once the lease expired: the successor timed it from when it saw that last
        # renewal, which was no earlier than when the renewal was sent.
        assert took_over >= last_renewal + FAST["lease_duration"]


async def test_a_fleet_cut_off_from_the_api_stops_writing_and_recovers(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = kube
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, url, "token-pod-a")))
    settings = sim.settings(
        reassert_available=0.2,
        kube={"enabled": True, "namespace": "shop", "pod_name": "pod-a", "workload": "none",
              "lease_name": "bot", **FAST_KUBE},
    )  # fmt: skip
    async with running(settings) as run:
        await until(lambda: run.controller.fleet is not None and run.controller.fleet.leading())
        await until(lambda: sim.gateway.presence == "available")
        fake.partitioned.add("pod-a")  # every request now hangs until its timeout
        await until(lambda: not run.controller.fleet.leading())  # type: ignore[union-attr]
        await until(lambda: run.controller.fleet.status()["error"] is not None)  # type: ignore[union-attr]
        calls = len(sim.gateway.sets())
        await until(lambda: run.controller.ticks > 0 and run.controller.healthy())
        status = await run.status()
        assert status["fleet"]["is_leader"] is False and "unreachable" in status["fleet"]["error"]
        assert (await run.metric("presence_leader")) == 0
        assert run.controller.actuator.next_action.startswith("wait: not the leader")
        assert len(sim.gateway.sets()) <= calls + 1, "at most a call already in flight"
        fake.partitioned.discard("pod-a")
        await until(lambda: run.controller.fleet.leading())  # type: ignore[union-attr]
        await until(lambda: len(sim.gateway.sets()) > calls + 1)
        await until(lambda: run.controller.fleet.status()["error"] is None)  # type: ignore[union-attr]


# The fleet verdict: three replicas, each with its own consumer, one gateway.


@asynccontextmanager
async def three_replicas(
    sim: Sim,
    url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    down: tuple[str, ...] = (),
    settings: dict[str, Any] | None = None,
    **kube: Any,
) -> AsyncIterator[tuple[dict[str, Running], dict[str, SimConsumer], dict[str, asyncio.Event]]]:
    """Three replicas (one client identity, "pod-a", at the fake), each with its own consumer;
    those in `down` answer 503 from the start."""
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, url, "token-pod-a")))
    runs: dict[str, Running] = {}
    consumers: dict[str, SimConsumer] = {}
    stops = {name: asyncio.Event() for name in NAMES}
    async with AsyncExitStack() as stack:
        for name in NAMES:
            consumers[name] = SimConsumer()
            if name in down:
                consumers[name].health_status = 503
            server = await stack.enter_async_context(LoopbackServer(consumers[name].app()))
            values = sim.settings(
                health_url=f"{server.url}/healthz",
                metrics_url=f"{server.url}/metrics",
                # Probes that stay healthy on a loaded machine: these tests judge the fleet,
                # and a 40 ms probe timeout would make healthy members look unhealthy.
                interval=0.3,
                timeout=0.25,
                **(settings or {}),
                kube={
                    "enabled": True, "namespace": "shop", "pod_name": name,
                    "workload": "deployment/whatsapp-bot", **FAST_KUBE, **kube,
                },
            )  # fmt: skip
            runs[name] = await stack.enter_async_context(running(values, stops[name]))
        yield runs, consumers, stops


def leader_of(runs: dict[str, Running]) -> Running | None:
    leading = [r for r in runs.values() if r.controller.fleet and r.controller.fleet.leading()]
    return leading[0] if len(leading) == 1 else None


async def test_the_leader_decides_from_the_fleet(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = kube
    async with three_replicas(sim, url, tmp_path, monkeypatch) as (runs, consumers, _):
        await until(lambda: sim.gateway.presence == "available" and leader_of(runs) is not None)

        def fleet_reason() -> str:
            run = leader_of(runs)
            return run.controller.decision.reason if run and run.controller.decision else ""

        await until(lambda: fleet_reason().startswith("fleet: 3/3 members available"))
        heartbeat = fake.get("leases", "shop", "whatsapp-bot-presence-pod-b")
        assert heartbeat is not None
        assert heartbeat["metadata"]["labels"] == {
            "presence-controller/lease": "whatsapp-bot-presence"
        }
        assert heartbeat["metadata"]["annotations"]["presence-controller/verdict"] == "available"
        # One consumer dies: 2/3 >= 50% (2 needed), still available.
        consumers["pod-a"].health_status = 503
        await until(lambda: fleet_reason().startswith("fleet: 2/3 members available, 2 needed"))
        assert sim.gateway.presence == "available"
        # A second dies: 1/3, unavailable, and the reason names who is down.
        consumers["pod-b"].health_status = 503
        await until(lambda: sim.gateway.presence == "unavailable")
        reason = fleet_reason()
        assert reason.startswith("fleet: 1/3 members available, 2 needed (MIN_AVAILABLE 50%): ")
        assert "pod-a unavailable" in reason and "pod-b unavailable" in reason
        status = await next(iter(runs.values())).status()
        assert {m["pod"] for m in status["fleet"]["members"]} == set(NAMES)
        assert all(m["fresh"] for m in status["fleet"]["members"])
        any_run = runs["pod-c"]
        await until(lambda: any_run.controller.metrics.registry.get_sample_value(
            "presence_fleet_members", {"verdict": "unavailable"}) == 2)  # fmt: skip
        assert await any_run.metric("presence_fleet_members", {"verdict": "available"}) == 1
        # They recover: back to available.
        consumers["pod-a"].health_status = consumers["pod-b"].health_status = 200
        await until(lambda: sim.gateway.presence == "available")


async def test_a_rolling_shutdown_never_shows_the_bot_offline_until_the_last_one(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = kube
    async with three_replicas(sim, url, tmp_path, monkeypatch, min_available="1") as (
        runs,
        _,
        stops,
    ):
        await until(lambda: sim.gateway.presence == "available" and leader_of(runs) is not None)
        await until(lambda: all(len(r.controller.fleet.members()) == 3 for r in runs.values()))  # type: ignore[union-attr]
        order = sorted(NAMES, key=lambda n: runs[n] is not leader_of(runs))  # leader first

        def says(name: str) -> str | None:
            beat = fake.get("leases", "shop", f"whatsapp-bot-presence-{name}")
            return beat["metadata"]["annotations"]["presence-controller/verdict"] if beat else None

        for index, name in enumerate(order):
            stops[name].set()
            await until(lambda name=name: says(name) == "stopping")  # type: ignore[misc]
            left = order[index + 1 :]
            if left:
                await until(lambda left=left: leader_of({n: runs[n] for n in left}) is not None)  # type: ignore[misc]
                successor = leader_of({n: runs[n] for n in left})
                await until(lambda s=successor: s.controller.actuator.last_success is not None)  # type: ignore[misc,union-attr]
                offline = [c for c in sim.gateway.sets() if c.presence == "unavailable"]
                assert offline == [], f"offline after {name} stopped, with {left} still up"
        await until(lambda: sim.gateway.presence == "unavailable")  # the last one out


# Maintenance on the workload and the namespace.


def deployment(name: str = "whatsapp-bot", **annotations: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name}
    return {
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "bot", "image": "bot:1"}]},
            },
        },
    }


async def test_maintenance_on_the_deployment_reaches_every_replica_and_survives_a_restart(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = kube
    fake.put("deployments", deployment())
    fake.put("namespaces", {"metadata": {"name": "shop"}})
    async with three_replicas(sim, url, tmp_path, monkeypatch, watch_namespace=True) as (
        runs,
        _,
        stops,
    ):
        await until(lambda: sim.gateway.presence == "available" and leader_of(runs) is not None)

        def maintained(run: Running) -> bool:
            evaluation = run.controller.sources.evaluation
            return evaluation is not None and evaluation.maintenance.active

        fake.annotate(
            "deployments", "shop", "whatsapp-bot",
            **{"presence-controller/maintenance": "true",
               "presence-controller/maintenance-reason": "DB migration"},
        )  # fmt: skip
        await until(lambda: all(maintained(r) for r in runs.values()))
        await until(lambda: sim.gateway.presence == "unavailable")
        status = await runs["pod-b"].status()
        assert status["maintenance"]["source"] == "deployment/whatsapp-bot"
        reason = status["presence"]["reason"]
        assert reason.startswith("maintenance: DB migration (deployment/whatsapp-bot annotation")
        # A replica restarted during the maintenance starts in it: the Deployment keeps it.
        stops["pod-c"].set()
        settings = runs["pod-c"].controller.settings
        async with running(settings) as restarted:
            await until(lambda: maintained(restarted))
        # Removed: maintenance ends everywhere (pod-c is gone; the others).
        ended: dict[str, str | None] = {
            "presence-controller/maintenance": None,
            "presence-controller/maintenance-reason": None,
        }
        fake.annotate("deployments", "shop", "whatsapp-bot", **ended)
        await until(lambda: not maintained(runs["pod-a"]) and not maintained(runs["pod-b"]))
        await until(lambda: sim.gateway.presence == "available")
        # The namespace, with WATCH_NAMESPACE: an invalid value fails closed, named.
        fake.annotate("namespaces", "", "shop", **{"presence-controller/maintenance": "someday"})
        await until(lambda: sim.gateway.presence == "unavailable")
        status = await runs["pod-a"].status()
        assert status["maintenance"]["source"] == "namespace/shop"
        assert (
            "namespace/shop: invalid annotation presence-controller/maintenance"
            in (status["presence"]["reason"])
        )
        assert await runs["pod-a"].metric("presence_annotation_invalid") == 1


async def test_an_unreadable_workload_is_reported_and_nothing_crashes(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = kube
    fake.put("deployments", deployment())
    fake.garbled.add("deployments")  # every read of it answers a proxy's HTML page
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, url, "token-pod-a")))
    settings = sim.settings(
        kube={"enabled": True, "namespace": "shop", "pod_name": "pod-a",
              "workload": "deployment/whatsapp-bot", **FAST_KUBE},
    )  # fmt: skip
    async with running(settings) as run:
        await until(lambda: sim.gateway.presence == "available")  # the leader still acts
        fleet = run.controller.fleet
        assert fleet is not None
        await until(lambda: "unreadable reply" in (fleet.status()["error"] or ""))
        status = await run.status()
        assert "watch of deployment/whatsapp-bot: " in status["fleet"]["error"]
        assert status["maintenance"]["active"] is False, "no last good value: no maintenance"
        ticks = run.controller.ticks
        await until(lambda: run.controller.ticks > ticks + 3)  # the loop goes on
        # Repaired: read, and the error clears.
        fake.put("deployments", deployment(**{"presence-controller/maintenance": "true"}))
        fake.garbled.clear()
        await until(lambda: sim.gateway.presence == "unavailable", within=40)
        assert fleet.status()["error"] is None


# Events.


async def test_the_leader_emits_events_regarding_the_deployment_as_series(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = kube
    uid = fake.put("deployments", deployment())["metadata"]["uid"]
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, url, "token-pod-a")))
    settings = sim.settings(
        kube={"enabled": True, "namespace": "shop", "pod_name": "pod-a",
              "workload": "deployment/whatsapp-bot", **FAST_KUBE},
    )  # fmt: skip

    def events(reason: str | None = None) -> list[dict[str, Any]]:
        return [
            e for (plural, _, _), e in fake.objects.items()
            if plural == "events" and (reason is None or e["reason"] == reason)
        ]  # fmt: skip

    async with running(settings) as run:
        assert run.controller.fleet is not None
        await until(
            lambda: len(events("PresenceAvailable")) == 1 and len(events("LeaderElected")) == 1
        )
        first = events("PresenceAvailable")[0]
        assert first["type"] == "Normal" and first["action"] == "SetPresence"
        assert first["reportingController"] == "presence-controller"
        assert first["reportingInstance"] == "pod-a"
        assert first["regarding"] == {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "whatsapp-bot",
            "namespace": "shop", "uid": uid,
        }  # fmt: skip
        assert first["metadata"]["name"].startswith("whatsapp-bot.")
        assert first["note"].startswith("fleet: 1/1 members available")
        # A flapping consumer: many transitions, one Event per reason whose series counts them.
        recorder = run.controller.fleet.recorder
        assert recorder is not None
        recorder.flush = 0.2
        for _ in range(3):
            sim.consumer.health_status = 503
            await until(lambda: sim.gateway.presence == "unavailable")
            sim.consumer.health_status = 200
            await until(lambda: sim.gateway.presence == "available")
        downs = events("PresenceUnavailable")
        assert len(downs) == 1, "a series, not a storm"
        assert downs[0]["type"] == "Warning"
        await until(lambda: (events("PresenceAvailable")[0].get("series") or {}).get("count") == 4)
        series = events("PresenceAvailable")[0]["series"]
        assert len(series["lastObservedTime"]) == len("2026-05-01T12:00:00.000000Z")
        assert len(events("PresenceAvailable")) == 1


# The shipped RBAC, enforced by the fake: enough for everything fleet mode does, and no more.


def shipped_rules(tmp_path: Path) -> list[dict[str, Any]]:
    """The Role of the example overlay plus the optional namespace ClusterRole, as rendered."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [{os.path.relpath(OVERLAY, overlay)}]
components: [{os.path.relpath(K8S / "components" / "fleet-namespace", overlay)}]
"""
    )
    rendered = render(overlay)
    roles = [d for d in rendered if d["kind"] in {"Role", "ClusterRole"}]
    assert {d["kind"] for d in roles} == {"Role", "ClusterRole"}
    return [rule for role in roles for rule in role["rules"]]


@pytest.mark.slow
async def test_the_shipped_role_allows_every_call_and_grants_nothing_unused(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = kube
    fake.rules = shipped_rules(tmp_path)
    # What a cluster holds: the Deployment, its ReplicaSet and the pod that owns the sidecar.
    uid = fake.put("deployments", deployment())["metadata"]["uid"]
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "whatsapp-bot", "uid": uid,
             "controller": True}  # fmt: skip
    rs = fake.put("replicasets", {"metadata": {"name": "whatsapp-bot-7d4b9", "namespace": "shop",
                                               "ownerReferences": [owner]}})  # fmt: skip
    rs_owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "whatsapp-bot-7d4b9",
                "uid": rs["metadata"]["uid"], "controller": True}  # fmt: skip
    pod = {"metadata": {"name": "whatsapp-bot-7d4b9-x2k9p", "namespace": "shop",
                        "ownerReferences": [rs_owner]},
           "spec": {"containers": [{"name": "bot", "image": "bot:1"}]}}  # fmt: skip
    fake.put("pods", pod)
    fake.put("namespaces", {"metadata": {"name": "whatsapp-bot"}})
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, url, "token-pod-a")))
    # The overlay's namespace is whatsapp-bot; the fake serves "shop": rename the Role's names.
    for rule in fake.rules:
        if rule.get("resourceNames") == ["whatsapp-bot"] and "namespaces" in rule["resources"]:
            rule["resourceNames"] = ["shop"]
    fake.put("namespaces", {"metadata": {"name": "shop"}})
    # A heartbeat left by a pod of an older version (no owner): the leader prunes it.
    stale = "whatsapp-bot-presence-whatsapp-bot-5c8f7-q4z2m"
    fake.put("leases", {
        "metadata": {"name": stale, "namespace": "shop",
                     "labels": {"presence-controller/lease": "whatsapp-bot-presence"}},
        "spec": {"holderIdentity": "whatsapp-bot-5c8f7-q4z2m", "leaseDurationSeconds": 2,
                 "renewTime": micro_time(datetime.now(UTC) - timedelta(hours=1))},
    })  # fmt: skip
    settings = sim.settings(
        kube={"enabled": True, "namespace": "shop", "pod_name": "whatsapp-bot-7d4b9-x2k9p",
              "watch_namespace": True, **FAST_KUBE},
    )  # fmt: skip
    async with running(settings) as run:
        fleet = run.controller.fleet
        assert fleet is not None
        await until(lambda: fleet.leading() and fleet.workload == "deployment/whatsapp-bot")
        recorder = fleet.recorder
        assert recorder is not None
        recorder.flush = 0.1
        for _ in range(2):  # a repeat: the Event series is patched
            sim.consumer.health_status = 503
            await until(lambda: sim.gateway.presence == "unavailable")
            sim.consumer.health_status = 200
            await until(lambda: sim.gateway.presence == "available")
        await until(lambda: any(c.verb == "patch" and c.plural == "events" for c in fake.calls))
        fake.annotate("namespaces", "", "shop", **{"presence-controller/maintenance": "true"})
        await until(lambda: sim.gateway.presence == "unavailable")
        # PRUNE_AFTER lease durations of silence (7.5 s here) after the leader first saw it.
        await until(lambda: fake.get("leases", "shop", stale) is None, within=30)
        assert fleet.status()["error"] is None
    denied = [c for c in fake.calls if c.code == 403]
    assert denied == [], "the shipped Role must allow every call fleet mode makes"
    used = {(c.plural, c.verb) for c in fake.calls}
    granted = {
        (resource, verb)
        for rule in fake.rules
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted <= used, f"granted but never used: {sorted(granted - used)}"


async def test_scaling_to_zero_turns_the_bot_off(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every replica gets SIGTERM at once (scale to zero, a deleted Deployment): the leader must
    not hand over to members that are stopping too, or nobody turns the bot off."""
    _, url = kube
    async with three_replicas(sim, url, tmp_path, monkeypatch) as (runs, _, stops):
        await until(lambda: sim.gateway.presence == "available" and leader_of(runs) is not None)
        await until(lambda: all(len(r.controller.fleet.members()) == 3 for r in runs.values()))  # type: ignore[union-attr]
        for stop in stops.values():
            stop.set()
        await until(lambda: sim.gateway.presence == "unavailable")


async def test_a_watch_that_delivers_nothing_is_relisted_without_missing_a_change(
    kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch goes quiet (a partition drops its events), the change lands and the server's
    history is compacted: the watch relists every RELIST, and the list sees the change."""
    import controller.kube.watch as watch_module

    monkeypatch.setattr(watch_module, "PERIOD", 0.5)
    monkeypatch.setattr(watch_module, "RELIST", 0.5)
    fake, url = kube
    client = KubeClient("shop", 1.0, kubeconfig(tmp_path, url, "token-pod-a"))
    watch = watch_module.ObjectWatch(client, "deployments", SYSTEM, name="whatsapp-bot")
    task = asyncio.create_task(watch.run())
    try:
        await until(lambda: watch.listed and "whatsapp-bot" in watch.items)
        fake.partitioned.add("pod-a")  # the open stream stops delivering
        fake.annotate(
            "deployments", "shop", "whatsapp-bot", **{"presence-controller/force": "unavailable"}
        )
        fake.compact()  # and the server forgets the change's history
        fake.partitioned.discard("pod-a")

        def annotated() -> bool:
            notes = watch.items["whatsapp-bot"]["metadata"].get("annotations") or {}
            return notes.get("presence-controller/force") == "unavailable"

        await until(annotated)
        lists = [c for c in fake.requests("pod-a", "list") if c.plural == "deployments"]
        assert len(lists) >= 2, "seen by a relist"
        assert watch.error is None and watch.restarts == 0, "a relist is routine, not a failure"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


async def test_a_missing_permission_is_named_and_nothing_is_written(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = kube
    fake.denied.add(("create", "leases"))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, url, "token-pod-a")))
    settings = sim.settings(
        kube={"enabled": True, "namespace": "shop", "pod_name": "pod-a", "workload": "none",
              "lease_name": "bot", **FAST_KUBE},
    )  # fmt: skip
    async with running(settings) as run:
        fleet = run.controller.fleet
        assert fleet is not None
        await until(lambda: 'cannot create resource "leases"' in (fleet.status()["error"] or ""))
        await until(lambda: run.controller.healthy())  # the loop goes on, no crash
        assert not fleet.leading() and sim.gateway.sets() == [], "no lease: no gateway call"
        error = (await run.status())["fleet"]["error"]
        assert error.startswith("403 Forbidden: leases.coordination.k8s.io is forbidden: User ")
        fake.denied.clear()  # RBAC fixed: it leads and writes, without a restart
        await until(lambda: sim.gateway.presence == "available")


def test_fleet_modes_client_is_imported_only_in_fleet_mode() -> None:
    """One replica pays nothing for fleet mode: neither the Kubernetes shell nor lightkube and
    httpx2 (~4 MiB) are imported (they were, through the transport, for a while)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from controller.config import Settings\n"
        "from controller.runtime.controller import Controller\n"
        "Controller(Settings.from_values(health_url='http://h/', wawp={'instance_id': 'i',"
        " 'access_token': 's3cr3t-t0ken-value'}))\n"
        "print(sorted({m.split('.')[0] if not m.startswith('controller.') else 'controller.kube'"
        " for m in sys.modules if m.startswith(('httpx2', 'lightkube', 'controller.kube'))}))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]", found.stdout


async def test_notices_are_events_regarding_the_deployment_in_fleet_mode(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = kube
    now = datetime.now(UTC).replace(microsecond=0)
    start, expiry = now + timedelta(minutes=40), now + timedelta(minutes=8)
    fake.put(
        "deployments",
        deployment(**{
            "presence-controller/maintenance": f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')}/PT1H",
            "presence-controller/maintenance-reason": "Kernel upgrade",
            "presence-controller/force": "unavailable",
            "presence-controller/force-until": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }),
    )  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, url, "token-pod-a")))
    settings = sim.settings(
        kube={"enabled": True, "namespace": "shop", "pod_name": "pod-a",
              "workload": "deployment/whatsapp-bot", **FAST_KUBE},
    )  # fmt: skip

    def events(reason: str) -> list[dict[str, Any]]:
        return [
            e for (plural, _, _), e in fake.objects.items()
            if plural == "events" and e["reason"] == reason
        ]  # fmt: skip

    async with running(settings):
        await until(lambda: len(events("MaintenanceScheduled")) == 1)
        await until(lambda: len(events("ForceExpiring")) == 1)
        (scheduled,) = events("MaintenanceScheduled")
        assert scheduled["type"] == "Normal" and scheduled["action"] == "Notice"
        assert scheduled["regarding"]["name"] == "whatsapp-bot"
        assert scheduled["note"].startswith(f"maintenance starts at {start.isoformat()} (in ")
        assert "Kernel upgrade (deployment/whatsapp-bot annotation" in scheduled["note"]
        (expiring,) = events("ForceExpiring")
        assert expiring["note"].startswith(f"force unavailable expires at {expiry.isoformat()}")
        assert "deployment/whatsapp-bot annotation presence-controller/force" in expiring["note"]
