"""The decision: precedence of maintenance, force, online hours, flap damping and health
(README, "How decisions are made")."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from controller.core.damping import holds, penalty, reuse_at
from controller.core.damping import reason as damped_reason
from controller.core.damping import step as damping_step
from controller.core.fleet import FleetInputs, Member
from controller.core.fleet import verdict as fleet_verdict
from controller.core.hysteresis import (
    HysteresisConfig,
    HysteresisState,
    classify,
    hold_down_left,
    step,
)
from controller.core.types import Decision, Observation, Presence, TickKind

_ENDED = {
    "maintenance": "maintenance ended",
    "force": "force ended",
    "online_hours": "online hours began",
    "error": "the controller error cleared",
    "damping": "damping ended",
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
    consumer as it is now, not as it was when its verdict last flipped. Flap damping follows
    the health rule's outcome every tick too, and only ever turns its `available` into
    `unavailable` (rule `damping`) while a suppression lasts.
    """
    tick, why = classify(obs, cfg)
    new = step(state, tick, why, now, cfg)
    detail = f"{tick} tick: {why}; good {new.good}/{cfg.rise}, bad {new.bad}/{cfg.fall}"
    left = hold_down_left(new, now, cfg)
    if left > 0 and new.good > 0:
        detail += f"; hold-down {left:.1f}s left"

    presence, reason, undecided = _health(state, new, tick, why, previous, fleet, now, cfg)
    damping = damping_step(new.damping, presence, now, cfg.damping)
    new = replace(new, damping=damping, undecided_since=undecided)

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
    if holds(damping) and presence is Presence.AVAILABLE:
        # Damping holds back a return to available, and nothing else.
        if previous is not None and previous.rule == "damping" and _same_damping(state, new):
            reason = previous.reason
        else:
            back = reuse_at(damping, cfg.damping)
            assert back is not None
            wall = obs.at + timedelta(seconds=back - now)
            reason = damped_reason(damping, cfg.damping, f"{wall:%H:%M} UTC")
        detail += f"; damping penalty {penalty(damping, now, cfg.damping):.0f}"
        return new, Decision(Presence.UNAVAILABLE, reason, detail, tick, "damping")
    return new, Decision(presence, reason, detail, tick, "health")


def _same_damping(before: HysteresisState, after: HysteresisState) -> bool:
    """The suppression and its outages are those of the previous tick (the reason stands)."""
    a, b = before.damping, after.damping
    return a.suppressed_since == b.suppressed_since and a.outages == b.outages


def _health(
    state: HysteresisState,
    new: HysteresisState,
    tick: TickKind,
    why: str,
    previous: Decision | None,
    fleet: FleetInputs | None,
    now: float,
    cfg: HysteresisConfig,
) -> tuple[Presence, str, float | None]:
    """What the health rule decides, and why: the consumer's verdict, or in fleet mode (on the
    leader) the fleet's; and since when the fleet has had no verdict."""
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
            elif previous is not None and previous.rule in ("health", "damping"):
                presence = previous.presence
                if presence is not Presence.UNKNOWN:
                    reason = f"{judged.reason}: keeping {presence}"
        if previous is not None and previous.rule != "health":
            reason = f"{_ENDED[previous.rule]}: {judged.reason}"
        return presence, reason, undecided
    reason = new.reason
    if previous is not None and new.verdict is state.verdict:
        if previous.rule != "health":
            reason = f"{_ENDED[previous.rule]}: consumer {new.verdict} ({tick} tick: {why})"
        else:
            reason = previous.reason
    return new.verdict, reason, None
