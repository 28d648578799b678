"""`presence-controller replay`: the decision core over recorded history (pure).

Each sample is one tick: the consumer's lag (None: missing) and health at a wall-clock time; the
same `decide()` the controller runs turns them into a presence track, and the track is scored
against the incidents found in the lag itself (lag at or above `LAG_HIGH` for at least
`incident_min`). Ticks come at the samples' times: with a Prometheus range at step `INTERVAL`,
one per interval. The fast re-probe (`FAST_INTERVAL`) cannot be replayed from data sampled at
`INTERVAL` and is left out; it only makes detection faster.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.core.hysteresis import HysteresisConfig
from controller.core.policy import PolicyState, decide
from controller.core.types import (
    HealthResult,
    HealthStatus,
    LagResult,
    Observation,
    Presence,
)

_HEALTHY = HealthResult(HealthStatus.OK, "HTTP 200 (recorded)", 200)
_SICK = HealthResult(HealthStatus.HTTP_ERROR, "unhealthy (recorded)", None)


@dataclass(frozen=True, slots=True)
class Sample:
    at: datetime
    lag: float | None
    """None: no lag sample at this tick (a gap, NaN): missing lag, as `MISSING_LAG` says."""
    healthy: bool = True


@dataclass(frozen=True, slots=True)
class Score:
    """How one setting did on the history."""

    name: str
    changes: int
    """Presence changes (after the first decision)."""
    minutes_unavailable: float
    caught: int
    """Incidents during which the bot went unavailable."""
    detect: tuple[int | None, ...]
    """Per incident: ticks from its start to the first unavailable tick (None: missed)."""
    minutes_unavailable_outside: float
    """Unavailable outside every incident: the cost of false alarms and slow recoveries."""
    track: tuple[Presence, ...]

    @property
    def detect_median(self) -> float | None:
        found = [d for d in self.detect if d is not None]
        return statistics.median(found) if found else None

    @property
    def detect_worst(self) -> int | None:
        found = [d for d in self.detect if d is not None]
        return max(found) if found else None


def incidents(
    samples: Sequence[Sample], lag_high: float, min_seconds: float
) -> list[tuple[int, int]]:
    """Index ranges [start, end) where the lag stays at or above `lag_high` for at least
    `min_seconds`, a run of ticks lasting until the next tick (a missing sample ends it)."""
    found: list[tuple[int, int]] = []
    step = timedelta(seconds=_step(samples))
    i = 0
    while i < len(samples):
        j = i
        while j < len(samples) and _high(samples[j], lag_high):
            j += 1
        if j > i:
            end_at = samples[j].at if j < len(samples) else samples[-1].at + step
            if (end_at - samples[i].at).total_seconds() >= min_seconds:
                found.append((i, j))
        i = max(j, i + 1)
    return found


def _high(sample: Sample, lag_high: float) -> bool:
    return sample.lag is not None and sample.lag >= lag_high


def _step(samples: Sequence[Sample]) -> float:
    if len(samples) < 2:
        return 0.0
    return (samples[-1].at - samples[-2].at).total_seconds()


def replay(
    name: str,
    samples: Sequence[Sample],
    cfg: HysteresisConfig,
    found: Sequence[tuple[int, int]],
) -> Score:
    """Run `decide()` over `samples` with `cfg` and score the track against `found`."""
    if not samples:
        return Score(name, 0, 0.0, 0, tuple(None for _ in found), 0.0, ())
    origin = samples[0].at
    state = PolicyState()
    track: list[Presence] = []
    for sample in samples:
        now = (sample.at - origin).total_seconds()
        lag = (
            LagResult.of(sample.lag)
            if sample.lag is not None
            else LagResult.missing("no sample (recorded)")
        )
        obs = Observation(_HEALTHY if sample.healthy else _SICK, lag, sample.at)
        state, decision = decide(state, obs, now, cfg)
        track.append(decision.presence)
    durations = [(b.at - a.at).total_seconds() / 60 for a, b in itertools.pairwise(samples)] + [
        _step(samples) / 60
    ]
    inside = {i for a, b in found for i in range(a, b)}
    down = [i for i, p in enumerate(track) if p is Presence.UNAVAILABLE]
    detect = tuple(
        next((t - a for t in range(a, b) if track[t] is Presence.UNAVAILABLE), None)
        for a, b in found
    )
    known = [p for p in track if p is not Presence.UNKNOWN]
    return Score(
        name=name,
        changes=sum(1 for a, b in itertools.pairwise(known) if a is not b),
        minutes_unavailable=sum(durations[i] for i in down),
        caught=sum(d is not None for d in detect),
        detect=detect,
        minutes_unavailable_outside=sum(durations[i] for i in down if i not in inside),
        track=tuple(track),
    )
