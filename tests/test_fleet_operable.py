"""Fleet mode as an SRE runs it: heartbeats that go away with their pods, followers that say
who leads, former leaders that forget the gateway, quiet logs. Against the fake API server on
loopback, through the real client library."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Sim, running, until
from test_cli import cli
from test_fleet import FAST_KUBE, NAMES, kube, kubeconfig, leader_of, three_replicas

from controller.kube.wire import micro_time
from controller.sim.gateway import Fault
from controller.sim.kube import SimKube

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories),
but for the one marked `real_time`."""

__all__ = ["kube"]  # the fixture, re-used

HEARTBEAT = "whatsapp-bot-presence-"


def heartbeats(fake: SimKube) -> dict[str, dict[str, object]]:
    return {
        name: obj
        for (plural, _, name), obj in fake.objects.items()
        if plural == "leases" and name.startswith(HEARTBEAT)
    }


def verdict(fake: SimKube, pod: str) -> object:
    lease = heartbeats(fake).get(HEARTBEAT + pod)
    return lease["metadata"]["annotations"]["presence-controller/verdict"] if lease else None  # type: ignore[index]


async def test_heartbeats_are_owned_by_their_pod_and_go_with_it(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = kube
    async with three_replicas(sim, url, tmp_path, monkeypatch) as (runs, _, stops):
        await until(lambda: len(heartbeats(fake)) == 3)
        for name in NAMES:
            pod = fake.get("pods", "shop", name)
            assert pod is not None
            owners = heartbeats(fake)[HEARTBEAT + name]["metadata"]["ownerReferences"]  # type: ignore[index]
            assert owners == [
                {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": pod["metadata"]["uid"]}
            ]
        await until(lambda: leader_of(runs) is not None)
        leader = leader_of(runs)
        assert leader is not None and leader.controller.fleet is not None
        gone = next(n for n in NAMES if n != leader.controller.fleet.identity)
        # The pod is deleted (its sidecar stops first): the garbage collector takes its
        # heartbeat, and the leader stops listing it at once, not a heartbeat window later.
        stops[gone].set()
        await until(lambda: verdict(fake, gone) == "stopping")
        fake.delete("pods", "shop", gone)
        assert HEARTBEAT + gone not in heartbeats(fake)
        fleet = leader.controller.fleet
        await until(lambda: gone not in {m["pod"] for m in fleet.status()["members"]})


async def test_a_new_replica_does_not_count_a_dead_pods_old_heartbeat(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod SIGKILLed a minute ago left `available` in its heartbeat: a replica that starts now
    reads its age from its renewTime, not from when it first saw it."""
    fake, url = kube
    old = micro_time(datetime.now(UTC) - timedelta(seconds=60))
    fake.put("leases", {
        "metadata": {"name": HEARTBEAT + "pod-c", "namespace": "shop",
                     "labels": {"presence-controller/lease": "whatsapp-bot-presence"},
                     "annotations": {"presence-controller/verdict": "available"}},
        "spec": {"holderIdentity": "pod-c", "leaseDurationSeconds": 2, "renewTime": old},
    })  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, url, "token-pod-a")))
    settings = sim.settings(
        kube={"enabled": True, "namespace": "shop", "pod_name": "pod-a", **FAST_KUBE}
    )
    async with running(settings) as run:
        fleet = run.controller.fleet
        assert fleet is not None
        await until(lambda: "pod-c" in {m["pod"] for m in fleet.status()["members"]})
        member = next(m for m in fleet.status()["members"] if m["pod"] == "pod-c")
        assert member["age_seconds"] >= 59 and member["fresh"] is False
        assert fleet.status()["available_members"] <= 1


async def test_a_follower_names_the_leader_and_what_it_decided(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = kube
    async with three_replicas(sim, url, tmp_path, monkeypatch, down=("pod-b",)) as (runs, _, _):
        await until(lambda: sim.gateway.presence == "available" and leader_of(runs) is not None)
        leader = leader_of(runs)
        assert leader is not None and leader.controller.fleet is not None
        name = leader.controller.fleet.identity
        assert (await leader.status())["presence"]["role"] == "leader"

        async def follower_view() -> dict[str, object]:
            presence: dict[str, object] = (await runs["pod-b"].status())["presence"]
            return presence

        await until(lambda: runs["pod-b"].controller.fleet.leader_decision() is not None)  # type: ignore[union-attr]
        shown = await follower_view()
        assert shown["role"] == "follower" and shown["leader"] == name
        decided = shown["leader_decision"]
        assert isinstance(decided, dict) and decided["presence"] == "available"
        assert str(decided["reason"]).startswith("fleet: 2/3 members available")
        # Its own consumer is down: its own desired state says so, and the note says whose
        # decision the bot follows.
        assert shown["desired"] == "unavailable"
        assert f"{name} leads and writes the presence (available: fleet: 2/3" in str(shown["note"])


async def test_a_demoted_leader_forgets_what_it_knew_of_the_gateway(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A former leader must not keep exporting a credential failure: the alert would fire from
    it long after the Secret was fixed."""
    fake, url = kube
    sim.gateway.set_faults.extend([Fault(401)] * 3)
    async with three_replicas(sim, url, tmp_path, monkeypatch) as (runs, _, _):
        await until(lambda: leader_of(runs) is not None)
        leader = leader_of(runs)
        assert leader is not None and leader.controller.fleet is not None
        await until(lambda: leader.controller.actuator.state.auth_failed)
        assert await leader.metric("presence_gateway_auth_failed") == 1
        # Only one client identity reaches the fake in three_replicas: fail its Lease updates.
        fake.denied.add(("update", "leases"))
        await until(lambda: not leader.controller.fleet.leading())  # type: ignore[union-attr]
        gauges = leader.controller.metrics.registry
        await until(lambda: gauges.get_sample_value("presence_gateway_auth_failed") == 0)
        assert await leader.metric("presence_applied_state", {"state": "unknown"}) == 1
        assert await leader.metric("presence_gateway_last_success_timestamp_seconds") == 0
        assert not leader.controller.actuator.state.auth_failed
        assert (await leader.status())["gateway"]["auth_failed"] is False


@pytest.mark.slow
async def test_steady_fleet_mode_logs_no_line_per_request(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lightkube's HTTP client (httpx2) logs every request at INFO: ~40 lines a minute per
    replica in production. Over as many API requests as a production minute makes, a steady
    fleet writes (almost) nothing."""
    fake, url = kube
    async with three_replicas(sim, url, tmp_path, monkeypatch) as (runs, _, _):
        await until(lambda: sim.gateway.presence == "available" and leader_of(runs) is not None)
        last = runs[NAMES[-1]]  # the last one configured logging: every line reaches it
        await until(
            lambda: all(
                str(r.controller.decision.reason if r.controller.decision else "").startswith(
                    "fleet: 3/3"
                )
                for r in [leader_of(runs)]
                if r is not None
            )
        )
        before, calls = len(last.log_events()), len(fake.calls)
        await until(lambda: len(fake.calls) >= calls + 60, within=30)  # > a replica's minute
        lines = last.log_events()[before:]
        loggers = {line["logger"] for line in lines}
        assert not loggers & {"httpx", "httpx2", "httpcore", "httpcore2", "lightkube"}, lines
        assert len(lines) <= 3, lines


@pytest.mark.real_time
async def test_check_gateway_set_refuses_on_a_follower_unless_forced(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path
) -> None:
    """A write from a follower is overwritten by the leader at once: refused, and the message
    says where to run it; --force writes anyway; with nobody leading it writes."""
    fake, url = kube
    env = sim.env(
        KUBECONFIG=str(kubeconfig(tmp_path, url, "token-pod-a")),
        PRESENCE_KUBE__ENABLED="true",
        PRESENCE_KUBE__NAMESPACE="shop",
        PRESENCE_KUBE__POD_NAME="pod-a",
    )
    fake.put("leases", {
        "metadata": {"name": "whatsapp-bot-presence", "namespace": "shop"},
        "spec": {"holderIdentity": "pod-b", "leaseDurationSeconds": 600,
                 "renewTime": micro_time(datetime.now(UTC))},
    })  # fmt: skip
    code, out, err = await cli("check-gateway", "--set", "available", env=env)
    assert code == 1, (out, err)
    assert "fleet mode: pod-a is a follower; pod-b leads lease whatsapp-bot-presence" in err
    assert "kubectl exec pod-b" in err and "Traceback" not in err
    assert sim.gateway.sets(None) == []
    code, out, err = await cli("check-gateway", "--set", "available", "--force", env=env)
    assert code == 0 and "presence set to available" in out, err
    # The Lease expired (its holder is gone): nobody leads, the write goes ahead.
    lease = fake.get("leases", "shop", "whatsapp-bot-presence")
    assert lease is not None
    lease["spec"]["renewTime"] = micro_time(datetime.now(UTC) - timedelta(hours=1))
    code, out, err = await cli("check-gateway", "--set", "unavailable", env=env)
    assert code == 0 and "presence set to unavailable" in out, err
    # The API server cannot be reached: nobody can tell, so it refuses.
    fake.tokens.clear()
    code, out, err = await cli("check-gateway", "--set", "available", env=env)
    assert code == 1 and "cannot tell which replica leads" in err, (out, err)
