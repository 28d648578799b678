"""Hysteresis on the consumer's signals (README, "How decisions are made").

A tick is classified good, bad or neutral; `rise` consecutive good ticks bring the verdict up,
`fall` consecutive bad ticks take it down. A neutral tick (lag between the watermarks) advances
neither streak and breaks both, and the state holds: like a Schmitt trigger, lag below
`lag_high` is acceptable while available and lag above `lag_low` is not yet recovered while
unavailable, so "consecutive" means adjacent ticks. Coming back up also waits out `hold_down`
seconds since the last transition down. At start the verdict is UNKNOWN until a streak
completes, or UNAVAILABLE once `startup_grace` has passed without one.

All times are monotonic seconds passed in by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from controller.core.damping import DampingConfig
from controller.core.types import HealthStatus, LagStatus, Observation, Presence, TickKind


@dataclass(frozen=True, slots=True)
class HysteresisConfig:
    """The knobs of the hysteresis, with the meanings of the matching settings."""

    rise: int = 3
    fall: int = 3
    hold_down: float = 30.0
    startup_grace: float = 60.0
    lag_high: float = 30.0
    lag_low: float = 10.0
    missing_lag_is_bad: bool = True
    damping: DampingConfig = field(default_factory=DampingConfig)
    """Flap damping of the consumer's outages (core.damping)."""

    def __post_init__(self) -> None:
        if self.rise < 1 or self.fall < 1:
            raise ValueError("rise and fall must be >= 1")
        if not self.lag_low < self.lag_high:
            raise ValueError("lag_low must be < lag_high")
        if self.hold_down < 0 or self.startup_grace < 0:
            raise ValueError("hold_down and startup_grace must be >= 0")


@dataclass(frozen=True, slots=True)
class HysteresisState:
    """The verdict on the consumer's signals and the streaks that lead to the next one."""

    verdict: Presence = Presence.UNKNOWN
    reason: str = "starting: waiting for the first probes"
    good: int = 0
    """Consecutive good ticks."""
    bad: int = 0
    """Consecutive bad ticks."""
    started_at: float | None = None
    down_since: float | None = None
    """When the verdict last became UNAVAILABLE; the hold-down counts from here."""


def _fmt(value: float) -> str:
    return f"{value:g}"


def classify(obs: Observation, cfg: HysteresisConfig) -> tuple[TickKind, str]:
    """Classify one observation as a good, bad or neutral tick, with the evidence in words."""
    health = obs.health
    if health.status is not HealthStatus.OK:
        return TickKind.BAD, f"health {health.detail}"
    lag = obs.lag
    if lag.status is LagStatus.NOT_CONFIGURED:
        return TickKind.GOOD, f"health {health.detail}"
    if lag.status is LagStatus.MISSING or lag.value is None:
        if cfg.missing_lag_is_bad:
            return TickKind.BAD, f"lag metric unavailable ({lag.detail})"
        return TickKind.GOOD, f"health {health.detail}, lag metric ignored ({lag.detail})"
    if lag.value >= cfg.lag_high:
        return TickKind.BAD, f"queue lag {_fmt(lag.value)} >= lag_high {_fmt(cfg.lag_high)}"
    if lag.value < cfg.lag_low:
        return (
            TickKind.GOOD,
            f"health {health.detail}, queue lag {_fmt(lag.value)} < lag_low {_fmt(cfg.lag_low)}",
        )
    return (
        TickKind.NEUTRAL,
        f"queue lag {_fmt(lag.value)} between lag_low {_fmt(cfg.lag_low)} "
        f"and lag_high {_fmt(cfg.lag_high)}",
    )


def step(
    state: HysteresisState, tick: TickKind, why: str, now: float, cfg: HysteresisConfig
) -> HysteresisState:
    """Advance the hysteresis by one classified tick at monotonic time `now`."""
    started_at = state.started_at if state.started_at is not None else now
    good, bad = 0, 0
    if tick is TickKind.GOOD:
        good = state.good + 1
    elif tick is TickKind.BAD:
        bad = state.bad + 1
    new = replace(state, good=good, bad=bad, started_at=started_at)

    # Only a bad tick can take the verdict down and only a good one bring it up: a neutral tick
    # holds the state even when the hold-down runs out under a complete good streak.
    if tick is TickKind.BAD and state.verdict is not Presence.UNAVAILABLE and bad >= cfg.fall:
        return replace(
            new,
            verdict=Presence.UNAVAILABLE,
            reason=f"unhealthy: {why} ({bad} consecutive bad ticks, fall {cfg.fall})",
            down_since=now,
        )
    if tick is TickKind.GOOD and state.verdict is not Presence.AVAILABLE and good >= cfg.rise:
        held = 0.0 if state.down_since is None else now - state.down_since
        if state.down_since is None or held >= cfg.hold_down:
            # More good ticks than `rise` means the hold-down is what kept us down: say so.
            waited = f", after the {_fmt(cfg.hold_down)}s hold-down" if good > cfg.rise else ""
            return replace(
                new,
                verdict=Presence.AVAILABLE,
                reason=f"healthy: {why} ({good} consecutive good ticks, rise {cfg.rise}{waited})",
            )
    if state.verdict is Presence.UNKNOWN and now - started_at >= cfg.startup_grace:
        return replace(
            new,
            verdict=Presence.UNAVAILABLE,
            reason=(
                f"startup grace {_fmt(cfg.startup_grace)}s expired without {cfg.rise} "
                f"consecutive good ticks (last: {why})"
            ),
            down_since=now,
        )
    return new


def hold_down_left(state: HysteresisState, now: float, cfg: HysteresisConfig) -> float:
    """Seconds the hold-down still blocks a return to AVAILABLE (0 when it does not)."""
    if state.verdict is not Presence.UNAVAILABLE or state.down_since is None:
        return 0.0
    return max(0.0, cfg.hold_down - (now - state.down_since))


def flip_pending(state: HysteresisState, now: float, cfg: HysteresisConfig) -> bool:
    """A streak that could flip the verdict is in progress: bad ticks while not unavailable,
    good ticks while not available (past the hold-down: before it ends, good ticks cannot flip
    anything, so there is nothing to hurry)."""
    if state.bad > 0 and state.verdict is not Presence.UNAVAILABLE:
        return True
    return (
        state.good > 0
        and state.verdict is not Presence.AVAILABLE
        and hold_down_left(state, now, cfg) == 0.0
    )


def tick_delay(
    state: HysteresisState, now: float, cfg: HysteresisConfig, interval: float, fast: float
) -> float:
    """The time from this tick's start to the next one's (before jitter): `fast` while a flip
    is pending (HAProxy's `fastinter`), else `interval`. `fast` 0 is off; a `fast` at or above
    `interval` changes nothing."""
    if fast > 0 and flip_pending(state, now, cfg):
        return min(fast, interval)
    return interval
