"""Plain values exchanged between the observe, decide and act stages."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

NOT_ELIGIBLE = "not eligible"
"""The default last-seen veto: no refresh unless a decision says it allows one."""


class Presence(enum.StrEnum):
    """The bot's WhatsApp presence, as desired by the controller or as applied at the gateway."""

    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"
    UNKNOWN = "unknown"


class HealthStatus(enum.StrEnum):
    """Outcome of one health probe."""

    OK = "ok"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"


@dataclass(frozen=True, slots=True)
class HealthResult:
    """One health probe: a failure is a value with its detail, never an exception."""

    status: HealthStatus
    detail: str
    http_status: int | None = None

    @property
    def ok(self) -> bool:
        return self.status is HealthStatus.OK


class LagStatus(enum.StrEnum):
    """Outcome of one queue-lag scrape."""

    OK = "ok"
    NOT_CONFIGURED = "not_configured"
    MISSING = "missing"
    """The scrape failed, the metric was absent, unparseable or too large: see the detail."""


@dataclass(frozen=True, slots=True)
class LagResult:
    """One queue-lag scrape: the aggregated value, or why there is none."""

    status: LagStatus
    value: float | None = None
    detail: str = ""

    @classmethod
    def not_configured(cls) -> LagResult:
        return cls(LagStatus.NOT_CONFIGURED, detail="no metrics URL configured")

    @classmethod
    def missing(cls, detail: str) -> LagResult:
        return cls(LagStatus.MISSING, detail=detail)

    @classmethod
    def of(cls, value: float, detail: str = "") -> LagResult:
        return cls(LagStatus.OK, value=value, detail=detail)


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    """Inputs that outrank the consumer's health (README, "How decisions are made"), already
    evaluated at `at`.

    Each field is the reason text when that rule applies, else None. The annotation and window
    sources fill these in; an all-None value means "health alone decides".
    """

    maintenance: str | None = None
    """Maintenance is active (or fails closed); the text says which window or source."""
    force: Presence | None = None
    """A valid force override, AVAILABLE or UNAVAILABLE."""
    force_reason: str = ""
    outside_online_hours: str | None = None
    """Now lies outside the configured online hours; the text names the hours."""


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything the controller saw in one tick, as plain values."""

    health: HealthResult
    lag: LagResult
    at: datetime
    """Wall-clock time of the observation, timezone-aware UTC (for windows and reports)."""
    policy: PolicyInputs = field(default_factory=PolicyInputs)


@dataclass(frozen=True, slots=True)
class TickFailed:
    """A tick that could not observe or decide: the controller's own error, in words."""

    error: str
    at: datetime


class Rule(enum.StrEnum):
    """Which precedence rule decided (README, "How decisions are made"), highest first."""

    MAINTENANCE = "maintenance"
    FORCE = "force"
    ONLINE_HOURS = "online_hours"
    DAMPING = "damping"
    HEALTH = "health"
    ERROR = "error"
    """`FALL` ticks in a row failed: the controller fails safe to unavailable."""


class TickKind(enum.StrEnum):
    """How one tick counts for hysteresis."""

    GOOD = "good"
    BAD = "bad"
    NEUTRAL = "neutral"


@dataclass(frozen=True, slots=True)
class Decision:
    """What presence the bot should show, and why.

    `reason` is stable while nothing changes (it explains the current state, so logs and
    `/status` do not churn every tick); `detail` describes this tick's evidence.
    """

    presence: Presence
    reason: str
    detail: str
    tick: TickKind
    rule: Rule = Rule.HEALTH
    refresh_veto: str | None = NOT_ELIGIBLE
    """Why a last-seen pulse may not run under this decision (None: it may): see
    `core.actuation.refresh_veto`."""
