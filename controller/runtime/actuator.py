"""Carry out `core.actuation.plan()` against a gateway: one call in flight, results folded back.

The actuator runs as its own task and converges on the latest desired presence, so a slow or
failing gateway never delays the probes (level-triggered, like a Kubernetes controller).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode

from controller.core.actuation import (
    RECONNECT_WHY,
    WORKING,
    ActuationConfig,
    ActuationState,
    CheckSession,
    FailureKind,
    Pulse,
    SetPresence,
    Wait,
    on_credentials_changed,
    on_failure,
    on_pulse_over,
    on_session,
    on_session_started,
    on_set_ok,
    on_set_started,
    on_witness,
    plan,
    pulsing,
    refresh_due,
)
from controller.core.types import NOT_ELIGIBLE, Presence
from controller.gateway.base import Gateway, GatewayError, PermanentError
from controller.runtime.clock import SYSTEM, Clock
from controller.runtime.status import ActuatorReport
from controller.telemetry.logs import event
from controller.telemetry.metrics import Metrics

log = logging.getLogger("presence.actuator")
T = TypeVar("T")


_FOLLOWER_RECHECK = 1.0
"""A follower re-checks its gate at least this often (a change of leadership also wakes it)."""


class Actuator:
    """Makes the gateway show the desired presence, idempotently, with back-off."""

    def __init__(
        self,
        gateway: Gateway,
        cfg: ActuationConfig,
        metrics: Metrics,
        *,
        clock: Clock = SYSTEM,
        rng: random.Random | None = None,
        tracer: trace.Tracer | None = None,
        reread_credentials: Callable[[], bool] | None = None,
        gate: Callable[[float], bool] | None = None,
        call_timeout: float = 0.0,
    ) -> None:
        """`reread_credentials` re-reads the secret after an auth failure; True if it changed.
        `gate(seconds)` (fleet mode) says whether this replica may start a gateway call that
        lasts up to `seconds` (`call_timeout`, the gateway's): asked before every call, so a
        leader that lost its lease, or would lose it before the call could end, never starts
        one."""
        self.gateway = gateway
        self._gate = gate
        self.call_timeout = call_timeout
        self._reread = reread_credentials
        self.cfg = cfg
        self.metrics = metrics
        self.state = ActuationState()
        self.desired = Presence.UNKNOWN
        self.next_action = "idle"
        self.last_success: datetime | None = None
        """Wall-clock time the gateway last accepted a set call (never in dry run)."""
        self.veto: str | None = NOT_ELIGIBLE
        """Why a last-seen pulse may not run now (core.actuation.refresh_veto); None: it may."""
        self.last_pulse: datetime | None = None
        """Wall-clock time the last last-seen pulse ended."""
        self.listeners: list[Callable[[Presence, str], None]] = []
        """Called with every write the gateway accepted, and why (the witness times decays)."""
        self._pulse_span: Span | None = None
        self._clock = clock
        self._rng = rng or random.Random()
        self._tracer = tracer or trace.get_tracer(__name__)
        self._origin: Context | None = None
        self._wake = asyncio.Event()
        self._call_lock = asyncio.Lock()
        self._not_before = -math.inf
        """The `until` of the last wait that ran out (see `_now`)."""

    def _now(self) -> float:
        """Monotonic now, never before the end of the last wait that ran out."""
        return max(self._clock.now(), self._not_before)

    def witness_write(self, why: str) -> None:
        """The witness saw contacts shown something else: write the desired presence now."""
        self.state = on_witness(self.state, why)
        self._wake.set()

    def credentials_changed(self) -> None:
        """The secret changed: retry an auth failure at once, with the new credentials."""
        self.state = on_credentials_changed(self.state)
        self._wake.set()

    def want(
        self, presence: Presence, origin: Span | None = None, veto: str | None = NOT_ELIGIBLE
    ) -> None:
        """Set the desired presence (called every tick; only a change wakes the actuator).
        `origin` is the span of the tick that changed it: the gateway spans join its trace.
        `veto` (core.actuation.refresh_veto): whether a last-seen pulse may run; a change
        wakes the actuator too, so that a pulse is cut short at once."""
        if (veto is None) != (self.veto is None):
            self._wake.set()
        self.veto = veto
        if presence is not self.desired:
            self.desired = presence
            self._origin = trace.set_span_in_context(origin) if origin is not None else None
            self._wake.set()
            if presence is Presence.AVAILABLE and self.state.pulse_since is not None:
                self.state = on_pulse_over(self.state)
                self._pulse_done("merged", "the decision turned available during the pulse")

    def report(self) -> ActuatorReport:
        """What it knows of the gateway, as plain values (`/status`)."""
        return ActuatorReport(
            self.gateway.provider, self.state, self.cfg, self.desired, self.next_action,
            self.last_success, self.last_pulse, self.veto, self.pulsing(), self.next_refresh(),
        )  # fmt: skip

    def pulsing(self) -> bool:
        """A last-seen pulse shows `available` at the gateway now."""
        return pulsing(self.state, self.desired)

    def next_refresh(self) -> float | None:
        """Seconds until the next last-seen pulse (None: none due: off, vetoed, or the gateway
        is not known to show unavailable)."""
        due = refresh_due(self.state, self.cfg, self.veto)
        return None if due is None else max(0.0, due - self._now())

    async def run(self) -> None:
        """Converge forever; cancel to stop (an in-flight call is abandoned)."""
        while True:
            try:
                await self._step()
            except Exception:
                # A bug, not a gateway failure (those are folded into the state): report it and
                # pause before planning again, so a persistent bug cannot spin.
                log.exception("actuator step failed")
                await self._clock.sleep(self.cfg.backoff_base)

    def leadership_changed(self, leading: bool) -> None:
        """Fleet mode: a new leader forgets what it knew of the gateway (another replica wrote
        since) and writes its decision at once; a former leader stops calling."""
        if not leading and self.state.pulse_since is not None:
            # The new leader writes the decision (unavailable) as it starts: the pulse is its.
            self.state = on_pulse_over(self.state)
            self._pulse_done("cut_short", "leadership lost; the new leader writes the decision")
        # Either way what this replica knew of the gateway is stale: a former leader must not
        # keep exporting it (a fixed credential would still alert from a follower).
        self.state, self.last_success = ActuationState(), None
        m = self.metrics
        Metrics.set_state(m.applied_state, Presence.UNKNOWN)
        m.gateway_auth_failed.set(0)
        m.gateway_session_working.set(math.nan)
        m.gateway_last_success.set(0)
        self._wake.set()

    async def _step(self) -> None:
        """Plan once and carry the action out."""
        self._wake.clear()
        if self._gate is not None and not self._gate(self.call_timeout):
            self.next_action = "wait: not the leader (the leader replica calls the gateway)"
            with contextlib.suppress(TimeoutError):
                async with self._clock.timeout(_FOLLOWER_RECHECK):
                    await self._wake.wait()
            return
        action = plan(self.state, self.desired, self._now(), self.cfg, self.veto)
        if isinstance(action, Wait):
            self.next_action = f"wait: {action.why}"
            timeout = None if action.until is None else max(0.0, action.until - self._now())
            # Not `wait_for`: on Python 3.11 it swallows a cancel that arrives in the same loop
            # step as the wake-up, and the actuator would run on after shutdown.
            try:
                async with self._clock.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                # The instant waited for has come, even if the loop's timer fired a hair early
                # (its resolution) or the clock did not move (a virtual one): planning again
                # at an earlier `now` would wait again for ever, a busy loop.
                assert action.until is not None
                self._not_before = max(self._not_before, action.until)
        elif isinstance(action, CheckSession):
            self.next_action = "checking gateway session"
            await self._check_session()
        else:
            self.next_action = f"setting {action.presence} ({action.why})"
            await self._set(action)

    async def shutdown_write(self, deadline: float) -> bool:
        """Write UNAVAILABLE once, past back-off and budget, within `deadline` s; True if done.
        A pulse in progress ends with it."""
        if self.cfg.dry_run:
            return True
        pulse = Pulse.END if self.pulsing() else None
        why = "shutdown" if pulse is None else "last-seen pulse cut short: shutdown"
        try:
            async with self._clock.timeout(deadline):
                await self._set(SetPresence(Presence.UNAVAILABLE, why, pulse), budget=False)
        except TimeoutError:
            event(log, logging.ERROR, "shutdown", f"shutdown write timed out after {deadline:g}s")
            return False
        return self.state.applied is Presence.UNAVAILABLE

    def _span(self, operation: str, why: str) -> AbstractContextManager[Span]:
        """A gateway span: in the trace of the tick that changed the desired presence while we
        converge on that change, under the pulse's span during a last-seen pulse, a trace of
        its own for re-asserts and the shutdown write."""
        converging = self.state.applied is not self.desired and why != "shutdown"
        context = self._origin if converging else None
        if self._pulse_span is not None:
            context = trace.set_span_in_context(self._pulse_span)
        return self._tracer.start_as_current_span(
            f"presence.gateway.{operation}",
            context=context,
            attributes={
                "gateway.provider": self.gateway.provider,
                "presence.gateway.why": why,
                "presence.gateway.attempt": self.state.failures + 1,
            },
            record_exception=False,
        )

    async def _check_session(self) -> None:
        self.state = on_session_started(self.state, self._now(), self.cfg)
        with self._span("session", "session check") as span:
            try:
                status = await self._call("session", self.gateway.session_status())
            except GatewayError as exc:
                self._failed(exc, span)
                return
            before = self.state.session
            self.state = on_session(self.state, status, self._now(), self.cfg, self._rng)
            span.set_attribute("gateway.session", status)
            if status != WORKING:
                span.set_status(Status(StatusCode.ERROR, f"session {status}"))
                span.set_attribute("presence.gateway.backoff_seconds", self._backoff_left())
        self.metrics.gateway_session_working.set(1 if status == WORKING else 0)
        self.metrics.gateway_auth_failed.set(0)
        if status != before:
            level = logging.INFO if status == WORKING else logging.WARNING
            retry = (
                ""
                if status == WORKING
                else f"; presence calls paused, re-checking in {self._backoff_left():.1f}s"
            )
            message = f"gateway session is {status}{retry}"
            event(log, level, "gateway_session", message, session=status)

    async def _set(self, action: SetPresence, *, budget: bool = True) -> None:
        now = self._now()
        if self.cfg.dry_run:
            # Nothing is sent, so nothing counts against the call budget; the planner still
            # records the would-be write so that it converges instead of planning it again.
            self.state = on_set_ok(self.state, action.presence, now)
            level = logging.INFO if action.why == "change" else logging.DEBUG
            message = f"dry run: would set presence {action.presence} ({action.why}); not sent"
            event(log, level, "dry_run", message, presence=action.presence.value, why=action.why)
            return
        if budget:
            self.state = on_set_started(self.state, now, self.cfg)
        if action.pulse is Pulse.START:
            self._pulse_span = self._tracer.start_span(
                "presence.last_seen.refresh",
                attributes={
                    "gateway.provider": self.gateway.provider,
                    "presence.last_seen.pulse_seconds": self.cfg.last_seen_pulse,
                },
            )
        with self._span("set", action.why) as span:
            span.set_attribute("presence.value", action.presence.value)
            try:
                code = await self._call("set", self.gateway.set_presence(action.presence))
            except GatewayError as exc:
                self._failed(exc, span)
                if action.pulse is Pulse.START:
                    self._pulse_done("failed", exc.message)
                return
            span.set_attribute("http.response.status_code", code)
            self._applied(action, self._now(), "gateway accepted")
        if action.pulse is Pulse.START:
            message = (
                f"last-seen refresh: showing available for {self.cfg.last_seen_pulse:g}s "
                "(the decision stays unavailable)"
            )
            event(log, logging.INFO, "last_seen", message)
        elif action.pulse is Pulse.END:
            cut = action.why.startswith("last-seen pulse cut short")
            self.last_pulse = self._clock.wall()
            self._pulse_done("cut_short" if cut else "completed", action.why)

    def _pulse_done(self, outcome: str, why: str) -> None:
        """Count a pulse, end its span and say how it ended."""
        self.metrics.last_seen_refresh.labels(outcome=outcome).inc()
        span, self._pulse_span = self._pulse_span, None
        if span is not None:
            span.set_attribute("presence.last_seen.outcome", outcome)
            if outcome == "failed":
                span.set_status(Status(StatusCode.ERROR, why))
            span.end()
        level = logging.WARNING if outcome == "failed" else logging.INFO
        event(log, level, "last_seen", f"last-seen refresh {outcome}: {why}", outcome=outcome)

    def _applied(self, action: SetPresence, now: float, how: str) -> None:
        before = self.state.applied
        self.state = on_set_ok(self.state, action.presence, now, action.pulse)
        Metrics.set_state(self.metrics.applied_state, action.presence)
        self.metrics.gateway_auth_failed.set(0)
        self.last_success = self._clock.wall()
        self.metrics.gateway_last_success.set(self.last_success.timestamp())
        # A write after a seen reconnect is news (the gateway may have shown the bot online by
        # itself); a plain re-assert is not.
        news = action.presence is not before or action.why == RECONNECT_WHY
        news = news or action.why.startswith("witness")
        level = logging.INFO if news else logging.DEBUG
        event(
            log,
            level,
            "presence_applied",
            f"{how}: presence {action.presence} ({action.why})",
            presence=action.presence.value,
            why=action.why,
        )
        for listener in self.listeners:
            listener(action.presence, action.why)

    async def _call(self, operation: str, call: Awaitable[T]) -> T:
        """Await one gateway call under the in-flight lock, counting its outcome and duration."""
        async with self._call_lock:
            started = self._now()
            outcome = "cancelled"
            try:
                result = await call
            except GatewayError as exc:
                outcome = exc.kind.value
                raise
            except Exception as exc:
                # A provider bug must not kill the loop: report it and treat it as permanent.
                outcome = PermanentError.kind.value
                log.exception("unexpected error in gateway %s call", operation)
                raise PermanentError(
                    f"{operation}: unexpected {type(exc).__name__} in the gateway client"
                ) from None
            else:
                outcome = "ok"
                return result
            finally:
                self.metrics.gateway_duration.observe(self._now() - started)
                self.metrics.gateway_requests.labels(
                    provider=self.gateway.provider, outcome=outcome
                ).inc()

    def _failed(self, exc: GatewayError, span: Span) -> None:
        failure = exc.as_failure()
        self.state = on_failure(self.state, failure, self._now(), self.cfg, self._rng)
        if failure.kind is FailureKind.AUTH and self._reread is not None and self._reread():
            # The secret rotated under us: the next attempt uses the new one, at once.
            self.state = on_credentials_changed(self.state)
        self.metrics.gateway_auth_failed.set(1 if self.state.auth_failed else 0)
        span.set_status(Status(StatusCode.ERROR, failure.message))
        span.set_attribute("error.type", failure.kind.value)
        span.set_attribute("presence.gateway.backoff_seconds", self._backoff_left())
        if exc.status_code is not None:
            span.set_attribute("http.response.status_code", exc.status_code)
        level = logging.ERROR if self.state.auth_failed else logging.WARNING
        message = f"{failure.message}; next attempt in {self._backoff_left():.1f}s"
        event(log, level, "gateway_error", message, outcome=failure.kind.value,
              status_code=exc.status_code, failures=self.state.failures)  # fmt: skip

    def _backoff_left(self) -> float:
        return max(0.0, self.state.backoff_until - self._now())
