"""The actuation planner: when to call the gateway and how each answer changes the next call."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.actuation import (
    ActuationConfig,
    ActuationState,
    CheckSession,
    Failure,
    FailureKind,
    SetPresence,
    Wait,
    backoff_delay,
    calls_last_window,
    on_failure,
    on_session,
    on_session_started,
    on_set_ok,
    on_set_started,
    plan,
)
from controller.core.retry_after import parse_retry_after
from controller.core.types import Presence

A, U, UNK = Presence.AVAILABLE, Presence.UNAVAILABLE, Presence.UNKNOWN
CFG = ActuationConfig(reassert_available=20.0, reassert_unavailable=300.0, session_check=60.0)
"""The periods the worked numbers below were written for (the shipped defaults are shorter:
tests/test_config.py checks those)."""
RNG = random.Random(7)


def working(now: float = 0.0, state: ActuationState | None = None) -> ActuationState:
    return on_session(state or ActuationState(), "WORKING", now, CFG, RNG)


def test_nothing_to_do_while_undecided() -> None:
    assert plan(ActuationState(), UNK, 0.0, CFG) == Wait(None, "no presence decided yet")


def test_session_is_checked_before_the_first_set() -> None:
    assert plan(ActuationState(), A, 0.0, CFG) == CheckSession()
    assert plan(working(0.0), A, 1.0, CFG) == SetPresence(A, "change")


def test_session_cache_expires_after_session_check() -> None:
    state = on_set_ok(working(0.0), A, 0.0)
    assert plan(state, U, 59.9, CFG) == SetPresence(U, "change")
    assert plan(state, U, 60.0, CFG) == CheckSession()


@pytest.mark.parametrize(
    ("applied", "period"), [(A, CFG.reassert_available), (U, CFG.reassert_unavailable)]
)
def test_reasserts_on_each_states_period(applied: Presence, period: float) -> None:
    state = on_set_ok(working(100.0), applied, 100.0)
    # The session read that falls inside the period (every session_check, idle or not).
    reads = int((period - 0.01) // CFG.session_check)
    for k in range(1, reads + 1):
        assert plan(state, applied, 100.0 + k * CFG.session_check, CFG) == CheckSession()
        state = on_session_started(state, 100.0 + k * CFG.session_check, CFG)
        state = working(100.0 + k * CFG.session_check, state)
    action = plan(state, applied, 100.0 + period - 0.01, CFG)
    assert isinstance(action, Wait) and action.until == pytest.approx(100.0 + period)
    state = working(100.0 + period, state)
    assert plan(state, applied, 100.0 + period, CFG) == SetPresence(applied, "re-assert")


def test_the_session_is_read_every_session_check_while_idle() -> None:
    cfg = ActuationConfig(reassert_unavailable=1000.0, session_check=30.0)
    state = on_set_ok(on_session(ActuationState(), "WORKING", 0.0, cfg, RNG), U, 0.0)
    action = plan(state, U, 10.0, cfg)
    assert action == Wait(30.0, "unavailable applied; next re-assert due; next session read due")
    assert plan(state, U, 30.0, cfg) == CheckSession()
    state = on_session(on_session_started(state, 30.0, cfg), "WORKING", 30.0, cfg, RNG)
    assert plan(state, U, 31.0, cfg) == Wait(60.0, action.why)
    assert not state.reconnected, "WORKING after WORKING is no reconnect"


def test_no_idle_read_before_anything_was_written_nor_in_dry_run() -> None:
    assert plan(ActuationState(), UNK, 100.0, CFG) == Wait(None, "no presence decided yet")
    dry = ActuationConfig(dry_run=True)
    state = on_set_ok(ActuationState(), A, 0.0)
    action = plan(state, A, 5.0, dry)
    assert isinstance(action, Wait) and action.until == dry.reassert_available


def test_an_idle_read_respects_the_back_off_and_the_read_budget() -> None:
    cfg = ActuationConfig(reassert_unavailable=1000.0, session_check=5.0, session_budget_calls=2)
    state = on_set_ok(working(0.0), U, 0.0)
    failed = on_failure(state, Failure(FailureKind.TRANSIENT, "503"), 5.0, cfg, RNG)
    failed = replace(failed, applied=U, applied_at=0.0)
    action = plan(failed, U, 5.0, cfg)
    assert isinstance(action, Wait) and action.until == failed.backoff_until
    spent = replace(state, session_calls=(1.0, 2.0), session_at=None)
    action = plan(spent, U, 10.0, cfg)
    assert action == Wait(61.0, "session read budget spent: 2 in 60s")


def test_a_seen_reconnect_writes_the_desired_state_at_once() -> None:
    cfg = ActuationConfig(reassert_unavailable=1000.0, session_check=10.0)
    state = on_set_ok(on_session(ActuationState(), "WORKING", 0.0, cfg, RNG), U, 0.0)
    state = on_session(state, "STARTING", 10.0, cfg, RNG)  # the gateway is reconnecting
    assert not state.reconnected
    later = state.backoff_until
    assert plan(state, U, later, cfg) == CheckSession()
    state = on_session(state, "WORKING", later, cfg, RNG)
    assert state.reconnected
    assert plan(state, U, later, cfg) == SetPresence(U, "reconnect")
    state = on_set_ok(state, U, later + 0.1)
    assert not state.reconnected
    action = plan(state, U, later + 0.2, cfg)
    assert isinstance(action, Wait) and action.until == later + 10.0


def test_a_change_is_written_at_once() -> None:
    state = on_set_ok(working(0.0), A, 0.0)
    assert plan(state, U, 0.5, CFG) == SetPresence(U, "change")


def test_session_not_working_backs_off_and_rechecks() -> None:
    state = on_session(ActuationState(), "SCAN_QR_CODE", 0.0, CFG, random.Random(1))
    assert state.session == "SCAN_QR_CODE" and state.session_at is None
    assert state.last_error == "gateway session is SCAN_QR_CODE, not WORKING"
    action = plan(state, A, 0.0, CFG)
    assert isinstance(action, Wait) and action.until == state.backoff_until
    assert 0.0 <= state.backoff_until <= CFG.backoff_base
    assert plan(state, A, state.backoff_until, CFG) == CheckSession()


@pytest.mark.parametrize(
    ("failure", "low", "high"),
    [
        (Failure(FailureKind.AUTH, "401"), 300.0, 300.0),
        (Failure(FailureKind.RATE_LIMITED, "429", retry_after=7.0), 7.0, 7.0),
        (Failure(FailureKind.RATE_LIMITED, "429", retry_after=1e9), 3600.0, 3600.0),
        (Failure(FailureKind.RATE_LIMITED, "429"), 0.0, 1.0),
        (Failure(FailureKind.TRANSIENT, "503"), 0.0, 1.0),
        (Failure(FailureKind.SESSION_NOT_READY, "422"), 0.0, 1.0),
        (Failure(FailureKind.PERMANENT, "404"), 60.0, 60.0),
        # "This integration cannot set presence": once per 5 minutes, never sooner.
        (Failure(FailureKind.PERMANENT, "400 unsupported", retry_after=300.0), 300.0, 300.0),
        # A plan or quota refusal is retried as rarely as an auth failure, and is not one.
        (Failure(FailureKind.QUOTA, "403 quota"), 300.0, 300.0),
    ],
)
def test_each_failure_sets_its_retry_time(failure: Failure, low: float, high: float) -> None:
    state = on_failure(working(0.0), failure, 10.0, CFG, random.Random(3))
    assert low <= state.backoff_until - 10.0 <= high
    assert state.session_at is None, "every error forgets the session state"
    assert state.auth_failed is (failure.kind is FailureKind.AUTH)
    assert state.last_error == failure.message
    assert state.failures == 1


def test_auth_failure_clears_on_success() -> None:
    state = on_failure(working(0.0), Failure(FailureKind.AUTH, "401"), 0.0, CFG, RNG)
    assert state.auth_failed
    action = plan(state, A, 299.0, CFG)
    assert isinstance(action, Wait) and action.why.startswith("auth failure after: 401")
    state = on_session(state, "WORKING", 300.0, CFG, RNG)
    assert not state.auth_failed


def test_backoff_grows_exponentially_to_the_cap_with_full_jitter() -> None:
    rng = random.Random(11)
    for failures, ceiling in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (500, 60)]:
        samples = [backoff_delay(failures, CFG, rng) for _ in range(300)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8, "full jitter spreads over the whole range"
        assert min(samples) < ceiling * 0.2


def test_budget_allows_twenty_sets_per_sliding_minute() -> None:
    state = working(0.0)
    for i in range(20):
        state = on_set_started(state, float(i), CFG)
    state = working(19.0, state)
    action = plan(state, A, 19.5, CFG)
    assert action == Wait(60.0, "call budget spent: 20 set calls in 60s")
    assert plan(state, A, 60.0, CFG) == SetPresence(A, "change")


def test_dry_run_never_checks_the_session() -> None:
    assert plan(ActuationState(), A, 0.0, ActuationConfig(dry_run=True)) == SetPresence(A, "change")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("-3", None),
        ("soon", None),
        ("1.5", None),
    ],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, datetime(2026, 1, 1, tzinfo=UTC)) == expected


def test_retry_after_http_date() -> None:
    now = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert header.endswith("GMT")
    assert parse_retry_after(header, now) == 90.0
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0.0


# The hard limits hold whatever the gateway answers and however the desire changes.

outcomes = st.sampled_from(
    ["ok", "ok", "ok", "auth", "429", "429-after", "5xx", "4xx", "not-working", "422"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([A, U, UNK]), outcomes, st.floats(0.0, 30.0)),
        min_size=1,
        max_size=200,
    ),
    st.integers(0, 2**32),
)
def test_hard_limits_hold_under_any_answers(
    seq: list[tuple[Presence, str, float]], seed: int
) -> None:
    rng = random.Random(seed)
    state, now = ActuationState(), 0.0
    sets: list[float] = []
    calls: list[float] = []
    for desired, outcome, dt in seq:
        now += dt
        action = plan(state, desired, now, CFG)
        if isinstance(action, Wait):
            assert action.until is None or action.until > now
            continue
        assert now >= state.backoff_until, "no call during back-off"
        if state.auth_failed:
            assert not calls or now - calls[-1] >= CFG.auth_retry
        calls.append(now)
        if isinstance(action, CheckSession):
            state = on_session(
                state, "STARTING" if outcome == "not-working" else "WORKING", now, CFG, rng
            )
            continue
        assert action.presence is desired
        assert state.session == "WORKING" and state.session_at is not None
        assert now - state.session_at < CFG.session_check
        state = on_set_started(state, now, CFG)
        sets.append(now)
        assert sum(1 for t in sets if t > now - 60.0) <= 20
        if outcome == "ok":
            state = on_set_ok(state, desired, now)
            assert state.applied is desired
            continue
        kind, retry_after = {
            "auth": (FailureKind.AUTH, None),
            "429": (FailureKind.RATE_LIMITED, None),
            "429-after": (FailureKind.RATE_LIMITED, 12.0),
            "5xx": (FailureKind.TRANSIENT, None),
            "4xx": (FailureKind.PERMANENT, None),
            "422": (FailureKind.SESSION_NOT_READY, None),
            "not-working": (FailureKind.SESSION_NOT_READY, None),
        }[outcome]
        state = on_failure(state, Failure(kind, outcome, retry_after), now, CFG, rng)


def test_a_set_that_keeps_failing_backs_off_exponentially_despite_good_session_checks() -> None:
    rng, state, now = random.Random(2), ActuationState(), 0.0
    ceilings = []
    for _ in range(7):
        action = plan(state, A, now, CFG)
        if isinstance(action, Wait):
            assert action.until is not None
            now = action.until
            action = plan(state, A, now, CFG)
        assert action == CheckSession()
        state = on_session(state, "WORKING", now, CFG, rng)
        assert plan(state, A, now, CFG) == SetPresence(A, "change")
        state = on_failure(state, Failure(FailureKind.TRANSIENT, "500"), now, CFG, rng)
        ceilings.append(min(CFG.backoff_cap, 2 ** (state.failures - 1)))
    assert state.failures == 7
    assert ceilings == [1, 2, 4, 8, 16, 32, 60]


# Floors and budgets: a gateway that says "retry now" is never hammered (issue: 5,616 session
# reads in 10.8 s on `Retry-After: 0`).


@given(
    kind=st.sampled_from(list(FailureKind)),
    retry_after=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e6)),
    failures=st.integers(min_value=0, max_value=50),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_no_retry_comes_sooner_than_the_floor(
    kind: FailureKind, retry_after: float | None, failures: int, seed: int
) -> None:
    state = ActuationState(failures=failures)
    failed = on_failure(state, Failure(kind, "x", retry_after), 100.0, CFG, random.Random(seed))
    assert failed.backoff_until >= 100.0 + CFG.retry_floor


def test_retry_after_zero_or_in_the_past_waits_the_floor() -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    past = parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now)
    for retry_after in (parse_retry_after("0", now), past):
        assert retry_after == 0.0
        failed = on_failure(
            ActuationState(), Failure(FailureKind.RATE_LIMITED, "429", retry_after), 5.0, CFG, RNG
        )
        assert failed.backoff_until == 5.0 + CFG.retry_floor


def test_session_reads_have_a_sliding_budget() -> None:
    state = ActuationState()
    now = 0.0
    for _ in range(CFG.session_budget_calls):
        assert plan(state, A, now, CFG) == CheckSession()
        state = on_session_started(state, now, CFG)
        now += 1.0
    action = plan(state, A, now, CFG)
    assert isinstance(action, Wait) and action.until == CFG.budget_window
    assert "session read budget spent" in action.why
    assert plan(state, A, CFG.budget_window + 0.01, CFG) == CheckSession()


def test_the_calls_in_the_last_window_are_counted_as_of_now() -> None:
    state = on_set_started(ActuationState(), 0.0, CFG)
    state = on_set_started(state, 10.0, CFG)
    assert calls_last_window(state, 30.0, CFG) == 2
    assert calls_last_window(state, 65.0, CFG) == 1, "pruned by time, not by the next call"
    assert calls_last_window(state, 75.0, CFG) == 0


def test_idle_reads_use_at_most_half_the_read_budget() -> None:
    """A SESSION_CHECK below 6 s (20 reads a minute) must not starve the reads that go
    with writes: idle reads then come every 6 s."""
    cfg = ActuationConfig(reassert_available=8.0, session_check=0.5)
    state = on_set_ok(working(0.0), A, 0.0)
    action = plan(state, A, 1.0, cfg)
    assert isinstance(action, Wait) and action.until == 6.0
    now, reads, sets = 0.0, 0, 0
    while now < 600.0:
        action = plan(state, A, now, cfg)
        if isinstance(action, Wait):
            assert action.until is not None and "budget" not in action.why, action
            now = action.until
        elif isinstance(action, CheckSession):
            reads += 1
            state = working(now, on_session_started(state, now, cfg))
        else:
            sets += 1
            state = on_set_ok(on_set_started(state, now, cfg), A, now)
            now += 0.001
    assert sets >= 74 and reads <= 600 / 6 + sets
