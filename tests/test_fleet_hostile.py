"""Fleet mode against a hostile or broken API server (the fake's WATCH_FAULTS, forged and
malformed Leases, 403s, 429s, floods): it never shows the bot available when it should not,
never makes two writers, never grows without bound, and says why in /status."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import Sim, reason, running, until
from test_fleet import FAST_KUBE, Fleet, kube, kubeconfig, leader_of, lease_spec, three_replicas

import controller.kube.watch as watch_module
from controller.core.election import read_record
from controller.kube.client import KubeClient, KubeError
from controller.kube.transport import TokenFile
from controller.kube.watch import MAX_OBJECTS, ObjectWatch
from controller.runtime.clock import SYSTEM
from controller.sim.kube import SimKube

VIRTUAL_TIME = True
"""The async tests of this module, their fixtures and the controllers they run wait in virtual
time (conftest.pytest_asyncio_loop_factories)."""
LEASE = "whatsapp-bot-presence"
FAST_LEASE = 1.5
__all__ = ["kube"]  # the fake API server fixture, shared with test_fleet


def available_sets(sim: Sim) -> list[object]:
    return [c for c in sim.gateway.sets() if c.presence == "available"]


# 1. A blind leader decides from itself alone.


@pytest.mark.parametrize("fault", ["bookmarks", "stall", "garbage"])
async def test_a_leader_that_cannot_see_its_fleet_never_shows_the_bot_available(
    fault: str,
    sim: Sim,
    kube: tuple[SimKube, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """2 of 3 consumers down, every watch broken: a leader deciding from itself alone would
    show the bot available (`fleet: 1/1 members available`). It is never available; it is
    unavailable with the reason once the grace is over, and the error is in /status."""
    fake, url = kube
    fake.watch_faults["pod-a"] = fault  # the three replicas share one client identity
    async with three_replicas(
        sim, url, tmp_path, monkeypatch, down=("pod-b", "pod-c"), settings={"startup_grace": 2}
    ) as (runs, _, _):
        await until(lambda: sim.gateway.presence == "unavailable", within=20)
        leader = leader_of(runs)
        assert leader is not None and leader.controller.decision is not None
        reason = leader.controller.decision.reason
        assert reason.startswith("fleet: "), reason
        status = (await leader.status())["fleet"]
        if fault == "bookmarks":
            # A stream that looks alive: this replica's own heartbeat never comes back through
            # it, so its view is never confirmed complete (later: a failure, and relists).
            assert status["view"]["current"] is False
            assert "view of the fleet is" in reason and "unavailable until there is one" in reason
        else:
            # A failure each time, reported; each relist after a back-off shows the fleet.
            assert "members watch: " in status["error"]
        await asyncio.sleep(0.5)  # a while longer: still never available
    assert available_sets(sim) == []


async def test_a_leader_forbidden_to_list_the_heartbeats_never_shows_the_bot_available(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 403 on listing Leases: available again after ~70 s, before. Now never."""
    fake, url = kube
    fake.denied.add(("list", "leases"))
    async with three_replicas(
        sim, url, tmp_path, monkeypatch, down=("pod-b", "pod-c"), settings={"startup_grace": 2}
    ) as (runs, _, _):
        await until(lambda: sim.gateway.presence == "unavailable", within=20)
        leader = leader_of(runs)
        assert leader is not None
        error = (await leader.status())["fleet"]["error"]
        assert 'cannot list resource "leases"' in error, error
        await asyncio.sleep(0.5)
    assert available_sets(sim) == []


async def test_a_leader_that_cannot_see_holds_then_turns_off_then_sees_again(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A healthy fleet whose leader goes blind (lists forbidden, watches stalled): it keeps the
    presence for the grace (3 x HEARTBEAT past a stale view), then unavailable, named; once it
    can see again, the fleet's verdict is back."""
    fake, url = kube
    async with three_replicas(sim, url, tmp_path, monkeypatch) as (runs, _, _):
        await until(lambda: sim.gateway.presence == "available" and leader_of(runs) is not None)
        fake.denied.add(("list", "leases"))
        fake.watch_faults["pod-a"] = "stall"
        fake.drop_watches()  # the open streams end: the watches relist (refused) and stall
        await until(lambda: sim.gateway.presence == "unavailable", within=30)
        leader = leader_of(runs)
        assert leader is not None and leader.controller.decision is not None
        reason = leader.controller.decision.reason
        assert "view of the fleet is" in reason and "unavailable until there is one" in reason
        fake.denied.clear()
        fake.watch_faults.clear()
        await until(lambda: sim.gateway.presence == "available", within=40)
        leader = leader_of(runs)
        assert leader is not None and leader.controller.decision is not None
        assert leader.controller.decision.reason.startswith("fleet: 3/3 members available")


# 2. Forged or duplicated heartbeats count.


def heartbeat(name: str, holder: str, verdict: str = "available") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"presence-controller/lease": LEASE},
            "annotations": {"presence-controller/verdict": verdict},
        },
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 2},
    }


