"""Fleet mode: this replica's membership, through the Kubernetes API (docs/fleet.md).

Finds its workload (pod -> ReplicaSet -> Deployment, or a StatefulSet) when none is configured,
then campaigns for the leader Lease. Until that works (API unreachable, RBAC missing) it keeps
trying with back-off, reports why, and is not the leader: it never calls the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace

from controller.config import KubeSettings
from controller.core.election import ElectionConfig
from controller.core.fleet import STOPPING, VERDICTS, FleetInputs, Member, fresh_members
from controller.core.fleet import last_one_out as fleet_last_one_out
from controller.kube.client import KubeClient, KubeError, identity_of, namespace_of
from controller.kube.elector import LeaderElector
from controller.kube.events import EventRecorder
from controller.kube.heartbeat import LEASE_LABEL, REASON_KEY, VERDICT_KEY, Heartbeat
from controller.kube.watch import ObjectWatch, version_of
from controller.runtime.logs import event
from controller.runtime.metrics import Metrics

log = logging.getLogger(__name__)

_SETUP_BACKOFF = (1.0, 30.0)
"""Back-off between set-up attempts (first, cap), doubled each time."""


async def _supervised(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a fleet loop forever: a bug in one (not an API failure: those are values) is logged
    and the loop restarted after a pause, never allowed to end the controller."""
    while True:
        try:
            await run()
        except Exception:
            log.exception("fleet %s failed; restarting it in %gs", name, _SETUP_BACKOFF[0])
        await asyncio.sleep(_SETUP_BACKOFF[0])


