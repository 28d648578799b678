"""Fleet mode: this replica's membership, through the Kubernetes API (docs/fleet.md).

Finds its workload (pod -> ReplicaSet -> Deployment, or a StatefulSet) when none is configured,
then campaigns for the leader Lease. Until that works (API unreachable, RBAC missing) it keeps
trying with back-off, reports why, and is not the leader: it never calls the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from controller.config import KubeSettings
from controller.core.election import ElectionConfig
from controller.runtime.election import LeaderElector
from controller.runtime.kube import KubeClient, KubeError, identity_of, namespace_of
from controller.runtime.logs import event

log = logging.getLogger(__name__)

_SETUP_BACKOFF = (1.0, 30.0)
"""Back-off between set-up attempts (first, cap), doubled each time."""


class FleetMember:
    """One replica of the fleet: set-up, leader election, and what `/status.fleet` shows."""

    def __init__(
        self,
        settings: KubeSettings,
        on_change: Callable[[bool], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.identity: str | None = None
        self.workload: str | None = settings.workload
        self.lease: str | None = settings.lease_name
        self.elector: LeaderElector | None = None
        self.error: str | None = None
        self._on_change = on_change
        self._clock = clock
        self._rng = rng or random.Random()
        self._client: KubeClient | None = None

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
        await self.elector.run()

    async def _set_up(self) -> None:
        s = self.settings
        namespace = namespace_of(s.namespace)
        self.identity = identity_of(s.pod_name)
        if self._client is None:
            try:
                self._client = KubeClient(namespace, timeout=max(1.0, s.renew_deadline / 3))
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
        self.elector = LeaderElector(
            self._client, self.lease, cfg, labels=labels, clock=self._clock, rng=self._rng,
            on_change=self._on_change,
        )  # fmt: skip
        event(
            log,
            logging.INFO,
            "fleet",
            f"fleet mode: {self.identity} campaigns for lease {self.lease} ({self.workload})",
        )

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
        return {
            "enabled": True,
            "identity": self.identity,
            "workload": self.workload,
            "lease": self.lease,
            "leader": elector.leader() if elector else None,
            "is_leader": self.leading(),
            "error": self.error or (elector.error if elector else None),
        }


def _controller_owner(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((o for o in owners if isinstance(o, dict) and o.get("controller")), None)
