"""The fleet verdict (fleet mode): is the bot healthy, taken over all its replicas?

Every replica reports its own health verdict in a heartbeat; the leader counts the members it
has heard from recently (fresh: a change of their heartbeat seen within `stale_after` seconds by
its own clock) and calls the bot available when at least `MIN_AVAILABLE` of them are. Members
that are shutting down (`stopping`) count for nothing.

Silence means something only when the leader can see: a member is stale (gone) only if the
leader's view of the heartbeats was confirmed complete and current after the member had been
silent for the window; otherwise the member is *unconfirmed* and counts as `unknown` (it may be
alive, and the leader blind). A leader that cannot see its fleet therefore never decides from
itself alone: the verdict is unknown, and `core.policy` holds it only for a grace.

Pure: heartbeats and members come in, a verdict goes out; maintenance, force and online hours
still apply on top of it (core.policy).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from controller.core.excerpt import quote
from controller.core.types import Presence

STOPPING = "stopping"
VERDICTS = ("available", "unavailable", "unknown", STOPPING)
_MIN_AVAILABLE = re.compile(r"(\d+)(%?)")

LEASE_LABEL = "presence-controller/lease"
VERDICT_KEY = "presence-controller/verdict"
REASON_KEY = "presence-controller/reason"
DECISION_KEY = "presence-controller/decision"
"""On the leader's heartbeat: the presence it decided for the bot (followers show it)."""
DECISION_REASON_KEY = "presence-controller/decision-reason"
REASON_CHARS = 256
"""Characters of a member's reason kept (it reaches the leader's reason, logs and /status)."""
_POD_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
"""A pod name: a DNS-1123 subdomain (at most 253 characters)."""


@dataclass(frozen=True, slots=True)
class Member:
    pod: str
    verdict: str
    """One of VERDICTS; anything else read from a heartbeat counts as `unknown`."""
    reason: str
    age: float
    """Seconds since this replica last saw the member's heartbeat change."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What one heartbeat Lease says: whose it is, its verdict and reason."""

    pod: str
    verdict: str
    reason: str
    renewed: float | None = None
    """The Lease's renewTime (Unix seconds by the member's clock; None: unreadable)."""
    decision: tuple[str, str] | None = None
    """On the leader's heartbeat: the presence it decided for the bot, and why."""


def read_heartbeat(name: str, obj: Any, lease: str) -> Heartbeat | str:
    """A heartbeat Lease of the fleet `lease` as read from the API server, or why it does not
    count: its holder must be a pod name and the Lease named `<lease>-<holder>` (so one
    identity has one heartbeat); a verdict that is not one of VERDICTS is `unknown`."""
    spec = obj.get("spec") if isinstance(obj, dict) else None
    holder = spec.get("holderIdentity") if isinstance(spec, dict) else None
    if not isinstance(holder, str) or len(holder) > 253 or not _POD_NAME.fullmatch(holder):
        shown = quote(holder, 40) if isinstance(holder, str) else "none"
        return f"its holder ({shown}) is not a pod name"
    if name != f"{lease}-{holder}":
        return f"its name is not {lease}-<holder> for holder {holder}"
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    notes = meta.get("annotations") if isinstance(meta, dict) else None
    notes = notes if isinstance(notes, dict) else {}
    verdict, why = notes.get(VERDICT_KEY), notes.get(REASON_KEY)
    decided, because = notes.get(DECISION_KEY), notes.get(DECISION_REASON_KEY)
    return Heartbeat(
        holder,
        verdict if verdict in VERDICTS else "unknown",
        clip_reason(why if isinstance(why, str) else ""),
        unix_time(spec.get("renewTime") if isinstance(spec, dict) else None),
        (decided, clip_reason(because if isinstance(because, str) else ""))
        if decided in {"available", "unavailable"}
        else None,
    )


