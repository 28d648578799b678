"""The decision: precedence of maintenance, force, online hours, flap damping and health,
and the controller's own failures (README, "How decisions are made").

Every rule lives here: `decide(state, observation, now, cfg)` returns the new `PolicyState` and
the decision, the last-seen veto included. The shell keeps nothing but the state it is handed
back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import overload

from controller.core.actuation import refresh_veto
from controller.core.damping import DampingState, damp, damped_reason, holds, penalty, reuse_at
from controller.core.fleet import FleetInputs, Member, fleet_verdict
from controller.core.hysteresis import (
    HysteresisConfig,
    HysteresisState,
    classify,
    hold_down_left,
    step,
)
from controller.core.types import Decision, Observation, Presence, Rule, TickFailed, TickKind

_ENDED = {
    Rule.MAINTENANCE: "maintenance ended",
    Rule.FORCE: "force ended",
    Rule.ONLINE_HOURS: "online hours began",
    Rule.ERROR: "the controller error cleared",
    Rule.DAMPING: "damping ended",
}


@dataclass(frozen=True, slots=True)
class PolicyState:
    """All that `decide()` remembers from one tick to the next."""

    hysteresis: HysteresisState = field(default_factory=HysteresisState)
    damping: DampingState = field(default_factory=DampingState)
    """Flap damping of the health rule's outcome."""
    undecided_since: float | None = None
    """Fleet mode, on the leader: since when the fleet has had no verdict."""
    decision: Decision | None = None
    """The last decision (None until the first)."""
    failures: int = 0
    """Ticks in a row that failed (`TickFailed`)."""


@overload
def decide(
    state: PolicyState,
    obs: Observation,
    now: float,
    cfg: HysteresisConfig,
    fleet: FleetInputs | None = None,
) -> tuple[PolicyState, Decision]: ...


@overload
def decide(
    state: PolicyState,
    obs: TickFailed,
    now: float,
    cfg: HysteresisConfig,
    fleet: FleetInputs | None = None,
) -> tuple[PolicyState, Decision | None]: ...


def decide(
    state: PolicyState,
    obs: Observation | TickFailed,
    now: float,
    cfg: HysteresisConfig,
    fleet: FleetInputs | None = None,
) -> tuple[PolicyState, Decision | None]:
    """Decide the bot's presence from one observation at monotonic time `now`; `fleet`: fleet
    mode, on the leader, what it sees of the other replicas.

    The hysteresis always advances, even while a higher rule wins, so that when maintenance or
    a force ends the consumer's real condition takes over at once. The reason stays the same
    while nothing changes; when a higher rule hands back to health, it says so and describes the
    consumer as it is now, not as it was when its verdict last flipped. Flap damping follows
    the health rule's outcome every tick too, and only ever turns its `available` into
    `unavailable` (rule `damping`) while a suppression lasts.

    A `TickFailed` (the controller's own error) changes nothing until `FALL` of them in a row:
    then the bot goes unavailable (rule `error`) with the error as the reason; until then the
    last decision stands (None before the first).
    """
    if isinstance(obs, TickFailed):
        return _failed(state, obs, cfg)
    decision_state, decision = _decide(state, obs, now, cfg, fleet)
    veto = refresh_veto(
        decision.rule,
        decision.presence,
        decision_state.hysteresis.verdict,
        decision.tick is TickKind.BAD,
    )
    decision = replace(decision, refresh_veto=veto)
    return replace(decision_state, decision=decision, failures=0), decision


def _failed(
    state: PolicyState, failed: TickFailed, cfg: HysteresisConfig
) -> tuple[PolicyState, Decision | None]:
    failures = state.failures + 1
    previous = state.decision
    if failures < cfg.fall or (previous is not None and previous.rule is Rule.ERROR):
        return replace(state, failures=failures), previous
    reason = f"controller error: {failed.error} ({failures} failed ticks, fall {cfg.fall})"
    veto = refresh_veto(Rule.ERROR, Presence.UNAVAILABLE, state.hysteresis.verdict, True)
    decision = Decision(Presence.UNAVAILABLE, reason, reason, TickKind.BAD, Rule.ERROR, veto)
    return replace(state, decision=decision, failures=failures), decision


