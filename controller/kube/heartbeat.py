"""This replica's heartbeat Lease: its own health verdict, for the leader to count."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from controller.core.fleet import (
    DECISION_KEY,
    DECISION_REASON_KEY,
    LEASE_LABEL,
    REASON_KEY,
    VERDICT_KEY,
    clip_reason,
)
from controller.kube.client import KubeClient, KubeError
from controller.kube.wire import micro_time, version_of
from controller.runtime.clock import SYSTEM, Clock
from controller.telemetry.logs import event

log = logging.getLogger(__name__)

RETRY_AFTER_CAP = 60.0
"""The longest pause a server's Retry-After may impose on the heartbeat."""


class Heartbeat:
    """This replica's heartbeat Lease `<lease>-<pod>`: its health verdict and reason, renewed
    every `period` and at once when the verdict changes (a merge patch of what we own)."""

    def __init__(
        self,
        client: KubeClient,
        lease: str,
        pod: str,
        period: float,
        leading: Callable[[], bool] = lambda: False,
        clock: Clock = SYSTEM,
        owner: dict[str, Any] | None = None,
    ) -> None:
        """`owner`: this replica's Pod as an ownerReference: the garbage collector deletes the
        heartbeat with the Pod (the leader prunes what is left: view.FleetView.prune)."""
        self.client, self.name, self.pod, self.period = client, f"{lease}-{pod}", pod, period
        self.owner = owner
        self._leading, self._clock = leading, clock
        self._written: deque[tuple[str, float]] = deque(maxlen=16)
        """(resourceVersion, when the write was sent) of the last writes."""
        self._pause = 0.0
        self.labels = {LEASE_LABEL: lease}
        self.verdict, self.reason = "unknown", "starting"
        self.extra: dict[str, str | None] = {}
        """More annotations (the leader's decision, for followers to show: DECISION_KEY)."""
        self.error: str | None = None
        self._changed = asyncio.Event()

    def renew(self) -> None:
        """Renew now (once), whatever the period."""
        self._changed.set()

    def report(self, verdict: str, reason: str) -> None:
        if verdict != self.verdict:
            self._changed.set()
        self.verdict, self.reason = verdict, reason

    def decided(self, presence: str | None, reason: str) -> None:
        """The leader's decision (presence, reason) for the followers to show; None on a
        follower (a merge patch of null removes the annotations)."""
        extra: dict[str, str | None] = (
            {DECISION_KEY: presence, DECISION_REASON_KEY: clip_reason(reason)}
            if presence is not None
            else {DECISION_KEY: None, DECISION_REASON_KEY: None}
        )
        if extra.get(DECISION_KEY) != self.extra.get(DECISION_KEY):
            self._changed.set()
        self.extra = extra

    async def run(self) -> None:
        while True:
            self._changed.clear()
            await self.write()
            # The leader renews the leader Lease every retry period already: its heartbeat at
            # half the rate still stays fresh (3 periods) and keeps its API requests in budget.
            period = 2 * self.period if self._leading() else self.period
            period = max(period, self._pause)  # the server asked us to wait (Retry-After)
            with contextlib.suppress(TimeoutError):
                async with self._clock.timeout(period):
                    await self._changed.wait()

    async def write(self) -> None:
        """One renewal; a failure is kept in `error` (logged once per change), never raised."""
        body: dict[str, Any] = {
            "metadata": {
                "labels": self.labels,
                "annotations": {
                    VERDICT_KEY: self.verdict,
                    REASON_KEY: clip_reason(self.reason),
                    **self.extra,
                },
            },
            "spec": {
                "holderIdentity": self.pod,
                "leaseDurationSeconds": max(1, round(3 * self.period)),
                "renewTime": micro_time(self._clock.wall()),
            },
        }
        if self.owner is not None:
            body["metadata"]["ownerReferences"] = [self.owner]
        sent = self._clock.now()
        try:
            try:
                stored = await self.client.patch_lease(self.name, body)
            except KubeError as exc:
                if exc.code != 404:
                    raise
                body["metadata"]["name"] = self.name
                notes = body["metadata"]["annotations"]
                body["metadata"]["annotations"] = {k: v for k, v in notes.items() if v is not None}
                body["spec"]["acquireTime"] = body["spec"]["renewTime"]
                stored = await self.client.create_lease(body)
        except KubeError as exc:
            if str(exc) != self.error:
                event(log, logging.WARNING, "heartbeat_error", f"heartbeat {self.name}: {exc}")
            self.error = str(exc)
            self._pause = min(exc.retry_after or 0.0, RETRY_AFTER_CAP)
            return
        self.error, self._pause = None, 0.0
        self._written.append((version_of(stored), sent))

    def sent_at(self, version: str) -> float | None:
        """When the write that produced resourceVersion `version` was sent (None: not one of
        the last writes): a watch that delivers it was current at least up to then."""
        return next((at for v, at in self._written if v and v == version), None)
