"""The witness's fold (core.witness): mismatches and the early write, decay samples and
calibration, gateway settings that fight us named, failures that change nothing; and the
property that the witness never decides (it can only make the actuator write the desired
presence sooner)."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from controller.core.actuation import (
    ActuationConfig,
    ActuationState,
    SetPresence,
    on_set_ok,
    on_witness,
    plan,
)
from controller.core.types import Presence
from controller.core.witness import (
    Blind,
    Failure,
    Mismatch,
    Sight,
    WitnessConfig,
    WitnessState,
    decay_quantile,
    effective_reassert,
    observe,
    on_intended,
    on_write,
    shown_ratio,
    truth,
)
from controller.gateway.witness import sight_of, witness_event

A, U, UNKNOWN = Presence.AVAILABLE, Presence.UNAVAILABLE, Presence.UNKNOWN
CFG = WitnessConfig(poll=5.0, mismatch_grace=10.0)


def fold(
    state: WitnessState,
    sights: list[tuple[float, Presence]],
    cfg: WitnessConfig = CFG,
    reconnects: tuple[float, ...] = (),
    *,
    writes_land: bool = False,
) -> tuple[WitnessState, list[Mismatch | None]]:
    """Fold `sights` in; with `writes_land`, each early write asked for is written (accepted)
    0.3 s later, as the actuator does."""
    writes = []
    for at, shown in sights:
        state, verdict = observe(state, Sight(at, shown), cfg, reconnects)
        writes.append(verdict.write)
        if writes_land and verdict.write is not None:
            state = on_write(state, state.intended[-1][1], at + 0.3)
    return state, writes


def test_a_mismatch_asks_for_a_write_once_seen_for_the_grace_and_again_only_a_grace_later() -> None:
    state = on_intended(WitnessState(), U, 0.0)
    state = on_write(state, U, 0.0)
    seen = [(5.0, U), (10.0, A), (15.0, A), (20.0, A), (25.0, A), (30.0, A), (35.0, A)]
    state, writes = fold(state, seen, writes_land=True)
    # First seen at 10: not before 20 (grace 10 s); then 10 s after that write landed (20.3).
    assert writes == [None, None, None, Mismatch.FALSE_ONLINE, None, None, Mismatch.FALSE_ONLINE]
    assert state.mismatch is Mismatch.FALSE_ONLINE


def test_at_most_three_early_writes_an_episode_and_a_grace_of_zero_acts_at_first_sight() -> None:
    now_cfg = WitnessConfig(mismatch_grace=0.0)
    state = on_intended(WitnessState(), U, 0.0)
    state = on_write(state, U, 0.0)
    state, writes = fold(state, [(t, A) for t in range(5, 60, 5)], now_cfg, writes_land=True)
    assert writes[:3] == [Mismatch.FALSE_ONLINE] * 3 and writes[3:] == [None] * 8
    # Once it clears, a new episode may write again, at once.
    state, writes = fold(state, [(60.0, U), (65.0, A)], now_cfg, writes_land=True)
    assert writes == [None, Mismatch.FALSE_ONLINE]


def test_a_write_restarts_the_grace_and_a_resolved_mismatch_asks_nothing() -> None:
    state = on_intended(WitnessState(), A, 0.0)
    state, writes = fold(state, [(0.0, U), (5.0, U)])
    state = on_write(state, A, 8.0)  # a re-assert: maybe it fixes it
    state, more = fold(state, [(10.0, U), (15.0, U), (20.0, A), (25.0, A)])
    assert writes + more == [None, None, None, None, None, None]
    state, last = fold(state, [(30.0, U), (35.0, U), (40.0, U)])
    assert last == [None, None, Mismatch.NOT_SHOWN]  # seen since 30, nothing written since 8


def test_act_off_measures_but_never_asks() -> None:
    state = on_intended(WitnessState(), U, 0.0)
    off = WitnessConfig(act=False, mismatch_grace=10.0)
    seen = 0.0
    for t in range(0, 60, 5):
        state, verdict = observe(state, Sight(float(t), A), off)
        assert verdict.write is None
        seen += verdict.false_online
    assert seen == 55.0


def test_a_blind_sight_changes_nothing_but_the_shown_presence_and_the_error() -> None:
    state = on_intended(WitnessState(), U, 0.0)
    state, _ = fold(state, [(0.0, A), (5.0, A)])
    for reason in Failure:
        after, verdict = observe(state, Blind(9.0, reason, "why"), CFG)
        assert verdict.write is None and verdict.decay is None and verdict.false_online == 0
        assert after.shown is UNKNOWN and after.blind is not None and after.mismatch is None
        # ...and nothing is counted while it is blind.
        after, verdict = observe(after, Sight(20.0, A), CFG)
        assert verdict.write is None


def test_the_decay_is_timed_from_a_write_of_available_to_seeing_it_gone() -> None:
    state = on_intended(WitnessState(), A, 0.0)
    state = on_write(state, A, 1.0)
    state, _ = fold(state, [(5.0, A), (10.0, A)])
    state, verdict = observe(state, Sight(15.0, U), CFG)
    assert verdict.decay == 14.0
    # A write in between: the gap is not a decay.
    state = on_write(state, A, 20.0)
    state, _ = fold(state, [(25.0, A)])
    state = on_write(state, A, 28.0)
    state, verdict = observe(state, Sight(30.0, A), CFG)
    state, verdict = observe(state, Sight(50.0, U), CFG)
    assert verdict.decay == 22.0
    # Never seen shown after the write: no sample (the write may not have landed).
    state = on_write(state, A, 60.0)
    state, verdict = observe(state, Sight(70.0, U), CFG)
    assert verdict.decay is None
    assert [s for _, s in state.decays] == [14.0, 22.0]


def test_decay_samples_older_than_a_day_are_dropped_and_the_configured_period_returns() -> None:
    cfg = WitnessConfig(calibrate=True, reassert_available=60.0)
    state = on_intended(WitnessState(), A, 0.0)
    state = replace(state, decays=((0.0, 30.0), (1.0, 31.0), (2.0, 32.0)))
    state, _ = fold(state, [(3600.0, A)], cfg)
    assert effective_reassert(state, cfg) == 0.7 * 30.0
    state, _ = fold(state, [(86_401.5, A)], cfg)
    assert state.decays == ((2.0, 32.0),) and effective_reassert(state, cfg) == 60.0


def test_the_intended_timeline_keeps_an_hour_however_long_nothing_is_shown_differently() -> None:
    state = on_intended(WitnessState(), A, 0.0)
    state, _ = fold(state, [(0.0, A)])
    for hour in range(1, 48):
        state = on_intended(state, U if hour % 2 else A, hour * 3600.0)
    assert len(state.intended) <= 3


def test_calibration_follows_the_10th_percentile_within_its_bounds() -> None:
    cfg = WitnessConfig(calibrate=True, reassert_available=60.0)
    state = WitnessState(decays=((0.0, 30.0), (1.0, 40.0)))
    assert effective_reassert(state, cfg) == 60.0  # fewer than 3 samples
    state = WitnessState(decays=((0.0, 30.0), (1.0, 40.0), (2.0, 50.0)))
    assert effective_reassert(state, cfg) == 0.7 * 30.0
    assert decay_quantile(state, 0.5) == 40.0
    short = WitnessState(decays=((0.0, 2.0),) * 5)
    assert effective_reassert(short, cfg) == 5.0  # never below 5 s
    long = WitnessState(decays=((0.0, 600.0),) * 5)
    assert effective_reassert(long, cfg) == 60.0  # never above the configured value
    assert effective_reassert(long, WitnessConfig(calibrate=False)) == 8.0
    assert effective_reassert(short, WitnessConfig(calibrate=True, reassert_available=3.0)) == 3.0


def returns(state: WitnessState, at: list[float], cfg: WitnessConfig,
            reconnects: tuple[float, ...] = ()) -> WitnessState:  # fmt: skip
    """`unavailable` written and seen, then `available` coming back, at each of `at`."""
    for t in at:
        state = on_write(state, U, t - 20.0)
        state, _ = fold(state, [(t - 15.0, U), (t, A)], cfg, reconnects)
    return state


def test_available_coming_back_after_each_reconnect_names_markonline() -> None:
    for provider, setting in (("waha", "noweb.markOnline: false"), ("evolution", "alwaysOnline")):
        cfg = WitnessConfig(provider=provider)
        state = on_intended(WitnessState(), U, 0.0)
        state = returns(state, [100.0], cfg, (95.0,))
        assert state.fight is None  # once is not a pattern
        state = returns(state, [1800.0], cfg, (95.0, 1790.0))
        assert state.fight is not None and state.fight.pattern == "reconnect"
        assert setting in state.fight.message


def test_available_coming_back_every_five_minutes_names_always_online() -> None:
    cfg = WitnessConfig(provider="wawp")
    state = returns(on_intended(WitnessState(), U, 0.0), [300.0, 600.0, 900.0], cfg)
    assert state.fight is not None and state.fight.pattern == "periodic"
    assert "alwaysOnline" in state.fight.message
    # An hour later without a return, it is no longer named.
    state, _ = fold(state, [(4600.0, U)], cfg)
    assert state.fight is None


def test_writes_never_shown_name_a_missing_push_name() -> None:
    state = on_intended(WitnessState(), A, 0.0)
    for t in range(0, 240, 8):
        state = on_write(state, A, float(t))
        state, _ = fold(state, [(t + 4.0, U)])
    assert state.fight is not None and state.fight.pattern == "no_effect"
    assert "push name" in state.fight.message
    state, _ = fold(state, [(250.0, A)])
    assert state.fight is None


def test_the_ratio_says_nothing_before_30_s_of_available_were_intended() -> None:
    state = on_intended(WitnessState(), A, 0.0)
    state, _ = fold(state, [(0.0, U), (5.0, A), (29.0, A)])
    assert shown_ratio(truth(state, 29.0)) is None
    state, _ = fold(state, [(30.0, A)])
    assert shown_ratio(truth(state, 30.0)) == 25.0 / 30.0


def test_truth_of_the_last_hour_as_seen() -> None:
    state = on_intended(WitnessState(), A, 0.0)
    counted = 0.0
    for at, shown in [(0.0, A), (30.0, U), (40.0, A), (60.0, None), (70.0, U), (100.0, U)]:
        if shown is None:
            state = on_intended(state, U, at)
            continue
        state, verdict = observe(state, Sight(at, shown), CFG)
        counted += verdict.false_online
    measured = truth(state, 100.0)
    assert measured.shown_available_ratio == 50.0 / 60.0
    assert measured.false_online == 10.0
    assert counted == 10.0  # what the counter is given, sight by sight


# What a witness reads, per provider.


def test_sights_from_waha_and_baileys_vocabularies() -> None:
    bot = "15551234567@c.us"
    waha = [{"participant": bot, "lastKnownPresence": "online", "lastSeen": None}]
    assert sight_of(waha, bot, 1.0) == Sight(1.0, A)
    off = [{"participant": bot, "lastKnownPresence": "offline", "lastSeen": 1765000000}]
    assert sight_of(off, bot, 1.0) == Sight(1.0, U)
    baileys = {"15551234567@s.whatsapp.net": {"lastKnownPresence": "composing"}}
    assert sight_of(baileys, bot, 1.0) == Sight(1.0, A)
    cases = {
        "hidden": [],
        "no_last_seen": [{"participant": bot, "lastKnownPresence": "offline", "lastSeen": None}],
        "malformed": [{"participant": bot, "lastKnownPresence": "banana"}],
    }
    for reason, presences in cases.items():
        sight = sight_of(presences, bot, 1.0)
        assert isinstance(sight, Blind) and sight.reason.value == reason
    other = [{"participant": "15550000001@c.us", "lastKnownPresence": "online"}]
    assert isinstance(sight_of(other, bot, 1.0), Blind)
    assert sight_of("nonsense", bot, 1.0) == Blind(
        1.0, Failure.MALFORMED, "the reply has no presences list"
    )


def test_evolution_webhooks_are_read_for_the_bot_only() -> None:
    bot, jid = "15551234567@c.us", "15551234567@s.whatsapp.net"
    event = {"event": "presence.update", "instance": "w",
             "data": {"id": jid, "presences": {jid: {"lastKnownPresence": "unavailable",
                                                     "lastSeen": 1}}}}  # fmt: skip
    assert witness_event(event, "w", bot, 2.0) == Sight(2.0, U)
    assert witness_event({**event, "event": "messages.upsert"}, "w", bot, 2.0) is None
    other = {**event, "data": {"id": "15550000001@s.whatsapp.net", "presences": {}}}
    assert witness_event(other, "w", bot, 2.0) is None
    assert isinstance(witness_event([1], "w", bot, 2.0), Blind)
    try:
        witness_event(event, "another", bot, 2.0)
    except ValueError:
        pass
    else:
        raise AssertionError("a webhook naming another instance must be refused")


# The witness never decides.


@given(
    applied=st.sampled_from([A, U]),
    desired=st.sampled_from([A, U]),
    since=st.floats(0, 1000),
    now=st.floats(0, 2000),
    why=st.sampled_from(["witness: false_online", "witness: not_shown"]),
)
def test_an_early_write_is_always_of_the_desired_presence(
    applied: Presence, desired: Presence, since: float, now: float, why: str
) -> None:
    """Whatever the witness asks, the planner writes the desired presence or what it would have
    done anyway: the witness cannot write anything else."""
    cfg = ActuationConfig()
    state = on_set_ok(ActuationState(session="WORKING", session_at=now), applied, since)
    without = plan(state, desired, now, cfg)
    with_witness = plan(on_witness(state, why), desired, now, cfg)
    assert with_witness == without or with_witness == SetPresence(desired, why)
    if isinstance(with_witness, SetPresence):
        assert with_witness.presence is desired


@given(st.lists(st.tuples(st.floats(0.1, 30), st.sampled_from([A, U, None])), max_size=60),
       st.booleans(), st.floats(1, 3600))  # fmt: skip
def test_whatever_the_witness_sees_the_period_stays_within_its_bounds(
    seen: list[tuple[float, Presence | None]], calibrate: bool, configured: float
) -> None:
    cfg = WitnessConfig(calibrate=calibrate, reassert_available=configured)
    rng, state, t = random.Random(0), on_intended(WitnessState(), A, 0.0), 0.0
    for gap, shown in seen:
        t += gap
        if rng.random() < 0.3:
            state = on_write(state, A, t)
        sight = Blind(t, Failure.GATEWAY, "x") if shown is None else Sight(t, shown)
        state, verdict = observe(state, sight, cfg)
        assert verdict.write in (None, Mismatch.NOT_SHOWN)  # intended is available throughout
        period = effective_reassert(state, cfg)
        assert min(5.0, configured) <= period <= configured
