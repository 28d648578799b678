"""The truth measures: false-online, shown-available ratio, writes per day."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.truth import DAY, at, measure
from controller.core.types import Presence

A, U = Presence.AVAILABLE, Presence.UNAVAILABLE


def test_a_shown_timeline_equal_to_the_desired_one_is_the_whole_truth() -> None:
    desired = [(0.0, A), (100.0, U), (160.0, A)]
    truth = measure(desired, desired, 0.0, 200.0, writes=[0.0, 100.0, 160.0])
    assert truth.false_online == 0.0 and truth.shown_available_ratio == 1.0
    assert truth.desired_available == 140.0 and truth.desired_unavailable == 60.0
    assert truth.writes == 3 and truth.writes_per_day == pytest.approx(3 * DAY / 200.0)


def test_false_online_and_decay_are_measured_to_the_second() -> None:
    desired = [(0.0, A), (100.0, U)]
    # Shown available for 10 s after writes at 0 and 20 (decay), then a reconnect at 150
    # marks it online for 10 s while desired unavailable.
    shown = [(0.0, A), (10.0, U), (20.0, A), (30.0, U), (150.0, A), (160.0, U)]
    truth = measure(desired, shown, 0.0, 200.0)
    assert truth.shown_available == 20.0 and truth.shown_available_ratio == 0.2
    assert truth.false_online == 10.0 and truth.false_online_share == pytest.approx(0.1)


def test_the_span_cuts_both_timelines_and_writes() -> None:
    desired = [(-50.0, U)]
    shown = [(-60.0, A), (5.0, U)]
    truth = measure(desired, shown, 0.0, 10.0, writes=[-1.0, 0.0, 9.9, 10.0])
    assert truth.false_online == 5.0 and truth.span == 10.0 and truth.writes == 2
    assert truth.shown_available_ratio is None, "never desired available: no ratio"


def test_unknown_time_counts_in_neither_ratio() -> None:
    truth = measure([(10.0, A)], [(0.0, A)], 0.0, 20.0)
    assert truth.desired_available == 10.0 and truth.shown_available == 10.0
    assert truth.false_online_share is None


def test_at_reads_a_timeline() -> None:
    timeline = [(0.0, A), (5.0, U)]
    assert at(timeline, -1.0) is Presence.UNKNOWN
    assert at(timeline, 4.9) is A and at(timeline, 5.0) is U


def test_an_end_before_the_start_is_refused() -> None:
    with pytest.raises(ValueError, match="end before start"):
        measure([], [], 10.0, 0.0)


timelines = st.lists(st.tuples(st.floats(0.0, 1000.0), st.sampled_from([A, U])), max_size=30).map(
    sorted
)


@settings(max_examples=300, deadline=None)
@given(desired=timelines, shown=timelines)
def test_the_measures_are_bounded_and_add_up(
    desired: list[tuple[float, Presence]], shown: list[tuple[float, Presence]]
) -> None:
    truth = measure(desired, shown, 0.0, 1000.0)
    assert 0.0 <= truth.shown_available <= truth.desired_available
    assert 0.0 <= truth.false_online <= truth.desired_unavailable
    assert truth.desired_available + truth.desired_unavailable <= 1000.0 + 1e-6
    # Shown exactly as desired: no lie, everything shown.
    same = measure(desired, desired, 0.0, 1000.0)
    assert same.false_online == 0.0
    assert same.shown_available == pytest.approx(same.desired_available)