async def test_forged_and_duplicated_heartbeats_do_not_count_and_are_reported(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One extra "available" Lease turned a 1/3 fleet into `2/4 ... available`. Now only one
    heartbeat per pod of this workload counts; the others are named in /status."""
    fake, url = kube
    fake.workload("shop", "other-bot", ["other-pod"])
    forged = {
        f"{LEASE}-ghost": heartbeat(f"{LEASE}-ghost", "ghost"),  # no such pod
        f"{LEASE}-other-pod": heartbeat(f"{LEASE}-other-pod", "other-pod"),  # another workload
        "copy-of-pod-b": heartbeat("copy-of-pod-b", "pod-b"),  # a second Lease for pod-b
        f"{LEASE}-x": heartbeat(f"{LEASE}-x", "x" * 1024 * 1024),  # a 1 MiB holder
    }
    async with three_replicas(sim, url, tmp_path, monkeypatch, down=("pod-b", "pod-c")) as (
        runs,
        _,
        _,
    ):
        for lease in forged.values():
            fake.put("leases", lease)
        await until(lambda: sim.gateway.presence == "unavailable")
        leader = leader_of(runs)
        assert leader is not None

        async def ignored() -> dict[str, str]:
            found = (await leader.status())["fleet"]
            return {item["lease"][:40]: item["why"] for item in found["ignored"]}

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(await ignored()) < 4 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        why = await ignored()
        assert why[f"{LEASE}-ghost"] == "no such pod"
        assert why[f"{LEASE}-other-pod"] == (
            "a pod of deployment/other-bot, not of deployment/whatsapp-bot"
        )
        assert why["copy-of-pod-b"] == f"its name is not {LEASE}-<holder> for holder pod-b"
        assert "is not a pod name" in why[f"{LEASE}-x"]
        assert len(why[f"{LEASE}-x"]) < 200
        status = await leader.status()
        assert status["fleet"]["ignored_count"] == 4
        assert await leader.metric("presence_fleet_ignored_heartbeats") == 4
        # Once the leader's view is complete (a heartbeat window after it started watching).
        await until(lambda: reason(leader).startswith("fleet: 1/3 members available"))
        assert len(status["presence"]["reason"]) < 400
        # One process's logging: the last replica started holds the log stream.
        every = [e for run in runs.values() for e in run.log_events()]
        lines = [e for e in every if e.get("event") == "heartbeat_ignored"]
        assert lines and max(len(e["msg"]) for e in lines) < 1000
    assert available_sets(sim) == []


# 4. Double writer.


@pytest.mark.parametrize(
    "spec",
    [None, {}, {"holderIdentity": "pod-x", "leaseDurationSeconds": 0}],
    ids=["no spec", "empty spec", "duration 0"],
)
async def test_an_unreadable_lease_is_never_taken_as_free(
    spec: dict[str, Any] | None, kube: tuple[SimKube, str], tmp_path: Path
) -> None:
    """2+ leaders in 165 of 169 samples, before: a spec-less Lease was free to all."""
    fake, url = kube
    async with Fleet(fake, url, tmp_path) as fleet:
        await until(lambda: len(fleet.leaders()) == 1)
        lease = dict(fake.get("leases", "shop", "bot-presence") or {})
        lease["metadata"] = {k: v for k, v in lease["metadata"].items() if k != "resourceVersion"}
        if spec is None:
            lease.pop("spec", None)
        else:
            lease["spec"] = spec
        fake.put("leases", lease)  # another actor, past validation (a broken server)
        await until(lambda: fleet.leaders() == [])  # the leader sees it is not its own
        errors = [e.error or "" for e in fleet.electors.values()]
        await until(
            lambda: all("cannot be read" in (e.error or "") for e in fleet.electors.values())
        )
        assert all("treated as held" in e for e in errors if e)
        # Unchanged for the lease duration: expired, taken by one, written readable again.
        await until(lambda: len(fleet.leaders()) == 1, within=15)
        assert read_record(lease_spec(fake)).problem == ""
        assert fleet.overlaps() == []


async def test_a_deleted_lease_makes_no_second_leader(
    kube: tuple[SimKube, str], tmp_path: Path
) -> None:
    """`kubectl delete lease` gave two leaders for 0.4-0.6 s: the followers created it at once
    while the leader still acted. Now they wait out its lease; the leader stops the moment
    its renewal is refused (the real server checks the uid it carries) and may take it again."""
    fake, url = kube
    async with Fleet(fake, url, tmp_path) as fleet:
        await until(lambda: len(fleet.leaders()) == 1)
        old = fleet.leaders()[0]
        await until(lambda: all(e.state.observed for e in fleet.electors.values()))
        fake.delete("leases", "shop", "bot-presence")
        await until(lambda: fake.get("leases", "shop", "bot-presence") is not None)
        await until(lambda: len(fleet.leaders()) == 1)
        assert lease_spec(fake)["holderIdentity"] == old, "the others waited: its lease"
        refused = [c for c in fake.requests(old, "update") if c.code == 409]
        assert refused, "its renewal carried the deleted Lease's uid: refused"
        await asyncio.sleep(FAST_LEASE)
        assert fleet.leaders() == [old] and fleet.overlaps() == []


# 6. Reconnect storms, 7. unbounded input: through one ObjectWatch against the hostile fake.


@asynccontextmanager
async def watching(
    fake: SimKube,
    url: str,
    tmp_path: Path,
    counted: dict[str, int] | None = None,
    token: str = "token-pod-a",
) -> AsyncIterator[ObjectWatch]:
    """The heartbeats' watch, running against the fake through the real client (`counted`:
    requests by verb, as the transport counts them)."""

    def count(verb: str, resource: str, code: int) -> None:
        if counted is not None:
            counted[verb] = counted.get(verb, 0) + 1

    client = KubeClient("shop", 1.0, kubeconfig(tmp_path, url, token), on_request=count)
    watch = ObjectWatch(client, "leases", SYSTEM, labels={"presence-controller/lease": LEASE})
    task = asyncio.create_task(watch.run())
    try:
        yield watch
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


async def test_a_server_that_ends_every_watch_gets_a_few_requests_not_a_storm(
    kube: tuple[SimKube, str], tmp_path: Path
) -> None:
    """A 410 storm or streams that end at once could drive one replica to ~1,000 requests a
    second: back-off with jitter, every request counted, the error named.
    Three watches at once, one per fault (the fake tells clients apart by their token)."""
    fake, url = kube
    faults = {"pod-a": "eof", "pod-b": "expired", "pod-c": "garbage"}
    fake.watch_faults.update(faults)
    counted: dict[str, dict[str, int]] = {pod: {} for pod in faults}
    async with AsyncExitStack() as stack:
        watches = {
            pod: await stack.enter_async_context(
                watching(fake, url, tmp_path, counted[pod], token=f"token-{pod}")
            )
            for pod in faults
        }
        await asyncio.sleep(3.0)
        for pod, watch in watches.items():
            served = [c for c in fake.requests(pod) if c.plural == "leases"]
            assert len(served) <= 12, f"{faults[pod]}: {len(served)} requests in 3 s"
            assert counted[pod].get("watch", 0) == sum(c.verb == "watch" for c in served) > 0
            assert counted[pod].get("list", 0) == sum(c.verb == "list" for c in served) > 0
            assert watch.error is not None and watch.restarts >= 2, faults[pod]
        assert (watches["pod-b"].error or "").startswith("410 Expired: too old resource")


async def test_a_watch_that_ends_cleanly_too_often_is_an_error(
    kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streams that deliver a bookmark and end after a second look healthy one by one: more
    than MAX_REQUESTS a minute is an error, and backs off."""
    monkeypatch.setattr(watch_module, "SHORT", 0.0)
    fake, url = kube
    fake.watch_faults["pod-a"] = "eof"
    async with watching(fake, url, tmp_path) as watch:
        await until(lambda: "requests in the last minute" in (watch.error or ""), within=20)