class FleetMember:
    """One replica of the fleet: set-up, leader election, and what `/status.fleet` shows."""

    def __init__(
        self,
        settings: KubeSettings,
        on_change: Callable[[bool], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.settings = settings
        self._metrics = metrics
        self._tracer = tracer or trace.get_tracer(__name__)
        self.identity: str | None = None
        self.workload: str | None = settings.workload
        self.lease: str | None = settings.lease_name
        self.elector: LeaderElector | None = None
        self.heartbeat: Heartbeat | None = None
        self.watch: ObjectWatch | None = None
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

    def leading(self) -> bool:
        return self.elector is not None and self.elector.leading()

    async def run(self) -> None:
        """Set up (retrying with back-off), then campaign and renew until cancelled."""
        delay = _SETUP_BACKOFF[0]
        while self.elector is None:
            try:
                await self._set_up()
            except KubeError as exc:
                if str(exc) != self.error:
                    event(log, logging.ERROR, "fleet_setup", f"fleet mode not ready: {exc}")
                self.error = str(exc)
                await asyncio.sleep(delay * (1 + self._rng.random() * 0.2))
                delay = min(delay * 2, _SETUP_BACKOFF[1])
        self.error = None
        assert self.heartbeat is not None  # set up with the elector
        assert self.watch is not None
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_supervised("elector", self.elector.run))
            tasks.create_task(_supervised("heartbeat", self.heartbeat.run))
            tasks.create_task(_supervised("members watch", self.watch.run))
            for source in self.sources:
                tasks.create_task(_supervised(f"watch of {source.what}", source.run))
            if self.recorder is not None:
                tasks.create_task(_supervised("events", self.recorder.run))

    def report(self, verdict: str, reason: str) -> None:
        """This replica's own health verdict, for its heartbeat."""
        self._verdict = (verdict, reason)
        if self.heartbeat is not None:
            self.heartbeat.report(verdict, reason)

    def members(self) -> list[Member]:
        """Every member as last seen (this replica as it is now)."""
        now = self._clock()
        out = []
        watch = self.watch
        for name, obj in (watch.items if watch is not None else {}).items():
            pod = str((obj.get("spec") or {}).get("holderIdentity") or name)
            if pod == self.identity:
                continue
            notes = (obj.get("metadata") or {}).get("annotations") or {}
            verdict = str(notes.get(VERDICT_KEY, "unknown"))
            reason = str(notes.get(REASON_KEY, ""))
            age = now - watch.seen.get(name, now) if watch is not None else 0.0
            out.append(Member(pod, verdict if verdict in VERDICTS else "unknown", reason, age))
        if self.identity is not None:
            out.append(Member(self.identity, *self._verdict, 0.0))
        return sorted(out, key=lambda m: m.pod)

    def inputs(self, members: list[Member]) -> FleetInputs | None:
        """What the leader decides from, given `members()` (None before set-up)."""
        if self.identity is None:
            return None
        others = tuple(m for m in members if m.pod != self.identity)
        return FleetInputs(self.identity, others, self.settings.min_available, self.stale_after)

    async def last_one_out(self, seen: list[Member], settle: float, budget: float) -> bool:
        """On shutdown, for the leader: whether no other member will keep the bot available.
        `seen` is the fleet as the member watch last saw it (taken before shutting down: the
        watch has stopped). Replicas often stop together (scale to zero, a deleted Deployment):
        wait `settle` seconds for their `stopping` heartbeats, then read the heartbeats again;
        if that read fails, judge from `seen`."""
        if self.identity is None or self._client is None or self.lease is None:
            return True  # never set up: never led
        me, client, lease = self.identity, self._client, self.lease
        await asyncio.sleep(settle)
        try:
            async with asyncio.timeout(budget):
                items, _ = await client.list_objects("leases", labels={LEASE_LABEL: lease})
        except (KubeError, TimeoutError):
            return fleet_last_one_out(seen, me, self.stale_after)
        known = self.watch.items if self.watch is not None else {}
        now: dict[str, tuple[str, bool]] = {}
        for obj in items:
            meta = obj.get("metadata") or {}
            pod = str((obj.get("spec") or {}).get("holderIdentity") or "")
            verdict = str((meta.get("annotations") or {}).get(VERDICT_KEY, "unknown"))
            # Renewed since the watch last saw it: alive now, whatever the watch's age says.
            moved = version_of(known.get(str(meta.get("name")))) != version_of(obj)
            now[pod] = (verdict, moved)
        members = [
            Member(
                m.pod,
                now.get(m.pod, (m.verdict, False))[0],
                m.reason,
                0.0 if now.get(m.pod, ("", False))[1] else m.age,
            )
            for m in seen
        ]
        return fleet_last_one_out(members, me, self.stale_after)

    async def stopping(self, budget: float) -> None:
        """Shutting down: say so in the heartbeat at once, so the leader stops counting us."""
        if self.heartbeat is None:
            return
        self.report(STOPPING, "shutting down")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(budget):
                await self.heartbeat.write()

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
        if self.workload is None:
            self.workload = await self._discover_workload(self._client, self.identity)
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
            self._client, self.lease, self.identity, s.heartbeat, leading=self.leading
        )
        self.heartbeat.report(*self._verdict)
        self.watch = ObjectWatch(
            self._client, "leases", self._clock, labels={LEASE_LABEL: self.lease},
            on_restart=self._restarted,
        )  # fmt: skip
        self.elector = LeaderElector(
            self._client, self.lease, cfg, labels=labels, clock=self._clock, rng=self._rng,
            on_change=self._on_change, tracer=self._tracer,
        )  # fmt: skip
        event(
            log,
            logging.INFO,
            "fleet",
            f"fleet mode: {self.identity} campaigns for lease {self.lease} ({self.workload})",
        )

    def _request(self, verb: str, resource: str, code: int) -> None:
        if self._metrics is not None:
            self._metrics.kube_requests.labels(verb=verb, resource=resource, code=str(code)).inc()

    def _restarted(self, resource: str) -> None:
        if self._metrics is not None:
            self._metrics.kube_watch_restarts.labels(resource=resource).inc()

    def _source(self, plural: str, name: str) -> ObjectWatch:
        assert self._client is not None
        return ObjectWatch(
            self._client, plural, self._clock, name=name, on_change=self._annotations_changed,
            on_restart=self._restarted, tracer=self._tracer,
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
        """(`deployment/NAME` or `namespace/NAME`, its annotations) for each watched source:
        the last good ones while a watch cannot read (reported in `/status.fleet.error`)."""
        out = []
        for source in self.sources:
            obj = source.items.get(source.name or "")
            notes = ((obj or {}).get("metadata") or {}).get("annotations") or {}
            out.append((source.what, {str(k): str(v) for k, v in notes.items()}))
        return tuple(out)

    @property
    def sources_version(self) -> tuple[int, ...]:
        return tuple(source.version for source in self.sources)

    @staticmethod
    async def _discover_workload(client: KubeClient, pod: str) -> str:
        """deployment/NAME or statefulset/NAME from the pod's controller owner, else none."""
        owner = _controller_owner(await client.get("pods", pod))
        if owner is not None and owner.get("kind") == "ReplicaSet":
            owner = _controller_owner(await client.get("replicasets", str(owner.get("name"))))
        if owner is not None and owner.get("kind") in {"Deployment", "StatefulSet"}:
            return f"{str(owner['kind']).lower()}/{owner.get('name')}"
        return "none"

    async def shutdown(self) -> None:
        if self.elector is not None:
            await self.elector.release()
        if self._client is not None:
            await self._client.aclose()

    def status(self) -> dict[str, Any]:
        elector = self.elector
        members = self.members()
        fresh = {m.pod for m in fresh_members(members, self.stale_after)}
        errors = [
            self.error,
            elector.error if elector else None,
            f"heartbeat: {self.heartbeat.error}"
            if self.heartbeat and self.heartbeat.error
            else None,
            f"members watch: {self.watch.error}" if self.watch and self.watch.error else None,
            *(f"watch of {w.what}: {w.error}" for w in self.sources if w.error),
            f"events: {self.recorder.error}" if self.recorder and self.recorder.error else None,
        ]
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
                }
                for m in members
            ],
            "available_members": sum(m.verdict == "available" and m.pod in fresh for m in members),
            "error": "; ".join(e for e in errors if e) or None,
        }


def _controller_owner(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((o for o in owners if isinstance(o, dict) and o.get("controller")), None)