def unix_time(value: Any) -> float | None:
    """A MicroTime as Unix seconds; None if it is not one."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at.timestamp() if at.tzinfo is not None else None


def first_sight_age(seen_age: float, renewed: float | None, wall_now: float) -> float:
    """A member's age when this replica first sees its heartbeat (a start, a relist): its
    Lease's renewTime says how old it is, unless that is in our future. Only ever older than
    `seen_age`: a member whose clock is behind ours looks stale until its next renewal (which
    this replica sees change), never a dead member fresh."""
    if renewed is None or not math.isfinite(renewed):
        return seen_age
    return max(seen_age, wall_now - renewed)


def clip_reason(text: str) -> str:
    return text if len(text) <= REASON_CHARS else f"{text[:REASON_CHARS]}..."


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
    view_age: float = 0.0
    """Seconds since the leader last confirmed that its view of the heartbeats was complete
    and current (0: it is now)."""
    unseen: str = ""
    """What keeps it from confirming, when something does (a watch error)."""


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


def unconfirmed(member: Member, stale_after: float, view_age: float) -> bool:
    """Silent longer than the window, but not known to be gone: when the view was last
    confirmed current, it had not yet been silent that long."""
    return member.age >= stale_after and member.age - view_age < stale_after


def census(members: list[Member], stale_after: float, view_age: float) -> dict[str, int]:
    """Members by verdict as the fleet counts them (`presence_fleet_members`): the counted ones
    (`counted_members`, unconfirmed ones as `unknown`), and the fresh `stopping` ones."""
    counts = dict.fromkeys(VERDICTS, 0)
    for member in counted_members(members, stale_after, view_age):
        counts[member.verdict if member.verdict in counts else "unknown"] += 1
    counts[STOPPING] = sum(m.verdict == STOPPING and m.age < stale_after for m in members)
    return counts


def counted_members(members: list[Member], stale_after: float, view_age: float) -> list[Member]:
    """The members that count: fresh ones as they are, unconfirmed ones as `unknown`; stale and
    stopping ones not at all."""
    out = []
    for m in members:
        if m.verdict == STOPPING:
            continue
        if m.age < stale_after:
            out.append(m)
        elif unconfirmed(m, stale_after, view_age):
            out.append(replace(m, verdict="unknown", reason="not confirmed"))
    return out


def fleet_verdict(
    members: list[Member],
    min_available: str,
    stale_after: float,
    view_age: float = 0.0,
    unseen: str = "",
) -> FleetVerdict:
    """Available when at least `needed` counted members report `available`; unknown while
    members without a verdict (starting, or unconfirmed) could still make up the number, and
    while this replica's view is not current and the rule is a percentage (members it cannot
    see could raise the number needed)."""
    fresh = counted_members(members, stale_after, view_age)
    unsure = sum(unconfirmed(m, stale_after, view_age) for m in members if m.verdict != STOPPING)
    available = sum(m.verdict == "available" for m in fresh)
    need = needed(min_available, len(fresh))
    blind = view_age >= stale_after
    if not fresh:
        reason = "fleet: no member has reported within the heartbeat window"
        return FleetVerdict(Presence.UNAVAILABLE, reason, 0, 0, need)
    undecided = sum(m.verdict == "unknown" for m in fresh)
    certain = not (blind and parse_min_available(min_available)[1])
    if available >= need and certain:
        presence = Presence.AVAILABLE
    elif available + undecided >= need or available >= need:
        # Members still starting could make up the number: no verdict yet (as one replica
        # decides nothing before its first RISE or FALL ticks, or its startup grace); or this
        # replica cannot tell how many members there are.
        presence = Presence.UNKNOWN
    else:
        presence = Presence.UNAVAILABLE
    reason = (
        f"fleet: {available}/{len(fresh)} members available, {need} needed "
        f"(MIN_AVAILABLE {min_available})"
    )
    if presence is Presence.UNKNOWN:
        if undecided > unsure:
            reason += f", {undecided - unsure} not decided yet"
        if unsure:
            reason += f", {unsure} not confirmed"
        if blind or unsure:
            why = f" ({unseen})" if unseen else ""
            reason += f": this replica's view of the fleet is {view_age:.0f}s old{why}"
    elif presence is Presence.UNAVAILABLE:
        down = sorted(f"{m.pod} {m.verdict}" for m in fresh if m.verdict != "available")
        reason += f": {', '.join(down[:5])}" + (
            f" and {len(down) - 5} more" if len(down) > 5 else ""
        )
    return FleetVerdict(presence, reason, available, len(fresh), need)


def is_last_one_out(
    members: list[Member], me: str, stale_after: float, view_age: float = 0.0
) -> bool:
    """On shutdown: whether no other member is known to report `available` (then the presence
    must go `unavailable` with this replica; otherwise a successor keeps the bot online). A
    leader that cannot see its fleet (`view_age` past the window) turns the light off."""
    if view_age >= stale_after:
        return True
    others = [m for m in fresh_members(members, stale_after) if m.pod != me]
    return not any(m.verdict == "available" for m in others)