def _decide(
    state: PolicyState,
    obs: Observation,
    now: float,
    cfg: HysteresisConfig,
    fleet: FleetInputs | None,
) -> tuple[PolicyState, Decision]:
    previous = state.decision
    tick, why = classify(obs, cfg)
    hysteresis = step(state.hysteresis, tick, why, now, cfg)
    detail = (
        f"{tick} tick: {why}; good {hysteresis.good}/{cfg.rise}, bad {hysteresis.bad}/{cfg.fall}"
    )
    left = hold_down_left(hysteresis, now, cfg)
    if left > 0 and hysteresis.good > 0:
        detail += f"; hold-down {left:.1f}s left"

    presence, reason, undecided = _health(state, hysteresis, tick, why, fleet, now, cfg)
    damping = damp(state.damping, presence, now, cfg.damping)
    new = replace(state, hysteresis=hysteresis, damping=damping, undecided_since=undecided)

    policy = obs.policy
    if policy.maintenance is not None:
        reason = f"maintenance: {policy.maintenance}"
        return new, Decision(Presence.UNAVAILABLE, reason, detail, tick, Rule.MAINTENANCE)
    if policy.force is not None and policy.force is not Presence.UNKNOWN:
        suffix = f": {policy.force_reason}" if policy.force_reason else ""
        reason = f"force {policy.force}{suffix}"
        return new, Decision(policy.force, reason, detail, tick, Rule.FORCE)
    if policy.outside_online_hours is not None:
        reason = f"outside online hours: {policy.outside_online_hours}"
        return new, Decision(Presence.UNAVAILABLE, reason, detail, tick, Rule.ONLINE_HOURS)
    if holds(damping) and presence is Presence.AVAILABLE:
        # Damping holds back a return to available, and nothing else.
        if previous is not None and previous.rule is Rule.DAMPING and _same_damping(state, new):
            reason = previous.reason
        else:
            back = reuse_at(damping, cfg.damping)
            assert back is not None
            wall = obs.at + timedelta(seconds=back - now)
            reason = damped_reason(damping, cfg.damping, f"{wall:%H:%M} UTC")
        detail += f"; damping penalty {penalty(damping, now, cfg.damping):.0f}"
        return new, Decision(Presence.UNAVAILABLE, reason, detail, tick, Rule.DAMPING)
    return new, Decision(presence, reason, detail, tick, Rule.HEALTH)


def _same_damping(before: PolicyState, after: PolicyState) -> bool:
    """The suppression and its outages are those of the previous tick (the reason stands)."""
    a, b = before.damping, after.damping
    return a.suppressed_since == b.suppressed_since and a.outages == b.outages


def _health(
    state: PolicyState,
    new: HysteresisState,
    tick: TickKind,
    why: str,
    fleet: FleetInputs | None,
    now: float,
    cfg: HysteresisConfig,
) -> tuple[Presence, str, float | None]:
    """What the health rule decides, and why: the consumer's verdict, or in fleet mode (on the
    leader) the fleet's; and since when the fleet has had no verdict."""
    previous = state.decision
    if fleet is not None:
        # Fleet mode, on the leader: the bot's health is the fleet's, this replica one member.
        me = Member(fleet.me, new.verdict.value, new.reason, 0.0)
        judged = fleet_verdict(
            [*fleet.others, me], fleet.min_available, fleet.stale_after, fleet.view_age,
            fleet.unseen,
        )  # fmt: skip
        presence, reason = judged.presence, judged.reason
        undecided = None
        if presence is Presence.UNKNOWN:
            # Members starting (a rollout), or a fleet this replica cannot see: hold what the
            # fleet last decided, for at most 3 heartbeats, then unavailable until it can say;
            # at start, with nothing decided yet, write nothing for up to STARTUP_GRACE (as one
            # replica does).
            undecided = state.undecided_since if state.undecided_since is not None else now
            grace, what = fleet.stale_after, "3 x HEARTBEAT"
            if previous is None or previous.presence is Presence.UNKNOWN:
                grace, what = max(grace, cfg.startup_grace), "startup grace"
            if now - undecided >= grace:
                presence = Presence.UNAVAILABLE
                reason = (
                    f"{judged.reason}: no fleet verdict for {now - undecided:.0f}s "
                    f"({what}): unavailable until there is one"
                )
            elif previous is not None and previous.rule in (Rule.HEALTH, Rule.DAMPING):
                presence = previous.presence
                if presence is not Presence.UNKNOWN:
                    reason = f"{judged.reason}: keeping {presence}"
        if previous is not None and previous.rule is not Rule.HEALTH:
            reason = f"{_ENDED[previous.rule]}: {judged.reason}"
        return presence, reason, undecided
    reason = new.reason
    if previous is not None and new.verdict is state.hysteresis.verdict:
        if previous.rule is not Rule.HEALTH:
            reason = f"{_ENDED[previous.rule]}: consumer {new.verdict} ({tick} tick: {why})"
        else:
            reason = previous.reason
    return new.verdict, reason, None
