"""The controller: tick (observe, decide), hand the decision to the actuator, report it all.

`Controller.run(stop)` owns the clock, the HTTP clients, the admin server and the tasks; it
returns after the shutdown write once `stop` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from controller.config import Settings, check_token
from controller.cookies import no_cookies
from controller.core.actuation import reassert_period, refresh_veto
from controller.core.annotations import Directives, read_directives
from controller.core.damping import holds, penalty
from controller.core.excerpt import clip, describe
from controller.core.fleet import VERDICTS, Member, unconfirmed
from controller.core.hysteresis import HysteresisState, tick_delay
from controller.core.overrides import (
    Evaluation,
    evaluate,
)
from controller.core.policy import decide
from controller.core.types import (
    Decision,
    HealthResult,
    LagResult,
    Observation,
    PolicyInputs,
    Presence,
    TickKind,
)
from controller.gateway.base import Gateway
from controller.gateway.wawp import WawpGateway
from controller.runtime.actuator import Actuator
from controller.runtime.http_tracing import traced_transport
from controller.runtime.logs import add_secret, event
from controller.runtime.metrics import RULES, Metrics
from controller.runtime.status import status_document
from controller.runtime.telemetry import TRACER_NAME
from controller.secret_file import SecretFile
from controller.sources.annotations import AnnotationFile, AnnotationSnapshot
from controller.sources.health import HealthProbe
from controller.sources.lag import LagProbe

if TYPE_CHECKING:
    from controller.kube.fleet import FleetMember

log = logging.getLogger("presence.controller")

SHUTDOWN_DEADLINE = 5.0
"""On SIGTERM the unavailable write must be done within 5 s (README, "Acting on the gateway")."""
_HEARTBEAT_BUDGET = 1.0
"""Fleet mode: at most this long for the `stopping` heartbeat on shutdown (and for re-reading
the others')."""
_SETTLE = 0.5
"""Fleet mode, the leader's shutdown: time for replicas stopping at the same moment to say so."""
_SHUTDOWN_WRITE_BUDGET = 4.5
"""Leave room inside the deadline for closing clients and the admin server."""
TRANSITIONS_KEPT = 50
SIGNAL_LINES = 6
SIGNAL_WINDOW = 60.0
"""At most SIGNAL_LINES signal lines (bad, neutral, recovered) per SIGNAL_WINDOW seconds; a
flapping consumer gets one summary line per window instead of a line per tick."""
EVALUATION_HORIZON = timedelta(hours=1)
"""A cached maintenance/online-hours evaluation is redone at least this often, whatever its
`valid_until` says: a search that missed a change cannot freeze the schedule for good."""


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


def build_gateway(
    settings: Settings,
    tracer: trace.Tracer | None = None,
    token: SecretFile | None = None,
) -> Gateway:
    """The gateway client for the configured provider (HTTP spans when traced); with `token`,
    every call uses the secret file's current value."""
    transport = traced_transport(tracer) if tracer is not None else None
    current = (lambda: token.value) if token is not None else None
    agent = user_agent(settings)
    if settings.provider == "waha":
        from controller.gateway.waha import WahaGateway

        return WahaGateway(settings.waha, transport=transport, token=current, agent=agent)
    if settings.provider == "evolution":
        from controller.gateway.evolution import EvolutionGateway

        return EvolutionGateway(settings.evolution, transport=transport, token=current, agent=agent)
    return WawpGateway(settings.wawp, transport=transport, token=current, agent=agent)


def user_agent(settings: Settings) -> str:
    """`presence-controller`, and in fleet mode the replica (`presence-controller (pod-a)`): the
    gateway's logs then say which replica wrote."""
    if not settings.kube.enabled:
        return "presence-controller"
    pod = settings.kube.pod_name or os.environ.get("POD_NAME") or os.environ.get("HOSTNAME")
    return f"presence-controller ({pod})" if pod else "presence-controller"


def token_file(settings: Settings) -> SecretFile | None:
    """The provider's credential as a followed secret file, when it comes from one."""
    secret, path = settings.gateway_settings().secret()
    if path is None or secret is None:
        return None
    return SecretFile(path, secret.get_secret_value(), check_token)


def credential_name(settings: Settings) -> str:
    """What the provider calls its credential, for messages."""
    return "access token" if settings.provider == "wawp" else "API key"


class Controller:
    """One presence controller: probes, decision state, actuator and what it reports."""

    def __init__(
        self,
        settings: Settings,
        *,
        gateway: Gateway | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._tracer = tracer or trace.get_tracer(TRACER_NAME)
        self._token = token_file(settings)
        self._token_error: str | None = None
        self.gateway = gateway or build_gateway(settings, tracer, self._token)
        self._clock = clock
        self._wall = wall_clock
        self._rng = rng or random.Random()
        self._hysteresis_cfg = settings.hysteresis()
        self.metrics.create_labels(self.gateway.provider, lag=settings.metrics_url is not None)
        self.metrics.dry_run.set(1 if settings.dry_run else 0)
        self.metrics.lag_watermark.labels(edge="high").set(settings.lag_high)
        self.metrics.lag_watermark.labels(edge="low").set(settings.lag_low)
        self.actuator = Actuator(
            self.gateway,
            settings.actuation(),
            self.metrics,
            clock=clock,
            rng=self._rng,
            tracer=self._tracer,
            reread_credentials=self._reread_token,
            gate=self._may_act if settings.kube.enabled else None,
            call_timeout=float(getattr(settings.gateway_settings(), "timeout", 0.0)),
        )
        self._poke = asyncio.Event()
        """Set to tick at once (an annotation source changed)."""
        self.fleet: FleetMember | None = None
        if settings.kube.enabled:
            # Fleet mode only: its client library (and httpx2) cost ~4 MiB to import.
            from controller.kube.fleet import FleetMember

            self.fleet = FleetMember(
                settings.kube,
                self._leadership_changed,
                prefix=settings.annotation_prefix,
                clock=clock,
                rng=self._rng,
                metrics=self.metrics,
                tracer=self._tracer,
            )
            self.fleet.on_annotations = self._poke.set
            # Read at each scrape: a leader whose renewal lapsed shows 0 at once, even while its
            # election loop is still waiting on an API call.
            self.metrics.leader.set_function(lambda: 1.0 if self._may_act() else 0.0)
        self.state = HysteresisState()
        self.decision: Decision | None = None
        self.observation: Observation | None = None
        self.since: datetime | None = None
        self.transitions: deque[Transition] = deque(maxlen=TRANSITIONS_KEPT)
        self.last_tick: float | None = None
        self.ticks = 0
        self.ready_event = asyncio.Event()
        """Set once the first decision is made (tests and the demo wait on it)."""
        self.listeners: list[Callable[[Transition], None]] = []
        """Called with every transition of the desired presence."""
        self._health: HealthProbe | None = None
        self._lag: LagProbe | None = None
        self._annotations = (
            AnnotationFile(settings.annotations_file) if settings.annotations_file else None
        )
        self._maintenance_windows = settings.maintenance_schedule()
        self._online_hours = settings.online_hours_schedule()
        self._snapshot = AnnotationSnapshot()
        self._fleet_version: tuple[tuple[int, bool], ...] = ()
        self._others: tuple[tuple[str, Directives], ...] = ()
        """Fleet mode: the workload's and namespace's directives (overrides.evaluate)."""

        self._directives = Directives(prefix=settings.annotation_prefix)
        self.evaluation: Evaluation | None = None
        self._evaluated_at = datetime.min.replace(tzinfo=UTC)
        self._signal_down = False
        """A bad tick was logged and no recovery (good tick) since."""
        self._signal_lines: deque[float] = deque()
        """When the last signal lines were logged (the flapping guard counts them)."""
        self._signal_unlogged = 0
        self._signal_summary_at = 0.0
        self._failures = 0
        """Consecutive ticks that raised."""
        self._failure_logged: str | None = None

    # The loop.

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then write the shutdown presence and return."""
        s = self.settings
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
        async with httpx.AsyncClient(
            timeout=s.timeout,
            transport=traced_transport(self._tracer, limits),
            follow_redirects=True,
            max_redirects=5,
            cookies=no_cookies(),
        ) as probes:
            self._health = HealthProbe(probes, str(s.health_url), s.timeout)
            if s.metrics_url is not None:
                self._lag = LagProbe(
                    probes,
                    str(s.metrics_url),
                    s.timeout,
                    s.lag_metric,
                    s.lag_labels,
                    s.lag_aggregate,
                )
            try:
                await self._run_until(stop)
            finally:
                await self._shutdown()

    async def _run_until(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            running = [
                tasks.create_task(self._tick_loop(), name="tick-loop"),
                tasks.create_task(self.actuator.run(), name="actuator"),
            ]
            if self.fleet is not None:
                running.append(tasks.create_task(self.fleet.run(), name="fleet"))
            await stop.wait()
            event(log, logging.INFO, "shutdown", "stopping: no more ticks")
            for task in running:
                task.cancel()

    def _count_members(self, fleet: FleetMember, members: list[Member]) -> None:
        """Members heard from within the window by their verdict; unconfirmed ones (this
        replica's view is not current) as `unknown`."""
        view_age = fleet.view_age()
        counts = dict.fromkeys(VERDICTS, 0)
        for member in members:
            if member.age < fleet.stale_after:
                counts[member.verdict] += 1
            elif unconfirmed(member, fleet.stale_after, view_age):
                counts["unknown"] += 1
        for verdict, count in counts.items():
            self.metrics.fleet_members.labels(verdict=verdict).set(count)
        self.metrics.fleet_view_age.set(view_age)

    def _may_act(self, within: float = 0.0) -> bool:
        """Fleet mode: only the leader calls the gateway, and only a call that can end (within
        `within` seconds) before another replica may take over."""
        return self.fleet is not None and self.fleet.leading(within)

    def _leadership_changed(self, leading: bool) -> None:
        self.actuator.leadership_changed(leading)
        if leading and self.fleet is not None:
            note = f"{self.fleet.identity} leads lease {self.fleet.lease}"
            self.fleet.emit("Normal", "LeaderElected", note, "Elect")

    async def _tick_loop(self) -> None:
        s = self.settings
        while True:
            started = self._clock()
            try:
                await self.tick()
            except Exception as exc:
                # A bug, not a probe failure (those are values): a tick that cannot decide
                # counts as a bad one, so a controller that cannot decide fails safe.
                self._failed_tick(exc)
            # Fast re-probe: while a streak could flip the presence, tick every FAST_INTERVAL.
            # Ticks never overlap: the next starts after this one ends, at the earliest.
            interval = tick_delay(
                self.state, self._clock(), self._hysteresis_cfg, s.interval, s.fast_interval
            )
            spread = interval * s.jitter * self._rng.uniform(-1.0, 1.0)
            # A changed annotation source (fleet mode) cuts the wait short: maintenance set on
            # the workload applies within a second, not at the next interval.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, started + interval + spread - self._clock())):
                    await self._poke.wait()
            self._poke.clear()

    def secrets(self) -> list[str]:
        """Every secret this process knows (for scrubbing), the current token included."""
        token = [self._token.value] if self._token is not None else []
        return [*self.settings.secrets(), *token]

    def _reread_token(self) -> bool:
        """Look at the token file (no read when unchanged); True when a new token was taken."""
        if self._token is None:
            return False
        check = self._token.refresh()
        if check.error != self._token_error:
            self._token_error = check.error
            if check.error is not None:
                message = f"{credential_name(self.settings)} file: {check.error}"
                event(log, logging.ERROR, "secret", message)
        if check.changed:
            add_secret(self._token.value)
            what = credential_name(self.settings)
            message = f"{what} file changed: using the new {what.removeprefix('access ')}"
            if self.actuator.state.auth_failed:
                message += "; retrying the gateway at once"
            event(log, logging.INFO, "secret", message)
        return check.changed

    async def tick(self) -> Decision:
        """One reconcile: probe, decide, hand the decision to the actuator, report."""
        started = time.perf_counter()
        if self._reread_token():
            self.actuator.credentials_changed()
        with self._tracer.start_as_current_span("presence.reconcile") as span:
            health, lag = await self._observe()
            at = self._wall()
            obs = Observation(health=health, lag=lag, at=at, policy=self._policy(at))
            now = self._clock()
            previous = self.decision
            members = self.fleet.members() if self.fleet is not None else []
            fleet = (
                self.fleet.inputs(members) if self.fleet is not None and self._may_act() else None
            )
            self.state, decision = decide(
                self.state, obs, now, self._hysteresis_cfg, previous=self.decision, fleet=fleet
            )
            if self.fleet is not None:
                self.fleet.report(self.state.verdict.value, self.state.reason)
                known = fleet is not None and decision.presence is not Presence.UNKNOWN
                self.fleet.decided(decision.presence.value if known else None, decision.reason)
                self._count_members(self.fleet, members)
            self.observation, self.decision = obs, decision
            veto = refresh_veto(
                decision.rule,
                decision.presence,
                self.state.verdict,
                decision.tick is TickKind.BAD,
            )
            self.actuator.want(decision.presence, span, veto)
            self._report(obs, previous, decision)
            self._annotate(span, obs, decision, previous)
        self._tick_done(now, started)
        self._failures, self._failure_logged = 0, None
        return decision

    def _tick_done(self, now: float, started: float) -> None:
        self.last_tick = now
        self.ticks += 1
        self.ready_event.set()
        self.metrics.reconcile_duration.observe(time.perf_counter() - started)
        self.metrics.last_tick.set(time.time())

    def _policy(self, at: datetime) -> PolicyInputs:
        """Maintenance, force and online hours at `at`; if evaluating them fails, maintenance
        fails closed (the bot goes offline, and the reason says why)."""
        try:
            return self._evaluate(at).inputs
        except Exception as exc:
            self._log_failure("maintenance evaluation failed", exc)
            return PolicyInputs(maintenance=f"evaluation failed ({describe(exc)}): fail closed")

    def _failed_tick(self, exc: Exception) -> None:
        """A tick that raised: after `FALL` of them in a row the bot goes unavailable, with the
        error as the reason. The loop stays alive (and /healthz with it): a restart would meet
        the same input and turn a bad input into a crash loop."""
        self._log_failure("tick failed", exc)
        self._failures += 1
        now = self._clock()
        previous = self.decision
        fall = self._hysteresis_cfg.fall
        if self._failures >= fall and (previous is None or previous.rule != "error"):
            reason = (
                f"controller error: {describe(exc)} ({self._failures} failed ticks, fall {fall})"
            )
            decision = Decision(Presence.UNAVAILABLE, reason, reason, TickKind.BAD, "error")
            self.decision = decision
            self.actuator.want(decision.presence)
            for rule in RULES:
                self.metrics.decision_rule.labels(rule=rule).set(1 if rule == "error" else 0)
            old = previous.presence if previous is not None else Presence.UNKNOWN
            if old is not Presence.UNAVAILABLE:
                self._transition(self._wall(), old, decision)
        self._tick_done(now, time.perf_counter())

    def _log_failure(self, what: str, exc: Exception) -> None:
        """One traceback per distinct error, not one per tick."""
        key = f"{what}: {describe(exc)}"
        if key != self._failure_logged:
            self._failure_logged = key
            log.exception(key)

    async def _observe(self) -> tuple[HealthResult, LagResult]:
        if self._lag is None:
            return await self._probe_health(), LagResult.not_configured()
        health, lag = await asyncio.gather(self._probe_health(), self._probe_lag())
        return health, lag

    async def _probe_health(self) -> HealthResult:
        assert self._health is not None, "tick() runs inside run()"
        with self._tracer.start_as_current_span("presence.probe.health") as span:
            result = await self._health()
            span.set_attribute("health.status", result.status.value)
            span.set_attribute("health.detail", result.detail)
            if not result.ok:
                span.set_status(Status(StatusCode.ERROR, result.detail))
            return result

    async def _probe_lag(self) -> LagResult:
        assert self._lag is not None
        with self._tracer.start_as_current_span("presence.probe.lag") as span:
            result = await self._lag()
            span.set_attribute("queue.lag.status", result.status.value)
            span.set_attribute("queue.lag.detail", result.detail)
            if result.value is not None:
                span.set_attribute("queue.lag_seconds", result.value)
            else:
                span.set_status(Status(StatusCode.ERROR, result.detail))
            return result

    def _annotate(
        self, span: Span, obs: Observation, decision: Decision, previous: Decision | None
    ) -> None:
        """The reconcile span's attributes, and a `presence.transition` event on a change."""
        span.set_attributes(
            {
                "presence.desired": decision.presence.value,
                "presence.applied": self.actuator.state.applied.value,
                "presence.reason": decision.reason,
                "presence.detail": decision.detail,
                "presence.tick": decision.tick.value,
                "presence.rule": decision.rule,
                "health.status": obs.health.status.value,
                "maintenance.active": obs.policy.maintenance is not None,
                "presence.force": obs.policy.force.value if obs.policy.force else "",
                "hysteresis.good": self.state.good,
                "hysteresis.bad": self.state.bad,
                "hysteresis.verdict": self.state.verdict.value,
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

    def _evaluate(self, at: datetime) -> Evaluation:
        """Maintenance, force and online hours at `at`; recomputed only when the annotations
        changed or the last result ran out (`valid_until`), and reported on change only."""
        snapshot = self._annotations.read() if self._annotations else self._snapshot
        changed = snapshot.version != self._snapshot.version
        fleet_version = self.fleet.sources_version if self.fleet is not None else ()
        if fleet_version != self._fleet_version and self.fleet is not None:
            changed = True
            self._fleet_version = fleet_version
            others = tuple(
                (where, read_directives(notes, {}, self.settings.annotation_prefix))
                for where, notes in self.fleet.annotation_sources()
            )
            self._report_sources(self._others, others)
            self._others = others
        if snapshot.version != self._snapshot.version:
            directives = read_directives(
                snapshot.values, snapshot.broken, self.settings.annotation_prefix, snapshot.garbled
            )
            self._report_annotations(self._snapshot, snapshot, self._directives, directives)
            self._snapshot, self._directives = snapshot, directives
        old = self.evaluation
        if (
            old is not None
            and not changed
            and (old.valid_until is None or at < old.valid_until)
            and at < self._evaluated_at + EVALUATION_HORIZON
            and (self.observation is None or at >= self.observation.at)  # wall clock went back
        ):
            return old
        new = evaluate(
            self._directives,
            self._maintenance_windows,
            self._online_hours,
            self.settings.maintenance_lead,
            at,
            snapshot.errors,
            self._others,
        )
        self.evaluation, self._evaluated_at = new, at
        self._report_maintenance(old, new)
        return new

    def _report_sources(
        self,
        old: tuple[tuple[str, Directives], ...],
        new: tuple[tuple[str, Directives], ...],
    ) -> None:
        """Fleet mode: a changed workload or namespace source, logged once; its new errors
        counted like the pod's."""
        before = dict(old)
        for where, now in new:
            was = before.get(where, Directives(prefix=now.prefix))
            if now != was:
                event(
                    log, logging.INFO, "annotations", f"presence annotations changed on {where}",
                    source=where,
                    maintenance=clip(now.maintenance_spec, 200) if now.maintenance_spec else None,
                    maintenance_reason=now.maintenance_reason,
                    force=now.force.value if now.force else None,
                )  # fmt: skip
            for error in now.errors:
                if error not in was.errors:
                    self.metrics.annotation_errors.inc()
                    event(log, logging.WARNING, "annotation_error", f"{where}: {error}")
        pod = {*self._snapshot.errors, *self._directives.errors}
        others = {f"{where}: {e}" for where, d in new for e in d.errors}
        self.metrics.annotation_invalid.set(len(pod | others))

    def _report_annotations(
        self, old: AnnotationSnapshot, new: AnnotationSnapshot, was: Directives, now: Directives
    ) -> None:
        if now != was:
            event(
                log,
                logging.INFO,
                "annotations",
                "presence annotations changed",
                maintenance=clip(now.maintenance_spec, 200) if now.maintenance_spec else None,
                maintenance_reason=now.maintenance_reason,
                force=now.force.value if now.force else None,
                force_until=now.force_until.isoformat() if now.force_until else None,
            )
        known = set(old.errors) | set(was.errors)
        others = {f"{where}: {e}" for where, d in self._others for e in d.errors}
        self.metrics.annotation_invalid.set(len({*new.errors, *now.errors, *others}))
        for error in (*new.errors, *now.errors):
            if error not in known:
                self.metrics.annotation_errors.inc()
                event(log, logging.WARNING, "annotation_error", error)

    def _report_maintenance(self, old: Evaluation | None, new: Evaluation) -> None:
        m = new.maintenance
        self.metrics.maintenance_active.set(1 if m.active else 0)
        was_active = old is not None and old.maintenance.active
        if m.active and not was_active:
            message = f"maintenance started: {m.reason}"
            event(log, logging.INFO, "maintenance", message, source=m.source)
            if self.fleet is not None:
                self.fleet.emit("Normal", "MaintenanceStarted", message, "Maintenance")
        elif was_active and not m.active:
            event(log, logging.INFO, "maintenance", "maintenance ended")
            if self.fleet is not None:
                self.fleet.emit("Normal", "MaintenanceEnded", "maintenance ended", "Maintenance")

    def _report(self, obs: Observation, previous: Decision | None, decision: Decision) -> None:
        m = self.metrics
        damping = self.state.damping
        m.damping_penalty.set(penalty(damping, self._clock(), self._hysteresis_cfg.damping))
        m.damping_suppressed.set(1 if holds(damping) else 0)
        m.probes.labels(probe="health", result=obs.health.status.value).inc()
        if self._lag is not None:
            m.probes.labels(probe="lag", result=obs.lag.status.value).inc()
            m.queue_lag.set(obs.lag.value if obs.lag.value is not None else math.nan)

        if previous is None or decision.rule != previous.rule:
            for rule in RULES:
                m.decision_rule.labels(rule=rule).set(1 if rule == decision.rule else 0)
        old = previous.presence if previous is not None else Presence.UNKNOWN
        if decision.presence is not old:
            self._transition(obs.at, old, decision)
        elif previous is not None and decision.reason != previous.reason:
            message = f"presence stays {decision.presence}: {decision.reason}"
            event(log, logging.INFO, "reason", message, reason=decision.reason)
        self._report_signal(previous, decision)

    def _transition(self, at: datetime, old: Presence, decision: Decision) -> None:
        m = self.metrics
        self.since = at
        transition = Transition(at, old, decision.presence, decision.reason)
        self.transitions.append(transition)
        for listener in self.listeners:
            listener(transition)
        Metrics.set_state(m.desired_state, decision.presence)
        known = decision.presence is not Presence.UNKNOWN and not self.settings.dry_run
        period = reassert_period(decision.presence, self.settings.actuation())
        m.reassert_interval.set(period if known else 0)
        m.transitions.labels(to=decision.presence.value, rule=decision.rule).inc()
        fields = {"from": old.value, "to": decision.presence.value, "reason": decision.reason}
        message = f"presence {old} -> {decision.presence}: {decision.reason}"
        event(log, logging.INFO, "transition", message, **fields, detail=decision.detail)
        if self.fleet is not None and decision.presence is not Presence.UNKNOWN:
            available = decision.presence is Presence.AVAILABLE
            self.fleet.emit(
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
        now = self._clock()
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

    async def _shutdown(self) -> None:
        budget = _SHUTDOWN_WRITE_BUDGET
        try:
            if self.actuator.pulsing() and (self.fleet is None or self._may_act(budget)):
                # A last-seen pulse shows available although the decision is unavailable: end
                # it whatever on_shutdown says and whoever leads next.
                if await self.actuator.shutdown_write(_SHUTDOWN_WRITE_BUDGET):
                    event(log, logging.INFO, "shutdown", "last-seen pulse ended on shutdown")
                else:
                    error = self.actuator.state.last_error or "no answer in time"
                    event(log, logging.ERROR, "shutdown", f"could not end the pulse: {error}")
            if self.fleet is not None:
                # The fleet as last seen, taken first: the member watch has stopped with the
                # loop, and every second spent here would age what it saw.
                leading, seen = self.fleet.leading(), self.fleet.members()
                await self.fleet.stopping(_HEARTBEAT_BUDGET)
                if not leading or not self.fleet.leading():
                    message = "not the leader: presence left to the leader"
                    event(log, logging.INFO, "shutdown", message)
                    return
                alone = await self.fleet.last_one_out(seen, _SETTLE, _HEARTBEAT_BUDGET)
                if not alone:
                    message = "other members are available: presence left to the next leader"
                    event(log, logging.INFO, "shutdown", message)
                    return
            if self.settings.on_shutdown == "keep":
                event(log, logging.INFO, "shutdown", "on_shutdown=keep: presence left as is")
                return
            if self.fleet is not None:
                budget -= 2 * _HEARTBEAT_BUDGET + _SETTLE
                if not self._may_act(min(budget, self.actuator.call_timeout)):
                    # Leadership lapsed meanwhile, or too little of it is left for the call.
                    message = "no longer leading: the shutdown write is left to the next leader"
                    event(log, logging.WARNING, "shutdown", message)
                    return
            if self.settings.dry_run:
                message = "dry run: would write unavailable on shutdown (no gateway call made)"
                event(log, logging.INFO, "shutdown", message)
            elif await self.actuator.shutdown_write(budget):
                event(log, logging.INFO, "shutdown", "wrote unavailable on shutdown")
            else:
                error = self.actuator.state.last_error or (
                    f"no answer within the {_SHUTDOWN_WRITE_BUDGET:g}s shutdown budget"
                )
                event(log, logging.ERROR, "shutdown", f"could not write unavailable: {error}")
        finally:
            if self.fleet is not None:
                await self.fleet.shutdown()  # release the Lease after the last gateway call
            await self.gateway.aclose()

    # What it reports.

    def healthy(self) -> bool:
        """The loop has ticked within 3 intervals."""
        if self.last_tick is None:
            return False
        return self._clock() - self.last_tick <= 3 * self.settings.interval

    def ready(self) -> tuple[bool, str]:
        """Ready once the first decision is made. Never on the gateway: in one pod any
        container's readiness gates the pod's Service endpoints, and a presence problem must not
        stop webhook delivery to the consumer (an auth failure is loud through log, metric and
        alert instead)."""
        if self.decision is None:
            return False, "no decision yet"
        return True, "ok"

    def status(self) -> dict[str, Any]:
        """The `/status` document (README, "What it reports"). Holds no secrets."""
        return status_document(self, self._clock(), self._wall())