async def test_a_huge_watch_line_is_refused_while_streaming(
    kube: tuple[SimKube, str], tmp_path: Path
) -> None:
    """One 100 MB watch line took RSS from 68 to ~350 MiB, and it stayed. Now it is refused
    past 2 MiB, before it is buffered."""
    fake, url = kube
    fake.watch_faults["pod-a"] = "huge"
    async with watching(fake, url, tmp_path) as watch:
        await until(lambda: watch.error is not None, within=20)
        assert watch.error == "refused a watch event of more than 2 MiB"


async def test_an_endless_stream_of_new_leases_is_capped_and_reported(
    kube: tuple[SimKube, str], tmp_path: Path
) -> None:
    fake, url = kube
    fake.watch_faults["pod-a"] = "endless"
    async with watching(fake, url, tmp_path) as watch:
        await until(lambda: watch.overflow > 10, within=20)
        assert len(watch.items) == MAX_OBJECTS


async def test_a_flood_of_leases_is_listed_in_pages_and_capped(
    kube: tuple[SimKube, str], tmp_path: Path
) -> None:
    """100k Leases in one list: 282 MiB and a 16 MB /status. Now pages of LIST_PAGE, at most
    MAX_OBJECTS kept, the rest not read, and it says so."""
    fake, url = kube
    for i in range(MAX_OBJECTS + 50):
        fake.put("leases", heartbeat(f"{LEASE}-flood-{i:04}", f"flood-{i:04}"))
    async with watching(fake, url, tmp_path) as watch:
        await until(lambda: watch.listed, within=20)
        assert len(watch.items) == MAX_OBJECTS and watch.overflow
        pages = [c for c in fake.requests("pod-a", "list") if c.plural == "leases"]
        assert len(pages) == 3, "pages of 100 until 256 are kept (306 Leases), the rest unread"


