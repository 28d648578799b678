"""The loop: each tick observes (probes, policy inputs, the fleet), decides (`core.policy`),
hands the decision to the actuator and reports it.

`Controller.run(stop)` owns the HTTP clients and the tasks (tick loop, actuator, fleet member);
it returns after the shutdown write (`runtime.shutdown`) once `stop` is set. Time comes from one
injected `Clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING, Any

import httpx
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from controller.config import Settings
from controller.cookies import no_cookies
from controller.core.excerpt import describe
from controller.core.hysteresis import tick_delay
from controller.core.policy import PolicyState, decide
from controller.core.types import (
    Decision,
    HealthResult,
    LagResult,
    Observation,
    Presence,
    TickFailed,
)
from controller.gateway.base import Gateway
from controller.gateway.factory import Credential, build_gateway
from controller.runtime import status
from controller.runtime.actuator import Actuator
from controller.runtime.clock import SYSTEM, Clock
from controller.runtime.inputs import PolicySources
from controller.runtime.reporter import Reporter, Transition, annotate
from controller.runtime.shutdown import shut_down
from controller.runtime.witness import Witness
from controller.sources.health import HealthProbe
from controller.sources.lag import LagProbe
from controller.telemetry.http_tracing import traced_transport
from controller.telemetry.logs import ErrorOnce, event
from controller.telemetry.metrics import Metrics
from controller.telemetry.tracing import TRACER_NAME

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable

    from controller.kube.fleet import FleetMember

log = logging.getLogger("presence.controller")


class Controller:
    """One presence controller: probes, policy state, actuator and what it reports."""

    def __init__(
        self,
        settings: Settings,
        *,
        gateway: Gateway | None = None,
        metrics: Metrics | None = None,
        clock: Clock = SYSTEM,
        rng: random.Random | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._tracer = tracer or trace.get_tracer(TRACER_NAME)
        self._credential = Credential(settings)
        self.gateway = gateway or build_gateway(settings, tracer, self._credential.file)
        self._clock = clock
        self._rng = rng or random.Random()
        self._cfg = settings.hysteresis()
        self._set_up_metrics()
        self.actuator = Actuator(
            self.gateway,
            settings.actuation(),
            self.metrics,
            clock=clock,
            rng=self._rng,
            tracer=self._tracer,
            reread_credentials=self._credential.reread,
            gate=self._may_act if settings.kube.enabled else None,
            call_timeout=float(getattr(settings.gateway_settings(), "timeout", 0.0)),
        )
        self.witness: Witness | None = None
        if settings.witness.enabled:
            gate = self._may_act if settings.kube.enabled else None
            self.witness = Witness(
                settings, self.actuator, self.metrics, clock=clock, tracer=self._tracer, gate=gate
            )
        self._poke = asyncio.Event()
        """Set to tick at once (an annotation source changed)."""
        self.fleet: FleetMember | None = self._fleet_member() if settings.kube.enabled else None
        emit = self.fleet.emit if self.fleet is not None else None
        self.sources = PolicySources(settings, self.metrics, self.fleet, emit, clock)
        self.reporter = Reporter(self.metrics, clock, settings.actuation(), self._cfg.damping, emit)
        self.policy = PolicyState()
        self.observation: Observation | None = None
        self.last_tick: float | None = None
        self.ticks = 0
        self.ready_event = asyncio.Event()
        """Set once the first decision is made (tests and the demo wait on it)."""
        self._health: HealthProbe | None = None
        self._lag: LagProbe | None = None
        self._tick_failed = ErrorOnce(log)

    def _set_up_metrics(self) -> None:
        s, m = self.settings, self.metrics
        m.create_labels(self.gateway.provider, lag=s.metrics_url is not None)
        m.dry_run.set(1 if s.dry_run else 0)
        m.lag_watermark.labels(edge="high").set(s.lag_high)
        m.lag_watermark.labels(edge="low").set(s.lag_low)
        m.last_tick.set(self._clock.wall().timestamp())

    def _fleet_member(self) -> FleetMember:
        # Fleet mode only: its client library (and httpx2) cost ~4 MiB to import.
        from controller.kube.fleet import FleetMember

        fleet = FleetMember(
            self.settings.kube,
            self._leadership_changed,
            prefix=self.settings.annotation_prefix,
            clock=self._clock,
            rng=self._rng,
            metrics=self.metrics,
            tracer=self._tracer,
        )
        fleet.on_annotations = self._poke.set
        # Read at each scrape: a leader whose renewal lapsed shows 0 at once, even while its
        # election loop is still waiting on an API call.
        self.metrics.leader.set_function(lambda: 1.0 if self._may_act() else 0.0)
        return fleet

    @property
    def decision(self) -> Decision | None:
        """The last decision (None before the first)."""
        return self.policy.decision

    @property
    def transitions(self) -> deque[Transition]:
        return self.reporter.transitions

    @property
    def listeners(self) -> list[Callable[[Transition], None]]:
        """Called with every transition of the desired presence."""
        return self.reporter.listeners

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
                    probes, str(s.metrics_url), s.timeout, s.lag_metric, s.lag_labels,
                    s.lag_aggregate,
                )  # fmt: skip
            if self.sources.calendar is not None:
                await self.sources.calendar.load()  # the first decision knows the calendar
            try:
                await self._run_until(stop)
            finally:
                if self.witness is not None:
                    await self.witness.reader.aclose()
                await shut_down(self.actuator, self.fleet, s.on_shutdown, s.dry_run)

    async def _run_until(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            running = [
                tasks.create_task(self._tick_loop(), name="tick-loop"),
                tasks.create_task(self.actuator.run(), name="actuator"),
            ]
            if self.fleet is not None:
                running.append(tasks.create_task(self.fleet.run(), name="fleet"))
            if self.witness is not None:
                running.append(tasks.create_task(self.witness.run(), name="witness"))
            if self.sources.calendar is not None:
                calendar = self.sources.calendar.run(self._poke.set)
                running.append(tasks.create_task(calendar, name="calendar"))
            await stop.wait()
            event(log, logging.INFO, "shutdown", "stopping: no more ticks")
            for task in running:
                task.cancel()

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
        s, clock = self.settings, self._clock
        while True:
            started = clock.now()
            try:
                await self.tick()
            except Exception as exc:
                # A bug, not a probe failure (those are values): a tick that cannot decide
                # counts as a bad one (core.policy), so a controller that cannot decide fails
                # safe. The loop stays alive (and /healthz with it): a restart would meet the
                # same input and turn a bad input into a crash loop.
                self._failed_tick(exc)
            # Fast re-probe: while a streak could flip the presence, tick every FAST_INTERVAL.
            # Ticks never overlap: the next starts after this one ends, at the earliest.
            interval = tick_delay(
                self.policy.hysteresis, clock.now(), self._cfg, s.interval, s.fast_interval
            )
            spread = interval * s.jitter * self._rng.uniform(-1.0, 1.0)
            # A changed annotation source (fleet mode) cuts the wait short: maintenance set on
            # the workload applies within a second, not at the next interval.
            with contextlib.suppress(TimeoutError):
                async with clock.timeout(started + interval + spread - clock.now()):
                    await self._poke.wait()
            self._poke.clear()

    def secrets(self) -> list[str]:
        """Every secret this process knows (for scrubbing), the current token included."""
        witness = self.witness.secrets() if self.witness is not None else []
        return [*self.settings.secrets(), *self._credential.secrets(), *witness]

    def witness_event(self, token: str | None, body: bytes | None) -> tuple[int, str]:
        """An Evolution witness webhook (POST /witness/events): (HTTP status, text)."""
        if self.witness is None:
            return 404, "no witness is enabled\n"
        return self.witness.receive(token, body)

    async def tick(self) -> Decision:
        """One reconcile: observe, decide, hand the decision to the actuator, report."""
        started = self._clock.now()
        if self._credential.reread(self.actuator.state.auth_failed):
            self.actuator.credentials_changed()
        with self._tracer.start_as_current_span("presence.reconcile") as span:
            # Observe.
            health, lag = await self.observe()
            at = self._clock.wall()
            last = self.observation.at if self.observation is not None else None
            obs = Observation(health, lag, at, self.sources.inputs(at, last))
            now = self._clock.now()
            fleet, members = None, []
            if self.fleet is not None:
                members = self.fleet.members()
                fleet = self.fleet.inputs(members) if self._may_act() else None
            # Decide.
            previous = self.policy.decision
            self.policy, decision = decide(self.policy, obs, now, self._cfg, fleet)
            self.observation = obs
            # Act.
            self.actuator.want(decision.presence, span, decision.refresh_veto)
            if self.witness is not None:
                self.witness.want()
            # Report.
            if self.fleet is not None:
                verdict = self.policy.hysteresis
                self.fleet.report(verdict.verdict.value, verdict.reason)
                known = fleet is not None and decision.presence is not Presence.UNKNOWN
                self.fleet.decided(decision.presence.value if known else None, decision.reason)
                self.reporter.members(members, self.fleet.stale_after, self.fleet.view_age())
            self.reporter.decided(obs, previous, decision, self.policy, self._lag is not None)
            applied = self.actuator.state.applied
            annotate(span, obs, decision, previous, self.policy, applied)
        self._tick_done(now, started)
        self._tick_failed.reset()
        return decision

    def _tick_done(self, now: float, started: float) -> None:
        self.last_tick = now
        self.ticks += 1
        self.ready_event.set()
        self.metrics.reconcile_duration.observe(self._clock.now() - started)
        self.metrics.last_tick.set(self._clock.wall().timestamp())

    def _failed_tick(self, exc: Exception) -> None:
        """A tick that raised: logged once per distinct error; what it means for the presence
        is the policy's (`FALL` failed ticks in a row -> unavailable)."""
        self._tick_failed("tick failed", exc)
        now, at = self._clock.now(), self._clock.wall()
        previous = self.policy.decision
        self.policy, decision = decide(self.policy, TickFailed(describe(exc), at), now, self._cfg)
        if decision is not None and decision is not previous:
            self.actuator.want(decision.presence, veto=decision.refresh_veto)
        self.reporter.failed(at, previous, decision)
        self._tick_done(now, now)

    async def observe(self) -> tuple[HealthResult, LagResult]:
        """Probe the consumer's health and lag (at once); failures are values."""
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

    # What it reports.

    def healthy(self) -> bool:
        """The loop has ticked within 3 intervals."""
        if self.last_tick is None:
            return False
        return self._clock.now() - self.last_tick <= 3 * self.settings.interval

    def ready(self) -> tuple[bool, str]:
        """Ready once the first decision is made. Never on the gateway: in one pod any
        container's readiness gates the pod's Service endpoints, and a presence problem must not
        stop webhook delivery to the consumer (an auth failure is loud through log, metric and
        alert instead)."""
        if self.decision is None:
            return False, "no decision yet"
        return True, "ok"

    def _role(self) -> dict[str, Any]:
        if self.fleet is None:
            return {}
        fleet = self.fleet
        leader = fleet.elector.leader() if fleet.elector is not None else None
        return status.role_section(fleet.leading(), leader, fleet.leader_decision())

    def status(self) -> dict[str, Any]:
        """The `/status` document (README, "What it reports"), from what each part reports
        about itself. Holds no secrets."""
        now, wall = self._clock.now(), self._clock.wall()
        s, policy, act = self.settings, self.policy, self.actuator.report()
        fast = tick_delay(policy.hysteresis, now, self._cfg, s.interval, s.fast_interval)
        return {
            "fleet": self.fleet.status() if self.fleet is not None else {"enabled": False},
            "presence": status.presence_section(
                policy.decision,
                policy.hysteresis.reason,
                self.reporter.since,
                act,
                self._role(),
                now,
                wall,
            ),
            "signals": status.signals_section(self.observation),
            # Fast re-probe: the loop's own rule puts the next tick before INTERVAL.
            "hysteresis": status.hysteresis_section(
                policy.hysteresis, self._cfg, fast < s.interval
            ),
            **status.sources_sections(self.sources.report()),
            "gateway": status.gateway_section(act, now, wall),
            "damping": status.damping_section(policy.damping, self._cfg.damping, now, wall),
            "last_seen": status.last_seen_section(act, wall),
            "witness": (
                self.witness.report(now, wall) if self.witness is not None else {"enabled": False}
            ),
            "transitions": [t.as_json() for t in reversed(self.reporter.transitions)],
            "ticks": self.ticks,
        }
