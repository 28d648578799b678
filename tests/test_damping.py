"""Flap damping: the penalty arithmetic (tables), the decision with and without it (hypothesis:
it only ever delays a return to available, never beats maintenance or force, never holds longer
than MAX_SUPPRESS), and what the controller reports."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Sim, running, until
from hypothesis import example, given, settings
from hypothesis import strategies as st

from controller.core.damping import (
    PENALTY,
    DampingConfig,
    DampingState,
    damp,
    damped_reason,
    holds,
    penalty,
    reuse_at,
)
from controller.core.hysteresis import HysteresisConfig
from controller.core.policy import PolicyState, decide
from controller.core.types import (
    Decision,
    HealthResult,
    HealthStatus,
    LagResult,
    Observation,
    PolicyInputs,
    Presence,
)

A, U = Presence.AVAILABLE, Presence.UNAVAILABLE
CFG = DampingConfig()  # half-life 15 m, suppress 2500, reuse 800, max 30 m
AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def flaps(times: list[float], cfg: DampingConfig = CFG) -> DampingState:
    """Outages at `times` (each: up just before, down at the time)."""
    state = DampingState()
    for t in times:
        state = damp(damp(state, A, t - 0.5, cfg), U, t, cfg)
    return state


def test_one_outage_costs_1000_and_halves_each_half_life() -> None:
    state = flaps([0.0])
    assert penalty(state, 0.0, CFG) == PENALTY
    assert penalty(state, 900.0, CFG) == pytest.approx(500.0)
    assert penalty(state, 1800.0, CFG) == pytest.approx(250.0)
    assert not holds(state)


def test_the_third_quick_outage_suppresses_until_the_penalty_decays_below_reuse() -> None:
    state = flaps([0.0, 60.0])
    assert not holds(state), "2000 < 2500"
    state = flaps([0.0, 60.0, 120.0])
    assert holds(state) and state.suppressed_since == 120.0
    current = penalty(state, 120.0, CFG)
    assert 2500 < current < 3000
    end = reuse_at(state, CFG)
    assert end == pytest.approx(120.0 + 900.0 * math.log2(current / 800.0))
    assert holds(damp(state, A, end - 1.0, CFG))
    released = damp(state, A, end, CFG)
    assert not holds(released) and penalty(released, end, CFG) == pytest.approx(800.0)


def test_the_penalty_is_capped_so_that_it_decays_to_reuse_within_max_suppress() -> None:
    state = flaps([float(t) for t in range(0, 600, 30)])  # 20 outages in 10 minutes
    assert penalty(state, 570.0, CFG) == pytest.approx(CFG.ceiling) == pytest.approx(3200.0)
    end = reuse_at(state, CFG)
    assert end is not None and end <= state.suppressed_since + CFG.max_suppress  # type: ignore[operator]


def test_a_crash_loop_gets_one_chance_per_suppression() -> None:
    """Down 20 s every 3 minutes: suppressed at the third outage; released after at most
    MAX_SUPPRESS, then the next outage suppresses again at once (the penalty is still high)."""
    state, suppressions = damp(DampingState(), A, -1.0, CFG), []
    for cycle in range(40):
        t = cycle * 180.0
        was = holds(state)
        state = damp(state, U, t, CFG)
        state = damp(state, A, t + 20, CFG)
        if holds(state) and not was:
            suppressions.append(state.suppressed_since)
    assert suppressions[0] == 2 * 180.0
    # Two hours: released (at MAX_SUPPRESS at the latest) and suppressed again, several times.
    assert len(suppressions) >= 3, suppressions
    assert all(b - a <= CFG.max_suppress + 180.0 for a, b in itertools.pairwise(suppressions))


def test_disabled_damping_never_holds() -> None:
    off = replace(CFG, enabled=False)
    assert not holds(flaps([float(t) for t in range(0, 100, 10)], off))


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="reuse < suppress"):
        DampingConfig(reuse=3000)
    with pytest.raises(ValueError, match="must be > 0"):
        DampingConfig(half_life=0)
    # A cap at 800 x 2^(60/900) = 838 could never reach 2500: damping would never act.
    with pytest.raises(ValueError, match="damping could never act"):
        DampingConfig(max_suppress=60)


def test_settings_name_the_damping_fields() -> None:
    from pydantic import ValidationError

    from controller.config import Settings

    base = {"health_url": "http://h/", "wawp": {"instance_id": "i", "access_token": "t-12345678"}}
    with pytest.raises(ValidationError, match="REUSE \\(3000\\) must be < SUPPRESS"):
        Settings.from_values(**base, damping={"reuse": 3000})
    with pytest.raises(ValidationError, match="raise MAX_SUPPRESS or lower HALF_LIFE"):
        Settings.from_values(**base, damping={"max_suppress": "1m"})
    ok = Settings.from_values(**base, damping={"half_life": "5m", "max_suppress": "20m"})
    assert ok.hysteresis().damping.half_life == 300.0


def test_the_reason_text() -> None:
    state = flaps([0.0, 240.0, 480.0])
    assert damped_reason(state, CFG, "14:32 UTC") == (
        "damped: 3 outages in 8 minutes, back at 14:32 UTC when the penalty decays"
    )


# The decision, with damping and without: a hypothesis property over whole histories.

HEALTHY = HealthResult(HealthStatus.OK, "HTTP 200", 200)
SICK = HealthResult(HealthStatus.HTTP_ERROR, "HTTP 503", 503)
POLICIES = st.sampled_from(
    [
        PolicyInputs(),
        PolicyInputs(),
        PolicyInputs(),
        PolicyInputs(maintenance="window"),
        PolicyInputs(force=A),
        PolicyInputs(force=U),
        PolicyInputs(outside_online_hours="Mon-Fri 09:00-17:00 UTC"),
    ]
)
HISTORY = st.lists(st.tuples(st.booleans(), st.floats(1.0, 120.0), POLICIES), max_size=150)
FAST = HysteresisConfig(
    rise=1,
    fall=1,
    hold_down=0,
    damping=DampingConfig(half_life=300.0, suppress=2500.0, reuse=800.0, max_suppress=600.0),
)


CRASH_LOOP = [(i % 2 == 1, 30.0, PolicyInputs()) for i in range(150)]
"""Down and up every 30 s for 75 minutes: the hold must still end within MAX_SUPPRESS."""


@settings(max_examples=300, deadline=None)
@given(HISTORY)
@example(CRASH_LOOP)
def test_damping_only_delays_a_return_to_available(
    history: list[tuple[bool, float, PolicyInputs]],
) -> None:
    undamped_cfg = replace(FAST, damping=replace(FAST.damping, enabled=False))
    damped_s, plain_s = PolicyState(), PolicyState()
    damped: Decision | None = None
    plain: Decision | None = None
    now, holds_seen = 0.0, 0
    for healthy, gap, policy in history:
        now += gap
        obs = Observation(
            HEALTHY if healthy else SICK,
            LagResult.not_configured(),
            AT + timedelta(seconds=now),
            policy,
        )
        damped_s, damped = decide(damped_s, obs, now, FAST)
        plain_s, plain = decide(plain_s, obs, now, undamped_cfg)
        if damped.presence is not plain.presence:
            # The only difference: available held back by damping, where health decides.
            assert (plain.presence, damped.presence, damped.rule) == (A, U, "damping")
            assert plain.rule == "health"
        if policy.maintenance is not None:
            assert damped.rule == "maintenance" and damped.presence is U
        elif policy.force is not None:
            assert damped.rule == "force" and damped.presence is policy.force
        # A suppression never lasts longer than MAX_SUPPRESS (plus the tick that sees it end),
        # whatever the consumer does meanwhile.
        since = damped_s.damping.suppressed_since
        if since is not None:
            assert now - since <= FAST.damping.max_suppress + gap
        holds_seen += damped.rule == "damping"
    if history == CRASH_LOOP:
        assert holds_seen > 0, "the crash loop is damped"


def test_a_damped_decision_says_why_and_until_when() -> None:
    state, decision = PolicyState(), None
    cfg = replace(FAST, damping=DampingConfig())
    for i, healthy in enumerate([True, False, True, False, True, False, True]):
        obs = Observation(
            HEALTHY if healthy else SICK,
            LagResult.not_configured(),
            AT + timedelta(seconds=60 * i),
        )
        state, decision = decide(state, obs, 60.0 * i, cfg)
    assert decision is not None
    assert decision.presence is U and decision.rule == "damping"
    assert decision.reason.startswith("damped: 3 outages in 4 minutes, back at 12:")
    assert decision.reason.endswith("UTC when the penalty decays")
    assert "damping penalty" in decision.detail
    # The reason stands while nothing changes (no churn in logs and /status).
    obs = Observation(HEALTHY, LagResult.not_configured(), AT + timedelta(seconds=420))
    _, later = decide(state, obs, 420.0, cfg)
    assert later.reason == decision.reason


# The controller: /status.damping and the metric.


async def test_the_controller_damps_a_flapping_consumer_and_reports_it(sim: Sim) -> None:
    # Two quick outages (~1950) suppress; the cap (500 x 2^(2/1) = 2000) decays to REUSE
    # within MAX_SUPPRESS (2 s).
    damping = {"enabled": True, "half_life": 1, "suppress": 1500, "reuse": 500}
    settings = sim.settings(damping={**damping, "max_suppress": 2}, rise=1, fall=1)
    async with running(settings) as run:
        for _ in range(2):
            await until(lambda: sim.gateway.presence == "available")
            sim.consumer.health_status = 503
            await until(lambda: sim.gateway.presence == "unavailable")
            sim.consumer.health_status = 200
        await until(
            lambda: (
                run.controller.decision is not None and run.controller.decision.rule == "damping"
            )
        )
        status = await run.status()
        metric = await run.metric("presence_damping_penalty")
        # Within MAX_SUPPRESS the penalty decays below REUSE, and the bot comes back.
        await until(lambda: sim.gateway.presence == "available")
        after = await run.status()
    assert status["damping"]["suppressed"] is True and status["damping"]["outages"] == 2
    assert status["damping"]["reuse_at"] is not None
    assert status["presence"]["reason"].startswith("damped: 2 outages")
    assert metric is not None and 500 < metric <= 2000, "above REUSE while held"
    assert after["damping"]["suppressed"] is False
    assert after["presence"]["reason"].startswith("damping ended: consumer available")
