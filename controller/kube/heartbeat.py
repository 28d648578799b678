"""This replica's heartbeat Lease: its own health verdict, for the leader to count."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from controller.core.excerpt import clip
from controller.kube.client import KubeClient, KubeError
from controller.kube.wire import micro_time
from controller.runtime.logs import event

log = logging.getLogger(__name__)

LEASE_LABEL = "presence-controller/lease"
VERDICT_KEY = "presence-controller/verdict"
REASON_KEY = "presence-controller/reason"
_REASON_CHARS = 256


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
    ) -> None:
        self.client, self.name, self.pod, self.period = client, f"{lease}-{pod}", pod, period
        self._leading = leading
        self.labels = {LEASE_LABEL: lease}
        self.verdict, self.reason = "unknown", "starting"
        self.error: str | None = None
        self._changed = asyncio.Event()

    def report(self, verdict: str, reason: str) -> None:
        if verdict != self.verdict:
            self._changed.set()
        self.verdict, self.reason = verdict, reason

    async def run(self) -> None:
        while True:
            self._changed.clear()
            await self.write()
            # The leader renews the leader Lease every retry period already: its heartbeat at
            # half the rate still stays fresh (3 periods) and keeps its API requests in budget.
            period = 2 * self.period if self._leading() else self.period
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._changed.wait()

    async def write(self) -> None:
        """One renewal; a failure is kept in `error` (logged once per change), never raised."""
        body: dict[str, Any] = {
            "metadata": {
                "labels": self.labels,
                "annotations": {
                    VERDICT_KEY: self.verdict,
                    REASON_KEY: clip(self.reason, _REASON_CHARS),
                },
            },
            "spec": {
                "holderIdentity": self.pod,
                "leaseDurationSeconds": max(1, round(3 * self.period)),
                "renewTime": micro_time(),
            },
        }
        try:
            try:
                await self.client.patch_lease(self.name, body)
            except KubeError as exc:
                if exc.code != 404:
                    raise
                body["metadata"]["name"] = self.name
                body["spec"]["acquireTime"] = body["spec"]["renewTime"]
                await self.client.create_lease(body)
        except KubeError as exc:
            if str(exc) != self.error:
                event(log, logging.WARNING, "heartbeat_error", f"heartbeat {self.name}: {exc}")
            self.error = str(exc)
            return
        self.error = None
