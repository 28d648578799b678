"""Presence truth: how well what contacts were shown matched what the controller decided.

Three presences, not two: desired (the decision), applied (the last state a gateway accepted)
and shown (what a contact sees). The measures compare desired and shown over a span of time:

- false-online: time shown `available` while desired `unavailable` (maintenance, unhealthy,
  outside hours): the lie users pay for, since they expect a reply that does not come;
- shown-available ratio: of the time desired `available`, the share shown `available`;
- writes per day: presence set calls per day (gateway load, and a bot that looks robotic).

A timeline is a list of change points `(time, presence)`, oldest first; each presence holds
until the next point. Pure: the bench, the simulators and the witness share it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from controller.core.types import Presence

Timeline = Sequence[tuple[float, Presence]]
DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Truth:
    """The measures over `[start, end)`, in seconds."""

    span: float
    desired_available: float
    """Time desired `available`."""
    shown_available: float
    """Of that time, the time shown `available`."""
    desired_unavailable: float
    false_online: float
    """Time shown `available` while desired `unavailable`."""
    writes: int

    @property
    def shown_available_ratio(self) -> float | None:
        """Shown-available share of the time desired `available` (None: never desired)."""
        if self.desired_available <= 0:
            return None
        return self.shown_available / self.desired_available

    @property
    def false_online_share(self) -> float | None:
        """False-online share of the time desired `unavailable` (None: never desired)."""
        if self.desired_unavailable <= 0:
            return None
        return self.false_online / self.desired_unavailable

    @property
    def writes_per_day(self) -> float:
        return self.writes * DAY / self.span if self.span > 0 else 0.0


def at(timeline: Timeline, t: float) -> Presence:
    """The presence a timeline holds at `t` (UNKNOWN before its first point)."""
    shown = Presence.UNKNOWN
    for when, presence in timeline:
        if when > t:
            break
        shown = presence
    return shown


def measure(
    desired: Timeline,
    shown: Timeline,
    start: float,
    end: float,
    writes: Sequence[float] = (),
) -> Truth:
    """The truth measures over `[start, end)`; `writes`: the times of the set calls (those
    in the span count). Time where either timeline is UNKNOWN counts in neither ratio."""
    if end < start:
        raise ValueError("end before start")
    cuts = sorted({start, end, *(t for t, _ in desired), *(t for t, _ in shown)})
    cuts = [t for t in cuts if start <= t <= end]
    d_av = s_av = d_un = false = 0.0
    i = j = 0
    now_desired = now_shown = Presence.UNKNOWN
    for left, right in itertools.pairwise(cuts):
        while i < len(desired) and desired[i][0] <= left:
            now_desired = desired[i][1]
            i += 1
        while j < len(shown) and shown[j][0] <= left:
            now_shown = shown[j][1]
            j += 1
        length = right - left
        if now_desired is Presence.AVAILABLE:
            d_av += length
            if now_shown is Presence.AVAILABLE:
                s_av += length
        elif now_desired is Presence.UNAVAILABLE:
            d_un += length
            if now_shown is Presence.AVAILABLE:
                false += length
    count = sum(1 for t in writes if start <= t < end)
    return Truth(end - start, d_av, s_av, d_un, false, count)
