"""Flap damping (README, "How decisions are made"), after BGP route-flap damping (RFC 2439).

Each outage (the consumer's verdict going from available to unavailable) adds a penalty of
`PENALTY`, which decays exponentially with `half_life`. Once the penalty exceeds `suppress`, a
return to available is held back until it decays below `reuse`, and never longer than
`max_suppress`: the penalty is capped at the ceiling from which it decays to `reuse` in exactly
`max_suppress` (RFC 2439's maximum penalty), and a suppression is also ended outright at
`max_suppress`. Damping never delays going unavailable, and it only acts where the consumer's
health decides: maintenance, force and online hours are never held back by it.

Pure: every function takes the monotonic time and returns a new state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from controller.core.types import Presence

PENALTY = 1000.0
"""Added for each outage."""
OUTAGE_MEMORY = 3.0
"""Outages are counted in the reason for this many half-lives (then they weigh < 1/8)."""


@dataclass(frozen=True, slots=True)
class DampingConfig:
    enabled: bool = True
    half_life: float = 900.0
    suppress: float = 2500.0
    reuse: float = 800.0
    max_suppress: float = 1800.0

    def __post_init__(self) -> None:
        if self.half_life <= 0 or self.max_suppress <= 0:
            raise ValueError("half_life and max_suppress must be > 0")
        if not 0 < self.reuse < self.suppress:
            raise ValueError("0 < reuse < suppress is required")
        if not self.ceiling > self.suppress:
            raise ValueError(
                f"damping could never act: the penalty is capped at REUSE x 2^(MAX_SUPPRESS / "
                f"HALF_LIFE) = {self.ceiling:.0f}, not above SUPPRESS ({self.suppress:g}); "
                "raise MAX_SUPPRESS or lower HALF_LIFE"
            )

    @property
    def ceiling(self) -> float:
        """The highest penalty: from it, decay reaches `reuse` in exactly `max_suppress`."""
        return self.reuse * math.pow(2.0, self.max_suppress / self.half_life)


@dataclass(frozen=True, slots=True)
class DampingState:
    penalty: float = 0.0
    """The penalty as of `updated_at` (decay is applied on read)."""
    updated_at: float = 0.0
    suppressed_since: float | None = None
    """Returns to available are held back since then (None: not suppressed)."""
    outages: tuple[float, ...] = ()
    """When the outages that still weigh in the penalty began (for the reason text)."""
    last: Presence = Presence.UNKNOWN
    """The consumer's verdict at the previous step (an outage is a change from available)."""


def penalty(state: DampingState, now: float, cfg: DampingConfig) -> float:
    """The penalty at `now`, decayed."""
    if state.penalty <= 0:
        return 0.0
    elapsed = max(0.0, now - state.updated_at)
    return state.penalty * math.pow(0.5, elapsed / cfg.half_life)


def reuse_at(state: DampingState, cfg: DampingConfig) -> float | None:
    """When a suppression ends: the penalty decays below `reuse`, or `max_suppress` runs out,
    whichever comes first (None: not suppressed)."""
    if state.suppressed_since is None:
        return None
    decays = state.updated_at
    if state.penalty > cfg.reuse:
        decays += cfg.half_life * math.log2(state.penalty / cfg.reuse)
    return min(decays, state.suppressed_since + cfg.max_suppress)


def damp(state: DampingState, verdict: Presence, now: float, cfg: DampingConfig) -> DampingState:
    """Fold in the consumer's verdict at `now`: an outage adds the penalty (capped at the
    ceiling); a suppression starts above `suppress` and ends at `reuse_at`."""
    if not cfg.enabled:
        return replace(state, last=verdict)
    current = penalty(state, now, cfg)
    outages = state.outages
    outage = verdict is Presence.UNAVAILABLE and state.last is Presence.AVAILABLE
    if outage:
        current = min(current + PENALTY, cfg.ceiling)
        outages = (*outages, now)
    # Outages that still weigh at least an eighth of their penalty (for the reason text).
    outages = tuple(t for t in outages if now - t < OUTAGE_MEMORY * cfg.half_life)
    new = replace(state, penalty=current, updated_at=now, outages=outages, last=verdict)
    if new.suppressed_since is None:
        # Like RFC 2439, suppression starts only at a flap: a released bot is given one more
        # chance, and each suppression is bounded by max_suppress on its own.
        if outage and current > cfg.suppress:
            new = replace(new, suppressed_since=now)
        return new
    end = reuse_at(new, cfg)
    if end is not None and now >= end:
        return replace(new, suppressed_since=None)
    return new


def holds(state: DampingState) -> bool:
    """Whether a return to available is held back now."""
    return state.suppressed_since is not None


def damped_reason(state: DampingState, cfg: DampingConfig, back: str) -> str:
    """`damped: N outages in M minutes, back at HH:MM when the penalty decays`; `back` is the
    wall-clock time of `reuse_at` as the caller shows it."""
    count = len(state.outages)
    minutes = (state.outages[-1] - state.outages[0]) / 60 if state.outages else 0.0
    outages = f"{count} outage{'s' if count != 1 else ''}"
    span = max(1, round(minutes))
    return f"damped: {outages} in {span} minutes, back at {back} when the penalty decays"
