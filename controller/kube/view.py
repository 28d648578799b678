"""What this replica sees of its fleet: the members that count, those ignored, and how current
its view of them is (docs/fleet.md, "When the leader cannot see its fleet").

The view is confirmed, not assumed: it counts as current at the moment a list was sent, or a
heartbeat of this replica's own was written that the watch has since delivered back, so that a
watch that stalls, sends only bookmarks or garbage cannot pass for a quiet fleet.
"""

from __future__ import annotations

import logging

from controller.core.excerpt import quote
from controller.core.fleet import (
    LEASE_LABEL,
    Member,
    first_sight_age,
    is_last_one_out,
    read_heartbeat,
)
from controller.kube.client import KubeClient, KubeError
from controller.kube.heartbeat import Heartbeat
from controller.kube.members import PodCheck
from controller.kube.watch import MAX_OBJECTS, ObjectWatch
from controller.kube.wire import version_of
from controller.runtime.clock import Clock
from controller.telemetry.logs import event
from controller.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

PRUNE_BATCH = 10
"""Heartbeat Leases the leader deletes at most per pass."""


class FleetView:
    """The heartbeats as this replica's watch holds them, judged."""

    def __init__(
        self,
        identity: str,
        lease: str,
        watch: ObjectWatch,
        heartbeat: Heartbeat,
        pods: PodCheck,
        stale_after: float,
        clock: Clock,
        metrics: Metrics | None = None,
    ) -> None:
        self.identity, self.lease, self.stale_after = identity, lease, stale_after
        self.watch, self.heartbeat, self.pods = watch, heartbeat, pods
        self._clock, self._metrics = clock, metrics
        self._first: dict[str, str] = {}
        """Heartbeat name -> its resourceVersion when this replica first saw it: until it
        changes, its age is read from its renewTime (core.fleet.first_sight_age)."""
        self.started = clock.now()
        self._confirmed: float | None = None
        """When the view was last known complete and current."""
        self.ignored: dict[str, str] = {}
        """Heartbeat Leases that do not count, and why."""

    def members(self, me: list[Member]) -> list[Member]:
        """Every member that counts, as last seen, with `me` (this replica as it is now):
        heartbeats of pods of this workload, one per pod; the rest is ignored (reported)."""
        now, wall = self._clock.now(), self._clock.wall().timestamp()
        out = list(me)
        ignored: dict[str, str] = {}
        holders = set()
        items = self.watch.items
        self._first = {n: v for n, v in self._first.items() if n in items}
        for name, obj in items.items():
            read = read_heartbeat(name, obj, self.lease)
            if isinstance(read, str):
                ignored[name] = read
                continue
            if read.pod == self.identity:
                continue
            holders.add(read.pod)
            belongs, why = self.pods.status(read.pod)
            if belongs is False:
                ignored[name] = why
                continue
            age = now - self.watch.seen.get(name, now)
            if self._first.setdefault(name, version_of(obj)) == version_of(obj):
                age = first_sight_age(age, read.renewed, wall)
            if belongs is None:
                # Not checked yet: it may be one of ours, so it counts, undecided.
                out.append(Member(read.pod, "unknown", f"member {why}", age))
            else:
                out.append(Member(read.pod, read.verdict, read.reason, age))
        self.pods.keep(holders)
        self._ignore(ignored)
        return sorted(out, key=lambda m: m.pod)

    def decision(self, leader: str | None) -> tuple[str, str] | None:
        """What the leader `leader` decided for the bot, as its heartbeat says (a follower
        shows it); None when unknown."""
        if leader is None or leader == self.identity:
            return None
        obj = self.watch.items.get(f"{self.lease}-{leader}")
        read = read_heartbeat(f"{self.lease}-{leader}", obj, self.lease) if obj else None
        return read.decision if read is not None and not isinstance(read, str) else None

    async def prune(self, client: KubeClient, after: float, most: int = PRUNE_BATCH) -> list[str]:
        """For the leader: delete the heartbeat Leases of members silent for `after` seconds
        (by this replica's clock and by their renewTime), whose pods' garbage collection did
        not (an older version's heartbeat, a pod deleted while the collector was behind). A
        Lease renewed since it was read is kept (a delete precondition). Never raises."""
        now, wall, pruned = self._clock.now(), self._clock.wall().timestamp(), list[str]()
        for name, obj in list(self.watch.items.items()):
            read = read_heartbeat(name, obj, self.lease)
            if isinstance(read, str) or read.pod == self.identity or len(pruned) >= most:
                continue
            silent = now - self.watch.seen.get(name, now)
            if silent < after or read.renewed is None or wall - read.renewed < after:
                continue
            try:
                if await client.delete_lease(name, version_of(obj)):
                    pruned.append(name)
                    message = f"pruned heartbeat Lease {name}: silent for {silent:.0f}s"
                    event(log, logging.INFO, "heartbeat_pruned", message)
            except KubeError as exc:
                event(log, logging.WARNING, "heartbeat_prune", f"pruning {name}: {exc}")
                break
        return pruned

    def _ignore(self, ignored: dict[str, str]) -> None:
        new = sorted(set(ignored) - set(self.ignored))
        if new:
            examples = "; ".join(f"{quote(n, 60)}: {ignored[n]}" for n in new[:3])
            more = f" and {len(new) - 3} more" if len(new) > 3 else ""
            message = f"{len(new)} heartbeat Lease(s) ignored: {examples}{more}"
            event(log, logging.WARNING, "heartbeat_ignored", message, count=len(ignored))
        self.ignored = ignored
        if self._metrics is not None:
            self._metrics.fleet_ignored.set(len(ignored))

    def age(self) -> float:
        """Seconds since the view was last confirmed complete and current: a list sent then,
        or a heartbeat of this replica's own written then and delivered back by the watch
        since. A confirmation counts only once a whole heartbeat window has passed since the
        watch started (every live member has reported by then): before that the view is at
        least a window old, whatever was read."""
        watch, heartbeat = self.watch, self.heartbeat
        if not watch.overflow:
            own = heartbeat.sent_at(version_of(watch.items.get(heartbeat.name)))
            for at in (watch.listed_at, own):
                if at is not None and (self._confirmed is None or at > self._confirmed):
                    self._confirmed = at
        now = self._clock.now()
        if not self._complete():
            return max(now - (self._confirmed or self.started), self.stale_after)
        return now - (self._confirmed or self.started)

    def _complete(self) -> bool:
        return self._confirmed is not None and self._confirmed >= self.started + self.stale_after

    def unseen(self) -> str:
        """What keeps this replica from seeing its fleet, if anything is known to."""
        if self.watch.error:
            return f"members watch: {self.watch.error}"
        if self.watch.overflow:
            return f"more than {MAX_OBJECTS} heartbeat Leases: the rest are not read"
        if self.heartbeat.error:
            return f"heartbeat: {self.heartbeat.error}"
        if not self._complete():
            return "starting: every member reports within 3 x HEARTBEAT"
        return ""

    async def last_one_out(
        self, client: KubeClient, seen: list[Member], settle: float, budget: float
    ) -> bool:
        """On shutdown, for the leader: whether no other member will keep the bot available.
        `seen` is the fleet as the member watch last saw it (taken before shutting down: the
        watch has stopped). Replicas often stop together (scale to zero, a deleted Deployment):
        wait `settle` seconds for their `stopping` heartbeats, then read the heartbeats again;
        if that read fails, judge from `seen` (a leader that could not see its fleet then turns
        the light off)."""
        me, view_age = self.identity, self.age()
        await self._clock.sleep(settle)
        try:
            async with self._clock.timeout(budget):
                items, _, _ = await client.list_objects(
                    "leases", labels={LEASE_LABEL: self.lease}, most=MAX_OBJECTS
                )
        except (KubeError, TimeoutError):
            return is_last_one_out(seen, me, self.stale_after, view_age)
        known = self.watch.items
        now: dict[str, tuple[str, bool]] = {}
        for obj in items:
            name = str((obj.get("metadata") or {}).get("name"))
            read = read_heartbeat(name, obj, self.lease)
            if isinstance(read, str):
                continue
            # Renewed since the watch last saw it: alive now, whatever the watch's age says.
            now[read.pod] = (read.verdict, version_of(known.get(name)) != version_of(obj))
        members = [
            Member(
                m.pod,
                now.get(m.pod, (m.verdict, False))[0],
                m.reason,
                0.0 if now.get(m.pod, ("", False))[1] else m.age,
            )
            for m in seen
            if m.pod in now or m.pod == me
        ]
        return is_last_one_out(members, me, self.stale_after)
