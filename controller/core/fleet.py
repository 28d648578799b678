"""The fleet verdict (fleet mode): is the bot healthy, taken over all its replicas?

Every replica reports its own health verdict in a heartbeat; the leader counts the members it
has heard from recently (fresh: a change of their heartbeat seen within `stale_after` seconds by
its own clock) and calls the bot available when at least `MIN_AVAILABLE` of them are. Members
that are shutting down (`stopping`) count for nothing. Pure: the members come in, a verdict goes
out; maintenance, force and online hours still apply on top of it (core.policy).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from controller.core.types import Presence

STOPPING = "stopping"
VERDICTS = ("available", "unavailable", "unknown", STOPPING)
_MIN_AVAILABLE = re.compile(r"(\d+)(%?)")


@dataclass(frozen=True, slots=True)
class Member:
    pod: str
    verdict: str
    """One of VERDICTS; anything else read from a heartbeat counts as `unknown`."""
    reason: str
    age: float
    """Seconds since this replica last saw the member's heartbeat change."""


@dataclass(frozen=True, slots=True)
class FleetVerdict:
    presence: Presence
    reason: str
    available: int
    fresh: int
    needed: int


@dataclass(frozen=True, slots=True)
class FleetInputs:
    """What the leader decides from: the other members as it last saw them (its own verdict is
    this tick's, added by the policy), the rule and the freshness window."""

    me: str
    others: tuple[Member, ...]
    min_available: str
    stale_after: float


def parse_min_available(value: str) -> tuple[int, bool]:
    """`2` -> (2, False); `50%` -> (50, True). ValueError names what is expected."""
    found = _MIN_AVAILABLE.fullmatch(value.strip())
    if found is None:
        raise ValueError(f"{value!r}: expected an integer (2) or a percentage (50%)")
    number, percent = int(found[1]), bool(found[2])
    if number < 1 or (percent and number > 100):
        raise ValueError(f"{value!r}: expected at least 1, and a percentage of at most 100%")
    return number, percent


def needed(min_available: str, fresh: int) -> int:
    """Available members needed among `fresh` ones: the integer, or the percentage of the fresh
    members rounded up (at least one)."""
    number, percent = parse_min_available(min_available)
    if not percent:
        return number
    return max(1, math.ceil(number * fresh / 100))


def fresh_members(members: list[Member], stale_after: float) -> list[Member]:
    return [m for m in members if m.age < stale_after and m.verdict != STOPPING]


def verdict(members: list[Member], min_available: str, stale_after: float) -> FleetVerdict:
    """Available when at least `needed` fresh, non-stopping members report `available`;
    unknown while members without a verdict yet could still make up the number."""
    fresh = fresh_members(members, stale_after)
    available = sum(m.verdict == "available" for m in fresh)
    need = needed(min_available, len(fresh))
    if not fresh:
        reason = "fleet: no member has reported within the heartbeat window"
        return FleetVerdict(Presence.UNAVAILABLE, reason, 0, 0, need)
    undecided = sum(m.verdict == "unknown" for m in fresh)
    if available >= need:
        presence = Presence.AVAILABLE
    elif available + undecided >= need:
        # Members still starting could make up the number: no verdict yet (as one replica
        # decides nothing before its first RISE or FALL ticks, or its startup grace).
        presence = Presence.UNKNOWN
    else:
        presence = Presence.UNAVAILABLE
    reason = (
        f"fleet: {available}/{len(fresh)} members available, {need} needed "
        f"(MIN_AVAILABLE {min_available})"
    )
    if presence is Presence.UNKNOWN:
        reason += f", {undecided} not decided yet"
    elif presence is Presence.UNAVAILABLE:
        down = sorted(f"{m.pod} {m.verdict}" for m in fresh if m.verdict != "available")
        reason += f": {', '.join(down[:5])}" + (
            f" and {len(down) - 5} more" if len(down) > 5 else ""
        )
    return FleetVerdict(presence, reason, available, len(fresh), need)


def last_one_out(members: list[Member], me: str, stale_after: float) -> bool:
    """On shutdown: whether no other fresh member reports `available` (then the presence must
    go `unavailable` with this replica; otherwise a successor keeps the bot online)."""
    others = [m for m in fresh_members(members, stale_after) if m.pod != me]
    return not any(m.verdict == "available" for m in others)
