"""decide(): the precedence maintenance > force > online hours > health (README, "How decisions
are made")."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.hysteresis import HysteresisConfig
from controller.core.policy import PolicyState, decide
from controller.core.types import (
    HealthResult,
    HealthStatus,
    LagResult,
    Observation,
    PolicyInputs,
    Presence,
    Rule,
    TickKind,
)

AT = datetime(2026, 11, 24, tzinfo=UTC)
CFG = HysteresisConfig(rise=1, fall=1, hold_down=0)
HEALTHY = HealthResult(HealthStatus.OK, "HTTP 200", 200)
SICK = HealthResult(HealthStatus.HTTP_ERROR, "HTTP 500", 500)
A, U = Presence.AVAILABLE, Presence.UNAVAILABLE


def observe(health: HealthResult, policy: PolicyInputs) -> Observation:
    return Observation(health=health, lag=LagResult.not_configured(), at=AT, policy=policy)


@pytest.mark.parametrize(
    ("health", "policy", "presence", "reason", "rule"),
    [
        (HEALTHY, PolicyInputs(), A, "healthy: health HTTP 200", Rule.HEALTH),
        (SICK, PolicyInputs(), U, "unhealthy: health HTTP 500", Rule.HEALTH),
        (
            HEALTHY,
            PolicyInputs(maintenance="window 'Sat 02:00-04:00 UTC'"),
            U,
            "maintenance: window",
            "maintenance",
        ),
        (HEALTHY, PolicyInputs(maintenance="m", force=A), U, "maintenance: m", "maintenance"),
        (SICK, PolicyInputs(force=A, force_reason="ops"), A, "force available: ops", "force"),
        (HEALTHY, PolicyInputs(force=U), U, "force unavailable", "force"),
        (
            HEALTHY,
            PolicyInputs(force=A, outside_online_hours="Mon-Fri 09:00-17:00"),
            A,
            "force",
            "force",
        ),
        (
            HEALTHY,
            PolicyInputs(outside_online_hours="Mon-Fri 09:00-17:00 UTC"),
            U,
            "outside online",
            "online_hours",
        ),
        (
            SICK,
            PolicyInputs(maintenance="m", outside_online_hours="h"),
            U,
            "maintenance: m",
            "maintenance",
        ),
    ],
)
def test_precedence(
    health: HealthResult, policy: PolicyInputs, presence: Presence, reason: str, rule: str
) -> None:
    _, decision = decide(PolicyState(), observe(health, policy), 0.0, CFG)
    assert decision.presence is presence
    assert decision.reason.startswith(reason)
    assert decision.rule == rule


def test_hysteresis_keeps_tracking_under_a_higher_rule() -> None:
    state, decision = decide(PolicyState(), observe(SICK, PolicyInputs(maintenance="m")), 0.0, CFG)
    assert decision.presence is U and state.hysteresis.verdict is U
    state, decision = decide(state, observe(HEALTHY, PolicyInputs(maintenance="m")), 1.0, CFG)
    assert decision.presence is U and state.hysteresis.verdict is A
    _, decision = decide(state, observe(HEALTHY, PolicyInputs()), 2.0, CFG)
    assert decision.presence is A  # maintenance over: health takes over at once


def test_detail_reports_streaks_and_hold_down() -> None:
    cfg = HysteresisConfig(rise=3, fall=1, hold_down=30)
    state, _ = decide(PolicyState(), observe(SICK, PolicyInputs()), 0.0, cfg)
    _, decision = decide(state, observe(HEALTHY, PolicyInputs()), 5.0, cfg)
    assert decision.tick is TickKind.GOOD
    assert decision.detail == (
        "good tick: health HTTP 200; good 1/3, bad 0/1; hold-down 25.0s left"
    )


policies = st.builds(
    PolicyInputs,
    maintenance=st.one_of(st.none(), st.text(min_size=1, max_size=10)),
    force=st.one_of(st.none(), st.sampled_from([A, U])),
    outside_online_hours=st.one_of(st.none(), st.just("Mon-Fri 09:00-17:00 UTC")),
)


@given(st.lists(st.tuples(st.booleans(), policies), min_size=1, max_size=30))
def test_maintenance_always_wins_and_force_beats_the_rest(
    seq: list[tuple[bool, PolicyInputs]],
) -> None:
    state = PolicyState()
    for i, (healthy, policy) in enumerate(seq):
        state, decision = decide(state, observe(HEALTHY if healthy else SICK, policy), i, CFG)
        if policy.maintenance is not None:
            assert decision.presence is U
            assert decision.reason.startswith("maintenance: ")
        elif policy.force is not None:
            assert decision.presence is policy.force
        elif policy.outside_online_hours is not None:
            assert decision.presence is U
        elif decision.rule == "damping":
            # Damping holds back a return to available, and nothing else.
            assert state.hysteresis.verdict is A and decision.presence is U
            assert decision.reason.startswith("damped: ")
        else:
            assert decision.presence is state.hysteresis.verdict


def test_when_maintenance_ends_the_reason_describes_the_consumer_now() -> None:
    """The verdict's reason was written when it flipped ("after the 2s hold-down"); handing back
    from maintenance 0.2 s later must not repeat it as if it had just happened."""
    cfg = HysteresisConfig(rise=2, fall=1, hold_down=2)
    state = PolicyState()
    decision = None
    timeline = [(0.0, SICK), (0.1, HEALTHY), (1.0, HEALTHY), (2.5, HEALTHY)]
    for now, health in timeline:
        state, decision = decide(state, observe(health, PolicyInputs()), now, cfg)
    assert decision is not None and decision.presence is A
    assert decision.reason.endswith("after the 2s hold-down)"), "true when it flipped"
    maintenance = PolicyInputs(maintenance="annotation presence-controller/maintenance 'true'")
    state, decision = decide(state, observe(HEALTHY, maintenance), 10.0, cfg)
    assert decision.presence is U and decision.rule == "maintenance"
    state, decision = decide(state, observe(HEALTHY, PolicyInputs()), 10.2, cfg)
    assert decision.presence is A
    assert decision.reason == ("maintenance ended: consumer available (good tick: health HTTP 200)")
    assert "hold-down" not in decision.reason
    state, later = decide(state, observe(HEALTHY, PolicyInputs()), 10.4, cfg)
    assert later.reason == decision.reason, "stable while nothing changes"
    state, down = decide(state, observe(SICK, PolicyInputs()), 10.6, cfg)
    assert down.reason.startswith("unhealthy: health HTTP 500"), "a flip writes a fresh reason"


@pytest.mark.parametrize(
    ("rule_inputs", "said"),
    [
        (PolicyInputs(force=U), "force ended"),
        (PolicyInputs(outside_online_hours="'Mon-Fri 09:00-18:00 UTC'"), "online hours began"),
    ],
)
def test_every_higher_rule_says_it_handed_back(rule_inputs: PolicyInputs, said: str) -> None:
    state, decision = decide(PolicyState(), observe(HEALTHY, PolicyInputs()), 0.0, CFG)
    state, decision = decide(state, observe(HEALTHY, rule_inputs), 1.0, CFG)
    state, decision = decide(state, observe(HEALTHY, PolicyInputs()), 2.0, CFG)
    assert decision.reason.startswith(f"{said}: consumer available")
