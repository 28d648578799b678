"""What the controller says about each decision: metrics, the reconcile span's attributes,
transition and signal log lines (never one per tick), Kubernetes Events in fleet mode, and the
transitions kept for `/status`."""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from opentelemetry.trace import Span

from controller.core.actuation import ActuationConfig, reassert_period
from controller.core.damping import DampingConfig, holds, penalty
from controller.core.fleet import Member, census
from controller.core.policy import PolicyState
from controller.core.types import Decision, Observation, Presence, Rule, TickKind
from controller.runtime.clock import Clock
from controller.runtime.inputs import Emit
from controller.telemetry.logs import event
from controller.telemetry.metrics import Metrics

log = logging.getLogger("presence.controller")

TRANSITIONS_KEPT = 50
SIGNAL_LINES = 6
SIGNAL_WINDOW = 60.0
"""At most SIGNAL_LINES signal lines (bad, neutral, recovered) per SIGNAL_WINDOW seconds; a
flapping consumer gets one summary line per window instead of a line per tick."""


@dataclass(frozen=True, slots=True)
class Transition:
    at: datetime
    from_: Presence
    to: Presence
    reason: str

    def as_json(self) -> dict[str, str]:
        return {
            "at": self.at.isoformat(),
            "from": self.from_.value,
            "to": self.to.value,
            "reason": self.reason,
        }


