"""Fleet mode: this replica's membership, through the Kubernetes API (docs/fleet.md).

Finds its workload (pod -> ReplicaSet -> Deployment, or a StatefulSet) when none is configured,
then campaigns for the leader Lease, renews its heartbeat, watches the fleet's heartbeats and
the workload's (and namespace's) annotations. Until set-up works (API unreachable, RBAC
missing) it keeps trying with back-off, reports why, and is not the leader: it never calls the
gateway.

What the leader decides from is confirmed, not assumed: its view of the heartbeats counts as
current at the moment a list was sent, or a heartbeat of its own was written that the watch has
since delivered back. Members silent for longer than the window are gone only if the view was
confirmed after that; otherwise they are unconfirmed (core.fleet), and a leader that cannot see
its fleet never decides from itself alone.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace

from controller.config import KubeSettings
from controller.core.election import ElectionConfig
from controller.core.excerpt import clip
from controller.core.fleet import (
    LEASE_LABEL,
    STOPPING,
    FleetInputs,
    Member,
    fresh_members,
    unconfirmed,
)
from controller.kube import sources
from controller.kube.client import KubeClient, KubeError, identity_of, namespace_of
from controller.kube.elector import LeaderElector
from controller.kube.events import EventRecorder
from controller.kube.heartbeat import Heartbeat
from controller.kube.members import PodCheck, pod_owner, workload_of
from controller.kube.supervisor import SETUP_BACKOFF, Supervisor
from controller.kube.view import FleetView
from controller.kube.watch import ObjectWatch
from controller.runtime.clock import SYSTEM, Clock
from controller.telemetry.logs import event
from controller.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

IGNORED_SHOWN = 10
"""Ignored heartbeats listed in /status (all are counted)."""
PRUNE_AFTER = 5
"""Lease durations a heartbeat may stay silent before the leader deletes it."""


class FleetMember:
    """One replica of the fleet: set-up, leader election, the member view, what `/status.fleet`
    shows."""

    def __init__(
        self,
        settings: KubeSettings,
        on_change: Callable[[bool], None],
        *,
        prefix: str = "presence-controller/",
        clock: Clock = SYSTEM,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.settings = settings
        self._prefix = prefix
        self._metrics = metrics
        self._tracer = tracer or trace.get_tracer(__name__)
        self.identity: str | None = None
        self.workload: str | None = settings.workload
        self.lease: str | None = settings.lease_name
        self.elector: LeaderElector | None = None
        self.heartbeat: Heartbeat | None = None
        self.watch: ObjectWatch | None = None
        self.pods: PodCheck | None = None
        self.view: FleetView | None = None
        self.error: str | None = None
        self.recorder: EventRecorder | None = None
        self.sources: list[ObjectWatch] = []
        """Annotation sources: the workload, then (WATCH_NAMESPACE) the Namespace."""
        self.on_annotations: Callable[[], None] | None = None
        """Called when a source's annotations may have changed (the controller re-evaluates)."""
        self.stale_after = 3 * settings.heartbeat
        """A member is fresh while this replica saw its heartbeat change within this long."""
        self._on_change = on_change
        self._clock = clock
        self._rng = rng or random.Random()
        self._client: KubeClient | None = None
        self._verdict = ("unknown", "starting")
        self._started = clock.now()
        self._owner: dict[str, Any] | None = None
        """This replica's Pod as an ownerReference ({}: no such Pod), once read."""
        self._supervisor = Supervisor(clock, self._rng)

    def leading(self, within: float = 0.0) -> bool:
        """Whether this replica leads and may start an action lasting up to `within` s."""
        return self.elector is not None and self.elector.leading(within)

    async def run(self) -> None:
        """Set up (retrying with back-off), then campaign and renew until cancelled."""
        delay = SETUP_BACKOFF[0]
        while self.elector is None:
            try:
                await self._set_up()
            except KubeError as exc:
                if str(exc) != self.error:
                    event(log, logging.ERROR, "fleet_setup", f"fleet mode not ready: {exc}")
                self.error = str(exc)
                await self._clock.sleep(
                    max(delay, exc.retry_after or 0.0) * (1 + self._rng.random() * 0.2)
                )
                delay = min(delay * 2, SETUP_BACKOFF[1])
        self.error = None
        assert self.heartbeat is not None  # set up with the elector
        assert self.watch is not None
        assert self.pods is not None
        loops: dict[str, Callable[[], Awaitable[None]]] = {
            "elector": self.elector.run,
            "heartbeat": self.heartbeat.run,
            "members watch": self.watch.run,
            "member check": self.pods.run,
            **{f"watch of {source.what}": source.run for source in self.sources},
        }
        if self.recorder is not None:
            loops["events"] = self.recorder.run
        loops["pruner"] = self._prune
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._first_window())
            for name, loop in loops.items():
                tasks.create_task(self._supervisor.run(name, loop))

    async def _first_window(self) -> None:
        """The view counts as complete from one heartbeat window after set-up: renew the
        heartbeat then, so that its echo confirms the view at once, not a period later."""
        started = self.view.started if self.view is not None else self._clock.now()
        await self._clock.sleep(max(0.0, started + self.stale_after - self._clock.now()))
        if self.heartbeat is not None:
            self.heartbeat.renew()

    async def _prune(self) -> None:
        """The leader deletes heartbeat Leases silent for PRUNE_AFTER lease durations."""
        after = max(PRUNE_AFTER * self.settings.lease_duration, 2 * self.stale_after)
        while True:
            await self._clock.sleep(self.stale_after)
            if self.leading() and self.view is not None and self._client is not None:
                await self.view.prune(self._client, after)

    def report(self, verdict: str, reason: str) -> None:
        """This replica's own health verdict, for its heartbeat."""
        self._verdict = (verdict, reason)
        if self.heartbeat is not None:
            self.heartbeat.report(verdict, reason)

    def decided(self, presence: str | None, reason: str) -> None:
        """The leader's decision, for its heartbeat (followers show it); None on a follower."""
        if self.heartbeat is not None:
            self.heartbeat.decided(presence, reason)

    def leader_decision(self) -> tuple[str, str] | None:
        """On a follower: the presence the leader decided, and why, from its heartbeat."""
        if self.view is None or self.elector is None:
            return None
        return self.view.decision(self.elector.leader())

    def members(self) -> list[Member]:
        """Every member that counts, as last seen (this replica as it is now)."""
        me = [Member(self.identity, *self._verdict, 0.0)] if self.identity is not None else []
        return self.view.members(me) if self.view is not None else me

    def view_age(self) -> float:
        """Seconds since this replica's view of the heartbeats was confirmed (view.FleetView)."""
        return self.view.age() if self.view is not None else self._clock.now() - self._started

    def unseen(self) -> str:
        """What keeps this replica from seeing its fleet, if anything is known to."""
        if self.view is None:
            return self.error or "fleet mode not set up"
        return self.view.unseen()

    def inputs(self, members: list[Member]) -> FleetInputs | None:
        """What the leader decides from, given `members()` (None before set-up)."""
        if self.identity is None:
            return None
        others = tuple(m for m in members if m.pod != self.identity)
        return FleetInputs(
            self.identity, others, self.settings.min_available, self.stale_after,
            self.view_age(), self.unseen(),
        )  # fmt: skip

    async def last_one_out(self, seen: list[Member], settle: float, budget: float) -> bool:
        """On shutdown, for the leader: whether no other member will keep the bot available
        (view.FleetView.last_one_out)."""
        if self.view is None or self._client is None:
            return True  # never set up: never led
        return await self.view.last_one_out(self._client, seen, settle, budget)

    async def stopping(self, budget: float) -> None:
        """Shutting down: say so in the heartbeat at once, so the leader stops counting us."""
        if self.heartbeat is None:
            return
        self.report(STOPPING, "shutting down")
        try:
            async with self._clock.timeout(budget):
                await self.heartbeat.write()
        except TimeoutError:
            pass

    async def _set_up(self) -> None:
        s = self.settings
        namespace = namespace_of(s.namespace)
        self.identity = identity_of(s.pod_name)
        if self._client is None:
            try:
                self._client = KubeClient(
                    namespace, timeout=max(1.0, s.renew_deadline / 3), on_request=self._request
                )
            except (OSError, ValueError, KeyError) as exc:
                raise KubeError(
                    0, "", f"no Kubernetes configuration: {type(exc).__name__}"
                ) from None
        if self._owner is None:
            self._owner = pod_owner(await self._client.get("pods", self.identity))
        if self.workload is None:
            self.workload = await workload_of(self._client, self.identity) or "none"
        if self.lease is None:
            if self.workload == "none":
                raise KubeError(0, "", "no workload: set PRESENCE_KUBE__LEASE_NAME")
            self.lease = f"{self.workload.partition('/')[2]}-presence"
        cfg = ElectionConfig(self.identity, s.lease_duration, s.renew_deadline, s.retry_period)
        labels = {"app.kubernetes.io/managed-by": "presence-controller"}
        if self.workload != "none" and not self.sources:
            kind, _, name = self.workload.partition("/")
            self.sources.append(self._source(f"{kind}s", name))
        if s.watch_namespace and len(self.sources) < 1 + (self.workload != "none"):
            self.sources.append(self._source("namespaces", namespace))
        if s.events and self.recorder is None:
            self.recorder = EventRecorder(
                self._client, self.identity, self.regarding, self._clock, tracer=self._tracer
            )
        self.heartbeat = Heartbeat(
            self._client, self.lease, self.identity, s.heartbeat, leading=self.leading,
            clock=self._clock, owner=self._owner or None,
        )  # fmt: skip
        self.heartbeat.report(*self._verdict)
        self.pods = PodCheck(self._client, self.workload, self._clock)
        self.watch = ObjectWatch(
            self._client, "leases", self._clock, labels={LEASE_LABEL: self.lease},
            stall=self.stale_after, rng=self._rng, on_restart=self._restarted,
        )  # fmt: skip
        self.view = FleetView(
            self.identity, self.lease, self.watch, self.heartbeat, self.pods, self.stale_after,
            self._clock, self._metrics,
        )  # fmt: skip
        self.elector = LeaderElector(
            self._client, self.lease, cfg, labels=labels, clock=self._clock, rng=self._rng,
            on_change=self._on_change, on_reachable=self._reachable, tracer=self._tracer,
        )  # fmt: skip
        event(
            log,
            logging.INFO,
            "fleet",
            f"fleet mode: {self.identity} campaigns for lease {self.lease} ({self.workload})",
        )

    def _reachable(self) -> None:
        """The API server answers the elector again: the watches stop waiting out back-off."""
        for watch in (self.watch, *self.sources):
            if watch is not None:
                watch.retry_now()

    def _request(self, verb: str, resource: str, code: int) -> None:
        if self._metrics is not None:
            self._metrics.kube_requests.labels(verb=verb, resource=resource, code=str(code)).inc()

    def _restarted(self, resource: str) -> None:
        if self._metrics is not None:
            self._metrics.kube_watch_restarts.labels(resource=resource).inc()

    def _source(self, plural: str, name: str) -> ObjectWatch:
        assert self._client is not None
        return ObjectWatch(
            self._client, plural, self._clock, name=name, rng=self._rng,
            on_change=self._annotations_changed, on_restart=self._restarted, tracer=self._tracer,
        )  # fmt: skip

    def _annotations_changed(self) -> None:
        if self.on_annotations is not None:
            self.on_annotations()

    def regarding(self) -> dict[str, Any] | None:
        """The workload as an Event's `regarding` (its real uid: `kubectl describe` finds
        Events by it); None until it has been read."""
        if not self.sources or self.workload in {None, "none"}:
            return None
        source = self.sources[0]
        obj = source.items.get(source.name or "")
        meta = (obj or {}).get("metadata") or {}
        if not meta.get("uid"):
            return None
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment" if source.plural == "deployments" else "StatefulSet",
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta["uid"],
        }

    def emit(self, type_: str, reason: str, note: str, action: str) -> None:
        """An Event regarding the workload (fleet mode, EVENTS on); only the leader emits."""
        if self.recorder is not None and self.leading():
            self.recorder.record(type_, reason, note, action)

    def annotation_sources(self) -> tuple[tuple[str, dict[str, str]], ...]:
        """(`deployment/NAME` or `namespace/NAME`, its annotations) for each watched source
        (kube.sources: the last good ones while a watch cannot read; for a source that
        disappeared, its last maintenance annotations for a while)."""
        now = self._clock.now()
        return tuple(
            (source.what, sources.annotations_of(source, now, self._prefix))
            for source in self.sources
        )

    @property
    def sources_version(self) -> tuple[tuple[int, bool], ...]:
        now = self._clock.now()
        return tuple((source.version, sources.keeping(source, now)) for source in self.sources)

    async def shutdown(self) -> None:
        if self.elector is not None:
            await self.elector.release()
        if self._client is not None:
            await self._client.aclose()

    def errors(self) -> list[str]:
        """Everything that keeps fleet mode from working as it should, now."""
        elector, heartbeat, watch, pods = self.elector, self.heartbeat, self.watch, self.pods
        found = [
            self.error,
            elector.error if elector else None,
            f"heartbeat: {heartbeat.error}" if heartbeat and heartbeat.error else None,
            f"members watch: {watch.error}" if watch and watch.error else None,
            self.unseen() if watch and watch.overflow else None,
            f"member check: {pods.error}" if pods and pods.error else None,
            *(f"watch of {w.what}: {w.error}" for w in self.sources if w.error),
            *(sources.gone_note(w, self._clock.now(), self._clock.wall()) for w in self.sources),
            f"events: {self.recorder.error}" if self.recorder and self.recorder.error else None,
            *self._supervisor.notes(),
        ]
        return [e for e in found if e]

    def status(self) -> dict[str, Any]:
        elector = self.elector
        members = self.members()
        view_age = self.view_age()
        fresh = {m.pod for m in fresh_members(members, self.stale_after)}
        every = self.view.ignored if self.view is not None else {}
        ignored = sorted(every.items())[:IGNORED_SHOWN]
        return {
            "enabled": True,
            "identity": self.identity,
            "workload": self.workload,
            "lease": self.lease,
            "leader": elector.leader() if elector else None,
            "is_leader": self.leading(),
            "min_available": self.settings.min_available,
            "members": [
                {
                    "pod": m.pod,
                    "verdict": m.verdict,
                    "reason": m.reason,
                    "age_seconds": round(m.age, 3),
                    "fresh": m.pod in fresh,
                    "confirmed": not unconfirmed(m, self.stale_after, view_age),
                }
                for m in members
            ],
            "available_members": sum(m.verdict == "available" and m.pod in fresh for m in members),
            "view": {
                "age_seconds": round(view_age, 3),
                "current": view_age < self.stale_after,
                "unseen": self.unseen() or None,
            },
            "ignored": [{"lease": clip(name, 80), "why": why} for name, why in ignored],
            "ignored_count": len(every),
            "error": "; ".join(self.errors()) or None,
        }
