"""Which heartbeats come from this workload's pods.

Any Lease with the fleet's label used to count as a member: one forged "available" Lease turned a
1/3 fleet into 2/4. A heartbeat counts only when its holder is a pod whose controller owner chain
(Pod -> ReplicaSet -> Deployment, or Pod -> StatefulSet) reaches this workload; with no workload
(`none`), when the pod exists. Each pod is checked once (two GETs at most) and the answer cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from controller.kube.client import KubeClient, KubeError
from controller.runtime.clock import SYSTEM, Clock
from controller.telemetry.logs import event

log = logging.getLogger(__name__)

ACCEPTED_FOR = 600.0
"""A pod found to belong to the workload is not checked again for this long."""
REFUSED_FOR = 300.0
"""A holder found not to (or not to exist) is not checked again for this long."""
RATE = (5, 1.0)
"""At most this many checks at once, then one a second: a flood of forged heartbeats cannot
turn into a flood of requests."""


async def workload_of(client: KubeClient, pod: str) -> str | None:
    """`deployment/NAME` or `statefulset/NAME` from the pod's controller owners, `none` when it
    has no such owner, None when the pod does not exist."""
    found = await client.get("pods", pod)
    if found is None:
        return None
    owner = controller_owner(found)
    if owner is not None and owner.get("kind") == "ReplicaSet":
        owner = controller_owner(await client.get("replicasets", str(owner.get("name"))))
    if owner is not None and owner.get("kind") in {"Deployment", "StatefulSet"}:
        return f"{str(owner['kind']).lower()}/{owner.get('name')}"
    return "none"


def pod_owner(pod: dict[str, Any] | None) -> dict[str, Any]:
    """The Pod `pod` as an ownerReference of what it creates ({} when there is no such Pod):
    Kubernetes' garbage collector deletes the dependents with the Pod. Not blockOwnerDeletion,
    which needs the right to update the Pod's finalizers."""
    meta = (pod or {}).get("metadata")
    if not isinstance(meta, dict) or not meta.get("uid") or not meta.get("name"):
        return {}
    return {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}


def controller_owner(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    meta = obj.get("metadata")
    owners = meta.get("ownerReferences") if isinstance(meta, dict) else None
    if not isinstance(owners, list):
        return None
    return next((o for o in owners if isinstance(o, dict) and o.get("controller") is True), None)


@dataclass(frozen=True, slots=True)
class _Result:
    belongs: bool
    why: str
    at: float


class PodCheck:
    """Checks, in its own task, the pods `status()` is asked about; never blocks the caller."""

    def __init__(
        self,
        client: KubeClient,
        workload: str,
        clock: Clock = SYSTEM,
    ) -> None:
        self.client, self.workload, self._clock = client, workload, clock
        self._results: dict[str, _Result] = {}
        self._wanted: dict[str, float] = {}
        """Pods waiting for a check, and since when."""
        self.error: str | None = None
        """The last failure to check a pod (an API error), None once a check works."""
        self._wake = asyncio.Event()
        self._tokens, self._refilled = float(RATE[0]), clock.now()

    def status(self, pod: str) -> tuple[bool | None, str]:
        """(True: one of ours | False: not | None: not checked yet, why)."""
        now = self._clock.now()
        result = self._results.get(pod)
        if result is not None:
            valid = ACCEPTED_FOR if result.belongs else REFUSED_FOR
            if now - result.at < valid:
                return result.belongs, result.why
        if pod not in self._wanted:
            self._wanted[pod] = now
            self._wake.set()
        error = f": {self.error}" if self.error else ""
        return None, f"not checked yet{error}"

    def keep(self, pods: set[str]) -> None:
        """Forget every pod but these (the heartbeats there are now): bounded by the watch."""
        self._results = {p: r for p, r in self._results.items() if p in pods}
        self._wanted = {p: at for p, at in self._wanted.items() if p in pods}

    async def run(self) -> None:
        while True:
            self._wake.clear()
            for pod in list(self._wanted):
                await self._take_token()
                if pod in self._wanted:
                    await self._check(pod)
            if not self._wanted or self.error is not None:
                with contextlib.suppress(TimeoutError):
                    async with self._clock.timeout(None if not self._wanted else 5.0):
                        await self._wake.wait()

    async def _check(self, pod: str) -> None:
        try:
            found = await workload_of(self.client, pod)
        except KubeError as exc:
            message = f"cannot check member pods: {exc}"
            if message != self.error:
                event(log, logging.WARNING, "member_check_error", message)
            self.error = message
            return
        self.error = None
        self._wanted.pop(pod, None)
        if found is None:
            result = _Result(False, "no such pod", self._clock.now())
        elif self.workload == "none" or found == self.workload:
            result = _Result(True, "", self._clock.now())
        else:
            result = _Result(False, f"a pod of {found}, not of {self.workload}", self._clock.now())
        self._results[pod] = result

    async def _take_token(self) -> None:
        now = self._clock.now()
        burst, period = RATE
        self._tokens = min(float(burst), self._tokens + (now - self._refilled) / period)
        self._refilled = now
        if self._tokens < 1:
            await self._clock.sleep((1 - self._tokens) * period)
            self._tokens, self._refilled = 1.0, self._clock.now()
        self._tokens -= 1
