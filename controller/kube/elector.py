"""The leader elector: carries out `core.election` against a coordination.k8s.io/v1 Lease.

Only the leader calls the gateway: the actuator asks `leading()` before every call, which is a
pure function of this replica's monotonic clock and its last successful renewal, so a leader cut
off from the API server stops acting at the renew deadline even if this loop is stuck.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from controller.core import election
from controller.core.election import Create, ElectionConfig, ElectionState, Held, LeaseRecord
from controller.kube.client import KubeClient, KubeError
from controller.kube.wire import micro_time, version_of
from controller.runtime.clock import SYSTEM, Clock
from controller.telemetry.logs import event

log = logging.getLogger(__name__)

RELEASE_BUDGET = 3.0
"""At most this long to release the Lease on shutdown (client-go allows the renew deadline; a
pod's shutdown must fit its termination grace period)."""


def _spec(record: LeaseRecord) -> dict[str, Any]:
    # client-go writes every field, an empty holder included.
    return {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.duration,
        "acquireTime": record.acquire_time,
        "renewTime": record.renew_time,
        "leaseTransitions": record.transitions,
    }


class LeaderElector:
    """Campaigns for and renews one Lease, forever; `leading()` gates leader-only work."""

    def __init__(
        self,
        client: KubeClient,
        lease: str,
        cfg: ElectionConfig,
        *,
        labels: dict[str, str] | None = None,
        clock: Clock = SYSTEM,
        rng: random.Random | None = None,
        on_change: Callable[[bool], None] | None = None,
        on_reachable: Callable[[], None] | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        """`on_reachable` is called when the Lease can be read and written again after a
        failure (the other loops need not wait out their back-off)."""
        self.client, self.lease, self.cfg = client, lease, cfg
        self._on_reachable = on_reachable
        self._tracer = tracer or trace.get_tracer(__name__)
        self.state = ElectionState()
        self.error: str | None = None
        """The last failure to read or write the Lease, None once one succeeds."""
        self._labels = labels or {}
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_change = on_change
        self._cached: dict[str, Any] | None = None
        """The Lease object last read or written (its resourceVersion goes with every write)."""
        self._was_leading = False

    def leading(self, within: float = 0.0) -> bool:
        """Whether this replica may start a leader-only action that lasts up to `within` s."""
        return election.leading(self.state, self._clock.now(), self.cfg, within)

    def leader(self) -> str | None:
        return election.leader(self.state, self._clock.now(), self.cfg)

    async def run(self) -> None:
        """Campaign and renew until cancelled: a leader every retry period, the others every
        retry period x [1, 2.2) (client-go's jitter)."""
        while True:
            await self.try_once()
            period = self.cfg.retry_period
            if not self.leading():
                period *= 1 + self._rng.random() * election.JITTER
            await self._clock.sleep(period)

    async def try_once(self) -> None:
        """One tryAcquireOrRenew; failures are kept in `error` and reported once per change."""
        self._notice()  # a renewal that lapsed while the last try hung is reported now
        try:
            if not await self._renew_fast():
                await self._acquire_or_renew()
        except KubeError as exc:
            self._failed(str(exc))
        else:
            observed = self.state.observed
            if observed is not None and observed.problem:
                # Held by someone unknown: never taken as free, taken once it expires.
                self._failed(
                    f"lease {self.lease} cannot be read ({observed.problem}): treated "
                    "as held until it has not changed for the lease duration"
                )
            else:
                if self.error is not None:
                    message = f"lease {self.lease}: read and written again"
                    event(log, logging.INFO, "lease_ok", message)
                    if self._on_reachable is not None:
                        self._on_reachable()
                self.error = None
        self._notice()

    async def release(self) -> None:
        """On shutdown: stop acting, then hand the Lease over (holder "" and 1 s, as client-go's
        ReleaseOnCancel) so that a successor leads within one retry period."""
        if self.state.observed is None or self.state.observed.holder != self.cfg.identity:
            return
        sent = self._clock.now()
        self.state = ElectionState(self.state.observed, self.state.version, sent, None)
        self._notice()
        try:
            async with self._clock.timeout(min(self.cfg.renew_deadline, RELEASE_BUDGET)):
                for _ in range(3):  # a conflict means it changed under us: read and retry
                    current = await self.client.get_lease(self.lease)
                    record = election.read_record((current or {}).get("spec"))
                    if current is None or record.problem or record.holder != self.cfg.identity:
                        return
                    record = election.released(micro_time(self._clock.wall()), record)
                    try:
                        await self.client.replace_lease({**current, "spec": _spec(record)})
                    except KubeError as exc:
                        if exc.code == 409:
                            continue
                        raise
                    event(log, logging.INFO, "lease_released", f"lease {self.lease} released")
                    return
        except (KubeError, TimeoutError) as exc:
            event(log, logging.WARNING, "lease_release_failed", f"could not release: {exc}")

    async def _renew_fast(self) -> bool:
        """A leader renews from its cached object without reading first; False to fall back."""
        sent = self._clock.now()
        record = (
            election.renewal(self.state, micro_time(self._clock.wall()), self.cfg)
            if election.leading(self.state, sent, self.cfg)
            else None
        )
        if record is None or self._cached is None:
            return False
        try:
            stored = await self.client.replace_lease({**self._cached, "spec": _spec(record)})
        except KubeError as exc:
            if exc.code != 409:
                self._failed(str(exc))
            return False
        self._written(stored, record, sent)
        return True

    async def _acquire_or_renew(self) -> None:
        current = await self.client.get_lease(self.lease)
        now = self._clock.now()
        if current is None:
            self.state = election.observe(self.state, None, None, now)
            self._cached = None
        else:
            self._cached = current
            record = election.read_record(current.get("spec"))
            self.state = election.observe(self.state, record, version_of(current), now)
        action = election.attempt(self.state, now, micro_time(self._clock.wall()), self.cfg)
        if isinstance(action, Held):
            return
        sent = self._clock.now()
        try:
            if isinstance(action, Create):
                body = {
                    "metadata": {"name": self.lease, "labels": self._labels},
                    "spec": _spec(action.record),
                }
                stored = await self.client.create_lease(body)
            else:
                assert self._cached is not None  # attempt() updates only a Lease it has read
                stored = await self.client.replace_lease(
                    {**self._cached, "spec": _spec(action.record)}
                )
        except KubeError as exc:
            if exc.code == 409:
                return  # someone else wrote first (Conflict or AlreadyExists): not an error
            raise
        self._written(stored, action.record, sent)

    def _written(self, stored: dict[str, Any], record: LeaseRecord, sent: float) -> None:
        self._cached = stored
        self.state = election.written(self.state, record, version_of(stored), sent, self.cfg)

    def _failed(self, message: str) -> None:
        if message != self.error:
            event(log, logging.WARNING, "lease_error", f"lease {self.lease}: {message}")
        self.error = message

    def _notice(self) -> None:
        """Report a change of leadership once, and tell whoever gates on it."""
        now = self.leading()
        if now is self._was_leading:
            return
        self._was_leading = now
        attributes: dict[str, str | bool | int] = {
            "presence.kube.lease": self.lease,
            "presence.kube.identity": self.cfg.identity,
            "presence.kube.leading": now,
            "presence.kube.lease_transitions": (
                self.state.observed.transitions if self.state.observed else 0
            ),
        }
        with self._tracer.start_as_current_span("presence.kube.elect", attributes=attributes):
            pass
        if now:
            event(log, logging.INFO, "leader", f"leading: this replica holds lease {self.lease}")
        else:
            event(log, logging.WARNING, "leader", f"no longer leading lease {self.lease}")
        if self._on_change is not None:
            self._on_change(now)
