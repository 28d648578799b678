"""The hysteresis (README, "How decisions are made"): tables for each rule, hypothesis for the
invariants."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.hysteresis import (
    HysteresisConfig,
    HysteresisState,
    classify,
    hold_down_left,
    step,
)
from controller.core.types import (
    HealthResult,
    HealthStatus,
    LagResult,
    Observation,
    Presence,
    TickKind,
)

AT = datetime(2026, 11, 24, tzinfo=UTC)
OK = HealthResult(HealthStatus.OK, "HTTP 200", 200)
CFG = HysteresisConfig(rise=3, fall=3, hold_down=30, startup_grace=60, lag_high=30, lag_low=10)

A, U, UNK = Presence.AVAILABLE, Presence.UNAVAILABLE, Presence.UNKNOWN
G, B, N = TickKind.GOOD, TickKind.BAD, TickKind.NEUTRAL


def obs(health: HealthResult = OK, lag: LagResult | None = None) -> Observation:
    return Observation(health=health, lag=lag or LagResult.not_configured(), at=AT)


@pytest.mark.parametrize(
    ("health", "lag", "missing_bad", "kind", "words"),
    [
        (OK, LagResult.not_configured(), True, G, "health HTTP 200"),
        (OK, LagResult.of(0.0), True, G, "queue lag 0 < lag_low 10"),
        (OK, LagResult.of(9.99), True, G, "< lag_low 10"),
        (OK, LagResult.of(10.0), True, N, "between lag_low 10 and lag_high 30"),
        (OK, LagResult.of(29.99), True, N, "between"),
        (OK, LagResult.of(30.0), True, B, "queue lag 30 >= lag_high 30"),
        (OK, LagResult.of(float("inf")), True, B, ">= lag_high"),
        (OK, LagResult.missing("no such series"), True, B, "lag metric unavailable (no such"),
        (OK, LagResult.missing("no such series"), False, G, "lag metric ignored"),
        (HealthResult(HealthStatus.HTTP_ERROR, "HTTP 503", 503), LagResult.of(0), True, B, "503"),
        (
            HealthResult(HealthStatus.TIMEOUT, "timed out after 2s"),
            LagResult.of(0),
            True,
            B,
            "timed",
        ),
        (
            HealthResult(HealthStatus.CONNECTION_ERROR, "connection failed (ConnectError)"),
            LagResult.not_configured(),
            False,
            B,
            "connection failed",
        ),
        # Bad health wins over a good lag, and over an ignored missing lag.
        (
            HealthResult(HealthStatus.HTTP_ERROR, "HTTP 500", 500),
            LagResult.missing("x"),
            False,
            B,
            "500",
        ),
    ],
)
def test_classify(
    health: HealthResult, lag: LagResult, missing_bad: bool, kind: TickKind, words: str
) -> None:
    cfg = HysteresisConfig(lag_high=30, lag_low=10, missing_lag_is_bad=missing_bad)
    got, why = classify(obs(health, lag), cfg)
    assert got is kind
    assert words in why


def run(ticks: str, cfg: HysteresisConfig = CFG, dt: float = 5.0) -> list[Presence]:
    """Feed a string of ticks (g/b/n) one every `dt` seconds; the verdict after each."""
    state, out, now = HysteresisState(), [], 0.0
    kinds = {"g": G, "b": B, "n": N}
    for ch in ticks:
        state = step(state, kinds[ch], ch, now, cfg)
        out.append(state.verdict)
        now += dt
    return out


@pytest.mark.parametrize(
    ("ticks", "final"),
    [
        ("", UNK),
        ("gg", UNK),
        ("ggg", A),
        ("bbb", U),
        ("bb", UNK),
        ("ggbgg", UNK),  # a bad tick resets the good streak
        ("gngng", UNK),  # a neutral tick breaks the streak
        ("gnggg", A),
        ("gggbnbb", A),  # lag dipping between the watermarks breaks a bad streak
        ("gggbnbbb", U),
        ("gggbb", A),
        ("gggbbb", U),
        ("gggbnbnb", A),
        ("gggbgbgbgb", A),  # alternating never completes a streak: no flip
        ("gggnnnnnnnnn", A),  # neutral holds the state
    ],
)
def test_streaks(ticks: str, final: Presence) -> None:
    assert (run(ticks)[-1] if ticks else UNK) is final


def test_hold_down_delays_recovery_until_served() -> None:
    cfg = HysteresisConfig(rise=2, fall=2, hold_down=30, startup_grace=600)
    state = HysteresisState()
    for now, kind in [(0, B), (5, B)]:
        state = step(state, kind, "", now, cfg)
    assert state.verdict is U and state.down_since == 5
    for now in (10, 15, 20, 30):
        state = step(state, G, "", now, cfg)
        assert state.verdict is U, f"came back {now - 5}s after going down"
    assert hold_down_left(state, 30, cfg) == pytest.approx(5)
    state = step(state, G, "ok", 35, cfg)
    assert state.verdict is A
    assert state.reason == "healthy: ok (5 consecutive good ticks, rise 2, after the 30s hold-down)"


def test_a_neutral_tick_never_ends_the_hold_down() -> None:
    # Found by hypothesis: good streak complete during the hold-down, then lag drifts between
    # the watermarks as the hold-down runs out. Neutral holds: the bot stays offline.
    cfg = HysteresisConfig(rise=1, fall=1, hold_down=1.0, startup_grace=0.0)
    state = step(HysteresisState(), B, "", 0.0, cfg)
    state = step(state, G, "", 0.0, cfg)
    assert state.verdict is U
    state = step(state, N, "", 1.0, cfg)
    assert state.verdict is U
    assert step(state, G, "", 1.0, cfg).verdict is A


def test_startup_grace_writes_unavailable_when_undecided() -> None:
    cfg = HysteresisConfig(rise=3, fall=3, startup_grace=60)
    verdicts = run("gbgbgbgbgbgbgbgb", cfg, dt=5.0)
    # t=60 is the 13th tick (index 12): the grace expires there, not before.
    assert verdicts[11] is UNK
    assert verdicts[12] is U
    state = HysteresisState()
    for i, kind in enumerate([G, B] * 7):
        state = step(state, kind, "evidence", i * 5.0, cfg)
    assert "startup grace 60s expired without 3 consecutive good ticks" in state.reason


def test_startup_unavailable_starts_the_hold_down() -> None:
    cfg = HysteresisConfig(rise=1, fall=1, hold_down=10, startup_grace=0)
    state = step(HysteresisState(), N, "", 0.0, cfg)
    assert state.verdict is U and state.down_since == 0.0
    assert step(state, G, "", 9.9, cfg).verdict is U
    assert step(state, G, "", 10.0, cfg).verdict is A


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rise and fall"):
        HysteresisConfig(rise=0)
    with pytest.raises(ValueError, match="lag_low"):
        HysteresisConfig(lag_low=30, lag_high=30)


# Properties over random tick sequences.

ticks_st = st.lists(
    st.tuples(st.sampled_from([G, B, N]), st.floats(min_value=0.0, max_value=20.0)),
    max_size=120,
)
cfg_st = st.builds(
    HysteresisConfig,
    rise=st.integers(1, 6),
    fall=st.integers(1, 6),
    hold_down=st.floats(0, 60),
    startup_grace=st.floats(0, 120),
)


def simulate(
    cfg: HysteresisConfig, seq: list[tuple[TickKind, float]]
) -> list[tuple[float, TickKind, HysteresisState, HysteresisState]]:
    state, now, out = HysteresisState(), 0.0, []
    for kind, dt in seq:
        now += dt
        new = step(state, kind, "", now, cfg)
        out.append((now, kind, state, new))
        state = new
    return out


@settings(max_examples=300)
@given(cfg_st, ticks_st)
def test_never_falls_on_fewer_than_fall_consecutive_bad_ticks(
    cfg: HysteresisConfig, seq: list[tuple[TickKind, float]]
) -> None:
    history: list[TickKind] = []
    for _, kind, old, new in simulate(cfg, seq):
        history.append(kind)
        if old.verdict is A and new.verdict is U:
            assert history[-cfg.fall :] == [B] * cfg.fall


@settings(max_examples=300)
@given(cfg_st, ticks_st)
def test_never_rises_without_rise_good_ticks_and_the_hold_down(
    cfg: HysteresisConfig, seq: list[tuple[TickKind, float]]
) -> None:
    history: list[TickKind] = []
    last_down: float | None = None
    for now, kind, old, new in simulate(cfg, seq):
        history.append(kind)
        if new.verdict is A and old.verdict is not A:
            assert history[-cfg.rise :] == [G] * cfg.rise
            if last_down is not None:
                assert now - last_down >= cfg.hold_down
        if new.verdict is U and old.verdict is not U:
            last_down = now


@settings(max_examples=300)
@given(cfg_st, ticks_st)
def test_neutral_ticks_never_flip(cfg: HysteresisConfig, seq: list[tuple[TickKind, float]]) -> None:
    for _, kind, old, new in simulate(cfg, seq):
        if kind is N and new.verdict is not old.verdict:
            # The only change a neutral tick may bring: the startup grace running out.
            assert (old.verdict, new.verdict) == (UNK, U)
            assert "startup grace" in new.reason


@settings(max_examples=300)
@given(cfg_st, ticks_st)
def test_flips_are_bounded_by_the_streak_lengths(
    cfg: HysteresisConfig, seq: list[tuple[TickKind, float]]
) -> None:
    steps = simulate(cfg, seq)
    flips = sum(1 for *_, old, new in steps if old.verdict is not new.verdict)
    assert flips <= len(steps) // min(cfg.rise, cfg.fall) + 1


@settings(max_examples=200)
@given(cfg_st, ticks_st)
def test_never_unknown_after_the_startup_grace(
    cfg: HysteresisConfig, seq: list[tuple[TickKind, float]]
) -> None:
    start: float | None = None
    for now, _, _, new in simulate(cfg, seq):
        start = now if start is None else start
        if now - start >= cfg.startup_grace:
            assert new.verdict is not UNK
        if new.verdict is not UNK:
            start = -1e18  # once decided, never unknown again
            assert new.verdict in (A, U)
