"""The witness task: subscribe, read what a contact sees (or receive it by webhook), fold it in
(`core.witness`), and ask the actuator for an early write or a shorter re-assert period.

It runs beside the tick loop and the actuator, never blocks either, and never decides: a
failing witness is reported and changes nothing else. In fleet mode only the leader runs it.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from controller.config import Settings, check_token
from controller.core.actuation import RECONNECT_WHY
from controller.core.truth import Truth
from controller.core.types import Presence
from controller.core.witness import (
    Blind,
    Failure,
    Sight,
    Verdict,
    WitnessConfig,
    WitnessState,
    decay_quantile,
    effective_reassert,
    observe,
    on_intended,
    on_write,
    shown_ratio,
    truth,
)
from controller.gateway.base import GatewayError
from controller.gateway.witness import (
    WitnessReader,
    build_witness,
    receive_event,
    witness_names,
)
from controller.runtime.actuator import Actuator
from controller.runtime.clock import SYSTEM, Clock
from controller.runtime.status import iso_at
from controller.secret_file import SecretFile
from controller.telemetry.http_tracing import traced_transport
from controller.telemetry.logs import ErrorOnce, add_secret, event
from controller.telemetry.metrics import Metrics, WitnessMetrics

log = logging.getLogger("presence.witness")


class Witness:
    """The witness of one controller."""

    def __init__(
        self,
        settings: Settings,
        actuator: Actuator,
        metrics: Metrics,
        *,
        clock: Clock = SYSTEM,
        tracer: trace.Tracer | None = None,
        gate: Callable[[], bool] | None = None,
        reader: WitnessReader | None = None,
    ) -> None:
        """`gate()` (fleet mode) says whether this replica leads; `reader`: the witness
        session's client (default: built from the settings)."""
        w = settings.witness
        self.settings = w
        self.provider = w.provider or settings.provider
        self.cfg = WitnessConfig(
            w.poll,
            w.act,
            w.mismatch_grace,
            w.calibrate,
            settings.reassert_available,
            settings.provider,
        )
        self.state = WitnessState()
        self.metrics = WitnessMetrics(metrics.registry)
        self.metrics.effective_reassert.set(settings.reassert_available)
        self._actuator = actuator
        self._clock = clock
        self._tracer = tracer or trace.get_tracer(__name__)
        self._gate = gate
        secret, path = w.secret_file(settings.provider)
        file = None
        if path is not None and secret is not None:
            file = SecretFile(path, secret.get_secret_value(), check_token)
        self._file = file
        token = (lambda: file.value) if file is not None else None
        transport = traced_transport(tracer) if tracer is not None else None
        self.reader = reader or build_witness(settings, transport, token)
        self.subscribed_at: float | None = None
        self.actions: Counter[str] = Counter()
        self.reconnects: deque[float] = deque(maxlen=32)
        self.note: str | None = None
        """Why it does not watch now (a follower in fleet mode)."""
        self.last_event: float | None = None
        """When the last webhook came (Evolution)."""
        self.listeners: list[Callable[[str, str], None]] = []
        """Called with (event, message) for each early write and each fight named (the demo's
        timeline)."""
        self._said: str | None = None
        self._webhook_said: str | None = None
        actuator.listeners.append(self._wrote)

    # What the rest of the controller tells it.

    def want(self) -> None:
        """The decision may have changed: note what is intended now (`available` during a
        last-seen pulse, which is meant)."""
        a = self._actuator
        intended = Presence.AVAILABLE if a.pulsing() else a.desired
        self.state = on_intended(self.state, intended, self._clock.now())

    def _wrote(self, presence: Presence, why: str) -> None:
        now = self._clock.now()
        if why == RECONNECT_WHY:
            self.reconnects.append(now)
        self.state = on_write(self.state, presence, now)
        self.want()

    def secrets(self) -> list[str]:
        """The current witness credential, when it comes from a file (for scrubbing)."""
        return [self._file.value] if self._file is not None else []

    # The loop.

    async def run(self) -> None:
        """Watch forever; cancel to stop. A bug in a step (not a failing witness: those are
        sights of nothing) is logged once per distinct error and the watch goes on."""
        failed = ErrorOnce(log)
        while True:
            try:
                await self._step()
            except Exception as exc:
                failed("witness step failed", exc)
            else:
                failed.reset()
            await self._clock.sleep(self.cfg.poll)

    def leading(self) -> bool:
        return self._gate is None or self._gate()

    async def _step(self) -> None:
        if not self.leading():
            if self.note is None:
                self.state, self.subscribed_at, self.last_event = WitnessState(), None, None
                Metrics.set_state(self.metrics.shown_state, Presence.UNKNOWN)
                self.metrics.shown_available_ratio.set(float("nan"))
            self.note = "not the leader: the leader's witness watches"
            return
        self.note = None
        if self._file is not None and self._file.refresh().changed:
            add_secret(self._file.value)
            event(log, logging.INFO, "secret", "witness credential file changed: using the new one")
        now = self._clock.now()
        due = self.subscribed_at is None or now - self.subscribed_at >= self.settings.resubscribe
        if due and not await self._subscribe(now):
            return
        if self.reader.pushes:
            self._pushed(now)
            return
        with self._tracer.start_as_current_span("presence.witness.read") as span:
            sight = await self.reader.read(now)
            self._fold(sight, span)

    async def _subscribe(self, now: float) -> bool:
        try:
            await self.reader.subscribe()
        except GatewayError as exc:
            message = f"subscribe failed: {witness_names(exc)}"
            self.subscribed_at = None
            self._fold(Blind(now, Failure.NOT_SUBSCRIBED, message))
            return False
        self.subscribed_at = now
        return True

    def _pushed(self, now: float) -> None:
        """Evolution: a webhook says what changed; between them the bot is still shown what the
        last one said (folded every POLL, so that a mismatch's grace runs out). WhatsApp answers
        a subscription with the current presence: nothing within 4 x POLL of subscribing means
        the witness cannot see the bot, or the webhook does not reach us."""
        since, last = self.subscribed_at, self.last_event
        if since is not None and (last is None or last < since):
            if now - since >= min(self.settings.resubscribe, 4 * self.cfg.poll):
                message = (
                    f"no presence.update webhook since subscribing {now - since:.0f}s ago: the "
                    "witness cannot see the bot (privacy, no prior chat), or Evolution's webhook "
                    "does not reach POST /witness/events (URL, events, X-Witness-Token header)"
                )
                self._fold(Blind(now, Failure.HIDDEN, message))
            return
        if self.state.blind is None and self.state.shown is not Presence.UNKNOWN:
            self._fold(Sight(now, self.state.shown))

    def _fold(self, sight: Sight | Blind, span: trace.Span | None = None) -> None:
        """One sight folded in, and everything it leads to."""
        self.want()
        before = self.state.shown
        self.state, verdict = observe(self.state, sight, self.cfg, tuple(self.reconnects))
        m = self.metrics
        Metrics.set_state(m.shown_state, self.state.shown)
        m.false_online.inc(verdict.false_online)
        ratio = shown_ratio(truth(self.state, sight.at))
        m.shown_available_ratio.set(float("nan") if ratio is None else ratio)
        if span is not None:
            self._annotate(span, sight)
        self._say_error(sight)
        if isinstance(sight, Blind):
            return
        if self.state.shown is not before:
            event(log, logging.DEBUG, "witness", f"the witness sees {self.state.shown}",
                  shown=self.state.shown.value)  # fmt: skip
        self._act(verdict)

    def _act(self, verdict: Verdict) -> None:
        m = self.metrics
        if verdict.write is not None:
            reason = verdict.write.value
            self.actions[reason] += 1
            m.actions.labels(reason=reason).inc()
            intended = self._actuator.desired
            since = self.state.mismatch_since
            seen = 0.0 if since is None else (self.state.last_read or since) - since
            message = (
                f"contacts are shown {self.state.shown} while {intended} is intended (first seen "
                f"{seen:.1f}s ago): writing {intended} now"
            )
            event(log, logging.WARNING, "witness_action", message, reason=reason)
            for listener in self.listeners:
                listener("action", message)
            self._actuator.witness_write(f"witness: {reason}")
        if verdict.decay is not None:
            m.decay.observe(verdict.decay)
        # Every sight: a new decay sample, or old ones dropped, may move the period.
        period = effective_reassert(self.state, self.cfg)
        cfg = self._actuator.cfg
        if period != cfg.reassert_available:
            self._actuator.cfg = replace(cfg, reassert_available=period)
            m.effective_reassert.set(period)
            event(log, logging.INFO, "witness_calibration",
                  f"re-asserting available every {period:.1f}s (0.7 x the 10th percentile "
                  f"of {len(self.state.decays)} measured decays; configured "
                  f"{self.cfg.reassert_available:g}s)", seconds=period)  # fmt: skip
        if verdict.fight_changed:
            fight = self.state.fight
            m.fighting.set(0 if fight is None else 1)
            if fight is None:
                event(log, logging.INFO, "witness_fight", "the mismatch no longer comes back")
            else:
                event(log, logging.WARNING, "witness_fight", fight.message, pattern=fight.pattern)
                for listener in self.listeners:
                    listener("fight", fight.message)

    def _say_error(self, sight: Sight | Blind) -> None:
        if isinstance(sight, Blind):
            self.metrics.errors.labels(reason=sight.reason.value).inc()
        said = sight.message if isinstance(sight, Blind) else None
        if said == self._said:
            return
        self._said = said
        if said is None:
            event(log, logging.INFO, "witness", "the witness sees the bot again")
        else:
            assert isinstance(sight, Blind)
            event(log, logging.WARNING, "witness_error", said, reason=sight.reason.value)

    def _annotate(self, span: trace.Span, sight: Sight | Blind) -> None:
        span.set_attribute("witness.provider", self.provider)
        span.set_attribute("presence.shown", self.state.shown.value)
        span.set_attribute("presence.intended", self._actuator.desired.value)
        if self.state.mismatch is not None:
            span.set_attribute("witness.mismatch", self.state.mismatch.value)
        if isinstance(sight, Blind):
            span.set_attribute("error.type", sight.reason.value)
            span.set_status(Status(StatusCode.ERROR, sight.message))

    # Evolution's webhooks (POST /witness/events).

    def receive(self, token: str | None, body: bytes | None) -> tuple[int, str]:
        """One webhook (`body` None: over the size limit): (HTTP status, text). Only Evolution's
        witness takes them; a follower refuses them (503) once they are known to be genuine."""
        expected = self.settings.webhook_token
        if not self.reader.pushes or expected is None:
            return 404, "this witness does not take webhooks\n"
        now = self._clock.now()
        instance, chat = self.settings.instance or "", self.settings.bot_chat_id or ""
        got = receive_event(expected.get_secret_value(), token, body, instance, chat, now)
        if got.status in (401, 403, 413):
            return self._refused(got.status, got.why)
        if not self.leading():
            return 503, "not the leader: the leader's witness takes the webhooks\n"
        if got.sight is None:
            return got.status, got.why + "\n"
        self.last_event = now
        with self._tracer.start_as_current_span("presence.witness.read") as span:
            self._fold(got.sight, span)
        if got.status != 200:
            return self._refused(got.status, got.why)
        return 200, "ok\n"

    def _refused(self, status: int, why: str) -> tuple[int, str]:
        self.metrics.errors.labels(reason="webhook").inc()
        if why != self._webhook_said:  # said once per kind: a flood is not a log flood
            self._webhook_said = why
            event(log, logging.WARNING, "witness_webhook", f"witness webhook refused: {why}",
                  status_code=status)  # fmt: skip
        return status, why + "\n"

    # What it reports.

    def report(self, now: float, wall: datetime) -> dict[str, Any]:
        """`/status.witness`."""
        s = self.state

        def at(t: float | None) -> str | None:
            return iso_at(t, now, wall)

        measured: Truth = truth(s, now)
        ratio = shown_ratio(measured)
        blind = s.blind
        return {
            "enabled": True,
            "provider": self.provider,
            "watching": self.note is None,
            "note": self.note,
            "shown": s.shown.value,
            "shown_since": at(s.shown_since),
            "last_read": at(s.last_read),
            "subscribed_at": at(self.subscribed_at),
            "false_online_seconds": round(measured.false_online, 3),
            "shown_available_ratio": None if ratio is None else round(ratio, 4),
            "decay_seconds": {
                "p10": decay_quantile(s, 0.1),
                "p50": decay_quantile(s, 0.5),
                "samples": len(s.decays),
            },
            "effective_reassert_available": self._actuator.cfg.reassert_available,
            "calibrate": self.cfg.calibrate,
            "act": self.cfg.act,
            "mismatch": None
            if s.mismatch is None
            else {"kind": s.mismatch.value, "since": at(s.mismatch_since)},
            "fight": None
            if s.fight is None
            else {"pattern": s.fight.pattern, "message": s.fight.message},
            "actions": dict(self.actions),
            "error": None
            if blind is None
            else {"reason": blind.reason.value, "message": blind.message, "at": at(blind.at)},
        }