class Reporter:
    """Reports decisions; keeps the last transitions and since when the presence holds."""

    def __init__(
        self,
        metrics: Metrics,
        clock: Clock,
        actuation: ActuationConfig,
        damping: DampingConfig,
        emit: Emit | None = None,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._actuation = actuation
        self._damping = damping
        self._emit = emit
        self.transitions: deque[Transition] = deque(maxlen=TRANSITIONS_KEPT)
        self.listeners: list[Callable[[Transition], None]] = []
        """Called with every transition of the desired presence."""
        self._signal_down = False
        """A bad tick was logged and no recovery (good tick) since."""
        self._signal_lines: deque[float] = deque()
        """When the last signal lines were logged (the flapping guard counts them)."""
        self._signal_unlogged = 0
        self._signal_summary_at = 0.0

    @property
    def since(self) -> datetime | None:
        """When the desired presence last changed (None before the first decision)."""
        return self.transitions[-1].at if self.transitions else None

    def decided(
        self,
        obs: Observation,
        previous: Decision | None,
        decision: Decision,
        state: PolicyState,
        lag_configured: bool,
    ) -> None:
        """One tick's decision: metrics, and lines on a change only."""
        m = self._metrics
        m.damping_penalty.set(penalty(state.damping, self._clock.now(), self._damping))
        m.damping_suppressed.set(1 if holds(state.damping) else 0)
        m.probes.labels(probe="health", result=obs.health.status.value).inc()
        if lag_configured:
            m.probes.labels(probe="lag", result=obs.lag.status.value).inc()
            m.queue_lag.set(obs.lag.value if obs.lag.value is not None else math.nan)
        self._changed(obs.at, previous, decision)
        stays = previous is not None and decision.presence is previous.presence
        if stays and previous is not None and decision.reason != previous.reason:
            message = f"presence stays {decision.presence}: {decision.reason}"
            event(log, logging.INFO, "reason", message, reason=decision.reason)
        self._report_signal(previous, decision)

    def failed(self, at: datetime, previous: Decision | None, decision: Decision | None) -> None:
        """A tick that failed; `decision` is what the policy made of it."""
        if decision is not None and decision is not previous:
            self._changed(at, previous, decision)

    def _changed(self, at: datetime, previous: Decision | None, decision: Decision) -> None:
        m = self._metrics
        if previous is None or decision.rule != previous.rule:
            for rule in Rule:
                m.decision_rule.labels(rule=rule.value).set(1 if rule is decision.rule else 0)
        old = previous.presence if previous is not None else Presence.UNKNOWN
        if decision.presence is not old:
            self._transition(at, old, decision)

    def _transition(self, at: datetime, old: Presence, decision: Decision) -> None:
        m = self._metrics
        transition = Transition(at, old, decision.presence, decision.reason)
        self.transitions.append(transition)
        for listener in self.listeners:
            listener(transition)
        Metrics.set_state(m.desired_state, decision.presence)
        known = decision.presence is not Presence.UNKNOWN and not self._actuation.dry_run
        period = reassert_period(decision.presence, self._actuation)
        m.reassert_interval.set(period if known else 0)
        m.transitions.labels(to=decision.presence.value, rule=decision.rule.value).inc()
        fields = {"from": old.value, "to": decision.presence.value, "reason": decision.reason}
        message = f"presence {old} -> {decision.presence}: {decision.reason}"
        event(log, logging.INFO, "transition", message, **fields, detail=decision.detail)
        if self._emit is not None and decision.presence is not Presence.UNKNOWN:
            available = decision.presence is Presence.AVAILABLE
            self._emit(
                "Normal" if available else "Warning",
                "PresenceAvailable" if available else "PresenceUnavailable",
                decision.reason,
                "SetPresence",
            )

    def _report_signal(self, previous: Decision | None, decision: Decision) -> None:
        """One line when the signal turns bad, one when it is no longer bad but not yet good
        (lag between the watermarks), one when it recovers; never one per tick."""
        tick = decision.tick
        before = previous.tick if previous is not None else None
        if tick is TickKind.BAD and before is not TickKind.BAD:
            self._signal_down = True
            self._signal_line(logging.WARNING, "signal_bad", decision.detail)
        elif not self._signal_down or tick is before:
            return
        elif tick is TickKind.NEUTRAL:
            message = (
                f"no longer bad, not yet good ({decision.detail}); "
                f"presence stays {decision.presence}"
            )
            self._signal_line(logging.INFO, "signal_neutral", message)
        elif tick is TickKind.GOOD:
            self._signal_down = False
            self._signal_line(logging.INFO, "signal_recovered", decision.detail)

    def _signal_line(self, level: int, name: str, message: str) -> None:
        """Log a signal change, unless the signal flaps: past SIGNAL_LINES per window, one
        summary line per window instead of a line per tick."""
        now = self._clock.now()
        while self._signal_lines and self._signal_lines[0] <= now - SIGNAL_WINDOW:
            self._signal_lines.popleft()
        if len(self._signal_lines) < SIGNAL_LINES:
            self._signal_lines.append(now)
            event(log, level, name, message)
            return
        self._signal_unlogged += 1
        if now >= self._signal_summary_at:
            summary = (
                f"signal flapping: {self._signal_unlogged} more changes not logged one by one "
                f"(at most {SIGNAL_LINES} lines per {SIGNAL_WINDOW:g}s); latest: {message}"
            )
            event(log, logging.WARNING, "signal_flapping", summary, unlogged=self._signal_unlogged)
            self._signal_summary_at = now + SIGNAL_WINDOW
            self._signal_unlogged = 0

    def members(self, members: list[Member], stale_after: float, view_age: float) -> None:
        """Fleet mode: members heard from within the window by their verdict; unconfirmed ones
        (this replica's view is not current) as `unknown`."""
        for verdict, count in census(members, stale_after, view_age).items():
            self._metrics.fleet_members.labels(verdict=verdict).set(count)
        self._metrics.fleet_view_age.set(view_age)


def annotate(
    span: Span,
    obs: Observation,
    decision: Decision,
    previous: Decision | None,
    state: PolicyState,
    applied: Presence,
) -> None:
    """The reconcile span's attributes, and a `presence.transition` event on a change."""
    h = state.hysteresis
    span.set_attributes(
        {
            "presence.desired": decision.presence.value,
            "presence.applied": applied.value,
            "presence.reason": decision.reason,
            "presence.detail": decision.detail,
            "presence.tick": decision.tick.value,
            "presence.rule": decision.rule.value,
            "health.status": obs.health.status.value,
            "maintenance.active": obs.policy.maintenance is not None,
            "presence.force": obs.policy.force.value if obs.policy.force else "",
            "hysteresis.good": h.good,
            "hysteresis.bad": h.bad,
            "hysteresis.verdict": h.verdict.value,
        }
    )
    if obs.lag.value is not None:
        span.set_attribute("queue.lag_seconds", obs.lag.value)
    old = previous.presence if previous is not None else Presence.UNKNOWN
    if decision.presence is not old:
        span.add_event(
            "presence.transition",
            {"from": old.value, "to": decision.presence.value, "reason": decision.reason},
        )
