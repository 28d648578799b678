"""The decision: precedence of maintenance, force, online hours and health (README, "How
decisions are made")."""

from __future__ import annotations

from controller.core.fleet import FleetInputs, Member
from controller.core.fleet import verdict as fleet_verdict
from controller.core.hysteresis import (
    HysteresisConfig,
    HysteresisState,
    classify,
    hold_down_left,
    step,
)
from controller.core.types import Decision, Observation, Presence

_ENDED = {
    "maintenance": "maintenance ended",
    "force": "force ended",
    "online_hours": "online hours began",
    "error": "the controller error cleared",
}


def decide(
    state: HysteresisState,
    obs: Observation,
    now: float,
    cfg: HysteresisConfig,
    previous: Decision | None = None,
    fleet: FleetInputs | None = None,
) -> tuple[HysteresisState, Decision]:
    """Decide the bot's presence from one observation at monotonic time `now`; `previous` is
    the last decision (None on the first tick).

    The hysteresis always advances, even while a higher rule wins, so that when maintenance or
    a force ends the consumer's real condition takes over at once. The reason stays the same
    while nothing changes; when a higher rule hands back to health, it says so and describes the
    consumer as it is now, not as it was when its verdict last flipped.
    """
    tick, why = classify(obs, cfg)
    new = step(state, tick, why, now, cfg)
    detail = f"{tick} tick: {why}; good {new.good}/{cfg.rise}, bad {new.bad}/{cfg.fall}"
    left = hold_down_left(new, now, cfg)
    if left > 0 and new.good > 0:
        detail += f"; hold-down {left:.1f}s left"

    policy = obs.policy
    if policy.maintenance is not None:
        reason = f"maintenance: {policy.maintenance}"
        return new, Decision(Presence.UNAVAILABLE, reason, detail, tick, "maintenance")
    if policy.force is not None and policy.force is not Presence.UNKNOWN:
        suffix = f": {policy.force_reason}" if policy.force_reason else ""
        reason = f"force {policy.force}{suffix}"
        return new, Decision(policy.force, reason, detail, tick, "force")
    if policy.outside_online_hours is not None:
        reason = f"outside online hours: {policy.outside_online_hours}"
        return new, Decision(Presence.UNAVAILABLE, reason, detail, tick, "online_hours")
    if fleet is not None:
        # Fleet mode, on the leader: the bot's health is the fleet's, this replica one member.
        me = Member(fleet.me, new.verdict.value, new.reason, 0.0)
        judged = fleet_verdict([*fleet.others, me], fleet.min_available, fleet.stale_after)
        presence, reason = judged.presence, judged.reason
        if presence is Presence.UNKNOWN and previous is not None and previous.rule == "health":
            # Members still starting (a rollout): hold what the fleet last decided.
            presence = previous.presence
            if presence is not Presence.UNKNOWN:
                reason = f"{judged.reason}: keeping {presence}"
        if previous is not None and previous.rule != "health":
            reason = f"{_ENDED[previous.rule]}: {judged.reason}"
        return new, Decision(presence, reason, detail, tick, "health")
    reason = new.reason
    if previous is not None and new.verdict is state.verdict:
        if previous.rule != "health":
            reason = f"{_ENDED[previous.rule]}: consumer {new.verdict} ({tick} tick: {why})"
        else:
            reason = previous.reason
    return new, Decision(new.verdict, reason, detail, tick, "health")