async def test_the_api_servers_retry_after_is_honoured(
    kube: tuple[SimKube, str], tmp_path: Path
) -> None:
    fake, url = kube
    fake.throttled["pod-a"] = 3.0
    async with watching(fake, url, tmp_path) as watch:
        await until(lambda: watch.error is not None)
        assert watch.error.startswith("429 TooManyRequests")
        await asyncio.sleep(2.5)
        assert len(fake.requests("pod-a")) == 1, "it waited as it was asked"


async def test_a_forbidden_watch_names_the_verb_and_resource(
    kube: tuple[SimKube, str], tmp_path: Path
) -> None:
    """It was "the API server answered without a Status"."""
    fake, url = kube
    fake.denied.add(("watch", "leases"))
    async with watching(fake, url, tmp_path) as watch:
        await until(lambda: watch.error is not None)
        assert 'cannot watch resource "leases"' in (watch.error or ""), watch.error


# 8. A persistently malformed Lease, a vanished token file: values, not tracebacks.


async def test_a_malformed_leader_lease_is_a_value_not_a_traceback_a_second(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It raised inside the elector, which logged a full traceback every second (28-50 in
    30 s) and never reached /status.fleet.error. Now a value: named once, no traceback."""
    fake, url = kube
    spec = {"holderIdentity": {"no": "string"}, "leaseTransitions": "x"}
    fake.put("leases", {"metadata": {"name": LEASE, "namespace": "shop"}, "spec": spec})
    async with three_replicas(sim, url, tmp_path, monkeypatch) as (runs, _, _):
        run = runs["pod-a"]
        await until(lambda: "cannot be read" in (run.controller.fleet.status()["error"] or ""))  # type: ignore[union-attr]
        await asyncio.sleep(1.0)
    # One process's logging: the last replica started holds the log stream.
    every = [e for r in runs.values() for e in r.log_events()]
    assert every, "the log stream was read"
    assert [e for e in every if "exception" in e] == [], "no traceback"
    named = [e for e in every if e.get("event") == "lease_error" and "cannot be read" in e["msg"]]
    assert 1 <= len(named) <= 3, "once per replica, not once a second"


async def test_a_vanished_token_file_is_reported_once(
    kube: tuple[SimKube, str], tmp_path: Path
) -> None:
    fake, url = kube
    token = tmp_path / "token"
    token.write_text("token-pod-a\n")
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f'clusters: [{{name: fake, cluster: {{server: "{url}"}}}}]\n'
        f'users: [{{name: fake, user: {{tokenFile: "{token}"}}}}]\n'
        "contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: shop}}]\n"
    )
    client = KubeClient("shop", 1.0, config)
    try:
        assert await client.get_lease("nothing") is None, "read through the token file"
        token.unlink()
        fake.tokens = {"rotated": "pod-a"}  # the old token is refused: a 401, a re-read
        with pytest.raises(KubeError) as caught:
            await client.get_lease("nothing")
        assert caught.value.message.startswith("service-account token: cannot read")
        assert "token-pod-a" not in str(caught.value)
    finally:
        await client.aclose()


# 10. The service-account token is read the way ours are: bounded, non-blocking, regular files.


async def test_a_token_file_that_is_a_fifo_or_huge_never_freezes_or_floods(tmp_path: Path) -> None:
    """A FIFO froze the whole controller, ignoring SIGTERM; a 64 MiB token was read on every
    401. Now a FIFO is refused at once and a large file past 64 KiB, each a value."""
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    async with asyncio.timeout(5):
        with pytest.raises(Exception, match="not a regular file"):
            await TokenFile(fifo).bearer()
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * (64 * 1024 * 1024))
    with pytest.raises(Exception, match="larger than 64 KiB"):
        await TokenFile(huge).bearer()
    hidden = tmp_path / "hidden"
    hidden.write_text("a-tok\u200ben\n")  # a zero-width space: the same check as our secrets
    with pytest.raises(Exception, match="whitespace or a control character"):
        await TokenFile(hidden).bearer()
    good = tmp_path / "good"
    good.write_text("a-good-token\n")
    file = TokenFile(good)
    assert await file.bearer() == "a-good-token"
    good.write_text("rotated-token\n")
    assert await file.bearer() == "a-good-token", "looked at once a minute, not per request"
    assert await file.bearer(reread=True) == "rotated-token", "at once after a 401"


# 11. A watched source that disappears.


async def test_deleting_the_deployment_under_maintenance_keeps_the_maintenance_for_a_while(
    sim: Sim, kube: tuple[SimKube, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It ended silently and the bot went available while the pods were still running. Now
    its maintenance is kept for KEEP_GONE (fail closed), reported, then it ends."""
    import controller.kube.sources as sources_module

    monkeypatch.setattr(sources_module, "KEEP_GONE", 2.0)
    fake, url = kube
    fake.annotate(
        "deployments", "shop", "whatsapp-bot",
        **{"presence-controller/maintenance": "true",
           "presence-controller/maintenance-reason": "migration", "other": "x"},
    )  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, url, "token-pod-a")))
    kube_settings = {"enabled": True, "namespace": "shop", "pod_name": "pod-a",
                     "workload": "deployment/whatsapp-bot", **FAST_KUBE}  # fmt: skip
    async with running(sim.settings(kube=kube_settings)) as run:
        await until(lambda: sim.gateway.presence == "unavailable")
        fake.delete("deployments", "shop", "whatsapp-bot")
        fleet = run.controller.fleet
        assert fleet is not None
        await until(lambda: "not found" in (fleet.status()["error"] or ""))
        status = await run.status()
        assert status["maintenance"]["active"] is True
        assert status["maintenance"]["reason"].startswith("migration")
        assert "its maintenance annotations are kept until" in status["fleet"]["error"]
        await until(lambda: sim.gateway.presence == "available", within=15)
        assert (await run.status())["fleet"]["error"] is None


