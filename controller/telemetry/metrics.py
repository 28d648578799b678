"""Prometheus metrics (prefix `presence_`; docs/observability.md), on a registry of their own."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from controller.core.actuation import FailureKind
from controller.core.types import HealthStatus, LagStatus, Presence, Rule

_STATES = tuple(Presence)
RULES = tuple(rule.value for rule in Rule)
"""Every value of the `rule` label (core.types.Rule)."""
GATEWAY_OUTCOMES = ("ok", *(kind.value for kind in FailureKind), "cancelled")
"""Every outcome label of presence_gateway_requests_total (created at 0 at start)."""
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


PULSE_OUTCOMES = ("completed", "cut_short", "merged", "failed")


class Metrics:
    """Every metric the controller exports. One instance per controller (tests make many)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._decision_metrics(self.registry)
        self._signal_metrics(self.registry)
        self._gateway_metrics(self.registry)
        self._fleet_metrics(self.registry)
        self._initial_labels()

    def _decision_metrics(self, r: CollectorRegistry) -> None:
        """What was decided, by which rule, and what stood in its way."""
        self.desired_state = Gauge(
            "presence_desired_state",
            "1 for the presence the controller wants",
            ["state"],
            registry=r,
        )
        self.transitions = Counter(
            "presence_transitions",
            "Changes of the desired presence, by the rule that decided them (health and error "
            "are the consumer's; maintenance, force, online_hours and damping are deliberate)",
            ["to", "rule"],
            registry=r,
        )
        self.decision_rule = Gauge(
            "presence_decision_rule",
            "1 for the rule that decided: maintenance, force, online_hours, health, or error "
            "(failed ticks: fail safe)",
            ["rule"],
            registry=r,
        )
        self.damping_penalty = Gauge(
            "presence_damping_penalty",
            "Flap-damping penalty (decayed), 1000 per outage; returns to available are held "
            "back above SUPPRESS until it falls below REUSE",
            registry=r,
        )
        self.damping_suppressed = Gauge(
            "presence_damping_suppressed",
            "1 while flap damping holds back a return to available",
            registry=r,
        )
        self.maintenance_active = Gauge(
            "presence_maintenance_active", "1 while a maintenance window is active", registry=r
        )
        self.annotation_invalid = Gauge(
            "presence_annotation_invalid",
            "Presence annotations that are invalid right now (an invalid maintenance value "
            "keeps the bot offline)",
            registry=r,
        )
        self.annotation_errors = Counter(
            "presence_annotation_errors",
            "Annotation errors seen (counted once each, when they appear)",
            registry=r,
        )
        self.dry_run = Gauge(
            "presence_dry_run",
            "1 in dry run: the controller decides and reports but calls no gateway",
            registry=r,
        )

    def _signal_metrics(self, r: CollectorRegistry) -> None:
        """What the probes saw, and the loop itself."""
        self.probes = Counter(
            "presence_probe", "Consumer probes by result", ["probe", "result"], registry=r
        )
        self.queue_lag = Gauge(
            "presence_queue_lag_seconds", "Last queue lag read (NaN when missing)", registry=r
        )
        self.lag_watermark = Gauge(
            "presence_lag_watermark_seconds",
            "The configured lag watermarks (edge=high: bad at or above; edge=low: good below)",
            ["edge"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "presence_reconcile_duration_seconds",
            "Duration of one tick (probe and decide)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.last_tick = Gauge(
            "presence_last_tick_timestamp_seconds",
            "Unix time of the last tick (before the first one: of the start)",
            registry=r,
        )

    def _gateway_metrics(self, r: CollectorRegistry) -> None:
        """What the gateway was asked and answered."""
        self.applied_state = Gauge(
            "presence_applied_state",
            "1 for the presence the gateway last accepted",
            ["state"],
            registry=r,
        )
        self.gateway_requests = Counter(
            "presence_gateway_requests",
            "Gateway calls by outcome (ok, auth_error, session_not_ready, rate_limited, "
            "transient_error, permanent_error, quota_refused)",
            ["provider", "outcome"],
            registry=r,
        )
        self.gateway_duration = Histogram(
            "presence_gateway_request_duration_seconds",
            "Duration of gateway calls",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.gateway_auth_failed = Gauge(
            "presence_gateway_auth_failed",
            "1 while the gateway rejects our credentials",
            registry=r,
        )
        self.gateway_session_working = Gauge(
            "presence_gateway_session_working",
            "1 when the gateway session was last seen WORKING, 0 when not (NaN: not read yet)",
            registry=r,
        )
        self.gateway_last_success = Gauge(
            "presence_gateway_last_success_timestamp_seconds",
            "Unix time the gateway last accepted a set-presence call (0: never)",
            registry=r,
        )
        self.reassert_interval = Gauge(
            "presence_reassert_interval_seconds",
            "How often the desired presence is re-sent (0 while unknown or in dry run): the "
            "gateway should confirm it at least this often",
            registry=r,
        )
        self.last_seen_refresh = Counter(
            "presence_last_seen_refresh",
            "Last-seen pulses by how they ended (completed, cut_short, merged into a decided "
            "available, failed to start)",
            ["outcome"],
            registry=r,
        )

    def _fleet_metrics(self, r: CollectorRegistry) -> None:
        """Fleet mode (the Kubernetes API) and the trace export."""
        self.leader = Gauge(
            "presence_leader",
            "Fleet mode: 1 while this replica holds the leader Lease and may call the gateway "
            "(always 1 outside fleet mode: the only replica acts)",
            registry=r,
        )
        self.kube_requests = Counter(
            "presence_kube_requests",
            "Fleet mode: Kubernetes API requests by verb, resource and HTTP status (0: no answer)",
            ["verb", "resource", "code"],
            registry=r,
        )
        self.kube_watch_restarts = Counter(
            "presence_kube_watch_restarts",
            "Fleet mode: watches that ended in an error or a 410 and were started again",
            ["resource"],
            registry=r,
        )
        self.fleet_members = Gauge(
            "presence_fleet_members",
            "Fleet mode: members this replica heard from within the heartbeat window, by the "
            "verdict they report",
            ["verdict"],
            registry=r,
        )
        self.fleet_ignored = Gauge(
            "presence_fleet_ignored_heartbeats",
            "Fleet mode: heartbeat Leases that do not count (not named after their holder, or "
            "not from a pod of this workload)",
            registry=r,
        )
        self.fleet_view_age = Gauge(
            "presence_fleet_view_age_seconds",
            "Fleet mode: seconds since this replica last confirmed its view of the heartbeats "
            "complete and current (past 3 x HEARTBEAT, silent members are unconfirmed)",
            registry=r,
        )
        self.trace_spans = Counter(
            "presence_trace_spans",
            "Spans handed to the trace exporter, by result (exported, dropped)",
            ["result"],
            registry=r,
        )

    def _initial_labels(self) -> None:
        """Every fixed label value created at start (and the states at unknown)."""
        self.gateway_session_working.set(math.nan)
        self.leader.set(1)
        for state in _STATES:
            self.desired_state.labels(state=state.value)
            self.applied_state.labels(state=state.value)
        self.set_state(self.desired_state, Presence.UNKNOWN)
        self.set_state(self.applied_state, Presence.UNKNOWN)
        for to in (Presence.AVAILABLE, Presence.UNAVAILABLE):
            for rule in RULES:
                self.transitions.labels(to=to.value, rule=rule)
        for rule in RULES:
            self.decision_rule.labels(rule=rule).set(0)
        for result in ("exported", "dropped"):
            self.trace_spans.labels(result=result)
        for outcome in PULSE_OUTCOMES:
            self.last_seen_refresh.labels(outcome=outcome)

    def create_labels(self, provider: str, *, lag: bool) -> None:
        """Create every known label value at 0, so that `rate()` and `increase()` see the first
        error (a series born at 1 has no earlier sample to rise from)."""
        for outcome in GATEWAY_OUTCOMES:
            self.gateway_requests.labels(provider=provider, outcome=outcome)
        for status in HealthStatus:
            self.probes.labels(probe="health", result=status.value)
        if lag:
            for lag_status in LagStatus:
                if lag_status is not LagStatus.NOT_CONFIGURED:
                    self.probes.labels(probe="lag", result=lag_status.value)

    @staticmethod
    def set_state(gauge: Gauge, presence: Presence) -> None:
        for state in _STATES:
            gauge.labels(state=state.value).set(1 if state is presence else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


WITNESS_ACTIONS = ("false_online", "not_shown")
WITNESS_ERRORS = ("hidden", "no_last_seen", "not_subscribed", "gateway", "malformed", "webhook")
"""The `reason` labels of the witness's counters (core.witness.Mismatch and Failure; `webhook`:
a refused or broken webhook)."""
_DECAY_BUCKETS = (2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0)


class WitnessMetrics:
    """What the witness sees (registered only when it is enabled)."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.shown_state = Gauge(
            "presence_shown_state",
            "1 for the presence the witness last saw shown to contacts (unknown: it saw nothing)",
            ["state"],
            registry=r,
        )
        self.false_online = Counter(
            "presence_witness_false_online_seconds",
            "Seconds the witness saw the bot shown available while unavailable was intended",
            registry=r,
        )
        self.shown_available_ratio = Gauge(
            "presence_witness_shown_available_ratio",
            "Of the last hour's time available was intended, the share the witness saw it shown "
            "(NaN until available was intended 30 s in the hour)",
            registry=r,
        )
        self.decay = Histogram(
            "presence_witness_decay_seconds",
            "From a write of available (nothing written since) to the witness seeing it gone",
            buckets=_DECAY_BUCKETS,
            registry=r,
        )
        self.actions = Counter(
            "presence_witness_actions",
            "Early writes of the intended presence after a mismatch the witness saw, by reason",
            ["reason"],
            registry=r,
        )
        self.errors = Counter(
            "presence_witness_errors",
            "Witness reads or webhooks that saw nothing, by reason",
            ["reason"],
            registry=r,
        )
        self.effective_reassert = Gauge(
            "presence_witness_effective_reassert_available_seconds",
            "REASSERT_AVAILABLE as the actuator uses it (calibrated from the measured decay)",
            registry=r,
        )
        self.fighting = Gauge(
            "presence_witness_fighting",
            "1 while a mismatch comes back after every write (a gateway setting named in "
            "/status.witness.fight)",
            registry=r,
        )
        for state in _STATES:
            self.shown_state.labels(state=state.value)
        Metrics.set_state(self.shown_state, Presence.UNKNOWN)
        for reason in WITNESS_ACTIONS:
            self.actions.labels(reason=reason)
        for reason in WITNESS_ERRORS:
            self.errors.labels(reason=reason)
        self.shown_available_ratio.set(math.nan)
