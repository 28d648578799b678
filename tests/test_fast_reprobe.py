"""Fast re-probe (`FAST_INTERVAL`): the scheduling rule (pure, exhaustive and hypothesis), and
the loop that uses it against the simulators."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hysteresis import CFG, cfg_st, simulate, ticks_st

from controller.core.hysteresis import (
    HysteresisConfig,
    HysteresisState,
    flip_pending,
    hold_down_left,
    tick_delay,
)
from controller.core.types import Presence, TickKind

A, U, UNK = Presence.AVAILABLE, Presence.UNAVAILABLE, Presence.UNKNOWN


@pytest.mark.parametrize(
    ("verdict", "good", "bad", "down_since", "now", "fast"),
    [
        (A, 0, 0, None, 100.0, False),  # steady: nothing pending
        (A, 5, 0, None, 100.0, False),  # good ticks while available flip nothing
        (A, 0, 1, None, 100.0, True),  # the first bad tick: hurry
        (A, 0, 2, None, 100.0, True),
        (U, 0, 4, 0.0, 100.0, False),  # bad ticks while unavailable flip nothing
        (U, 1, 0, 0.0, 100.0, True),  # recovering past the hold-down (30 s)
        (U, 2, 0, 90.0, 100.0, False),  # still inside the hold-down: nothing to hurry
        (U, 2, 0, 70.0, 100.0, True),  # the hold-down just ended
        (UNK, 1, 0, None, 1.0, True),  # starting: either streak decides
        (UNK, 0, 1, None, 1.0, True),
        (UNK, 0, 0, None, 1.0, False),
    ],
)
def test_flip_pending(
    verdict: Presence, good: int, bad: int, down_since: float | None, now: float, fast: bool
) -> None:
    state = HysteresisState(verdict=verdict, good=good, bad=bad, down_since=down_since)
    assert flip_pending(state, now, CFG) is fast
    assert tick_delay(state, now, CFG, 5.0, 1.0) == (1.0 if fast else 5.0)


def test_off_and_slower_than_the_interval_change_nothing() -> None:
    pending = HysteresisState(verdict=A, bad=1)
    assert tick_delay(pending, 0.0, CFG, 5.0, 0.0) == 5.0
    assert tick_delay(pending, 0.0, CFG, 5.0, 8.0) == 5.0
    assert tick_delay(pending, 0.0, CFG, 0.05, 1.0) == 0.05


@settings(max_examples=300)
@given(cfg_st, ticks_st, st.floats(0.05, 10.0), st.floats(0.0, 10.0))
def test_fast_exactly_while_the_last_tick_continued_a_streak_that_could_flip(
    cfg: HysteresisConfig, seq: list[tuple[TickKind, float]], interval: float, fast: float
) -> None:
    """Restated from the ticks themselves: after a bad tick that left the verdict up, or a good
    tick that left it down past the hold-down (or either while starting), the next tick comes
    at the fast interval; after anything else at the interval. Never slower than the interval."""
    for now, kind, _, new in simulate(cfg, seq):
        delay = tick_delay(new, now, cfg, interval, fast)
        assert delay <= interval
        if new.verdict is UNK:
            pending = kind is not TickKind.NEUTRAL
        elif new.verdict is A:
            pending = kind is TickKind.BAD
        else:
            pending = kind is TickKind.GOOD and hold_down_left(new, now, cfg) == 0.0
        assert delay == (min(fast, interval) if pending and fast > 0 else interval)