async def test_a_fleet_loop_that_keeps_failing_is_reported_with_one_traceback_and_backs_off(
    sim: Sim,
    kube: tuple[SimKube, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in a fleet loop (not an API failure: those are values): one traceback per
    distinct error, restarts backing off (1 s doubling), the error named in
    /status.fleet.error, the controller going on."""
    from controller.kube.members import PodCheck

    attempts: list[float] = []

    async def broken(self: PodCheck) -> None:
        attempts.append(asyncio.get_running_loop().time())
        raise ValueError("a bug in the member check")

    monkeypatch.setattr(PodCheck, "run", broken)
    _, url = kube
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, url, "token-pod-a")))
    kube_settings = {"enabled": True, "namespace": "shop", "pod_name": "pod-a",
                     "workload": "deployment/whatsapp-bot", **FAST_KUBE}  # fmt: skip
    async with running(sim.settings(kube=kube_settings)) as run:
        fleet = run.controller.fleet
        assert fleet is not None
        await until(lambda: "member check failed" in (fleet.status()["error"] or ""))
        await asyncio.sleep(3.0)
        ticks = run.controller.ticks
        await until(lambda: run.controller.ticks > ticks)  # the loop goes on
        status = (await run.status())["fleet"]
    assert (
        "member check failed (ValueError: a bug in the member check); restarting"
        in (status["error"])
    )
    assert 2 <= len(attempts) <= 4, f"{len(attempts)} attempts in ~3 s: 1 s doubling"
    tracebacks = [e for e in run.log_events() if "exception" in e]
    assert len(tracebacks) == 1, "one traceback for one distinct error"
    assert "ValueError: a bug in the member check" in tracebacks[0]["exception"]
