"""The WhatsApp model of the simulators: each profile's shown timeline, on a virtual clock."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.types import Presence
from controller.sim.whatsapp import PROFILES, STARTING, WORKING, WhatsApp, profile

A, U = Presence.AVAILABLE, Presence.UNAVAILABLE


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def model(name: str, seed: int = 0) -> tuple[WhatsApp, Clock]:
    clock = Clock()
    return WhatsApp(name, clock=clock, rng=random.Random(seed)), clock


def test_ideal_shows_every_write_at_once_and_for_ever() -> None:
    wa, clock = model("ideal")
    assert wa.shown() is U
    assert wa.write(A)
    clock.now += 86_400
    assert wa.shown() is A
    wa.write(U)
    assert wa.timeline() == [(1000.0, U), (1000.0, A), (87_400.0, U)]
    assert wa.shown(1000.0 + 5) is A and wa.shown(999.0) is Presence.UNKNOWN


def test_baileys_available_decays_after_ten_seconds_unavailable_holds() -> None:
    wa, clock = model("baileys")
    wa.write(A)
    clock.now += 9.99
    assert wa.shown() is A
    clock.now += 0.01
    assert wa.shown() is U
    assert wa.timeline() == [(1000.0, U), (1000.0, A), (1010.0, U)]
    # A re-write before the decay keeps it shown without a gap.
    wa.write(A)
    clock.now += 8.0
    wa.write(A)
    clock.now += 8.0
    assert wa.shown() is A and wa.shown(clock.now - 12.0) is A
    wa.write(U)
    clock.now += 3600.0
    assert wa.shown() is U


def test_waha_noweb_auto_online_on_activity_and_offline_25s_after_it() -> None:
    wa, clock = model("waha-noweb")
    wa.write(U)
    clock.now += 1.0
    wa.activity()
    assert wa.shown() is A, "WAHA marks the session online on activity"
    clock.now += 20.0
    wa.write(A)  # our write does not cancel WAHA's auto-offline timer
    clock.now += 4.99
    assert wa.shown() is A
    clock.now += 0.01
    assert wa.shown() is U, "auto-offline 25 s after the activity, though we wrote available"


def test_waha_noweb_reconnects_every_28_minutes_and_marks_online() -> None:
    wa, clock = model("waha-noweb", seed=3)
    wa.write(U)
    clock.now += 28 * 60 - 1
    assert wa.session() == WORKING and wa.reconnects() == []
    clock.now += 60.0  # past the latest a reconnect can come (28 min + 29 s), and its decay
    (at,) = wa.reconnects()
    assert 1000 + 28 * 60 <= at <= 1000 + 28 * 60 + 29
    assert wa.shown(at + 3.9) is U  # the socket is down: STARTING, nothing shown
    assert wa.shown(at + 4.0) is A  # markOnline on connect: the lie during maintenance
    assert wa.shown(at + 14.0) is U  # and it decays like any available
    # During the reconnect the session reads STARTING and writes change nothing.
    wa2, clock2 = model("waha-noweb", seed=3)
    clock2.now = at + 1.0
    assert wa2.session() == STARTING
    assert not wa2.write(A)
    assert wa2.shown() is U


def test_evolution_always_online_re_marks_available_every_five_minutes() -> None:
    wa, clock = model("evolution-always-online")
    wa.write(U)
    clock.now += 3 * 300 + 1
    shown_at = [t for t, p in wa.timeline() if p is A]
    assert shown_at == [1300.0, 1600.0, 1900.0]
    assert wa.shown(1305.0) is A and wa.shown(1310.0) is U


def test_silent_answers_writes_and_never_shows_them() -> None:
    wa, clock = model("silent")
    assert not wa.write(A)
    clock.now += 1
    assert wa.shown() is U and wa.timeline() == [(1000.0, U)]
    assert wa.writes == [(1000.0, A, False)]


def test_profiles_are_named_and_an_unknown_one_is_refused() -> None:
    assert set(PROFILES) == {"ideal", "baileys", "waha-noweb", "evolution-always-online", "silent"}
    with pytest.raises(ValueError, match=r"unknown WhatsApp profile 'nope'.*baileys"):
        profile("nope")


def test_the_model_does_not_answer_about_the_future() -> None:
    wa, clock = model("baileys")
    with pytest.raises(ValueError, match="future"):
        wa.shown(clock.now + 1)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(sorted(PROFILES)),
    steps=st.lists(
        st.tuples(st.floats(0.001, 400.0), st.sampled_from(["A", "U", "activity", "look"])),
        max_size=40,
    ),
    seed=st.integers(0, 1000),
)
def test_the_timeline_agrees_with_what_was_seen_at_each_moment(
    name: str, steps: list[tuple[float, str]], seed: int
) -> None:
    """Whatever happens, the kept timeline answers for the past exactly what `shown()` said
    at the time, changes only between the two presences, and is in time order."""
    wa, clock = model(name, seed)
    seen: list[tuple[float, Presence]] = []
    for gap, what in steps:
        clock.now += gap
        if what == "A":
            wa.write(A)
        elif what == "U":
            wa.write(U)
        elif what == "activity":
            wa.activity()
        seen.append((clock.now, wa.shown()))
    timeline = wa.timeline()
    assert [t for t, _ in timeline] == sorted(t for t, _ in timeline)
    assert all(p in (A, U) for _, p in timeline)
    assert all(a[1] is not b[1] for a, b in itertools.pairwise(timeline))
    for at, shown in seen:
        assert wa.shown(at) is shown
    if name == "silent":
        assert timeline == [(1000.0, U)]
